import keras
from keras import ops

from keras_spk.layers import _excitation
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class SqueezeExcitation(_excitation.BottleneckGate):
    """Squeeze-and-excitation channel gating for 1-D and 2-D feature maps.

    For a feature map `U` with `C` channels on the last axis:

    ```
    z = mean(U over all axes but batch and channel)     # squeeze, (B, C)
    s = sigmoid(W2 @ relu(W1 @ z + b1) + b2)            # excitation, (B, C)
    out[..., c] = s[c] * U[..., c]                      # channel-wise scale
    ```

    with `W1` of shape `(C, bottleneck)` and `W2` of shape `(bottleneck, C)`
    (Hu et al., eq. 2-4). The bottleneck is `bottleneck_units` if given, else
    `max(1, C // ratio)`.

    With a Keras mask (or `mask=` in the call) of shape `(B, T)` the squeeze
    averages only over valid time steps, so zero padding in a batch of
    utterances of different lengths does not dilute `z`. The mask is passed
    on unchanged.

    Args:
        ratio: positive int, the reduction ratio `r` (`C // r` bottleneck
            units). Ignored if `bottleneck_units` is given. Defaults to `16`
            (the SE paper's default).
        bottleneck_units: positive int or `None` (default), the number of
            units of the squeeze layer, overriding `ratio`.
        use_bias: bool, whether both fully-connected layers have a bias.
            Defaults to `True`.
        kernel_initializer: initializer of both weight matrices.
            Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of both weight matrices.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of rank >= 3, channels last.
        mask: optional bool tensor `(batch_size, time)` marking valid time
            steps (or `(batch_size, time, freq)` marking valid positions of
            a 2-D map).

    Input shape:
        `(batch_size, time, channels)` or `(batch_size, time, freq, channels)`
        (any rank >= 3); `time` (and `freq`) may be `None`, `channels` must
        be known.

    Output shape:
        Same as the input.

    Example:

    >>> x = np.random.normal(size=(2, 100, 64)).astype("float32")
    >>> layer = SqueezeExcitation(ratio=16)  # 64 // 16 = 4 bottleneck units
    >>> keras.ops.convert_to_numpy(layer(x)).shape
    (2, 100, 64)
    >>> layer.count_params()  # 64 * 4 + 4 + 4 * 64 + 64
    580

    Reference:
        - [Hu et al., Squeeze-and-Excitation Networks, CVPR 2018](
          https://arxiv.org/abs/1709.01507)
    """

    def call(self, inputs, mask=None):
        pool_axes = tuple(range(1, len(inputs.shape) - 1))
        if mask is None:
            squeezed = ops.mean(inputs, axis=pool_axes)
        else:
            # Mean over valid positions only.
            weights = ops.cast(mask, inputs.dtype)
            while len(weights.shape) < len(inputs.shape):
                weights = ops.expand_dims(weights, -1)
            # Broadcast to (B, T, ..., 1) so that a (B, T) mask counts every
            # frequency bin of a 2-D map.
            weights = weights * ops.ones_like(inputs[..., :1])
            # Summed in float32 under a mixed policy: float16 sums over many
            # positions overflow, bfloat16 counts are exact only up to 256.
            total = ops.sum(_precision.at_least_float32(inputs * weights), axis=pool_axes)
            count = ops.sum(_precision.at_least_float32(weights), axis=pool_axes)
            # An all-padding row gives z = 0 rather than 0 / 0.
            squeezed = ops.cast(total / ops.maximum(count, 1.0), inputs.dtype)
        gate = self.gate(squeezed)
        gate = ops.reshape(gate, (-1,) + (1,) * len(pool_axes) + (gate.shape[-1],))
        return inputs * gate
