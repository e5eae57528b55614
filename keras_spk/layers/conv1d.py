import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spk")
class Conv1D(keras.layers.Conv1D):
    """Keras's `Conv1D`, with non-overlapping filters computed as a product of frames.

    The same layer as `keras.layers.Conv1D` (arguments, config, weights
    `kernel` `(kernel_size, in_channels, filters)` and `bias`, function up
    to rounding). When the stride equals the filter length (`"valid"`
    padding, no dilation, one group, `"channels_last"`; RawNet's strided
    convolution on raw waveforms), each output frame is a matrix product
    of one non-overlapping frame of `kernel_size` samples:

    ```
    y[t] = [x[k t], ..., x[k t + k - 1], 1] [W; b]
    ```

    computed as a 1-wide convolution over the frames with the bias as one
    more input channel of ones. Under PyTorch on CPU, Keras's convolution
    of one input channel returns its output in channels-last memory, which
    the next convolution copies back to channels-first (and elementwise
    operations mixing the two layouts are slow), and adds the bias in a
    pass of its own; here the output comes in the layout of the other
    convolutions' outputs and with its bias. Other settings run Keras's
    own `call`.

    Args:
        As `keras.layers.Conv1D`.

    Call arguments:
        inputs: float tensor `(batch_size, steps, in_channels)`.

    Input shape:
        3D tensor `(batch_size, steps, in_channels)`.

    Output shape:
        3D tensor `(batch_size, new_steps, filters)`; with non-overlapping
        filters `new_steps = steps // kernel_size` (trailing samples
        dropped).

    Example:

    >>> conv = Conv1D(128, 3, strides=3)
    >>> conv(np.zeros((2, 59049, 1), "float32")).shape
    (2, 19683, 128)
    """

    def call(self, inputs):
        k = self.kernel_size[0]
        if (
            tuple(self.strides) != (k,)
            or self.padding != "valid"
            or tuple(self.dilation_rate) != (1,)
            or self.groups != 1
            or self.data_format != "channels_last"
        ):
            return super().call(inputs)
        shape = ops.shape(inputs)
        channels = inputs.shape[-1]
        frames = shape[1] // k
        x = ops.reshape(inputs[:, : frames * k], (shape[0], frames, k * channels))
        kernel = ops.reshape(self.kernel, (k * channels, self.filters))
        if self.use_bias:
            x = ops.concatenate([x, ops.ones_like(x[:, :, :1])], axis=-1)
            kernel = ops.concatenate([kernel, ops.expand_dims(self.bias, 0)], axis=0)
        outputs = ops.conv(
            x, ops.expand_dims(kernel, 0), strides=1, padding="valid", data_format="channels_last"
        )
        if self.activation is not None:
            return self.activation(outputs)
        return outputs
