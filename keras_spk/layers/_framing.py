"""Framing, windowing and normalisation helpers shared by the audio layers.

Private module: `LogMelFilterbank`, `LogSpectrogram` and `EnergyVAD` use these
so that all three cut a waveform into exactly the same frames; the two
spectral front-ends share `LogSpectralLayer`, which runs the whole
waveform -> power spectrum -> log features -> sliding mean pipeline. The
framing arguments are validated here (with the shared checks of
`keras_spk.utils._checks`) so that every layer reports bad values the same
way (`ValueError("... Received: arg=value")`).

Everything that runs inside `call()` uses `keras.ops` only, so it works under
the TensorFlow and PyTorch backends, with a static or dynamic number of
samples, and inside an exported TF SavedModel.
"""

import keras
import numpy as np
from keras import ops

from keras_spk.utils import _checks
from keras_spk.utils import _precision

WINDOWS = ("hamming", "hann", "rectangular")


# --------------------------------------------------------------------------
# Argument validation (Python side, runs in __init__).
# --------------------------------------------------------------------------


def check_window_name(window):
    return _checks.check_choice("window", window, WINDOWS)


def check_normalization_window(value):
    """`None` or 0 disables normalisation; otherwise a positive frame count."""
    if value is None:
        return None
    if not _checks.is_int(value) or value < 0:
        raise ValueError(
            "`mean_normalization_window` must be None or a non-negative "
            f"integer number of frames. Received: mean_normalization_window={value!r}"
        )
    return int(value) or None


def frame_geometry(sample_rate, frame_length_ms, frame_step_ms, fft_length=None):
    """Validates framing arguments and converts them to sample counts.

    Returns:
        `(frame_length, frame_step, fft_length)` in samples, as Python ints.
        `fft_length` defaults to the next power of two >= `frame_length`
        (512 for 25 ms at 16 kHz).
    """
    _checks.check_positive_int("sample_rate", sample_rate)
    _checks.check_positive_real("frame_length_ms", frame_length_ms)
    _checks.check_positive_real("frame_step_ms", frame_step_ms)
    frame_length = int(round(sample_rate * frame_length_ms / 1000.0))
    frame_step = int(round(sample_rate * frame_step_ms / 1000.0))
    if frame_length < 1:
        raise ValueError(
            "`frame_length_ms` is shorter than one sample at this sample rate. "
            f"Received: frame_length_ms={frame_length_ms!r}"
        )
    if frame_step < 1:
        raise ValueError(
            "`frame_step_ms` is shorter than one sample at this sample rate. "
            f"Received: frame_step_ms={frame_step_ms!r}"
        )
    if fft_length is None:
        fft_length = 1 << (frame_length - 1).bit_length()
    elif not _checks.is_int(fft_length) or fft_length < frame_length:
        raise ValueError(
            f"`fft_length` must be an integer >= the frame length ({frame_length} "
            f"samples). Received: fft_length={fft_length!r}"
        )
    return frame_length, frame_step, int(fft_length)


# --------------------------------------------------------------------------
# Constants (numpy, built once per layer).
# --------------------------------------------------------------------------


def window_array(window, length):
    """Symmetric analysis window as a float64 numpy array.

    Symmetric (denominator `length - 1`), i.e. `np.hamming` / `np.hanning`,
    which is also what Kaldi uses; `tf.signal.hamming_window` defaults to the
    periodic variant, which differs slightly.
    """
    if window == "rectangular" or length == 1:
        return np.ones(length)
    n = np.arange(length)
    cos = np.cos(2.0 * np.pi * n / (length - 1))
    if window == "hamming":
        return 0.54 - 0.46 * cos
    if window == "hann":
        return 0.5 - 0.5 * cos
    raise ValueError(f"`window` must be one of {WINDOWS}. Received: window={window!r}")


# --------------------------------------------------------------------------
# Graph-side helpers (keras.ops only).
# --------------------------------------------------------------------------


def static_num_frames(num_samples, frame_length, frame_step):
    """Frame count for a static length (None stays None)."""
    if num_samples is None:
        return None
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_step


def _is_scalar_int(value):
    """True for a Python int or a symbolic one (PyTorch's `SymInt`), not a tensor or array."""
    return not ops.is_tensor(value) and not hasattr(value, "shape")


def num_frames(num_samples, frame_length, frame_step):
    """Frame count for a possibly dynamic (tensor) length; 0 if too short.

    Works element-wise on a tensor of per-row lengths as well.
    """
    if _is_scalar_int(num_samples):
        # A static length, or under `torch.export` a symbolic one (`SymInt`):
        # plain integer arithmetic keeps it symbolic, while `keras.ops` would
        # convert it to a tensor and pin the exported time axis to the
        # example's length. (torch.export settles the clamp below on the
        # example, so an exported graph needs at least one frame of input.)
        return max((num_samples - frame_length) // frame_step, -1) + 1
    # `maximum(..., -1) + 1` rather than a where(): the floor division of a
    # negative number is already <= -1, so this clamps short inputs to 0.
    return ops.maximum(ops.floor_divide(num_samples - frame_length, frame_step), -1) + 1


def frame_signal(x, frame_length, frame_step):
    """Cuts `[batch, samples]` into `[batch, frames, frame_length]`.

    No centre padding: frame `t` covers samples `[t*step, t*step + length)`,
    and only complete frames are kept, so
    `frames = 1 + (samples - frame_length) // frame_step` (0 when the input is
    shorter than one frame; the trailing partial frame is dropped).

    Implemented as a single gather with a `[frames, frame_length]` index
    matrix rather than `ops.extract_sequences`, because the latter fails on
    inputs shorter than one frame under PyTorch (`unfold`) while a gather
    with an empty index matrix just returns 0 frames on both backends.
    """
    n = ops.shape(x)[1]
    count = num_frames(n, frame_length, frame_step)
    starts = ops.arange(count, dtype="int32") * frame_step
    offsets = ops.arange(frame_length, dtype="int32")
    indices = ops.expand_dims(starts, 1) + ops.expand_dims(offsets, 0)
    return ops.take(x, indices, axis=1)


def power_spectrum(frames, window, fft_length):
    """`|rfft(window * frame, fft_length)|^2`, `[..., fft_length // 2 + 1]`.

    `window` is a numpy array; frames are zero-padded to `fft_length` by
    the FFT itself.
    """
    frames = frames * ops.convert_to_tensor(window.astype("float32"))
    # Both backends' rFFT kernels fail on an empty input (TF: "Input
    # dimension 2 must have length of at least 512"; PyTorch/MKL:
    # "Inconsistent configuration parameters"), which happens when the
    # waveform is shorter than one frame. One dummy zero frame is appended
    # so the FFT always sees data, and its spectrum is dropped again.
    frames = ops.pad(frames, [[0, 0], [0, 1], [0, 0]])
    real, imag = ops.rfft(frames, fft_length=fft_length)
    return (ops.square(real) + ops.square(imag))[:, :-1]


def sliding_mean_normalization(x, window):
    """Subtracts a centred sliding-window mean over axis 1 of `[B, T, D]`.

    Matches Kaldi `apply-cmvn-sliding --center=true --norm-vars=false
    --cmn-window=window`: for frame `t` the window is
    `[t - window // 2, t - window // 2 + window)`, shifted right at the start
    and left at the end so that it stays inside `[0, T)`; when `T < window`
    every frame uses the whole utterance. Equivalently
    `start = clip(t - window // 2, 0, max(T - window, 0))`,
    `end = min(start + window, T)`.

    Vectorised with a cumulative sum and two gathers. The per-utterance mean
    is removed first: it cancels exactly in `x - sliding_mean(x)` but keeps
    the float32 cumulative sum near zero, so long utterances do not lose
    precision to a large running total.
    """
    x = x - ops.mean(x, axis=1, keepdims=True)
    t = ops.arange(ops.shape(x)[1], dtype="int32")
    # The frame count as an int32 tensor, counted from `t`: passing the
    # shape entry itself (under `torch.export` a symbolic `SymInt`) to
    # `keras.ops.maximum` would pin the exported time axis to the example's
    # length.
    t_count = ops.sum(ops.ones_like(t))
    # maximum/minimum rather than clip(): clip() with one Python and one
    # tensor bound is rejected by torch.clamp.
    start = ops.minimum(ops.maximum(t - window // 2, 0), ops.maximum(t_count - window, 0))
    end = ops.minimum(start + window, t_count)
    # Leading zero so that sum(x[start:end]) = csum[end] - csum[start].
    csum = ops.pad(ops.cumsum(x, axis=1), [[0, 0], [1, 0], [0, 0]])
    window_sum = ops.take(csum, end, axis=1) - ops.take(csum, start, axis=1)
    counts = ops.cast(end - start, x.dtype)
    return x - window_sum / ops.reshape(counts, (1, -1, 1))


# --------------------------------------------------------------------------
# Base layer of the log-spectral front-ends.
# --------------------------------------------------------------------------


class LogSpectralLayer(keras.layers.Layer):
    """Waveform `[batch, samples]` -> log spectral features `[batch, frames, bins]`.

    Validates and stores the framing arguments, frames the signal, takes
    the windowed power spectrum, maps it to log features with the
    subclass's `log_features(power)` and applies the optional sliding mean
    normalisation. Subclasses add their own arguments after calling
    `super().__init__`, and list every argument in `get_config`.
    """

    def __init__(
        self,
        sample_rate,
        frame_length_ms,
        frame_step_ms,
        fft_length,
        window,
        log_offset,
        mean_normalization_window,
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.frame_length, self.frame_step, self._fft_length = frame_geometry(
            sample_rate, frame_length_ms, frame_step_ms, fft_length
        )
        check_window_name(window)
        _checks.check_positive_real("log_offset", log_offset)
        self._normalization_window = check_normalization_window(mean_normalization_window)
        self.sample_rate = sample_rate
        self.frame_length_ms = frame_length_ms
        self.frame_step_ms = frame_step_ms
        self.fft_length = fft_length
        self.window = window
        self.log_offset = log_offset
        self.mean_normalization_window = mean_normalization_window
        # Constants are kept as numpy and converted inside call(): a tensor
        # built here would be an eager tensor captured by the exported TF
        # graph, while a numpy constant simply becomes a graph constant.
        self._window = window_array(window, self.frame_length)

    def log_features(self, power):
        """`[batch, frames, fft_length // 2 + 1]` power -> `[batch, frames, bins]` log features."""
        raise NotImplementedError

    def call(self, inputs):
        # FFTs are not available in float16, so compute in float32 and cast
        # back to the layer's compute dtype at the end.
        x = ops.cast(inputs, "float32")
        frames = frame_signal(x, self.frame_length, self.frame_step)
        power = power_spectrum(frames, self._window, self._fft_length)
        features = self.log_features(power)
        if self._normalization_window:
            features = sliding_mean_normalization(features, self._normalization_window)
        return ops.cast(features, self.compute_dtype)
