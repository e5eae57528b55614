import keras

from keras_spk.layers import _excitation


@keras.saving.register_keras_serializable(package="keras_spk")
class ResidualAttention(_excitation.BottleneckGate):
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

    def call(self, inputs):
        return inputs * self.gate(inputs) + inputs
