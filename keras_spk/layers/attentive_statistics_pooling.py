import keras
from keras import ops

from keras_spk.layers import _masking
from keras_spk.utils import _checks
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class AttentiveStatisticsPooling(keras.layers.Layer):
    """Attentive statistics pooling (ASP): attention-weighted mean and std.

    A small attention network scores each frame `h_t` (dimension `D`), the
    scores are normalised over time, and the layer returns the weighted
    mean and weighted standard deviation (Okabe et al., 2018):

    ```
    e_t     = v^T f(W h_t + b)                       W: [A, D], b, v: [A]
    a_t     = exp(e_t) / sum_t' exp(e_t')
    mu      = sum_t a_t h_t
    sigma   = sqrt(max(sum_t a_t h_t * h_t - mu * mu, eps))    (elementwise)
    output  = concat([mu, sigma])
    ```

    The paper's scalar score bias `k` is left out: softmax is unchanged by
    adding the same constant to every score, so it would be a parameter
    with zero gradient. The weighted variance is computed as
    `sum_t a_t (h_t - mu)^2`, equal to the paper's form (the weights sum to
    1) but without its cancellation error; `eps` floors the variance, as in
    `StatisticsPooling`. Trainable parameters: `D * A + A + A`
    (`W`, `b`, `v`).

    Padded frames (Keras mask or beyond `lengths`) get weight exactly 0 and
    the softmax is taken over the valid frames only. A row with no valid
    frame gives `mu = 0` and `sigma = sqrt(eps)`.

    Args:
        attention_units: positive int `A`, the hidden size of the attention
            network. Defaults to `128`.
        activation: the non-linearity `f`, a Keras activation name or
            callable. Defaults to `"tanh"`.
        eps: positive float, floor on the weighted variance. Defaults to
            `1e-5`.
        kernel_initializer: initializer of `W`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        context_initializer: initializer of `v`. Defaults to
            `"glorot_uniform"`.
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
        2D tensor `(batch_size, 2 * features)`: weighted means first, then
        weighted standard deviations. No mask is propagated.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(2, 50, 64)).astype("float32")
    >>> tuple(AttentiveStatisticsPooling(attention_units=32)(x).shape)
    (2, 128)

    Reference:
        - [Okabe et al., Attentive Statistics Pooling for Deep Speaker
          Embedding, Interspeech 2018](https://arxiv.org/abs/1803.10963)
    """

    def __init__(
        self,
        attention_units=128,
        activation="tanh",
        eps=1e-5,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        context_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.attention_units = _checks.check_positive_int("attention_units", attention_units)
        self.activation = keras.activations.get(activation)
        self.eps = float(_checks.check_positive_real("eps", eps))
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.context_initializer = keras.initializers.get(context_initializer)

    def build(self, input_shape):
        features = _masking.check_frames_shape(self, input_shape)
        _masking.build_frame_attention(self, features, self.attention_units)

    def call(self, inputs, mask=None, lengths=None):
        valid = _masking.valid_frames(inputs, mask, lengths)
        inputs = _masking.zero_invalid(inputs, valid)
        weights = _masking.frame_attention(self, inputs, valid, self.activation)
        weights = ops.expand_dims(weights, -1)
        mean = ops.sum(weights * inputs, axis=1)
        variance = ops.sum(weights * ops.square(inputs - ops.expand_dims(mean, 1)), axis=1)
        return _masking.concat_mean_std(mean, variance, self.eps)

    def compute_mask(self, inputs, mask=None):
        # The time axis is pooled away, so there is nothing left to mask.
        return None

    def compute_output_shape(self, input_shape):
        features = input_shape[-1]
        return (input_shape[0], None if features is None else 2 * features)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "attention_units": self.attention_units,
                "activation": keras.activations.serialize(self.activation),
                "eps": self.eps,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "context_initializer": keras.initializers.serialize(self.context_initializer),
            }
        )
        return config
