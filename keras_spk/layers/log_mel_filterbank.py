import numbers

import keras
import numpy as np
from keras import ops

from keras_spk.layers import _framing
from keras_spk.utils import _checks


def _hertz_to_mel(hertz):
    # HTK mel scale.
    return 2595.0 * np.log10(1.0 + np.asarray(hertz, dtype="float64") / 700.0)


def mel_filterbank_matrix(
    num_mel_bins=64,
    num_spectrogram_bins=257,
    sample_rate=16000,
    lower_edge_hertz=20.0,
    upper_edge_hertz=None,
    dtype="float32",
):
    """Triangular HTK-mel filterbank weights as a numpy matrix.

    Spectrogram bin `k` has frequency `f_k = k * (sample_rate / 2) /
    (num_spectrogram_bins - 1)` (bins of an rFFT, DC to Nyquist). Band edges
    are `num_mel_bins + 2` points equally spaced on the HTK mel scale
    `mel(f) = 2595 * log10(1 + f / 700)` from `lower_edge_hertz` to
    `upper_edge_hertz`; band `m` is a triangle, linear in mel, rising from
    edge `m` to a peak of 1 at edge `m + 1` and falling to 0 at edge `m + 2`:

    ```
    w[k, m] = max(0, min((mel(f_k) - e[m]) / (e[m+1] - e[m]),
                         (e[m+2] - mel(f_k)) / (e[m+2] - e[m+1])))
    ```

    This is the construction of Kaldi's `MelBanks` and of
    `tf.signal.linear_to_mel_weight_matrix` (which additionally zeroes the DC
    bin; here DC is below any sensible `lower_edge_hertz` anyway). Weights are
    not area-normalised.

    Args:
        num_mel_bins: positive int, number of mel bands.
        num_spectrogram_bins: int >= 2, number of rFFT bins, i.e.
            `fft_length // 2 + 1`.
        sample_rate: positive int, sampling rate in Hz.
        lower_edge_hertz: float >= 0, lower edge of the lowest band.
        upper_edge_hertz: float, upper edge of the highest band, at most
            `sample_rate / 2`. `None` means `sample_rate / 2` (Nyquist).
        dtype: numpy dtype of the result.

    Returns:
        numpy array of shape `(num_spectrogram_bins, num_mel_bins)`, so that
        `mel_energies = power_spectrum @ matrix`.
    """
    _checks.check_positive_int("num_mel_bins", num_mel_bins)
    if not isinstance(num_spectrogram_bins, numbers.Integral) or num_spectrogram_bins < 2:
        raise ValueError(
            "`num_spectrogram_bins` must be an integer >= 2. "
            f"Received: num_spectrogram_bins={num_spectrogram_bins!r}"
        )
    _checks.check_positive_int("sample_rate", sample_rate)
    nyquist = sample_rate / 2.0
    if upper_edge_hertz is None:
        upper_edge_hertz = nyquist
    if (
        not isinstance(lower_edge_hertz, numbers.Real)
        or isinstance(lower_edge_hertz, bool)
        or not 0.0 <= lower_edge_hertz < nyquist
    ):
        raise ValueError(
            "`lower_edge_hertz` must be a number in [0, sample_rate / 2). "
            f"Received: lower_edge_hertz={lower_edge_hertz!r}"
        )
    if (
        not isinstance(upper_edge_hertz, numbers.Real)
        or isinstance(upper_edge_hertz, bool)
        or not lower_edge_hertz < upper_edge_hertz <= nyquist
    ):
        raise ValueError(
            "`upper_edge_hertz` must be None or a number in "
            f"(lower_edge_hertz, sample_rate / 2] = ({lower_edge_hertz}, {nyquist}]. "
            f"Received: upper_edge_hertz={upper_edge_hertz!r}"
        )
    bin_mel = _hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))[:, None]
    edges = np.linspace(
        _hertz_to_mel(lower_edge_hertz), _hertz_to_mel(upper_edge_hertz), num_mel_bins + 2
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(dtype)


@keras.saving.register_keras_serializable(package="keras_spk")
class LogMelFilterbank(_framing.LogSpectralLayer):
    """Log mel filterbank features with sliding-window mean normalisation.

    For each frame (no centre padding; frame `t` covers samples
    `[t * step, t * step + frame_length)`):

    ```
    P[t, k]   = |rfft(window * x[t * step : t * step + frame_length],
                      fft_length)[k]| ** 2
    E[t, m]   = sum_k P[t, k] * W[k, m]          # W = mel_filterbank_matrix()
    F[t, m]   = log(E[t, m] + log_offset)
    out[t, m] = F[t, m] - mean(F[s(t) : s(t) + min(W, T), m])   # if W
    ```

    where `W = mean_normalization_window` and
    `s(t) = clip(t - W // 2, 0, max(T - W, 0))`, i.e. Kaldi's
    `apply-cmvn-sliding --center=true --norm-vars=false`: a window centred on
    `t`, shifted to stay inside the utterance at the edges, and the whole
    utterance when it has fewer than `mean_normalization_window` frames.

    The number of frames is `T = 1 + (samples - frame_length) // frame_step`;
    trailing samples that do not fill a whole frame are ignored. An input
    shorter than one frame gives `T = 0` (an empty `(batch, 0, num_mel_bins)`
    output, no error and no NaN). Each row is treated as one complete
    utterance: for zero-padded batches, padding is framed like signal.

    The window is the *symmetric* Hamming window (`np.hamming`, as in Kaldi),
    not the periodic one that `tf.signal.hamming_window` returns by default.

    Args:
        sample_rate: positive int, sampling rate of the input in Hz.
            Defaults to `16000`.
        num_mel_bins: positive int, number of mel bands. Defaults to `64`.
        frame_length_ms: positive float, frame length in milliseconds,
            rounded to whole samples. Defaults to `25`.
        frame_step_ms: positive float, hop between frames in milliseconds,
            rounded to whole samples. Defaults to `10`.
        fft_length: int >= frame length in samples, or `None` for the next
            power of two >= the frame length (512 at 16 kHz / 25 ms).
        window: `"hamming"` (default), `"hann"` (both symmetric) or
            `"rectangular"`.
        lower_edge_hertz: float, lower edge of the lowest mel band.
            Defaults to `20.0`.
        upper_edge_hertz: float, upper edge of the highest mel band, or
            `None` for the Nyquist frequency.
        log_offset: positive float added to the mel energies before the log.
            Defaults to `1e-6`.
        mean_normalization_window: int, length in frames of the sliding mean
            window (300 frames = 3 s at a 10 ms step), or `None` / `0` for no
            normalisation. Defaults to `300`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: float tensor of waveforms, one utterance per row.

    Input shape:
        2D tensor `(batch_size, samples)`; `samples` may be `None`.

    Output shape:
        3D tensor `(batch_size, frames, num_mel_bins)`: time-major
        ("64 x T" features stored as `T x 64`, channels last), with
        `frames = max(0, 1 + (samples - frame_length) // frame_step)`
        (`None` when `samples` is `None`).

    Example:

    >>> x = np.random.uniform(-1, 1, size=(2, 16000)).astype("float32")
    >>> LogMelFilterbank()(x).shape
    (2, 98, 64)

    Reference:
        - [Povey et al., The Kaldi Speech Recognition Toolkit, 2011](
            https://kaldi-asr.org/) (`compute-fbank-feats`,
            `apply-cmvn-sliding`)
        - [Young et al., The HTK Book](https://htk.eng.cam.ac.uk/)
    """

    def __init__(
        self,
        sample_rate=16000,
        num_mel_bins=64,
        frame_length_ms=25,
        frame_step_ms=10,
        fft_length=None,
        window="hamming",
        lower_edge_hertz=20.0,
        upper_edge_hertz=None,
        log_offset=1e-6,
        mean_normalization_window=300,
        **kwargs,
    ):
        super().__init__(
            sample_rate=sample_rate,
            frame_length_ms=frame_length_ms,
            frame_step_ms=frame_step_ms,
            fft_length=fft_length,
            window=window,
            log_offset=log_offset,
            mean_normalization_window=mean_normalization_window,
            **kwargs,
        )
        self.num_mel_bins = num_mel_bins
        self.lower_edge_hertz = lower_edge_hertz
        self.upper_edge_hertz = upper_edge_hertz
        # numpy, converted in call() (see `LogSpectralLayer`). This also
        # validates the mel arguments at construction time.
        self._mel_matrix = mel_filterbank_matrix(
            num_mel_bins=num_mel_bins,
            num_spectrogram_bins=self._fft_length // 2 + 1,
            sample_rate=sample_rate,
            lower_edge_hertz=lower_edge_hertz,
            upper_edge_hertz=upper_edge_hertz,
        )

    def log_features(self, power):
        mel = ops.matmul(power, ops.convert_to_tensor(self._mel_matrix))
        return ops.log(mel + self.log_offset)

    def compute_output_shape(self, input_shape):
        frames = _framing.static_num_frames(input_shape[1], self.frame_length, self.frame_step)
        return (input_shape[0], frames, self.num_mel_bins)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "num_mel_bins": self.num_mel_bins,
                "frame_length_ms": self.frame_length_ms,
                "frame_step_ms": self.frame_step_ms,
                "fft_length": self.fft_length,
                "window": self.window,
                "lower_edge_hertz": self.lower_edge_hertz,
                "upper_edge_hertz": self.upper_edge_hertz,
                "log_offset": self.log_offset,
                "mean_normalization_window": self.mean_normalization_window,
            }
        )
        return config
