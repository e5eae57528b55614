"""Short-time Fourier transform to magnitude and phase, and its inverse.

`STFT` turns waveforms into the magnitude and phase spectrograms a mask
network works on; `InverseSTFT` resynthesises a waveform from a (masked)
magnitude and a phase. With the same arguments the two invert each other
up to float32 round-off.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_spk.layers import _framing
from keras_spk.utils import _checks
from keras_spk.utils import _precision

WINDOWS = ("hann", "hamming")
# Output samples whose summed squared synthesis windows fall below this are
# set to 0: nothing (or next to nothing) of them survives the analysis
# window, which happens only at the two ends when `center=False`.
ENVELOPE_FLOOR = 1e-8


def periodic_window(window, frame_length):
    """Periodic Hann or Hamming window of `frame_length` samples (float32 numpy).

    Periodic (denominator `frame_length`), as `scipy.signal.get_window`,
    librosa and `keras.ops.stft` use, so that shifted windows add up to a
    constant.
    """
    _checks.check_choice("window", window, WINDOWS)
    cos = np.cos(2.0 * np.pi * np.arange(frame_length) / frame_length)
    if window == "hann":
        return (0.5 - 0.5 * cos).astype("float32")
    return (0.54 - 0.46 * cos).astype("float32")


def _static_frames(num_samples, fft_length, frame_step, center):
    if num_samples is None:
        return None
    if center:
        return 1 + num_samples // frame_step
    return max(0, 1 + (num_samples - fft_length) // frame_step)


class _SpectralFrames(keras.layers.Layer):
    """Validates and stores the framing arguments shared by `STFT` and `InverseSTFT`."""

    def __init__(
        self,
        frame_length_ms,
        frame_step_ms,
        fft_length,
        window,
        sample_rate,
        center,
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.frame_length, self.frame_step, self._fft_length = _framing.frame_geometry(
            sample_rate, frame_length_ms, frame_step_ms, fft_length
        )
        _checks.check_choice("window", window, WINDOWS)
        if not isinstance(center, bool):
            raise ValueError(f"`center` must be True or False. Received: center={center!r}")
        self.frame_length_ms = frame_length_ms
        self.frame_step_ms = frame_step_ms
        self.fft_length = fft_length
        self.window = window
        self.sample_rate = sample_rate
        self.center = center
        # numpy, converted inside call(): a graph constant, not a captured eager tensor.
        self._window = periodic_window(window, self.frame_length)
        left = (self._fft_length - self.frame_length) // 2
        # The window placed in the middle of the FFT frame, as keras.ops.stft does.
        self._padded_window = np.zeros(self._fft_length, dtype="float32")
        self._padded_window[left : left + self.frame_length] = self._window

    @property
    def num_bins(self):
        return self._fft_length // 2 + 1

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "frame_length_ms": self.frame_length_ms,
                "frame_step_ms": self.frame_step_ms,
                "fft_length": self.fft_length,
                "window": self.window,
                "sample_rate": self.sample_rate,
                "center": self.center,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spk")
class STFT(_SpectralFrames):
    """Waveform -> magnitude and phase spectrograms.

    ```
    X[t, k]         = rfft(w * x_pad[t * step : t * step + fft_length])[k]
    magnitude[t, k] = |X[t, k]|
    phase[t, k]     = atan2(Im X[t, k], Re X[t, k])          # in [-pi, pi]
    ```

    with `w` the periodic window of `frame_length` samples centred in an
    `fft_length` frame and, when `center=True`, `x_pad` the waveform
    reflect-padded by `fft_length // 2` samples on each side, so that frame
    `t` is centred on sample `t * step` (librosa's and `keras.ops.stft`'s
    convention; computed with `keras.ops.stft`). The defaults are the
    separation front-end of MIRNet and VoiceFilter: 32-ms Hann frames
    every 10 ms and a 512-point FFT (257 bins) at 16 kHz.

    Args:
        frame_length_ms: positive float, window length in milliseconds,
            rounded to whole samples. Defaults to `32`.
        frame_step_ms: positive float, hop in milliseconds, rounded to
            whole samples. Defaults to `10`.
        fft_length: int >= the window length in samples, or `None` for the
            next power of two. Defaults to `512`.
        window: `"hann"` (default) or `"hamming"`, periodic.
        sample_rate: positive int, the waveforms' rate in Hz. Defaults to
            `16000`.
        center: bool, reflect-pad so frames are centred on multiples of
            the hop (default `True`); `False` starts the first frame at
            sample 0 and keeps only complete frames.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: float tensor of waveforms `[batch, samples]`. With
            `center=True` there must be more than `fft_length // 2`
            samples (reflect padding), with `center=False` at least
            `fft_length`.

    Input shape:
        2D tensor `(batch_size, samples)`; `samples` may be `None`.

    Output shape:
        A tuple `(magnitude, phase)` of 3D tensors
        `(batch_size, frames, fft_length // 2 + 1)`, with
        `frames = 1 + samples // step` when `center=True`, else
        `1 + (samples - fft_length) // step`.

    Example:

    >>> x = np.random.uniform(-1, 1, size=(2, 16000)).astype("float32")
    >>> magnitude, phase = STFT()(x)
    >>> tuple(magnitude.shape), tuple(phase.shape)
    ((2, 101, 257), (2, 101, 257))

    Reference:
        - Wang et al., VoiceFilter: targeted voice separation by
          speaker-conditioned spectrogram masking, Interspeech 2019
        - Han, Chung and Kang, MIRNet, Interspeech 2020, section 4.2.2
    """

    def __init__(
        self,
        frame_length_ms=32,
        frame_step_ms=10,
        fft_length=512,
        window="hann",
        sample_rate=16000,
        center=True,
        **kwargs,
    ):
        super().__init__(
            frame_length_ms=frame_length_ms,
            frame_step_ms=frame_step_ms,
            fft_length=fft_length,
            window=window,
            sample_rate=sample_rate,
            center=center,
            **kwargs,
        )

    def _check_length(self, num_samples):
        if num_samples is None:
            return
        half = self._fft_length // 2
        if self.center and num_samples <= half:
            raise ValueError(
                f"STFT with center=True needs more than fft_length // 2 = {half} samples "
                f"(reflect padding). Received: inputs with {num_samples} samples"
            )
        if not self.center and num_samples < self._fft_length:
            raise ValueError(
                f"STFT with center=False needs at least fft_length = {self._fft_length} "
                f"samples. Received: inputs with {num_samples} samples"
            )

    def call(self, inputs):
        self._check_length(inputs.shape[-1])
        # FFTs are not available in float16: float32 inside, the layer's dtype outside.
        x = ops.cast(inputs, "float32")
        real, imag = ops.stft(
            x,
            sequence_length=self.frame_length,
            sequence_stride=self.frame_step,
            fft_length=self._fft_length,
            window=self._window,
            center=self.center,
        )
        magnitude = ops.sqrt(ops.square(real) + ops.square(imag))
        phase = ops.arctan2(imag, real)
        return ops.cast(magnitude, self.compute_dtype), ops.cast(phase, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"STFT expects waveforms [batch, samples]. Received: input_shape={input_shape}"
            )
        self._check_length(input_shape[1])
        frames = _static_frames(input_shape[1], self._fft_length, self.frame_step, self.center)
        shape = (input_shape[0], frames, self.num_bins)
        return shape, shape


@keras.saving.register_keras_serializable(package="keras_spk")
class InverseSTFT(_SpectralFrames):
    """Magnitude and phase spectrograms -> waveform (least-squares overlap-add).

    ```
    y_t[n] = irfft(magnitude[t] * exp(i * phase[t]), fft_length)[n]
    x[n]   = sum_t w[n - t * step] y_t[n - t * step] / sum_t w[n - t * step]^2
    ```

    the inverse of `STFT` with the same arguments (Griffin and Lim's
    least-squares estimate from a modified STFT): `InverseSTFT(STFT(x))`
    gives `x` back to float32 round-off, for any window and hop whose
    windows overlap. With `center=True` the `fft_length // 2` padded
    samples are dropped at each end. Samples where the squared windows
    sum to less than `1e-8` (only at the ends when `center=False`) are 0.

    The overlap-add is a gather of at most `ceil(fft_length / step)`
    frame samples per output sample, written with `keras.ops`, rather than
    `keras.ops.istft`, whose TensorFlow version does not reconstruct the
    first and last `fft_length - step` samples (its window normalisation
    assumes a full set of overlapping frames), so the two backends would
    disagree there.

    Args:
        frame_length_ms, frame_step_ms, fft_length, window, sample_rate,
        center: as for `STFT`, and must match the analysis.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: a list `[magnitude, phase]` of float tensors
            `[batch, frames, fft_length // 2 + 1]`.
        length: optional positive int, the number of output samples
            (e.g. the analysed waveform's), cut or padded with zeros.
            Defaults to `None`: `(frames - 1) * step` samples with
            `center=True`, `(frames - 1) * step + fft_length` without.

    Input shape:
        Two 3D tensors `(batch_size, frames, bins)`; `frames` may be `None`.

    Output shape:
        2D tensor `(batch_size, samples)`.

    Example:

    >>> x = np.random.uniform(-1, 1, size=(2, 16000)).astype("float32")
    >>> magnitude, phase = STFT()(x)
    >>> y = InverseSTFT()([magnitude, phase], length=16000)
    >>> bool(np.abs(keras.ops.convert_to_numpy(y) - x).max() < 1e-4)
    True

    Reference:
        - Griffin and Lim, Signal estimation from modified short-time
          Fourier transform, IEEE TASSP 1984
        - Wang et al., VoiceFilter, Interspeech 2019
    """

    def __init__(
        self,
        frame_length_ms=32,
        frame_step_ms=10,
        fft_length=512,
        window="hann",
        sample_rate=16000,
        center=True,
        **kwargs,
    ):
        super().__init__(
            frame_length_ms=frame_length_ms,
            frame_step_ms=frame_step_ms,
            fft_length=fft_length,
            window=window,
            sample_rate=sample_rate,
            center=center,
            **kwargs,
        )

    def _check_inputs(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or len(input_shapes) != 2:
            raise ValueError(
                "InverseSTFT expects a list [magnitude, phase]. "
                f"Received: input shapes {input_shapes}"
            )
        for name, shape in zip(("magnitude", "phase"), input_shapes):
            if len(shape) != 3 or shape[-1] not in (None, self.num_bins):
                raise ValueError(
                    f"`{name}` must be [batch, frames, {self.num_bins}] (fft_length="
                    f"{self._fft_length}). Received: {name}.shape={tuple(shape)}"
                )

    @staticmethod
    def _check_length(length):
        if length is not None and (not _checks.is_int(length) or length <= 0):
            raise ValueError(
                f"`length` must be None or a positive integer. Received: length={length!r}"
            )

    def call(self, inputs, length=None):
        self._check_inputs([tuple(x.shape) for x in inputs])
        self._check_length(length)
        magnitude = ops.cast(inputs[0], "float32")
        phase = ops.cast(inputs[1], "float32")
        frames = ops.irfft(
            (magnitude * ops.cos(phase), magnitude * ops.sin(phase)), fft_length=self._fft_length
        )
        window = ops.convert_to_tensor(self._padded_window)
        frames = frames * window  # [batch, T, fft_length]
        fft_length, step = self._fft_length, self.frame_step
        num_frames = ops.shape(frames)[1]
        start = fft_length // 2 if self.center else 0
        if length is None:
            length = (num_frames - 1) * step + fft_length - 2 * start

        # Output sample n takes sample n - t * step of every frame t that
        # covers it: t = n // step - j for j < ceil(fft_length / step).
        n = ops.arange(length, dtype="int32") + start
        j = ops.arange(math.ceil(fft_length / step), dtype="int32")
        frame = ops.expand_dims(ops.floor_divide(n, step), 1) - ops.expand_dims(j, 0)
        offset = ops.expand_dims(n, 1) - frame * step  # >= 0 by construction
        valid = (frame >= 0) & (frame < num_frames) & (offset < fft_length)
        index = ops.where(valid, frame * fft_length + offset, 0)
        weight = ops.cast(valid, "float32")

        flat = ops.reshape(frames, (ops.shape(frames)[0], -1))
        summed = ops.sum(ops.take(flat, index, axis=1) * weight, axis=-1)  # [batch, length]
        envelope = ops.sum(
            ops.take(ops.square(window), ops.where(valid, offset, 0)) * weight, axis=-1
        )
        covered = envelope >= ENVELOPE_FLOOR
        waveform = ops.where(covered, summed / ops.where(covered, envelope, 1.0), 0.0)
        return ops.cast(waveform, self.compute_dtype)

    def compute_output_shape(self, input_shapes, length=None):
        self._check_inputs(input_shapes)
        self._check_length(length)
        if length is None:
            frames = input_shapes[0][1]
            if frames is not None:
                start = self._fft_length // 2 if self.center else 0
                length = (frames - 1) * self.frame_step + self._fft_length - 2 * start
        return (input_shapes[0][0], length)

    def compute_output_spec(self, inputs, length=None):
        shape = self.compute_output_shape([tuple(x.shape) for x in inputs], length=length)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_spk")
class MatchLength(keras.layers.Layer):
    """Cuts or zero-pads the last axis of `x` to the length of `reference`'s last axis.

    The inverse STFT of a centred analysis gives `(frames - 1) * hop`
    samples, up to a hop fewer than the analysed waveform; the separator's
    estimates are brought back to the mixture's length so they line up
    sample by sample with it.

    Call arguments:
        inputs: `[x, reference]`: `x` `(..., samples')`, `reference`
            `(batch, samples)`.
    """

    def call(self, inputs):
        x, reference = inputs
        target = keras.ops.shape(reference)[-1]
        zeros = keras.ops.zeros_like(reference)
        for _ in range(len(x.shape) - 2):
            zeros = keras.ops.expand_dims(zeros, 1)
        zeros = keras.ops.broadcast_to(zeros, keras.ops.shape(x)[:-1] + (target,))
        padded = keras.ops.concatenate([x, keras.ops.cast(zeros, x.dtype)], axis=-1)
        return padded[..., :target]

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        return tuple(x[:-1]) + (reference[-1],)
