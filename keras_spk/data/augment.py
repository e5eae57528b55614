"""On-the-fly waveform augmentation in the tf.data training pipeline.

`Augmentation` turns a batch of crops into augmented crops of the same
speakers, every random value drawn from the batch's stateless seed, so a
batch depends only on `(seed, epoch, step)` and a resumed run sees exactly
the batches an uninterrupted one would have:

1. **Speed perturbation** (every crop, whatever `probability` says, as in
   WeSpeaker): a speed `s` drawn uniformly from `speeds`; the crop is the
   band-limited resampling of `L * s` read samples to `L` (the signal is
   treated as recorded at `s * sample_rate`), so 1.1 is faster and higher.
   With `as_new_speakers` a crop at the `k`-th speed other than 1.0 (in
   list order) gets the label `label + k * num_speakers`, as WeSpeaker
   does; 1.0 keeps `label`.
2. A crop is **augmented** with `probability`. An augmented crop draws one
   uniform `u`: it is *reverberated* when `u < reverb.probability` and
   gets *additive noise* when `u >= 1 - noise.probability`. So each kind
   has its own probability and the two overlap as little as possible:
   0.5 / 0.5 gives exactly one of them (WeSpeaker's choice), 0.5 / 1.0
   gives noise always and reverberation half the time (then before the
   noise).
3. **Reverberation**: an impulse response drawn uniformly from the RIR
   files, cut to its first `reverb.max_seconds`, scaled to unit energy and
   convolved with the crop (FFT), aligned on its peak (the direct path) as
   Kaldi's `wav-reverberate` does: the output is not delayed by the
   propagation time before the peak, and what precedes the peak lands
   before the crop's events. The result is scaled to the crop's power
   (Kaldi's `--normalize-output`).
4. **Additive noise**: a category drawn among `noise`, `music` and
   `babble` in proportion to their `weight`s, a count `c` uniform in its
   `count` range and an SNR uniform in its `snr_db` range; `c` distinct
   files of the category (with repetition only when it has fewer), each
   cropped at a uniform offset (files shorter than the crop are repeated)
   and scaled to unit power, are summed, and the sum is scaled so that
   `10 log10(P_crop / P_noise)` is the SNR, with `P` the mean square over
   the crop. Nothing is clipped or renormalised afterwards.

Noise files are read inside the pipeline: of a plain 16-bit mono WAV at
the training rate (MUSAN's files), only the head and the cropped bytes
are read and decoded; any other file is read whole and decoded with all
of `keras_spk.data.audio`'s checks, so a bad file fails the pipeline
naming it. Impulse responses are read and decoded whole.

Layouts: noise roots follow MUSAN (`<root>/noise/**`, `<root>/music/**`,
`<root>/speech/**` for babble); RIR roots follow RIRS_NOISES (every audio
file under `<root>/simulated_rirs/` when that folder exists, otherwise
every audio file under `<root>` whose name does not contain "noise", which
takes `real_rirs_isotropic_noises/` without its noise recordings).

Config (`data.augment`, defaults in `DEFAULTS`, valid values in
`CONSTRAINTS`):

```yaml
data:
  augment:
    probability: 0.0        # P(a crop is reverberated and/or noised); 0 disables both
    noise:
      root: null            # MUSAN folder; null: the demo's set with the demo corpus
      probability: 0.5      # P(noise | augmented)
      noise: {snr_db: [0, 15], count: [1, 1], weight: 1.0}
      music: {snr_db: [5, 15], count: [1, 1], weight: 1.0}
      babble: {snr_db: [13, 20], count: [3, 7], weight: 1.0}
    reverb: {root: null, probability: 0.5, max_seconds: 1.0}   # RIRS_NOISES folder
    speed: {speeds: [1.0], as_new_speakers: true}   # e.g. [1.0, 0.9, 1.1]
    spec_augment: {freq_masks: 0, freq_width: 8, time_masks: 0, time_width: 10}
```

The SNR ranges are Kaldi's VoxCeleb v2 recipe's (noise 0-15 dB, music
5-15 dB, babble of 3-7 speakers at 13-20 dB). `spec_augment` configures
the `keras_spk.layers.SpecAugment` layer a model may put after its front
end (`spec_augment_from_config`); it is not a waveform augmentation.
"""

import collections
import copy
import fractions
import math
import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_spk.config import Constraint
from keras_spk.config import check_config
from keras_spk.config import float_range
from keras_spk.config import int_range
from keras_spk.config import non_empty_string
from keras_spk.data import audio
from keras_spk.data.formats import SUPPORTED_EXTENSIONS
from keras_spk.utils._checks import is_int
from keras_spk.utils._checks import is_real
from keras_spk.utils.registry import did_you_mean

# Config category -> MUSAN folder.
NOISE_CATEGORIES = {"noise": "noise", "music": "music", "babble": "speech"}
# The most noise files summed into one crop.
MAX_NOISE_COUNT = 16
MIN_SPEED, MAX_SPEED = 0.5, 2.0

DEFAULTS = {
    "probability": 0.0,
    "noise": {
        "root": None,
        "probability": 0.5,
        "noise": {"snr_db": [0.0, 15.0], "count": [1, 1], "weight": 1.0},
        "music": {"snr_db": [5.0, 15.0], "count": [1, 1], "weight": 1.0},
        "babble": {"snr_db": [13.0, 20.0], "count": [3, 7], "weight": 1.0},
    },
    "reverb": {"root": None, "probability": 0.5, "max_seconds": 1.0},
    "speed": {"speeds": [1.0], "as_new_speakers": True},
    "spec_augment": {"freq_masks": 0, "freq_width": 8, "time_masks": 0, "time_width": 10},
}

# Tags folded into the batch seed, one independent stream per kind of draw.
(
    _AUGMENTED, _KIND, _SPEED, _RIR, _CATEGORY, _COUNT, _SNR, _FILES, _OFFSETS, _FILE_SEEDS,
) = range(1, 11)

# The windowed-sinc resampler of the speed perturbation (as `audio.resample`):
# 32 taps at unit cut-off, Kaiser window.
_TAPS = 32
_KAISER_BETA = 8.0


# === Speed perturbation ===
def _speed_fraction(speed, name="speed"):
    """`speed` as an exact fraction p/q; at most two decimals, in [0.5, 2]."""
    if not is_real(speed) or not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(
            f"`{name}` must be a number in [{MIN_SPEED}, {MAX_SPEED}]. Received: {name}={speed!r}"
        )
    hundredths = round(float(speed) * 100)
    if abs(float(speed) * 100 - hundredths) > 1e-6:
        raise ValueError(
            f"`{name}` must have at most two decimals (e.g. 0.9, 1.05), so that the resampler "
            f"is a small polyphase filter. Received: {name}={speed!r}"
        )
    return fractions.Fraction(hundredths, 100)


def _half_width(fraction):
    # Taps each side of the interpolation point: the filter widens by s when
    # the cut-off drops to 1/s (speeding up must not alias).
    return math.ceil(_TAPS / 2 * max(fraction, 1))


def _polyphase_kernel(fraction, margin):
    """Conv1d filters [W, 1, q] for output phases r = 0..q-1 (see `_resample_rows`)."""
    p, q = fraction.numerator, fraction.denominator
    half = _half_width(fraction)
    cutoff = float(min(1, 1 / fraction))
    width = 2 * margin + p + 1
    j = np.arange(width, dtype=np.float64)
    kernel = np.zeros([width, 1, q], np.float64)
    for r in range(q):
        d = margin + r * p / q - j
        inside = np.abs(d) < half
        x = np.clip(d / half, -1.0, 1.0)
        window = np.i0(_KAISER_BETA * np.sqrt(1.0 - x * x)) / np.i0(_KAISER_BETA)
        kernel[:, 0, r] = np.where(inside, cutoff * np.sinc(cutoff * d) * window, 0.0)
    return kernel.astype(np.float32)


def _resample_rows(x, fraction, margin, length):
    """Rows x [B, N] -> [B, length]: `y[n] = sum_j x[j] h(margin + n s - j)`, s = `fraction`.

    Band-limited interpolation at the input times `margin + n s`, as one
    strided convolution: output `n = q m + r` is the filter of phase `r`
    over the input window starting at `m p`. Input samples beyond `N`
    count as zeros. `length` may be a tensor.
    """
    if fraction == 1:
        return x[:, margin : margin + length]
    p, q = fraction.numerator, fraction.denominator
    kernel = tf.constant(_polyphase_kernel(fraction, margin))
    windows = (length + q - 1) // q
    need = (windows - 1) * p + kernel.shape[0]
    x = tf.pad(x, [[0, 0], [0, tf.maximum(need - tf.shape(x)[1], 0)]])
    y = tf.nn.conv1d(x[:, :, None], kernel, stride=p, padding="VALID")[:, :windows, :]
    return tf.reshape(y, [tf.shape(x)[0], windows * q])[:, :length]


def speed_perturb(waveform, speed, sample_rate=16000):
    """Plays a waveform `speed` times faster (tempo and pitch), band-limited.

    The waveform is treated as recorded at `speed * sample_rate` and
    resampled to `sample_rate` by windowed-sinc interpolation (32 taps,
    Kaiser window, cut-off lowered to `1 / speed` when speeding up, so
    nothing aliases): output sample `n` interpolates the input at time
    `n * speed`. Kaldi's and WeSpeaker's 0.9 / 1.1 perturbation.

    Args:
        waveform: float32 [samples], eager or graph tensor (or array).
        speed: a number in [0.5, 2] with at most two decimals (0.9, 1.1).
        sample_rate: int, the waveform's rate (the output has the same).

    Returns:
        float32 [round(samples / speed)] (halves round up).

    Example:

    >>> speed_perturb(np.zeros(16000, "float32"), 0.9).shape
    TensorShape([17778])
    """
    fraction = _speed_fraction(speed)
    if not is_int(sample_rate) or sample_rate <= 0:
        raise ValueError(
            f"`sample_rate` must be a positive integer. Received: sample_rate={sample_rate!r}"
        )
    x = tf.convert_to_tensor(waveform, tf.float32)
    if x.shape.rank != 1:
        raise ValueError(
            f"`waveform` must be 1-D [samples]. Received: waveform with shape {x.shape}"
        )
    p, q = fraction.numerator, fraction.denominator
    n = tf.shape(x, out_type=tf.int64)[0]
    length = (2 * n * q + p) // (2 * p)
    margin = _half_width(fraction)
    padded = tf.pad(x, [[margin, 0]])[None]
    return _resample_rows(padded, fraction, margin, tf.cast(length, tf.int32))[0]


# === Reading and cropping noise files ===
# Noise recordings run to minutes (MUSAN's speech and music average 4-8 minutes,
# 8-16 MB), so the common case reads only what it uses: each file's 64-byte head
# and the cropped bytes, through Python's seek and read (which release the GIL).
def _read_heads(paths):
    """numpy: the first 64 bytes and the size of each file; size -1 when it cannot be opened."""
    heads, sizes = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                heads.append(f.read(64))
                sizes.append(os.fstat(f.fileno()).st_size)
        except OSError:  # reported by the general path's tf.io.read_file
            heads.append(b"")
            sizes.append(-1)
    return np.array(heads, dtype=object), np.array(sizes, np.int64)


def _read_ranges(paths, starts, counts):
    """numpy: `counts[i]` bytes at `starts[i]` of each file (b"" for a count of 0)."""
    pieces = []
    for path, start, count in zip(paths, starts, counts):
        data = b""
        if count > 0:
            try:
                with open(path, "rb") as f:
                    f.seek(int(start))
                    data = f.read(int(count))
            except OSError:
                data = b""
        pieces.append(data)
    return np.array(pieces, dtype=object)


def _crop_files(paths, u, seeds, length, sample_rate):
    """Crops [M, length] of files at uniform offsets `u` [M] (float64 in [0, 1)).

    As `keras_spk.data.pipeline.crop_batch`, with the random values given:
    a plain WAV (see `audio.plain_wav_samples`) at least `length` long has
    only its head and its cropped bytes read; any other file is read whole
    and decoded with all checks, then cropped (or repeated) by
    `crop_or_repeat` with its own seed (`seeds` [M, 2]).
    """
    from keras_spk.data import pipeline

    heads, sizes = tf.numpy_function(_read_heads, [paths], [tf.string, tf.int64], stateful=False)
    heads, sizes = tf.reshape(heads, [-1]), tf.reshape(sizes, [-1])
    plain, n = audio.plain_wav_samples(heads, sample_rate, length=sizes)
    fast = tf.logical_and(plain, n >= length)
    span = tf.maximum(n - length + 1, 1)
    offset = tf.minimum(tf.cast(u * tf.cast(span, tf.float64), tf.int64), span - 1)
    count = tf.where(fast, tf.cast(2 * length, tf.int64), 0)
    raw = tf.numpy_function(
        _read_ranges, [paths, 44 + 2 * offset, count], tf.string, stateful=False
    )
    raw = tf.reshape(raw, [-1])
    # A file cut short since its head was read: report it as the decoder would.
    complete = tf.equal(tf.cast(tf.strings.length(raw), tf.int64), count)
    message = tf.strings.join([
        tf.strings.reduce_join(tf.gather(paths, tf.where(tf.logical_not(complete))[:1, 0])),
        ": file is truncated: it changed while it was read. " + audio._FIX,
    ])
    check = tf.debugging.Assert(tf.reduce_all(complete), [message], summarize=1)
    with tf.control_dependencies([check]):
        raw = tf.where(fast, raw, b"\0" * (2 * length))
    crops = tf.cast(tf.io.decode_raw(raw, tf.int16), tf.float32) * (1.0 / 32768.0)
    crops = tf.reshape(crops, [-1, length])

    def with_general_rows():
        rows = tf.where(tf.logical_not(fast))[:, 0]
        general = tf.map_fn(
            lambda i: pipeline._decode_and_crop(
                tf.io.read_file(paths[i]), paths[i], length, seeds[i], sample_rate
            ),
            rows,
            fn_output_signature=tf.TensorSpec([length], tf.float32),
        )
        return tf.tensor_scatter_nd_update(crops, rows[:, None], general)

    return tf.cond(tf.reduce_all(fast), lambda: crops, with_general_rows)


# Per-row gains are computed in float64 and rounded once: in float32 a vectorised
# kernel and its scalar tail (rsqrt, pow, row sums) can differ in the last bit, so
# a row's result would depend on its place in the batch, and a worker's rows must
# equal the whole batch's.
def _mean_square(x):
    """Row mean squares [B] (float64) of x [B, L]."""
    return tf.reduce_mean(tf.square(tf.cast(x, tf.float64)), axis=-1)


def _ratio_sqrt(numerator, denominator):
    """float32 sqrt(numerator / denominator) (float64 math), 0 where the denominator is 0."""
    positive = denominator > 0
    ratio = numerator / tf.where(positive, denominator, tf.ones_like(denominator))
    return tf.cast(tf.where(positive, tf.sqrt(ratio), tf.zeros_like(ratio)), tf.float32)


# === Augmentation ===
_Category = collections.namedtuple("_Category", "name paths snr_db count weight")


class Augmentation:
    """Speed perturbation, reverberation and additive noise of training crops.

    What is drawn, and how, is described in this module's docstring. All
    random values come from the batch's int64 [2] stateless seed.

    Args:
        sample_rate: int, the crops' rate (noise and RIR files at another
            rate are resampled).
        probability: float in [0, 1], P(a crop is reverberated and/or noised).
        noise_files: `None` (no additive noise) or `{category: [paths]}`
            for the categories of `NOISE_CATEGORIES` whose weight is > 0.
        noise_probability: P(noise | augmented).
        noise_settings: `{category: {"snr_db": [lo, hi], "count": [lo, hi],
            "weight": w}}`; missing entries take `DEFAULTS`'.
        rir_files: impulse-response paths; empty: no reverberation.
        reverb_probability: P(reverberation | augmented).
        max_rir_seconds: impulse responses are cut to this length.
        speeds: speeds drawn uniformly per crop (1.0: unchanged).
        as_new_speakers: whether a crop at speed `speeds[k] != 1.0` is a new
            speaker `label + k' * num_speakers` (`k'`: 1 for the first speed
            other than 1.0 in the list, ...).
        num_speakers: the number of training speakers; required with
            `as_new_speakers` and speeds other than 1.0.

    Example:

    >>> aug = Augmentation(speeds=[1.0, 0.9, 1.1], num_speakers=40)  # doctest: +SKIP
    >>> crops, labels = aug(tf.zeros([8, aug.read_samples(32000)]), tf.zeros([8], tf.int64),
    ...                     tf.constant([1, 2], tf.int64))  # doctest: +SKIP
    """

    def __init__(
        self,
        sample_rate=16000,
        *,
        probability=0.0,
        noise_files=None,
        noise_probability=0.5,
        noise_settings=None,
        rir_files=(),
        reverb_probability=0.5,
        max_rir_seconds=1.0,
        speeds=(1.0,),
        as_new_speakers=True,
        num_speakers=None,
    ):
        if not is_int(sample_rate) or sample_rate <= 0:
            raise ValueError(
                f"`sample_rate` must be a positive integer. Received: sample_rate={sample_rate!r}"
            )
        self.sample_rate = int(sample_rate)
        self.probability = _probability("probability", probability)
        self.noise_probability = _probability("noise_probability", noise_probability)
        self.reverb_probability = _probability("reverb_probability", reverb_probability)
        if not is_real(max_rir_seconds) or not 0 < max_rir_seconds <= 10:
            raise ValueError(
                "`max_rir_seconds` must be a number in (0, 10]. "
                f"Received: max_rir_seconds={max_rir_seconds!r}"
            )
        self.max_rir_seconds = float(max_rir_seconds)
        self._rir_samples = max(1, int(round(self.max_rir_seconds * self.sample_rate)))

        # Speeds.
        if isinstance(speeds, (str, bytes)) or not hasattr(speeds, "__len__") or not len(speeds):
            raise ValueError(
                f"`speeds` must be a non-empty list of numbers. Received: speeds={speeds!r}"
            )
        self._fractions = [_speed_fraction(s, f"speeds[{i}]") for i, s in enumerate(speeds)]
        self.speeds = [float(s) for s in speeds]
        if len(set(self._fractions)) != len(self._fractions):
            raise ValueError(f"`speeds` must be distinct. Received: speeds={speeds!r}")
        if not isinstance(as_new_speakers, bool):
            raise ValueError(
                "`as_new_speakers` must be true or false. "
                f"Received: as_new_speakers={as_new_speakers!r}"
            )
        self.as_new_speakers = as_new_speakers
        others = [f for f in self._fractions if f != 1]
        self._blocks = [0 if f == 1 else others.index(f) + 1 for f in self._fractions]
        self._margin = max(_half_width(f) for f in self._fractions) if others else 0
        if self.as_new_speakers and others:
            if not is_int(num_speakers) or num_speakers < 1:
                raise ValueError(
                    "`num_speakers` (the number of training speakers) is needed to label crops at "
                    "other speeds as new speakers. Received: num_speakers="
                    f"{num_speakers!r}"
                )
        self.num_speakers = None if num_speakers is None else int(num_speakers)

        # Noise.
        settings = {name: copy.deepcopy(DEFAULTS["noise"][name]) for name in NOISE_CATEGORIES}
        for name, value in (noise_settings or {}).items():
            if name not in NOISE_CATEGORIES:
                raise ValueError(
                    f"Unknown noise category {name!r}.{did_you_mean(name, NOISE_CATEGORIES)} "
                    f"Valid categories: {', '.join(NOISE_CATEGORIES)}. "
                    f"Received: noise_settings={noise_settings!r}"
                )
            unknown = set(value) - {"snr_db", "count", "weight"}
            if unknown:
                raise ValueError(
                    f"Unknown setting(s) {sorted(unknown)} of noise category {name!r}; valid: "
                    f"snr_db, count, weight. Received: noise_settings={noise_settings!r}"
                )
            settings[name].update(value)
        self._categories = []
        if noise_files is not None:
            unknown = set(noise_files) - set(NOISE_CATEGORIES)
            if unknown:
                raise ValueError(
                    f"Unknown noise categories {sorted(unknown)}; valid: "
                    f"{', '.join(NOISE_CATEGORIES)}. Received: noise_files with keys "
                    f"{sorted(noise_files)}"
                )
            for name in NOISE_CATEGORIES:
                entry = settings[name]
                snr = _pair(f"noise_settings[{name!r}]['snr_db']", entry["snr_db"], float)
                count = _pair(f"noise_settings[{name!r}]['count']", entry["count"], int)
                if not 1 <= count[0] <= count[1] <= MAX_NOISE_COUNT:
                    raise ValueError(
                        f"noise_settings[{name!r}]['count'] must be [lo, hi] with 1 <= lo <= hi <= "
                        f"{MAX_NOISE_COUNT}. Received: count={entry['count']!r}"
                    )
                weight = entry["weight"]
                if not is_real(weight) or not math.isfinite(weight) or weight < 0:
                    raise ValueError(
                        f"noise_settings[{name!r}]['weight'] must be a number >= 0. "
                        f"Received: weight={weight!r}"
                    )
                if weight == 0:
                    continue
                paths = [os.fspath(p) for p in noise_files.get(name) or ()]
                if not paths:
                    raise ValueError(
                        f"Noise category {name!r} has weight {weight} but no files. Give its "
                        "files, or set its weight to 0. "
                        f"Received: noise_files[{name!r}]={noise_files.get(name)!r}"
                    )
                self._categories.append(_Category(name, paths, snr, count, float(weight)))
            if not self._categories:
                raise ValueError(
                    "Every noise category has weight 0. Received: noise_settings="
                    f"{noise_settings!r}"
                )
        self.noise_settings = settings
        self.rir_files = [os.fspath(p) for p in rir_files or ()]

    # --- What the pipeline asks ---
    @property
    def uses_speed(self):
        """Whether crops are speed-perturbed (some speed is not 1.0)."""
        return self._margin > 0

    @property
    def changes_length(self):
        """Whether the pipeline must read more samples than it crops (`read_samples`)."""
        return self.uses_speed

    @property
    def uses_noise(self):
        return self.probability > 0 and self.noise_probability > 0 and bool(self._categories)

    @property
    def uses_reverb(self):
        return self.probability > 0 and self.reverb_probability > 0 and bool(self.rir_files)

    @property
    def classes_per_speaker(self):
        """Label blocks per speaker: 1, or 1 + the speeds other than 1.0 (as new speakers)."""
        return 1 + max(self._blocks) if self.as_new_speakers else 1

    def read_samples(self, crop_samples):
        """Samples the pipeline crops for an output crop of `crop_samples` (more with speeds)."""
        if not is_int(crop_samples) or crop_samples < 1:
            raise ValueError(
                f"`crop_samples` must be a positive integer. Received: crop_samples={crop_samples!r}"
            )
        if not self.uses_speed:
            return int(crop_samples)
        fastest = max(max(self._fractions), 1)
        reach = -(-crop_samples * fastest.numerator // fastest.denominator)
        # `margin` samples each side, so the interpolation filter never sees the crop's edge.
        return int(reach + 2 * self._margin + 1)

    def _crop_samples(self, width):
        if not self.uses_speed:
            return width
        fastest = max(max(self._fractions), 1)
        guess = (width - 2 * self._margin - 1) * fastest.denominator // fastest.numerator
        guess = max(1, int(guess))
        for length in (guess + 1, guess, guess - 1):
            if length >= 1 and self.read_samples(length) == width:
                return length
        raise ValueError(
            "Speed-perturbed crops must be `read_samples(crop_samples)` samples wide. "
            f"Received: crops of width {width}"
        )

    # --- The augmentation ---
    def __call__(self, crops, labels, seed, rows=None):
        """Augments a batch.

        Args:
            crops: float32 [B, read_samples(crop_samples)], static width.
            labels: int [B] (or [B, ...]) speaker labels.
            seed: int64 [2], the batch's stateless seed.
            rows: `None`, or `(start, global_batch)` ints: the batch holds
                rows `start .. start + B - 1` of a global batch of
                `global_batch` rows, whose every random value is drawn and
                sliced, so the workers' outputs together equal the
                single-process batch.

        Returns:
            `(crops float32 [B, crop_samples], labels int64)`.
        """
        crops = tf.convert_to_tensor(crops, tf.float32)
        labels = tf.cast(tf.convert_to_tensor(labels), tf.int64)
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        width = crops.shape[-1]
        if crops.shape.rank != 2 or width is None:
            raise ValueError(
                f"`crops` must be [batch, samples] with a known number of samples. Received: "
                f"crops with shape {crops.shape}"
            )
        length = self._crop_samples(int(width))
        batch = tf.shape(crops)[0]
        start, total = self._rows(rows, crops.shape[0], batch)

        def draw(key, shape=(), dtype=tf.float32, **kwargs):
            values = tf.random.stateless_uniform(
                [total, *shape], tf.random.experimental.stateless_fold_in(seed, key), dtype=dtype,
                **kwargs,
            )
            return values[start : start + batch]

        if self.uses_speed:
            crops, labels = self._speed(crops, labels, draw, length)
        if self.uses_reverb or self.uses_noise:
            augmented = draw(_AUGMENTED) < self.probability
            kind = draw(_KIND)
            if self.uses_reverb:
                chosen = tf.logical_and(augmented, kind < self.reverb_probability)
                crops = self._reverb(crops, chosen, draw)
            if self.uses_noise:
                chosen = tf.logical_and(augmented, kind >= 1.0 - self.noise_probability)
                crops = self._noise(crops, chosen, draw, length)
        return tf.reshape(crops, [-1, length]), labels

    @staticmethod
    def _rows(rows, static_batch, batch):
        if rows is None:
            return 0, batch
        if (
            not isinstance(rows, (tuple, list)) or len(rows) != 2
            or not all(is_int(r) for r in rows) or rows[0] < 0 or rows[1] < 1
            or (static_batch is not None and rows[0] + static_batch > rows[1])
        ):
            raise ValueError(
                "`rows` must be None or (start, global_batch) ints with the batch's rows inside "
                f"the global batch. Received: rows={rows!r} for a batch of {static_batch} rows"
            )
        return int(rows[0]), int(rows[1])

    def _speed(self, crops, labels, draw, length):
        n = len(self._fractions)
        index = tf.minimum(tf.cast(draw(_SPEED) * n, tf.int32), n - 1)
        parts = tf.dynamic_partition(crops, index, n)
        positions = tf.dynamic_partition(tf.range(tf.shape(crops)[0]), index, n)
        outputs = [
            _resample_rows(part, fraction, self._margin, length)
            for part, fraction in zip(parts, self._fractions)
        ]
        crops = tf.reshape(tf.dynamic_stitch(positions, outputs), [-1, length])
        if self.as_new_speakers and self.classes_per_speaker > 1:
            block = tf.gather(tf.constant(self._blocks, tf.int64), index)
            block = tf.reshape(block, [-1] + [1] * (labels.shape.rank - 1))
            labels = labels + block * self.num_speakers
        return crops, labels

    def _reverb(self, crops, reverberated, draw):
        rows = tf.where(reverberated)[:, 0]
        files = len(self.rir_files)
        choice = tf.minimum(tf.cast(draw(_RIR) * files, tf.int32), files - 1)
        paths = tf.gather(tf.constant(self.rir_files), tf.gather(choice, rows))
        size = self._rir_samples

        def load(path):
            h = audio.decode_audio(tf.io.read_file(path), path, self.sample_rate)[:size]
            return tf.pad(h, [[0, size - tf.shape(h)[0]]])

        rirs = tf.map_fn(load, paths, fn_output_signature=tf.TensorSpec([size], tf.float32))
        wet = reverberate(tf.gather(crops, rows), rirs, paths)
        return tf.tensor_scatter_nd_update(crops, rows[:, None], wet)

    def _noise(self, crops, noised, draw, length):
        categories = self._categories
        slots = max(c.count[1] for c in categories)
        sizes = [len(c.paths) for c in categories]
        largest = max(sizes)
        weights = np.array([c.weight for c in categories], np.float64)
        edges = tf.constant(np.cumsum(weights / weights.sum())[:-1], tf.float32)
        category = tf.reduce_sum(
            tf.cast(draw(_CATEGORY)[:, None] >= edges[None, :], tf.int32), axis=1
        )

        def per_row(values, dtype):
            return tf.gather(tf.constant(values, dtype), category)

        low = per_row([c.count[0] for c in categories], tf.int32)
        high = per_row([c.count[1] for c in categories], tf.int32)
        spread = tf.cast(high - low + 1, tf.float32)
        count = tf.minimum(low + tf.cast(draw(_COUNT) * spread, tf.int32), high)
        snr_lo = per_row([c.snr_db[0] for c in categories], tf.float32)
        snr_hi = per_row([c.snr_db[1] for c in categories], tf.float32)
        snr = snr_lo + draw(_SNR) * (snr_hi - snr_lo)

        # Distinct files: the `count` smallest of one uniform per file of the category.
        size = per_row(sizes, tf.int32)
        u = draw(_FILES, [largest])
        u = tf.where(tf.range(largest)[None, :] < size[:, None], u, 2.0)
        _, order = tf.math.top_k(-u, k=min(slots, largest))
        columns = tf.range(slots)[None, :] % size[:, None]
        local = tf.gather(order, columns, batch_dims=1)
        first = per_row(np.cumsum([0] + sizes[:-1]).tolist(), tf.int32)
        file_index = first[:, None] + local

        active = tf.logical_and(noised[:, None], tf.range(slots)[None, :] < count[:, None])
        where = tf.where(active)
        all_paths = tf.constant([p for c in categories for p in c.paths])
        paths = tf.gather(all_paths, tf.gather_nd(file_index, where))
        pieces = _crop_files(
            paths,
            tf.gather_nd(draw(_OFFSETS, [slots], tf.float64), where),
            tf.gather_nd(draw(_FILE_SEEDS, [slots, 2], tf.int64, minval=None, maxval=None), where),
            length,
            self.sample_rate,
        )
        pieces = pieces * _ratio_sqrt(tf.ones([], tf.float64), _mean_square(pieces))[:, None]
        # Summed slot by slot in a fixed order, so a row's sum does not depend on the batch.
        noise = tf.zeros_like(crops)
        for slot in range(slots):
            mine = tf.where(tf.equal(where[:, 1], slot))[:, 0]
            noise += tf.scatter_nd(
                tf.gather(where[:, :1], mine),
                tf.gather(pieces, mine),
                tf.shape(crops, out_type=tf.int64),
            )
        return add_noise(crops, noise, snr, noised)


def _probability(name, value):
    if not is_real(value) or not 0 <= value <= 1:
        raise ValueError(f"`{name}` must be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


def _pair(name, value, kind):
    if (
        not isinstance(value, (list, tuple)) or len(value) != 2
        or not all((is_int(v) if kind is int else is_real(v) and math.isfinite(v)) for v in value)
        or value[0] > value[1]
    ):
        raise ValueError(f"`{name}` must be [lo, hi] with lo <= hi. Received: {name}={value!r}")
    return [kind(v) for v in value]


# === The two signal operations, usable on their own ===
def add_noise(crops, noise, snr_db, mask=None):
    """`crops + g * noise`, `g` per row so that `10 log10(P_crop / P(g noise)) = snr_db`.

    `P` is the mean square over the row. A row whose noise is silent is
    left unchanged; so is a row where `mask` (bool [B]) is false.

    Args:
        crops: float32 [B, L].
        noise: float32 [B, L].
        snr_db: float32 [B].
        mask: optional bool [B], the rows to add noise to.

    Returns:
        float32 [B, L].
    """
    crops = tf.convert_to_tensor(crops, tf.float32)
    noise = tf.convert_to_tensor(noise, tf.float32)
    snr_db = tf.cast(tf.convert_to_tensor(snr_db), tf.float64)
    target = _mean_square(crops) * tf.pow(tf.constant(10.0, tf.float64), -snr_db / 10.0)
    gain = _ratio_sqrt(target, _mean_square(noise))
    if mask is not None:
        gain = tf.where(mask, gain, 0.0)
    return crops + gain[:, None] * noise


def reverberate(crops, rirs, paths=None):
    """Convolves each row with its impulse response, aligned on the response's peak.

    `h` is scaled to unit energy; the output is `y[n] = sum_k h[k] x[n + p - k]`
    with `p = argmax |h|` (the direct path), so an impulse at `n0` stays at
    `n0` and what precedes the peak appears before it; then `y` is scaled
    to the power of `x` (Kaldi's `wav-reverberate` with its default
    `--shift-output` and `--normalize-output`). FFT convolution.

    Args:
        crops: float32 [B, L].
        rirs: float32 [B, R].
        paths: optional string [B] naming the responses, for the error a
            silent (all-zero) response raises.

    Returns:
        float32 [B, L].
    """
    crops = tf.convert_to_tensor(crops, tf.float32)
    rirs = tf.convert_to_tensor(rirs, tf.float32)
    length, size = crops.shape[-1], rirs.shape[-1]
    if crops.shape.rank != 2 or rirs.shape.rank != 2 or length is None or size is None:
        raise ValueError(
            "`crops` and `rirs` must be [batch, samples] with known numbers of samples. "
            f"Received: crops with shape {crops.shape}, rirs with shape {rirs.shape}"
        )
    energy = _mean_square(rirs)
    if paths is not None:
        silent = tf.where(energy <= 0)[:, 0]
        first = tf.gather(paths, silent[:1])
        message = tf.strings.join([
            tf.strings.reduce_join(first),
            ": the impulse response is silent (all zeros in its first samples). Remove it from "
            "the RIR folder.",
        ])
        check = tf.debugging.Assert(tf.size(silent) < 1, [message], summarize=1)
        with tf.control_dependencies([check]):
            energy = tf.identity(energy)
    h = rirs * _ratio_sqrt(tf.ones([], tf.float64), energy * size)[:, None]
    peak = tf.argmax(tf.abs(h), axis=1, output_type=tf.int32)
    n_fft = 1 << (length + size - 2).bit_length()
    full = tf.signal.irfft(
        tf.signal.rfft(crops, [n_fft]) * tf.signal.rfft(h, [n_fft]), [n_fft]
    )
    wet = tf.gather(full, peak[:, None] + tf.range(length)[None, :], batch_dims=1)
    return wet * _ratio_sqrt(_mean_square(crops), _mean_square(wet))[:, None]


# === Config ===
def _resolve(section, defaults=DEFAULTS, where="data.augment"):
    """`section` merged onto `defaults`; unknown keys raise ValueError listing the valid ones."""
    resolved = copy.deepcopy(defaults)
    if section is None:
        return resolved
    if not isinstance(section, dict):
        raise ValueError(f"{where} must be a mapping. Received: {where}={section!r}")
    for key, value in section.items():
        if key not in defaults:
            raise ValueError(
                f"Unknown config key '{where}.{key}'.{did_you_mean(key, defaults)} Valid keys under "
                f"'{where}': {', '.join(defaults)}. Received: {where}.{key}={value!r}"
            )
        if isinstance(defaults[key], dict):
            resolved[key] = _resolve(value, defaults[key], f"{where}.{key}")
        else:
            resolved[key] = copy.deepcopy(value)
    return resolved


def _check(config):
    """Checks a resolved `data.augment` section against `CONSTRAINTS` (ConfigError)."""
    check_config(
        {"data": {"augment": config}}, CONSTRAINTS, defaults={"data": {"augment": DEFAULTS}},
        source="data.augment",
    )


def _audio_files(folder):
    return sorted(
        str(p) for p in pathlib.Path(folder).rglob("*")
        if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.is_file()
    )


def musan_files(root, categories=tuple(NOISE_CATEGORIES)):
    """`{category: [paths]}` of a MUSAN-layout folder (`noise/`, `music/`, `speech/` for babble).

    Raises:
        ValueError: `root` is not a folder, or a category's folder holds no
            audio file (naming the folder).
    """
    root = pathlib.Path(os.fspath(root)).expanduser()
    if not root.is_dir():
        raise ValueError(
            f"The noise folder {root} does not exist. Point data.augment.noise.root at a MUSAN "
            f"folder (with noise/, music/ and speech/). Received: root={os.fspath(root)!r}"
        )
    found = {}
    for name in categories:
        folder = root / NOISE_CATEGORIES[name]
        files = _audio_files(folder) if folder.is_dir() else []
        if not files:
            raise ValueError(
                f"{folder}: no audio files ({', '.join(SUPPORTED_EXTENSIONS)}) for the {name!r} "
                f"noise category. Add them, point data.augment.noise.root at a MUSAN folder, or set "
                f"data.augment.noise.{name}.weight=0."
            )
        found[name] = files
    return found


def rir_files(root):
    """The impulse responses of an RIRS_NOISES-layout folder.

    Every audio file under `<root>/simulated_rirs/` when that folder
    exists; otherwise every audio file under `root` whose name does not
    contain "noise" (RIRS_NOISES' `real_rirs_isotropic_noises/` holds
    noise recordings beside its responses).

    Raises:
        ValueError: `root` is not a folder or holds no response (naming it).
    """
    root = pathlib.Path(os.fspath(root)).expanduser()
    if not root.is_dir():
        raise ValueError(
            f"The impulse-response folder {root} does not exist. Point data.augment.reverb.root at "
            f"an RIRS_NOISES folder. Received: root={os.fspath(root)!r}"
        )
    simulated = root / "simulated_rirs"
    if simulated.is_dir():
        files, folder = _audio_files(simulated), simulated
    else:
        files = [f for f in _audio_files(root) if "noise" not in os.path.basename(f).lower()]
        folder = root
    if not files:
        raise ValueError(
            f"{folder}: no impulse responses (audio files whose name does not contain 'noise'). "
            "Point data.augment.reverb.root at an RIRS_NOISES folder, or set "
            "data.augment.reverb.probability=0."
        )
    return files


def augmentation_from_config(section, *, sample_rate, crop_samples, num_speakers, demo_root=None):
    """The `Augmentation` a config's `data.augment` section asks for, or `None` when nothing is on.

    Missing keys take `DEFAULTS`; values are checked with `CONSTRAINTS`.
    A kind is on when `probability > 0` and its own probability is > 0
    (noise: and some category weight > 0); speed is on when a speed is not
    1.0. A null `root` of a kind that is on takes the demo's generated set
    (`keras_spk.data.demo_corpus.ensure_demo_augmentation(demo_root)`)
    when `demo_root` is given (training on the demo corpus), and is an
    error otherwise.

    Args:
        section: the `data.augment` mapping (or `None`).
        sample_rate: int.
        crop_samples: int, the training crop length.
        num_speakers: int, the training speakers (labels of new speakers
            at other speeds are `label + k * num_speakers`).
        demo_root: the demo corpus folder when training on it, else `None`.

    Returns:
        An `Augmentation`, or `None`. (`spec_augment` is not part of it; see
        `spec_augment_from_config`.)

    Raises:
        ValueError: an unknown key, a bad value, a null root on user data,
            a missing folder or one without files of a category that is on.
    """
    config = _resolve(section)
    _check(config)
    if not is_int(crop_samples) or crop_samples < 1:
        raise ValueError(
            f"`crop_samples` must be a positive integer. Received: crop_samples={crop_samples!r}"
        )
    probability = config["probability"]
    noise, reverb, speed = config["noise"], config["reverb"], config["speed"]
    on = [name for name in NOISE_CATEGORIES if noise[name]["weight"] > 0]
    noise_on = probability > 0 and noise["probability"] > 0 and bool(on)
    reverb_on = probability > 0 and reverb["probability"] > 0
    speed_on = any(float(s) != 1.0 for s in speed["speeds"])
    if not (noise_on or reverb_on or speed_on):
        return None

    def root_of(kind, subfolder, what):
        root = config[kind]["root"]
        if root is not None:
            return root
        if demo_root is None:
            raise ValueError(
                f"data.augment.{kind}.root is null, but {kind} augmentation is on "
                f"(data.augment.probability={probability}, data.augment.{kind}.probability="
                f"{config[kind]['probability']}). Point data.augment.{kind}.root at {what}, or set "
                f"data.augment.{kind}.probability=0. Received: data.augment.{kind}.root=None"
            )
        from keras_spk.data.demo_corpus import ensure_demo_augmentation

        return os.path.join(ensure_demo_augmentation(demo_root), subfolder)

    noise_files = None
    if noise_on:
        root = root_of("noise", "musan", "a MUSAN folder (noise/, music/, speech/)")
        noise_files = musan_files(root, on)
    rirs = ()
    if reverb_on:
        rirs = rir_files(root_of("reverb", "rirs", "an RIRS_NOISES folder (simulated_rirs/)"))
    return Augmentation(
        sample_rate,
        probability=probability,
        noise_files=noise_files,
        noise_probability=noise["probability"],
        noise_settings={name: noise[name] for name in NOISE_CATEGORIES},
        rir_files=rirs,
        reverb_probability=reverb["probability"],
        max_rir_seconds=reverb["max_seconds"],
        speeds=speed["speeds"],
        as_new_speakers=speed["as_new_speakers"],
        num_speakers=num_speakers,
    )


def speed_classes(section):
    """Label blocks per speaker of a `data.augment` section: 1, or 1 + its speeds other than
    1.0 when they are new speakers (`Augmentation.classes_per_speaker`, without reading any
    noise or impulse-response folder)."""
    speed = _resolve(section)["speed"]
    if not speed["as_new_speakers"]:
        return 1
    others = [float(s) for s in speed["speeds"] if float(s) != 1.0]
    return 1 + max((others.index(s) + 1 for s in others), default=0)


def spec_augment_from_config(section, seed=None):
    """The `keras_spk.layers.SpecAugment` of `data.augment.spec_augment`; `None` if it masks nothing."""
    config = _resolve(section)
    _check(config)
    settings = config["spec_augment"]
    if settings["freq_masks"] == 0 and settings["time_masks"] == 0:
        return None
    from keras_spk.layers import SpecAugment

    return SpecAugment(**settings, seed=seed)


def spec_augment_settings(config):
    """The `SpecAugment` arguments of a recipe config's `data.augment.spec_augment`, seeded
    by its `seed`, for a model builder's `spec_augment` argument; `None` if it masks nothing.

    SpecAugment is a layer of the model, so only the run's `data` section is
    read (a stage's `data.augment` does not change the model).
    """
    layer = spec_augment_from_config(config["data"].get("augment"), seed=config.get("seed"))
    if layer is None:
        return None
    settings = layer.get_config()
    return {key: settings[key] for key in ("freq_masks", "freq_width", "time_masks", "time_width", "seed")}


# === Constraints ===
def _snr_range(value, config):
    if not isinstance(value, list) or len(value) != 2:
        return False
    if not all(is_real(v) and math.isfinite(v) for v in value):
        return False
    if value[0] > value[1]:
        return f"Its low end {value[0]} is above its high end {value[1]}."
    return True


def _count_range(value, config):
    if not isinstance(value, list) or len(value) != 2 or not all(is_int(v) for v in value):
        return False
    return 1 <= value[0] <= value[1] <= MAX_NOISE_COUNT


def _speeds(value, config):
    if not isinstance(value, list) or not value:
        return False
    for entry in value:
        try:
            _speed_fraction(entry)
        except ValueError:
            return f"Entry {entry!r} is not."
    return True if len(set(value)) == len(value) else "An entry appears more than once."


def _noise_probability(value, config):
    if not is_real(value) or not 0 <= value <= 1:
        return False
    noise = config["data"]["augment"]["noise"]
    if value > 0 and all(noise[name]["weight"] == 0 for name in NOISE_CATEGORIES):
        return "Every category's weight (data.augment.noise.<category>.weight) is 0."
    return True


def _bool(value, config):
    return isinstance(value, bool)


# Valid values of the `data.augment` keys (`keras_spk.config.load_config`).
CONSTRAINTS = {
    "data.augment.probability": float_range(0, 1),
    "data.augment.noise.root": non_empty_string(allow_none=True),
    "data.augment.noise.probability": Constraint(
        _noise_probability, "a number in [0, 1] (above 0: some category with weight > 0)"
    ),
    **{
        key: rule
        for name in NOISE_CATEGORIES
        for key, rule in (
            (f"data.augment.noise.{name}.snr_db",
             Constraint(_snr_range, "a list of two numbers [lo, hi] in dB with lo <= hi")),
            (f"data.augment.noise.{name}.count",
             Constraint(
                 _count_range,
                 f"a list of two ints [lo, hi] with 1 <= lo <= hi <= {MAX_NOISE_COUNT}",
             )),
            (f"data.augment.noise.{name}.weight", float_range(min=0)),
        )
    },
    "data.augment.reverb.root": non_empty_string(allow_none=True),
    "data.augment.reverb.probability": float_range(0, 1),
    "data.augment.reverb.max_seconds": float_range(0, 10, include_min=False),
    "data.augment.speed.speeds": Constraint(
        _speeds,
        f"a non-empty list of distinct speeds, each in [{MIN_SPEED}, {MAX_SPEED}] with at most two "
        "decimals (e.g. [1.0, 0.9, 1.1])",
    ),
    "data.augment.speed.as_new_speakers": Constraint(_bool, "true or false"),
    "data.augment.spec_augment.freq_masks": int_range(min=0),
    "data.augment.spec_augment.freq_width": int_range(min=0),
    "data.augment.spec_augment.time_masks": int_range(min=0),
    "data.augment.spec_augment.time_width": int_range(min=0),
}
