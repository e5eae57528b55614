"""On-the-fly mixtures of distinct speakers, for speaker-separation and overlap training.

Every epoch re-pairs the utterances: mixture `m` of an epoch takes its first
source from a shuffled pass over the files and its other K - 1 sources from
K - 1 other speakers, distinct from each other, one random utterance each.
Each source is a fixed-length crop at a random offset (short utterances
repeated, as in `training_dataset`), scaled relative to the first source by
a signal-to-interference ratio drawn per source, and the mixture is their
exact sum.
"""

import math

import numpy as np
import tensorflow as tf

from keras_spk.data.pipeline import AUTOTUNE
from keras_spk.data.pipeline import _batch_seeds
from keras_spk.data.pipeline import _check_lists
from keras_spk.data.pipeline import _check_start_epoch
from keras_spk.data.pipeline import _read_and_crop
from keras_spk.data.pipeline import _sampled_stream
from keras_spk.data.pipeline import _seeds
from keras_spk.data.sampler import MAX_MIXTURES_PER_EPOCH
from keras_spk.data.sampler import draw_positions
from keras_spk.utils._checks import is_int
from keras_spk.utils._checks import is_real

# A source crop whose RMS is below this (-120 dBFS) is silent: no finite gain
# gives it a level, so it is left as it is (and a silent first source leaves
# the others at their own levels).
SILENT_RMS = 1e-6


class MixtureSampler:
    """The file indices of every mixture of an epoch, K distinct speakers each.

    Epoch `e` is a pure function of `(seed, e)`. Its first sources walk
    through shuffled passes over all the files (every file once per pass);
    each other source is an utterance, uniformly drawn, of a speaker drawn
    uniformly among those not yet in the mixture.

    Args:
        labels: int array, the speaker index of each utterance.
        num_speakers: K >= 2, speakers per mixture.
        mixtures: int >= 1, mixtures per epoch.
        seed: int.
    """

    def __init__(self, labels, num_speakers, mixtures, seed=0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(
                f"labels must be a non-empty 1-D array. Received: labels of shape {labels.shape}"
            )
        if not is_int(num_speakers) or num_speakers < 2:
            raise ValueError(
                "num_speakers must be an int >= 2: a mixture holds at least two speakers. "
                f"Received: num_speakers={num_speakers!r}"
            )
        if not is_int(mixtures) or mixtures < 1:
            raise ValueError(f"mixtures must be an int >= 1. Received: mixtures={mixtures!r}")
        self.speakers, self._inverse = np.unique(labels, return_inverse=True)
        if num_speakers > len(self.speakers):
            raise ValueError(
                f"num_speakers cannot exceed the {len(self.speakers)} speakers in the data: the "
                "speakers of a mixture are distinct. Lower it or add speakers. "
                f"Received: num_speakers={num_speakers}"
            )
        self.num_speakers = int(num_speakers)
        self.mixtures = int(mixtures)
        self.seed = int(seed)
        self._members = np.argsort(self._inverse, kind="stable").astype(np.int64)
        self._counts = np.bincount(self._inverse).astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)

    def epoch_indices(self, epoch):
        """Utterance indices of epoch `epoch`: int64 `[mixtures, K]`, column 0 the first source."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n = len(self._inverse)
        passes = -(-self.mixtures // n)
        firsts = rng.permuted(np.tile(np.arange(n), (passes, 1)), axis=1).reshape(-1)
        firsts = firsts[: self.mixtures]
        first_speaker = self._inverse[firsts]
        # K - 1 distinct speakers among the n_speakers - 1 others: a draw r >= the
        # first speaker's index stands for the next speaker up.
        others = draw_positions(
            rng, np.full(self.mixtures, len(self.speakers) - 1), self.num_speakers - 1
        )
        others += others >= first_speaker[:, None]
        counts = self._counts[others]
        utterance = np.minimum((rng.random(others.shape) * counts).astype(np.int64), counts - 1)
        rows = self._members[self._starts[others] + utterance]
        return np.concatenate([firsts[:, None], rows], axis=1).astype(np.int64)


def _check_sir(sir_db):
    try:
        lo, hi = sir_db
    except (TypeError, ValueError):
        lo = hi = None
    if not (is_real(lo) and is_real(hi) and math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(
            "sir_db must be two finite numbers [lo, hi] with lo <= hi, the range of the "
            "signal-to-interference ratios in dB (e.g. [0, 0] for equal levels). "
            f"Received: sir_db={sir_db!r}"
        )
    return float(lo), float(hi)


def mix_sources(sources, sir_db, seed):
    """Scales each source against the first one and sums them.

    Source `k >= 1` is scaled to the RMS of the first source times
    `10**(-sir / 20)`, `sir` drawn uniformly in `sir_db` for each source;
    silent crops (RMS below `SILENT_RMS`) keep their level.

    Args:
        sources: float32 [batch, K, samples].
        sir_db: (lo, hi) in dB.
        seed: int64 [2] stateless seed.

    Returns:
        `(mixture [batch, samples], scaled sources [batch, K, samples])`,
        the mixture being exactly the sum of the scaled sources.
    """
    lo, hi = sir_db
    batch, count = tf.shape(sources)[0], sources.shape[1]
    sir = tf.random.stateless_uniform([batch, count - 1], seed, minval=lo, maxval=hi)
    rms = tf.sqrt(tf.reduce_mean(tf.square(sources), axis=-1))
    reference, rest = rms[:, :1], rms[:, 1:]
    target = reference * tf.pow(10.0, -sir / 20.0)
    audible = tf.logical_and(reference > SILENT_RMS, rest > SILENT_RMS)
    gains = tf.where(audible, target / tf.where(audible, rest, 1.0), 1.0)
    gains = tf.concat([tf.ones_like(reference), gains], axis=1)
    sources = sources * gains[:, :, None]
    mixture = sources[:, 0]
    for k in range(1, count):
        mixture = mixture + sources[:, k]
    return mixture, sources


def mixture_dataset(
    paths,
    labels,
    segment_samples,
    batch_size,
    num_speakers=2,
    mixtures_per_epoch=None,
    sir_db=(0.0, 0.0),
    sample_rate=16000,
    seed=0,
    start_epoch=None,
    return_sources=False,
    num_parallel_calls=AUTOTUNE,
):
    """Batches of mixtures of K distinct speakers, re-paired every epoch.

    Each source is a `segment_samples` crop at a random offset (utterances
    shorter than that are repeated end to end); source `k >= 1` is scaled
    to the RMS of the first source times `10**(-sir / 20)`, with `sir`
    drawn uniformly in `sir_db` for each source (equal RMS for `[0, 0]`),
    and the mixture is the exact sum of the scaled sources (see
    `MixtureSampler` for the pairing, `mix_sources` for the levels).

    By default each pass over the dataset is one epoch, a different one on
    every pass. With `start_epoch=e` it is an endless stream of epochs
    `e, e + 1, ...` whose pairings, crops and levels depend only on
    `(seed, epoch)`: give it to `model.fit(..., initial_epoch=e,
    steps_per_epoch=mixtures_per_epoch // batch_size)`.

    Args:
        paths: list of audio file paths.
        labels: int speaker index of each path.
        segment_samples: length of the mixture and of each source, in samples.
        batch_size: mixtures per batch.
        num_speakers: K >= 2, speakers per mixture.
        mixtures_per_epoch: `None` (`len(paths)`) or an int; rounded down to
            whole batches.
        sir_db: `(lo, hi)`, the range of the signal-to-interference ratios
            in dB of the first source over each other one.
        sample_rate: files at another rate are resampled to it.
        seed: int; fixes the pairings, crops and levels.
        start_epoch: `None` (one epoch per pass), or an int >= 0: the first
            epoch of an endless, resumable stream.
        return_sources: whether elements also carry the scaled sources.
        num_parallel_calls: decode parallelism.

    Returns:
        A `tf.data.Dataset` of `(mixture [B, L] float32, labels [B, K] int64)`,
        or with `return_sources` `(mixture, labels, sources [B, K, L])`;
        `labels[:, k]` is the speaker of source `k`.

    Example:
    >>> dataset = mixture_dataset(paths, labels, 32000, batch_size=8,
    ...                           sir_db=(-5, 5), start_epoch=0)
    >>> mixture, speakers = next(iter(dataset))  # [8, 32000], [8, 2]
    """
    return _mixture_dataset(
        paths, labels, segment_samples, batch_size, num_speakers, mixtures_per_epoch, sir_db,
        sample_rate, seed, start_epoch, return_sources, num_parallel_calls,
    )[0]


def _mixture_dataset(
    paths, labels, segment_samples, batch_size, num_speakers, mixtures_per_epoch, sir_db,
    sample_rate, seed, start_epoch, return_sources, num_parallel_calls,
):
    """`mixture_dataset` and its steps per epoch."""
    paths, labels = _check_lists(paths, labels)
    start_epoch = _check_start_epoch(start_epoch)
    sir_db = _check_sir(sir_db)
    if not isinstance(return_sources, bool):
        raise ValueError(
            f"return_sources must be True or False. Received: return_sources={return_sources!r}"
        )
    for name, value in [("segment_samples", segment_samples), ("batch_size", batch_size)]:
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
    if mixtures_per_epoch is None:
        mixtures_per_epoch = len(paths)
    elif not is_int(mixtures_per_epoch) or not 1 <= mixtures_per_epoch <= MAX_MIXTURES_PER_EPOCH:
        raise ValueError(
            f"mixtures_per_epoch must be None (one per file) or an int from 1 to "
            f"{MAX_MIXTURES_PER_EPOCH:,} (an epoch's pairings are drawn at once). "
            f"Received: mixtures_per_epoch={mixtures_per_epoch!r}"
        )
    steps = int(mixtures_per_epoch) // int(batch_size)
    if steps == 0:
        raise ValueError(
            f"An epoch of {mixtures_per_epoch} mixtures (one per file unless mixtures_per_epoch "
            f"says otherwise) does not fill one batch of {batch_size}. Use a smaller batch size, "
            f"more files or a larger mixtures_per_epoch. Received: batch_size={batch_size}"
        )
    sampler = MixtureSampler(labels, num_speakers, steps * batch_size, seed=seed)
    count = sampler.num_speakers
    dataset = _sampled_stream(
        sampler.epoch_indices, steps * batch_size * count, paths, labels, seed, start_epoch
    )
    seeds = _seeds(seed + 1) if start_epoch is None else _batch_seeds(seed, steps, start_epoch)

    def mix(crops, crop_labels, crop_seed):
        sources = tf.reshape(crops, [batch_size, count, segment_samples])
        level_seed = tf.random.experimental.stateless_fold_in(crop_seed, 1)
        mixture, sources = mix_sources(sources, sir_db, level_seed)
        crop_labels = tf.reshape(crop_labels, [batch_size, count])
        return (mixture, crop_labels, sources) if return_sources else (mixture, crop_labels)

    dataset = _read_and_crop(
        dataset, segment_samples, batch_size * count, sample_rate, seeds, True,
        num_parallel_calls, transform=mix,
    )
    return dataset, steps
