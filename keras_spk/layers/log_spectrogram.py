import keras
from keras import ops

from keras_spk.layers import _framing
from keras_spk.utils import _checks

NORMALIZATIONS = (None, "mean_variance")
# Added to the standard deviation so that a constant bin (digital silence, a
# one-frame input) gives 0 rather than 0 / 0.
NORMALIZATION_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="keras_spk")
class LogSpectrogram(_framing.LogSpectralLayer):
    """Log-magnitude linear-frequency spectrogram.

    For each frame (no centre padding; frame `t` covers samples
    `[t * step, t * step + frame_length)`):

    ```
    S[t, k]   = log(|rfft(window * x[t * step : t * step + frame_length],
                          fft_length)[k]| + log_offset)
    out[t, k] = S[t, k] - mean(S[s(t) : s(t) + min(W, T), k])   # if W
    ```

    with `W = mean_normalization_window` and
    `s(t) = clip(t - W // 2, 0, max(T - W, 0))` (Kaldi's
    `apply-cmvn-sliding --center=true`, see `LogMelFilterbank`). Note the
    log of the *magnitude*, not of the power.

    With `normalization="mean_variance"` each utterance is instead
    standardised per frequency bin over all of its frames:

    ```
    out[t, k] = (S[t, k] - mean_t S[:, k]) / (std_t S[:, k] + 1e-5)
    ```

    with the population standard deviation (divisor `T`) and the epsilon
    added to it, not to the variance (`NORMALIZATION_EPSILON`; a constant
    bin gives 0). The statistics are those of the input it is given: with
    variable-length inputs each row of a batch must be one whole utterance
    (no padding), since padded frames would enter the mean and deviation.
    This is the per-utterance normalisation of the multi-metric paper's
    code (Xu et al. 2020), over a `log_offset=1.0` (log1p) spectrogram.

    Framing, windowing (symmetric Hamming by default, as `np.hamming`) and
    normalisation are shared with `LogMelFilterbank`, so both layers produce
    the same number of frames: `T = 1 + (samples - frame_length) //
    frame_step`, trailing samples that do not fill a frame are ignored, and
    an input shorter than one frame gives `T = 0` (an empty output, no error
    and no NaN).

    Args:
        sample_rate: positive int, sampling rate of the input in Hz.
            Defaults to `16000`.
        frame_length_ms: positive float, frame length in milliseconds,
            rounded to whole samples. Defaults to `25`.
        frame_step_ms: positive float, hop between frames in milliseconds,
            rounded to whole samples. Defaults to `10`.
        fft_length: int >= frame length in samples, or `None` for the next
            power of two >= the frame length (512 at 16 kHz / 25 ms).
        window: `"hamming"` (default), `"hann"` (both symmetric) or
            `"rectangular"`.
        log_offset: positive float added to the magnitude before the log.
            Defaults to `1e-6`.
        mean_normalization_window: int, length in frames of the sliding mean
            window, or `None` / `0` (default) for no normalisation.
        normalization: `None` (default) or `"mean_variance"`: per-utterance,
            per-bin mean and standard-deviation normalisation over the
            input's frames. Cannot be combined with
            `mean_normalization_window`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: float tensor of waveforms, one utterance per row.

    Input shape:
        2D tensor `(batch_size, samples)`; `samples` may be `None`.

    Output shape:
        3D tensor `(batch_size, frames, fft_length // 2 + 1)`, time-major,
        with `frames = max(0, 1 + (samples - frame_length) // frame_step)`
        (`None` when `samples` is `None`).

    Example:

    >>> x = np.random.uniform(-1, 1, size=(2, 16000)).astype("float32")
    >>> LogSpectrogram()(x).shape
    (2, 98, 257)

    Reference:
        - [Nagrani et al., VoxCeleb: a large-scale speaker identification
          dataset, 2017](https://arxiv.org/abs/1706.08612)
        - Xu, Wang, Feng and Liu, Deep multi-metric learning for
          text-independent speaker verification, Neurocomputing 2020,
          section 4.2 (code: https://github.com/GreatJiweix/DamITiSV)
    """

    def __init__(
        self,
        sample_rate=16000,
        frame_length_ms=25,
        frame_step_ms=10,
        fft_length=None,
        window="hamming",
        log_offset=1e-6,
        mean_normalization_window=None,
        normalization=None,
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
        _checks.check_choice("normalization", normalization, NORMALIZATIONS)
        if normalization is not None and self._normalization_window:
            raise ValueError(
                "`normalization` and `mean_normalization_window` are two normalisations "
                "of the same features; set only one. Received: "
                f"normalization={normalization!r}, "
                f"mean_normalization_window={mean_normalization_window!r}"
            )
        self.normalization = normalization

    def log_features(self, power):
        features = ops.log(ops.sqrt(power) + self.log_offset)
        if self.normalization == "mean_variance":
            # Here rather than after `call`: still float32, before the cast
            # to the layer's compute dtype.
            centred = features - ops.mean(features, axis=1, keepdims=True)
            std = ops.sqrt(ops.mean(ops.square(centred), axis=1, keepdims=True))
            features = centred / (std + NORMALIZATION_EPSILON)
        return features

    def compute_output_shape(self, input_shape):
        frames = _framing.static_num_frames(input_shape[1], self.frame_length, self.frame_step)
        return (input_shape[0], frames, self._fft_length // 2 + 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length_ms": self.frame_length_ms,
                "frame_step_ms": self.frame_step_ms,
                "fft_length": self.fft_length,
                "window": self.window,
                "log_offset": self.log_offset,
                "mean_normalization_window": self.mean_normalization_window,
                "normalization": self.normalization,
            }
        )
        return config
