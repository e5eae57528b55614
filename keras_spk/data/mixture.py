"""On-the-fly mixtures of distinct speakers, for speaker-separation and overlap training.

Every epoch re-pairs the utterances: mixture `m` of an epoch takes its first
source from a shuffled pass over the files and its other K - 1 sources from
K - 1 other speakers, distinct from each other, one random utterance each.
Each source is a fixed-length crop at a random offset (short utterances
repeated, as in `training_dataset`), scaled relative to the first source by
a signal-to-interference ratio drawn per source, and the mixture is their
exact sum. On request each source comes with an enrolment: a crop of
another utterance of the same speaker, as a speaker-conditioned separator
(target speaker extraction) takes it.

`wsj0_2mix_dataset` reads pre-made mixtures instead: WSJ0-2mix's `mix`
files with their `s1` and `s2` sources, cropped at one offset.
"""

import collections
import math

import numpy as np
import tensorflow as tf

from keras_spk.data.pipeline import AUTOTUNE
from keras_spk.data.pipeline import _batch_seeds
from keras_spk.data.pipeline import _check_lists
from keras_spk.data.pipeline import _check_start_epoch
from keras_spk.data.pipeline import _read_and_crop
from keras_spk.data.pipeline import check_replica
from keras_spk.data.pipeline import contents_reader
from keras_spk.data.pipeline import _sampled_stream
from keras_spk.data.pipeline import _seeds
from keras_spk.data.pipeline import crop_or_repeat
from keras_spk.data.sampler import MAX_MIXTURES_PER_EPOCH
from keras_spk.data.sampler import draw_positions
from keras_spk.data.shards import read_contents
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
    uniformly among those not yet in the mixture. With `enrolments`, each
    source also gets an enrolment utterance: one of the other utterances of
    its speaker, uniformly drawn (after the sources, from the same epoch's
    random stream, so the sources are those drawn without enrolments).

    Args:
        labels: int array, the speaker index of each utterance.
        num_speakers: K >= 2, speakers per mixture.
        mixtures: int >= 1, mixtures per epoch.
        seed: int.
        enrolments: whether to draw an enrolment utterance per source; every
            speaker then needs at least two utterances.

    Example:
    >>> sampler = MixtureSampler([0, 0, 1, 1, 2], num_speakers=2, mixtures=4)
    >>> sampler.epoch_indices(0).shape
    (4, 2)
    """

    def __init__(self, labels, num_speakers, mixtures, seed=0, enrolments=False):
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
        self.enrolments = bool(enrolments)
        self._members = np.argsort(self._inverse, kind="stable").astype(np.int64)
        self._counts = np.bincount(self._inverse).astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)
        # The position of each utterance among its speaker's utterances.
        self._rank = np.empty_like(self._members)
        self._rank[self._members] = np.arange(len(self._members)) - self._starts[
            self._inverse[self._members]
        ]
        if self.enrolments and np.any(self._counts < 2):
            single = self.speakers[self._counts < 2]
            raise ValueError(
                f"enrolments need at least two utterances of every speaker (an enrolment is "
                f"another utterance of the source's speaker), but {len(single)} speaker(s) have "
                f"one, e.g. speaker {single[0]}. Remove them or draw no enrolments."
            )

    def epoch_indices(self, epoch):
        """Utterance indices of epoch `epoch`: int64 `[mixtures, K]`, column 0 the first source.

        With `enrolments`: `[mixtures, 2K]`, columns `K + k` the enrolment
        utterance of source `k` (same speaker, another utterance).
        """
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
        indices = np.concatenate([firsts[:, None], rows], axis=1).astype(np.int64)
        if not self.enrolments:
            return indices
        # One of the speaker's other utterances: a draw r >= the source's own
        # position stands for the next utterance up.
        speakers = self._inverse[indices]
        others = self._counts[speakers] - 1
        r = np.minimum((rng.random(indices.shape) * others).astype(np.int64), others - 1)
        r += r >= self._rank[indices]
        enrolments = self._members[self._starts[speakers] + r]
        return np.concatenate([indices, enrolments], axis=1).astype(np.int64)


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


def mix_sources(sources, sir_db, seed, rows=None):
    """Scales each source against the first one and sums them.

    Source `k >= 1` is scaled to the RMS of the first source times
    `10**(-sir / 20)`, `sir` drawn uniformly in `sir_db` for each source;
    silent crops (RMS below `SILENT_RMS`) keep their level.

    Args:
        sources: float32 [batch, K, samples].
        sir_db: (lo, hi) in dB.
        seed: int64 [2] stateless seed.
        rows: `None`, or `(start, global_batch)`: these mixtures are rows
            `start ..` of a batch of `global_batch` (data-parallel
            training); the levels are drawn for the whole batch and sliced.

    Returns:
        `(mixture [batch, samples], scaled sources [batch, K, samples])`,
        the mixture being exactly the sum of the scaled sources.
    """
    lo, hi = sir_db
    batch, count = tf.shape(sources)[0], sources.shape[1]
    start, drawn = (0, batch) if rows is None else rows
    sir = tf.random.stateless_uniform([drawn, count - 1], seed, minval=lo, maxval=hi)
    sir = sir[start : start + batch]
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
    return_enrolments=False,
    augment=None,
    replica=None,
):
    """Batches of mixtures of K distinct speakers, re-paired every epoch.

    Each source is a `segment_samples` crop at a random offset (utterances
    shorter than that are repeated end to end); source `k >= 1` is scaled
    to the RMS of the first source times `10**(-sir / 20)`, with `sir`
    drawn uniformly in `sir_db` for each source (equal RMS for `[0, 0]`),
    and the mixture is the exact sum of the scaled sources (see
    `MixtureSampler` for the pairing, `mix_sources` for the levels).

    With `return_enrolments`, each source also comes with an enrolment for
    a speaker-conditioned separator: a `segment_samples` crop, at its own
    random offset (repeated when short), of another utterance of the
    source's speaker, uniformly drawn among the others for every mixture
    of every epoch. Enrolments keep the level of their file (no SIR
    scaling) and are not part of the mixture. Every speaker then needs at
    least two utterances: one with a single utterance is an error when the
    dataset is made, naming it.

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
        return_enrolments: whether elements also carry an enrolment crop
            per source (another utterance of its speaker).
        augment: `None`, or a `keras_spk.data.augment.Augmentation` applied
            to the mixture (noise, reverberation; not speed perturbation,
            which would change the sources' speakers); the sources and
            enrolments stay clean.
        replica: `None`, or `(index, count)`: this worker's share of every
            batch in data-parallel training (`batch_size` is the global
            batch, a multiple of `count`; needs `start_epoch`).

    Returns:
        A `tf.data.Dataset` of `(mixture [B, L] float32, labels [B, K] int64)`,
        with `return_sources` `(mixture, labels, sources [B, K, L])`, with
        `return_enrolments` `(mixture, labels, enrolments [B, K, L])`, with
        both `(mixture, labels, sources, enrolments)`; `labels[:, k]` is the
        speaker of source `k` and of enrolment `k`.

    Example:
    >>> dataset = mixture_dataset(paths, labels, 32000, batch_size=8,
    ...                           sir_db=(-5, 5), start_epoch=0)
    >>> mixture, speakers = next(iter(dataset))  # [8, 32000], [8, 2]
    >>> dataset = mixture_dataset(paths, labels, 32000, batch_size=8,
    ...                           start_epoch=0, return_enrolments=True)
    >>> mixture, speakers, enrolments = next(iter(dataset))  # enrolments [8, 2, 32000]
    """
    return _mixture_dataset(
        paths, labels, segment_samples, batch_size, num_speakers, mixtures_per_epoch, sir_db,
        sample_rate, seed, start_epoch, return_sources, num_parallel_calls, return_enrolments,
        augment, replica,
    )[0]


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")
    return value


def _check_enrolment_speakers(paths, labels):
    """Every speaker needs a second utterance to enrol with; the error names one that has not."""
    speakers, counts = np.unique(labels, return_counts=True)
    single = speakers[counts < 2]
    if single.size:
        path = paths[int(np.flatnonzero(labels == single[0])[0])]
        raise ValueError(
            f"return_enrolments needs at least two utterances of every speaker (an enrolment is "
            f"another utterance of the source's speaker), but {single.size} speaker(s) have a "
            f"single one, e.g. speaker {single[0]} with only {path}. Remove those speakers, or "
            "set return_enrolments to false (in a config: data.mixture.return_enrolments)."
        )


def _mixture_dataset(
    paths, labels, segment_samples, batch_size, num_speakers, mixtures_per_epoch, sir_db,
    sample_rate, seed, start_epoch, return_sources, num_parallel_calls, return_enrolments=False,
    augment=None, replica=None,
):
    """`mixture_dataset` and its steps per epoch."""
    paths, labels = _check_lists(paths, labels)
    start_epoch = _check_start_epoch(start_epoch)
    sir_db = _check_sir(sir_db)
    _check_flag("return_sources", return_sources)
    _check_flag("return_enrolments", return_enrolments)
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
    if return_enrolments:
        _check_enrolment_speakers(paths, labels)
    replica = check_replica(replica, batch_size)
    if replica is not None and start_epoch is None:
        raise ValueError("Data-parallel reading (replica) needs a resumable stream: set start_epoch.")
    if augment is not None and augment.read_samples(segment_samples) != segment_samples:
        raise ValueError(
            "Speed perturbation would change the speakers of a mixture's sources: the mixture "
            "sampler takes noise and reverberation only. Set data.augment.speed.speeds to [1.0] "
            "for this stage."
        )
    # This worker's mixtures are rows `start ..` of each batch of `batch_size`.
    rows = None if replica is None else (replica[0] * (batch_size // replica[1]), batch_size)
    sampler = MixtureSampler(
        labels, num_speakers, steps * batch_size, seed=seed, enrolments=return_enrolments
    )
    count = sampler.num_speakers
    # Files read per mixture: its K sources, then (with enrolments) one per source.
    per_mixture = 2 * count if return_enrolments else count
    dataset = _sampled_stream(
        sampler.epoch_indices, steps * batch_size * per_mixture, paths, labels, seed, start_epoch
    )
    seeds = _seeds(seed + 1) if start_epoch is None else _batch_seeds(seed, steps, start_epoch)

    def mix(crops, crop_labels, crop_seed):
        if return_enrolments:
            crops = tf.reshape(crops, [-1, 2 * count, segment_samples])
            crop_labels = tf.reshape(crop_labels, [-1, 2 * count])[:, :count]
            sources, enrolments = crops[:, :count], crops[:, count:]
        else:
            sources = tf.reshape(crops, [-1, count, segment_samples])
            crop_labels = tf.reshape(crop_labels, [-1, count])
        level_seed = tf.random.experimental.stateless_fold_in(crop_seed, 1)
        mixture, sources = mix_sources(sources, sir_db, level_seed, rows=rows)
        if augment is not None:
            mixture, _ = augment(
                mixture, crop_labels[:, 0], tf.random.experimental.stateless_fold_in(crop_seed, 2),
                rows=rows,
            )
        element = (mixture, crop_labels) + ((sources,) if return_sources else ())
        return element + ((enrolments,) if return_enrolments else ())

    dataset = _read_and_crop(
        dataset, segment_samples, batch_size * per_mixture, sample_rate, seeds, True,
        num_parallel_calls, transform=mix, replica=replica, read=contents_reader(paths),
    )
    return dataset, steps


class _PremixedEpochs:
    """The table rows of every mixture of an epoch of a pre-made separation corpus.

    The table lists, per mixture `i`, its mixture file (row `3i`) and its
    two sources (rows `3i + 1`, `3i + 2`). Epoch `e` (a pure function of
    `(seed, e)`) is a shuffled pass over the mixtures (several when
    `mixtures` exceeds them); with `enrolments`, each source adds the row
    of a source file of another mixture whose utterance is another one of
    the same speaker, uniformly drawn among those files.
    """

    def __init__(self, speakers, utterances, mixtures, seed, enrolments):
        # speakers, utterances: [N, 2] speaker index and utterance id of each source.
        self.count = len(speakers)
        self.mixtures = int(mixtures)
        self.seed = int(seed)
        self.enrolments = bool(enrolments)
        if not enrolments:
            return
        slot_speakers = speakers.reshape(-1).astype(np.int64)
        slot_utterances = np.unique(utterances.reshape(-1), return_inverse=True)[1].reshape(-1)
        # Source slots (2i + k) sorted by speaker, then utterance: each speaker's files
        # form one run, and each of its utterances a block inside it.
        order = np.lexsort((np.arange(len(slot_speakers)), slot_utterances, slot_speakers))
        self._members = order.astype(np.int64)
        counts = np.bincount(slot_speakers).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        key = slot_speakers * (slot_utterances.max() + 1) + slot_utterances
        sorted_key = key[order]
        first = np.searchsorted(sorted_key, key, side="left")
        # Per slot: its speaker's run (start), its utterance's block in it (offset, size).
        self._start = starts[slot_speakers]
        self._block = first - self._start
        self._size = np.searchsorted(sorted_key, key, side="right") - first
        self._others = counts[slot_speakers] - self._size

    def epoch_indices(self, epoch):
        """Table rows of epoch `epoch`: int64 `[mixtures, 3]` (mix, s1, s2), or `[mixtures, 5]`
        with the enrolment files of s1 and s2."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        passes = -(-self.mixtures // self.count)
        order = rng.permuted(np.tile(np.arange(self.count), (passes, 1)), axis=1).reshape(-1)
        order = order[: self.mixtures].astype(np.int64)
        rows = 3 * order[:, None] + np.arange(3)
        if not self.enrolments:
            return rows
        slots = 2 * order[:, None] + np.arange(2)
        others = self._others[slots]
        # A file of another utterance: a draw r at or past the utterance's own block
        # stands for the file one block size further.
        r = np.minimum((rng.random(slots.shape) * others).astype(np.int64), others - 1)
        r += self._size[slots] * (r >= self._block[slots])
        chosen = self._members[self._start[slots] + r]
        return np.concatenate([rows, 3 * (chosen // 2) + 1 + chosen % 2], axis=1)


def wsj0_2mix_dataset(
    root,
    subset,
    segment_samples,
    batch_size,
    mixtures_per_epoch=None,
    sample_rate=16000,
    seed=0,
    start_epoch=None,
    return_enrolments=False,
    num_parallel_calls=AUTOTUNE,
):
    """Batches of WSJ0-2mix mixtures with their two sources, for training a separator.

    The mixtures of `read_wsj0_2mix(root, subset)` are shuffled every
    epoch (`mixtures_per_epoch` of them: one shuffled pass, or several when
    it exceeds the subset). Each element is a `segment_samples` crop of the
    `mix` file and the same span of its `s1` and `s2` files, at one random
    offset; a mixture shorter than that (WSJ0-2mix "min" mixtures last
    1.5 to 9 s) is repeated end to end, its sources alike, so the crop of
    the mixture stays the sum of the crops of the sources. The three files
    of a mixture must have the same length (WSJ0-2mix's do); the crop
    raises an error naming the mixture otherwise. The files are read as
    they are, levels included: `mixture` is the corpus' own `mix` file, the
    sum of `s1` and `s2` up to its 16-bit rounding.

    Files at another rate than `sample_rate` are resampled to it, as
    everywhere in the training pipeline (`decode_audio`): `wav8k` under a
    16-kHz config is upsampled, which adds no content above 4 kHz; prefer
    the corpus at the model's rate.

    The labels index the WSJ0 speakers of the subset (the first 3
    characters of the utterance ids, `SeparationMixture.speakers`) in
    sorted order. That is this corpus' own speaker map, not a recipe's
    (whose speakers come from its training folders).

    With `return_enrolments`, each source also comes with an enrolment for
    a speaker-conditioned separator: a `segment_samples` crop, at its own
    random offset (repeated when short), of the `s1` or `s2` file of
    another mixture that holds another utterance (another utterance id) of
    the same speaker, uniformly drawn among those files for every mixture
    of every epoch. A speaker with a single utterance in the subset is an
    error when the dataset is made, naming it.

    By default each pass over the dataset is one epoch, a different one on
    every pass. With `start_epoch=e` it is an endless stream of epochs
    `e, e + 1, ...` whose order, crops and enrolments depend only on
    `(seed, epoch)`: give it to `model.fit(..., initial_epoch=e,
    steps_per_epoch=mixtures_per_epoch // batch_size)`.

    Args:
        root: the WSJ0-2mix folder holding `tr`, `cv` and `tt` (e.g.
            `.../wsj0-mix/2speakers/wav16k/min`).
        subset: `"tr"`, `"cv"` or `"tt"` (`WSJ0_2MIX_SUBSETS`).
        segment_samples: length of the crops, in samples.
        batch_size: mixtures per batch.
        mixtures_per_epoch: `None` (every mixture of the subset once) or an
            int; rounded down to whole batches.
        sample_rate: files at another rate are resampled to it.
        seed: int; fixes the order, the crops and the enrolments.
        start_epoch: `None` (one epoch per pass), or an int >= 0: the first
            epoch of an endless, resumable stream.
        return_enrolments: whether elements also carry an enrolment crop
            per source.
        num_parallel_calls: read parallelism.

    Returns:
        A `tf.data.Dataset` of `(mixture [B, L] float32, labels [B, 2] int64,
        sources [B, 2, L] float32)`, with `return_enrolments`
        `(mixture, labels, sources, enrolments [B, 2, L])`; `labels[:, k]`
        is the speaker of source `k` (and of enrolment `k`).

    Example:
    >>> dataset = wsj0_2mix_dataset("wsj0-mix/2speakers/wav16k/min", "tr", 64000,
    ...                             batch_size=4, start_epoch=0)
    >>> mixture, speakers, sources = next(iter(dataset))  # [4, 64000], [4, 2], [4, 2, 64000]
    """
    return _wsj0_2mix_dataset(
        root, subset, segment_samples, batch_size, mixtures_per_epoch, sample_rate, seed,
        start_epoch, return_enrolments, num_parallel_calls,
    )[0]


def _wsj0_2mix_dataset(
    root, subset, segment_samples, batch_size, mixtures_per_epoch, sample_rate, seed,
    start_epoch, return_enrolments, num_parallel_calls, replica=None,
):
    """`wsj0_2mix_dataset` and its steps per epoch; `replica=(index, count)`: this
    worker's share of every batch (data-parallel training, `start_epoch` set)."""
    from keras_spk.data import audio
    from keras_spk.data.readers import read_wsj0_2mix

    if root is None:
        raise ValueError(
            "No WSJ0-2mix folder given: the wsj0_2mix sampler reads WSJ0-2mix, not the training "
            "folders. Set data.wsj0_2mix.root to the folder holding tr/, cv/ and tt/ (e.g. "
            ".../wsj0-mix/2speakers/wav16k/min). Received: root=None"
        )
    start_epoch = _check_start_epoch(start_epoch)
    _check_flag("return_enrolments", return_enrolments)
    for name, value in [("segment_samples", segment_samples), ("batch_size", batch_size)]:
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
    mixtures = read_wsj0_2mix(root, subset)
    if mixtures_per_epoch is None:
        mixtures_per_epoch = len(mixtures)
    elif not is_int(mixtures_per_epoch) or not 1 <= mixtures_per_epoch <= MAX_MIXTURES_PER_EPOCH:
        raise ValueError(
            f"mixtures_per_epoch must be None (every mixture of the subset) or an int from 1 to "
            f"{MAX_MIXTURES_PER_EPOCH:,} (an epoch's order is drawn at once). "
            f"Received: mixtures_per_epoch={mixtures_per_epoch!r}"
        )
    steps = int(mixtures_per_epoch) // int(batch_size)
    if steps == 0:
        raise ValueError(
            f"An epoch of {mixtures_per_epoch} mixtures (the {len(mixtures)} of WSJ0-2mix "
            f"{subset!r} unless mixtures_per_epoch says otherwise) does not fill one batch of "
            f"{batch_size}. Use a smaller batch size or a larger mixtures_per_epoch. "
            f"Received: batch_size={batch_size}"
        )
    speaker_ids = sorted({s for m in mixtures for s in m.speakers})
    index = {s: i for i, s in enumerate(speaker_ids)}
    speakers = np.array([[index[s] for s in m.speakers] for m in mixtures], np.int64)
    utterances = np.array([m.name.split("_")[0:3:2] for m in mixtures])
    if return_enrolments:
        own = collections.defaultdict(set)
        for speaker, utterance in zip(speakers.reshape(-1).tolist(), utterances.reshape(-1)):
            own[speaker].add(str(utterance))
        single = [s for s in range(len(speaker_ids)) if len(own[s]) < 2]
        if single:
            raise ValueError(
                f"return_enrolments needs at least two utterances of every speaker (an "
                f"enrolment is another utterance of the source's speaker), but WSJ0-2mix "
                f"{subset!r} has {len(single)} speaker(s) with a single one, e.g. speaker "
                f"{speaker_ids[single[0]]} (utterance {own[single[0]].pop()}). Use another "
                "subset, or set return_enrolments to false (in a config: "
                "data.wsj0_2mix.return_enrolments)."
            )
    sampler = _PremixedEpochs(speakers, utterances, steps * batch_size, seed, return_enrolments)
    table = [p for m in mixtures for p in (m.mixture, *m.sources)]
    table_labels = np.concatenate([np.full((len(mixtures), 1), -1), speakers], axis=1).reshape(-1)
    files = 5 if return_enrolments else 3
    dataset = _sampled_stream(
        sampler.epoch_indices, steps * batch_size * files, table, table_labels, seed, start_epoch
    )
    seeds = _seeds(seed + 1) if start_epoch is None else _batch_seeds(seed, steps, start_epoch)
    replica = check_replica(replica, batch_size)
    start, drawn = 0, batch_size
    if replica is not None:
        if start_epoch is None:
            raise ValueError("Data-parallel reading (replica) needs a resumable stream: set start_epoch.")
        # This worker's mixtures are rows `start .. start + share - 1` of each batch.
        share = batch_size // replica[1]
        start, span = replica[0] * share, batch_size * files
        dataset = dataset.enumerate().filter(
            lambda i, element: tf.logical_and(
                i % span >= start * files, i % span < (start + share) * files
            )
        ).map(lambda i, element: element)
        batch_size = share
    dataset = dataset.map(
        lambda path, label: (read_contents(path), path, label),
        num_parallel_calls=num_parallel_calls,
        deterministic=True,
    )
    dataset = dataset.batch(batch_size * files, drop_remainder=True)
    dataset = tf.data.Dataset.zip((dataset, seeds))

    def crop(batch, batch_seed):
        contents = tf.reshape(batch[0], [batch_size, files])
        paths = tf.reshape(batch[1], [batch_size, files])
        labels = tf.reshape(batch[2], [batch_size, files])[:, 1:3]
        row_seeds = tf.random.stateless_uniform(
            [drawn, 2], batch_seed, minval=None, maxval=None, dtype=tf.int64
        )[start : start + batch_size]

        def one(i):
            waves = [
                audio.decode_audio(contents[i, f], paths[i, f], sample_rate) for f in range(files)
            ]
            lengths = tf.stack([tf.shape(w)[0] for w in waves[:3]])
            same = tf.debugging.Assert(
                tf.reduce_all(tf.equal(lengths, lengths[0])),
                ["A WSJ0-2mix mixture and its sources differ in length (mix, s1, s2 samples):",
                 paths[i, 0], lengths],
            )
            with tf.control_dependencies([same]):
                # One seed for the three: the same offset, since their lengths agree.
                crops = [crop_or_repeat(w, segment_samples, row_seeds[i]) for w in waves[:3]]
            crops += [
                crop_or_repeat(
                    w, segment_samples,
                    tf.random.experimental.stateless_fold_in(row_seeds[i], k + 1),
                )
                for k, w in enumerate(waves[3:])
            ]
            return tf.stack(crops)

        crops = tf.map_fn(
            one, tf.range(batch_size),
            fn_output_signature=tf.TensorSpec([files, segment_samples], tf.float32),
        )
        element = (crops[:, 0], labels, crops[:, 1:3])
        return element + ((crops[:, 3:],) if return_enrolments else ())

    dataset = dataset.map(crop, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.prefetch(AUTOTUNE), steps
