import math
import numbers

import keras
from keras import ops

from keras_spk.layers import _framing
from keras_spk.utils import _checks
from keras_spk.utils import _precision

# Frames whose mean-square amplitude is at or below this (-100 dB relative to
# a full-scale [-1, 1] signal) are never speech. Without an absolute floor an
# all-zero utterance would be "within threshold_db of its loudest frame"
# everywhere and be returned whole.
ENERGY_FLOOR = 1e-10


@keras.saving.register_keras_serializable(package="keras_spk")
class EnergyVAD(keras.layers.Layer):
    """Energy-based voice-activity detector that removes non-speech samples.

    The waveform is cut into frames exactly like `LogMelFilterbank` (frame
    `t` covers samples `[t * step, t * step + frame_length)`, no padding) and
    each frame gets a mean-square energy in decibels:

    ```
    e[t]      = 10 * log10(mean(x[t * step : t * step + frame_length] ** 2))
    speech[t] = e[t] >= max_t' e[t'] - threshold_db  and  e[t] > -100 dB
    ```

    A sample is kept if at least one speech frame covers it (frames overlap,
    so this is the union of the speech frames' spans). Kept samples are
    returned in their original order with everything else removed, then
    truncated to the first `max_speech_seconds` seconds of speech when given.
    `speech_mask()` gives the per-sample decision alone, for use outside a
    model (e.g. `keras_spk.evaluation.cut_to_speech`).

    Edge cases, documented because nothing can be raised in graph mode:

    - The last `(samples - frame_length) % frame_step` samples (< one step)
      are covered by no complete frame and are never speech; so is padding
      beyond `lengths`.
    - An utterance with no speech (all zeros, or shorter than one frame)
      gets length 0 and an all-zero row. Callers must check `lengths`.
    - Speech is relative to the utterance's loudest frame, so any utterance
      with some non-zero frame has at least one speech frame.

    Args:
        sample_rate: positive int, sampling rate in Hz. Defaults to `16000`.
        frame_length_ms: positive float, frame length in milliseconds,
            rounded to whole samples. Defaults to `25`.
        frame_step_ms: positive float, hop between frames in milliseconds,
            rounded to whole samples. Defaults to `10`.
        threshold_db: non-negative float; frames whose energy is within this
            many dB of the utterance's loudest frame are speech.
            Defaults to `40.0`.
        max_speech_seconds: positive float or `None` (default). If given,
            each row keeps only its first
            `round(max_speech_seconds * sample_rate)` speech samples.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: float tensor of waveforms, one utterance per row.
        lengths: optional int tensor `(batch_size,)`, the number of valid
            samples of each row of a zero-padded batch. Samples at or beyond
            a row's length are never speech and do not count towards the
            loudest frame. `None` means every row is entirely valid.

    Input shape:
        2D tensor `(batch_size, samples)`; `samples` may be `None`.

    Output shape:
        A tuple `(speech, lengths)`:
        - `speech`: 2D tensor `(batch_size, max_length)`, row `b` holding its
          `lengths[b]` speech samples followed by zeros, where
          `max_length = max(lengths)` (dynamic, so `None` symbolically).
        - `lengths`: 1D int32 tensor `(batch_size,)`.

    Example:

    >>> t = np.arange(16000) / 16000
    >>> x = np.zeros((1, 48000), "float32")
    >>> x[0, 16000:32000] = np.sin(2 * np.pi * 200 * t)
    >>> speech, lengths = EnergyVAD(threshold_db=1.0)(x)
    >>> int(lengths[0])  # the tone, plus the frame that is 80% tone
    16080

    Reference:
        - [Kaldi `compute-vad`](https://kaldi-asr.org/doc/voice-activity-detection_8h.html)
          (a similar relative-energy rule)
    """

    def __init__(
        self,
        sample_rate=16000,
        frame_length_ms=25,
        frame_step_ms=10,
        threshold_db=40.0,
        max_speech_seconds=None,
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.frame_length, self.frame_step, _ = _framing.frame_geometry(
            sample_rate, frame_length_ms, frame_step_ms
        )
        if (
            not isinstance(threshold_db, numbers.Real)
            or isinstance(threshold_db, bool)
            or not math.isfinite(threshold_db)
            or threshold_db < 0
        ):
            raise ValueError(
                "`threshold_db` must be a non-negative number. "
                f"Received: threshold_db={threshold_db!r}"
            )
        self._max_speech_samples = None
        if max_speech_seconds is not None:
            _checks.check_positive_real("max_speech_seconds", max_speech_seconds)
            self._max_speech_samples = int(round(max_speech_seconds * sample_rate))
            if self._max_speech_samples < 1:
                raise ValueError(
                    "`max_speech_seconds` is shorter than one sample. "
                    f"Received: max_speech_seconds={max_speech_seconds!r}"
                )
        self.sample_rate = sample_rate
        self.frame_length_ms = frame_length_ms
        self.frame_step_ms = frame_step_ms
        self.threshold_db = threshold_db
        self.max_speech_seconds = max_speech_seconds

    def _speech_frames(self, x, lengths):
        """Boolean `[batch, frames]` speech decisions."""
        frames = _framing.frame_signal(x, self.frame_length, self.frame_step)
        energy = ops.mean(ops.square(frames), axis=-1)
        energy_db = (10.0 / math.log(10.0)) * ops.log(ops.maximum(energy, ENERGY_FLOOR))
        valid = energy > ENERGY_FLOOR
        if lengths is not None:
            row_frames = _framing.num_frames(lengths, self.frame_length, self.frame_step)
            frame_index = ops.arange(ops.shape(frames)[1], dtype="int32")
            valid = ops.logical_and(
                valid, ops.expand_dims(frame_index, 0) < ops.expand_dims(row_frames, 1)
            )
        # A constant extra column keeps the max defined when there are no
        # frames at all (input shorter than one frame): max over an empty
        # axis is an error under both backends.
        masked_db = ops.pad(
            ops.where(valid, energy_db, -1e30), [[0, 0], [0, 1]], constant_values=-1e30
        )
        loudest = ops.max(masked_db, axis=1, keepdims=True)
        return ops.logical_and(valid, energy_db >= loudest - self.threshold_db)

    def speech_mask(self, inputs, lengths=None):
        """Which samples are speech, by the layer's rule, without removing any.

        The decision `call()` makes before it drops the non-speech samples
        (and before any `max_speech_seconds` truncation). Usable outside a
        model, e.g. on one waveform:
        `keras.ops.convert_to_numpy(vad.speech_mask(x[None]))[0]`.

        Args:
            inputs: float tensor `(batch_size, samples)` of waveforms.
            lengths: optional int tensor `(batch_size,)`, as in `call()`.

        Returns:
            Boolean tensor `(batch_size, samples)`, `True` where a speech
            frame covers the sample.
        """
        x = ops.cast(inputs, "float32")
        if lengths is not None:
            lengths = ops.cast(lengths, "int32")
        speech_frames = self._speech_frames(x, lengths)
        frame_count = ops.shape(speech_frames)[1]

        # Sample i is covered by frames lo(i) .. hi(i) - 1 with
        # lo = (i - frame_length) // step + 1 and hi = i // step + 1 (clipped
        # to [0, frames]); it is speech if any of them is, i.e. if the
        # cumulative count of speech frames increases between lo and hi.
        count = ops.cumsum(ops.cast(speech_frames, "int32"), axis=1)
        # Leading zero column (via pad: slicing count[:, :1] would be empty
        # when there are no frames).
        count = ops.pad(count, [[0, 0], [1, 0]])
        i = ops.arange(ops.shape(x)[1], dtype="int32")
        hi = ops.minimum(ops.floor_divide(i, self.frame_step) + 1, frame_count)
        lo = ops.minimum(
            ops.maximum(ops.floor_divide(i - self.frame_length, self.frame_step) + 1, 0),
            frame_count,
        )
        return (ops.take(count, hi, axis=1) - ops.take(count, lo, axis=1)) > 0

    def call(self, inputs, lengths=None):
        x = ops.cast(inputs, "float32")
        mask = self.speech_mask(x, lengths)
        num_samples = ops.shape(x)[1]
        i = ops.arange(num_samples, dtype="int32")

        # Output position of each kept sample; truncation to the first
        # max_speech_samples speech samples is a cut on that position.
        position = ops.cumsum(ops.cast(mask, "int32"), axis=1) - 1
        if self._max_speech_samples is not None:
            mask = ops.logical_and(mask, position < self._max_speech_samples)
        out_lengths = ops.sum(ops.cast(mask, "int32"), axis=1)

        # Kept samples sort by their output position (0 .. length - 1), the
        # rest by num_samples + index, so every key is unique and the sort
        # needs no stability guarantee.
        key = ops.where(mask, position, num_samples + ops.expand_dims(i, 0))
        order = ops.argsort(key, axis=1)
        speech = ops.take_along_axis(x, order, axis=1)
        speech = ops.where(
            ops.expand_dims(i, 0) < ops.expand_dims(out_lengths, 1),
            speech,
            ops.zeros_like(speech),
        )
        # Cut to the longest row; the padded zero keeps max() defined for an
        # empty batch.
        max_length = ops.max(ops.pad(out_lengths, [[0, 1]]))
        speech = speech[:, :max_length]
        return ops.cast(speech, self.compute_dtype), out_lengths

    def compute_output_shape(self, input_shape, lengths_shape=None):
        return (input_shape[0], None), (input_shape[0],)

    def compute_output_spec(self, inputs, lengths=None):
        batch = inputs.shape[0]
        return (
            keras.KerasTensor((batch, None), dtype=self.compute_dtype),
            keras.KerasTensor((batch,), dtype="int32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length_ms": self.frame_length_ms,
                "frame_step_ms": self.frame_step_ms,
                "threshold_db": self.threshold_db,
                "max_speech_seconds": self.max_speech_seconds,
            }
        )
        return config
