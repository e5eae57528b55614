import keras
from keras import ops

from keras_spk.layers import _framing


@keras.saving.register_keras_serializable(package="keras_spk")
class ResidualAttention(keras.layers.Layer):
    """Residual spatial-channel attention of the multi-metric SV network.

    The "SE block" of Xu et al. (2020): squeeze and excitation with 1x1
    convolutions and no global pooling, so the attention map keeps the
    spatial (time x frequency) resolution, added back residually:

    ```
    M   = sigmoid(Conv1x1_e(relu(Conv1x1_s(F_i))))      # eq. 6
    F_o = F_i * M + F_i                                  # eq. 7
    ```

    `Conv1x1_s` maps `C -> bottleneck` channels (squeeze) and `Conv1x1_e`
    maps `bottleneck -> C` (excitation), so `M` has the shape of `F_i`. A
    1x1 convolution is a matrix product over the channel axis at every
    position, which is how it is computed here; the same layer therefore
    works on 1-D `(B, T, C)` and 2-D `(B, T, F, C)` maps.

    The paper does not state the squeeze width. The default reduction ratio
    16 (`bottleneck = max(1, C // 16)`) is the SENet default (Hu et al.),
    whose block this one modifies.

    Every position is processed independently, so a Keras mask is passed
    through unchanged and padding does not affect valid positions.

    Args:
        ratio: positive int, the reduction ratio of the squeeze convolution
            (`C // ratio` channels). Ignored if `bottleneck_units` is given.
            Defaults to `16`.
        bottleneck_units: positive int or `None` (default), the number of
            channels of the squeeze convolution, overriding `ratio`.
        use_bias: bool, whether both 1x1 convolutions have a bias.
            Defaults to `True`.
        kernel_initializer: initializer of both kernels.
            Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of both kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of rank >= 3, channels last.

    Input shape:
        `(batch_size, time, freq, channels)` or `(batch_size, time,
        channels)`; spatial axes may be `None`, `channels` must be known.

    Output shape:
        Same as the input.

    Example:

    >>> x = np.random.normal(size=(2, 30, 20, 64)).astype("float32")
    >>> layer = ResidualAttention()  # 1x1 convs 64 -> 4 -> 64 channels
    >>> keras.ops.convert_to_numpy(layer(x)).shape
    (2, 30, 20, 64)

    Reference:
        - Xu, Wang, Feng and Liu, Deep multi-metric learning for
          text-independent speaker verification, Neurocomputing 2020,
          section 3.2, eq. 6-7 (code: https://github.com/GreatJiweix/DamITiSV).
    """

    def __init__(
        self,
        ratio=16,
        bottleneck_units=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ratio = _framing.check_positive_int("ratio", ratio)
        if bottleneck_units is not None:
            bottleneck_units = _framing.check_positive_int("bottleneck_units", bottleneck_units)
        self.bottleneck_units = bottleneck_units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                "`ResidualAttention` expects inputs of rank >= 3 "
                f"(batch, time, ..., channels). Received: input_shape={input_shape}"
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                "The channel axis (last) of the input must be known. "
                f"Received: input_shape={input_shape}"
            )
        units = self.bottleneck_units or max(1, channels // self.ratio)
        self.squeeze_kernel = self.add_weight(
            name="squeeze_kernel",
            shape=(channels, units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.excite_kernel = self.add_weight(
            name="excite_kernel",
            shape=(units, channels),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.squeeze_bias = self.add_weight(
                name="squeeze_bias", shape=(units,), initializer=self.bias_initializer
            )
            self.excite_bias = self.add_weight(
                name="excite_bias", shape=(channels,), initializer=self.bias_initializer
            )

    def call(self, inputs):
        hidden = ops.matmul(inputs, self.squeeze_kernel)
        if self.use_bias:
            hidden = hidden + self.squeeze_bias
        attention = ops.matmul(ops.relu(hidden), self.excite_kernel)
        if self.use_bias:
            attention = attention + self.excite_bias
        attention = ops.sigmoid(attention)
        return inputs * attention + inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ratio": self.ratio,
                "bottleneck_units": self.bottleneck_units,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
