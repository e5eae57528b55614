import keras
from keras import ops

from keras_spk.layers import _masking
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class TemporalAveragePooling(keras.layers.Layer):
    """Temporal (global) average pooling of frame-level features.

    Maps a variable-length sequence of frame features `h_1, ..., h_T` to
    their mean over the valid frames (GAP/TAP):

    ```
    e = (1 / T) * sum_t h_t
    ```

    Padded frames, marked by a Keras mask or beyond a row's `lengths`, are
    left out of both the sum and `T`, so a padded row pools exactly as it
    would alone. A row with no valid frame pools to zeros.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: float tensor of frame features.
        mask: optional boolean tensor `(batch_size, time)`, true for valid
            frames (set automatically by a `Masking` or `Embedding` layer).
        lengths: optional integer tensor `(batch_size,)`, the number of valid
            frames at the start of each row. With `mask`, a frame must be
            valid in both.

    Input shape:
        3D tensor `(batch_size, time, features)`; `time` may be `None`.

    Output shape:
        2D tensor `(batch_size, features)`. No mask is propagated.

    Example:

    >>> x = np.array([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]]], dtype="float32")
    >>> keras.ops.convert_to_numpy(TemporalAveragePooling()(x, lengths=[2]))
    array([[2., 4.]], dtype=float32)

    Reference:
        - [Nagrani et al., VoxCeleb: a large-scale speaker identification
          dataset, Interspeech 2017](https://arxiv.org/abs/1706.08612)
        - [Jung et al., Improving Multi-Scale Aggregation Using Feature
          Pyramid Module for Robust Speaker Verification of Variable-Duration
          Utterances, Interspeech 2020](https://arxiv.org/abs/2004.03194)
    """

    def __init__(self, **kwargs):
        super().__init__(**_precision.float32_policy(kwargs))

    def build(self, input_shape):
        _masking.check_frames_shape(self, input_shape)

    def call(self, inputs, mask=None, lengths=None):
        valid = _masking.valid_frames(inputs, mask, lengths)
        return _masking.masked_mean(inputs, valid)

    def compute_mask(self, inputs, mask=None):
        # The time axis is pooled away, so there is nothing left to mask.
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
