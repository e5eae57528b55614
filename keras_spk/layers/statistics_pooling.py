import keras
from keras import ops

from keras_spk.layers import _masking
from keras_spk.utils import _checks
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class StatisticsPooling(keras.layers.Layer):
    """Statistics pooling: mean and standard deviation over time (x-vector).

    Maps frame features `h_1, ..., h_T` (valid frames only) to the
    concatenation of their mean and standard deviation:

    ```
    mu    = (1 / T) * sum_t h_t
    var   = (1 / T) * sum_t (h_t - mu) ** 2        (biased, elementwise)
    sigma = sqrt(max(var, eps))
    e     = concat([mu, sigma])
    ```

    The variance is the biased (divide by `T`) one, as in Kaldi's x-vector
    statistics pooling; `eps` floors the variance, not the standard
    deviation, which keeps the square root's gradient finite for constant
    features (and gives `sigma = sqrt(eps)` for a single frame). It is
    computed from the centred frames rather than as `E[h^2] - mu^2`, which
    is the same number without the cancellation error.

    Padded frames (Keras mask or beyond `lengths`) are left out of both
    statistics and of `T`. A row with no valid frame gives `mu = 0` and
    `sigma = sqrt(eps)`.

    Args:
        eps: positive float, floor on the variance. Defaults to `1e-5`.
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
        2D tensor `(batch_size, 2 * features)`: means first, then standard
        deviations. No mask is propagated.

    Example:

    >>> x = np.array([[[1.0], [3.0], [100.0]]], dtype="float32")
    >>> keras.ops.convert_to_numpy(StatisticsPooling()(x, lengths=[2]))
    array([[2., 1.]], dtype=float32)

    Reference:
        - [Snyder et al., X-Vectors: Robust DNN Embeddings for Speaker
          Recognition, ICASSP 2018](https://doi.org/10.1109/ICASSP.2018.8461375)
    """

    def __init__(self, eps=1e-5, **kwargs):
        super().__init__(**_precision.float32_policy(kwargs))
        self.eps = float(_checks.check_positive_real("eps", eps))

    def build(self, input_shape):
        _masking.check_frames_shape(self, input_shape)

    def call(self, inputs, mask=None, lengths=None):
        valid = _masking.valid_frames(inputs, mask, lengths)
        mean = _masking.masked_mean(inputs, valid)
        centred = inputs - ops.expand_dims(mean, 1)
        variance = _masking.masked_mean(ops.square(centred), valid)
        return _masking.concat_mean_std(mean, variance, self.eps)

    def compute_mask(self, inputs, mask=None):
        # The time axis is pooled away, so there is nothing left to mask.
        return None

    def compute_output_shape(self, input_shape):
        features = input_shape[-1]
        return (input_shape[0], None if features is None else 2 * features)

    def get_config(self):
        config = super().get_config()
        config.update({"eps": self.eps})
        return config
