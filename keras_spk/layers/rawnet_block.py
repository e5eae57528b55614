import math
import numbers

import keras
from keras import ops

from keras_spk.layers.batch_normalization import batch_normalize
from keras_spk.layers.batch_normalization import inference_affine
from keras_spk.utils import _checks
from keras_spk.utils._initializers import fresh_initializer


@keras.saving.register_keras_serializable(package="keras_spk")
class RawNetBlock(keras.layers.Layer):
    """RawNet residual block on frame-level raw-waveform features.

    Table 1 of the RawNet paper, in its order (post-activation: BN and
    LeakyReLU follow each convolution; the second LeakyReLU and the max
    pooling come after the residual addition, "under the dotted line"):

    ```
    h   = LeakyReLU(BN_1(Conv_k(x)))
    h   = BN_2(Conv_k(h))
    s   = x                            if C_in == filters
        = BN_s(Conv_1(x))              otherwise
    out = MaxPool_p(LeakyReLU(h + s))
    ```

    `Conv_k` is a stride-1, `"same"`-padded convolution of length
    `kernel_size` (3 in the paper), so the residual sum keeps the time
    length. The paper says only that the input is added "to the output of
    the second BN layer"; the 1x1 convolution shortcut followed by its own BN
    when the channel count changes is the authors' Keras code
    (`residual_block_conv` in github.com/Jungjee/RawNet, RawNet1/Keras).

    LeakyReLU slope: the paper gives no value; its Keras code uses
    `LeakyReLU()` with Keras's default slope 0.3 (the authors' PyTorch port
    names the same choice `lrelu_keras = LeakyReLU(negative_slope=0.3)`), so
    the default here is `negative_slope=0.3`, not PyTorch's 0.01.

    Pooling is non-overlapping and `"valid"` (stride = `pool_size`), so the
    output has `T // pool_size` frames: trailing `T % pool_size` frames are
    dropped, and 1 to `pool_size - 1` frames give an empty
    `(batch_size, 0, filters)` output (0 input frames work under TensorFlow
    only; PyTorch's convolution rejects them). For the paper's
    59,049-sample crops every length is a power of 3 and nothing is dropped.

    The convolutions have biases by default, as in the authors' code (Keras
    default). A bias right before BN is redundant (BN's `beta` absorbs it);
    `use_bias=False` removes `filters` parameters per convolution without
    changing what the block can represent. The block does not add the
    biases but folds them into the normalizations (`batch_normalize`'s
    `bias`): with batch statistics they cancel, so their gradient is
    exactly 0 (the layers' own calls give them rounding noise) and they
    enter the moving means; at inference each normalization's scale also
    folds into its convolution's kernel, leaving one addition after it.

    Args:
        filters: positive int, the number of output channels.
        kernel_size: positive int, length of the two main convolutions.
            Defaults to `3`.
        pool_size: positive int, max-pooling window and stride.
            Defaults to `3`.
        negative_slope: float >= 0, the LeakyReLU slope. Defaults to `0.3`.
        use_bias: bool, whether the convolutions have biases.
            Defaults to `True`.
        batch_norm_momentum: float in `[0, 1)`, momentum of the moving BN
            statistics (Keras convention: `moving = momentum * moving +
            (1 - momentum) * batch`; PyTorch's 0.1 is 0.9 here).
            Defaults to `0.99` (Keras default, as in the authors' code).
        batch_norm_epsilon: positive float added to the BN variance.
            Defaults to `1e-3` (Keras default).
        kernel_initializer: initializer of all convolution kernels.
            Defaults to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer of all convolution kernels
            (the paper uses L2 with weight 1e-4 on all layers).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor `(batch_size, time, channels)`.
        training: bool, whether BN uses batch statistics (and updates its
            moving statistics) or the moving statistics.

    Input shape:
        3D tensor `(batch_size, time, channels)`; `time` may be `None`,
        `channels` must be known.

    Output shape:
        3D tensor `(batch_size, time // pool_size, filters)`.

    Example:

    >>> x = np.random.normal(size=(2, 2188, 128)).astype("float32")
    >>> keras.ops.convert_to_numpy(RawNetBlock(256)(x)).shape  # 2188 // 3
    (2, 729, 256)

    Reference:
        - [Jung et al., RawNet: Advanced end-to-end deep neural network using
          raw waveforms for text-independent speaker verification,
          Interspeech 2019](https://arxiv.org/abs/1904.08104), section 2.1,
          section 4.2 and Table 1.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        pool_size=3,
        negative_slope=0.3,
        use_bias=True,
        batch_norm_momentum=0.99,
        batch_norm_epsilon=1e-3,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _checks.check_positive_int("filters", filters)
        self.kernel_size = _checks.check_positive_int("kernel_size", kernel_size)
        self.pool_size = _checks.check_positive_int("pool_size", pool_size)
        if (
            not isinstance(negative_slope, numbers.Real)
            or isinstance(negative_slope, bool)
            or not math.isfinite(negative_slope)
            or negative_slope < 0
        ):
            raise ValueError(
                "`negative_slope` must be a non-negative number. "
                f"Received: negative_slope={negative_slope!r}"
            )
        self.negative_slope = float(negative_slope)
        self.use_bias = bool(use_bias)
        if (
            not isinstance(batch_norm_momentum, numbers.Real)
            or isinstance(batch_norm_momentum, bool)
            or not 0.0 <= batch_norm_momentum < 1.0
        ):
            raise ValueError(
                "`batch_norm_momentum` must be a number in [0, 1). "
                f"Received: batch_norm_momentum={batch_norm_momentum!r}"
            )
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(
            _checks.check_positive_real("batch_norm_epsilon", batch_norm_epsilon)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _conv(self, kernel_size, name):
        return keras.layers.Conv1D(
            self.filters,
            kernel_size,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.batch_norm_momentum,
            epsilon=self.batch_norm_epsilon,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`RawNetBlock` expects inputs (batch, time, channels) with a "
                f"known channel count. Received: input_shape={input_shape}"
            )
        # Explicit sub-layer names give stable weight paths, so weights can
        # be matched by name between instances (saving, tests).
        self.conv1 = self._conv(self.kernel_size, "conv1")
        self.bn1 = self._batch_norm("bn1")
        self.conv2 = self._conv(self.kernel_size, "conv2")
        self.bn2 = self._batch_norm("bn2")
        hidden_shape = tuple(input_shape[:-1]) + (self.filters,)
        self.conv1.build(input_shape)
        self.bn1.build(hidden_shape)
        self.conv2.build(hidden_shape)
        self.bn2.build(hidden_shape)
        self.has_projection = input_shape[-1] != self.filters
        if self.has_projection:
            self.shortcut_conv = self._conv(1, "shortcut_conv")
            self.shortcut_bn = self._batch_norm("shortcut_bn")
            self.shortcut_conv.build(input_shape)
            self.shortcut_bn.build(hidden_shape)

    def call(self, inputs, training=None):
        x = self._conv_bn(self.conv1, self.bn1, inputs, training)
        x = ops.leaky_relu(x, negative_slope=self.negative_slope)
        x = self._conv_bn(self.conv2, self.bn2, x, training)
        shortcut = inputs
        if self.has_projection:
            shortcut = self._conv_bn(self.shortcut_conv, self.shortcut_bn, inputs, training)
        x = ops.leaky_relu(x + shortcut, negative_slope=self.negative_slope)
        return self._max_pool(x)

    def _conv_bn(self, conv, bn, x, training):
        """`bn(conv(x))`, with fewer passes over the frames than the two layers' calls.

        The convolution's bias is not added but folded into the
        normalization (`batch_normalize`'s `bias`); at inference the
        normalization is an affine map per channel, whose scale also folds
        into the kernel, leaving one addition after the convolution.
        Same outputs up to rounding.
        """
        if training and bn.trainable:
            return batch_normalize(bn, self._convolve(conv, x, conv.kernel), True, bias=conv.bias)
        scale, shift = inference_affine(bn, bias=conv.bias)
        kernel = conv.kernel
        x = self._convolve(conv, x, kernel * ops.cast(scale, kernel.dtype))
        return ops.cast(x + ops.cast(shift, x.dtype), bn.compute_dtype)

    @staticmethod
    def _convolve(conv, x, kernel):
        return ops.conv(
            x,
            kernel,
            strides=conv.strides,
            padding=conv.padding,
            data_format=conv.data_format,
            dilation_rate=conv.dilation_rate,
        )

    def _max_pool(self, x):
        """`"valid"` non-overlapping max pooling; fewer than `pool_size` frames give 0 frames.

        `ops.max_pool` (one pass, about 7x faster with its gradient than a
        reshape and elementwise maxima) fails on 1 to `pool_size - 1`
        frames on both backends, so those give an empty slice instead.
        """
        frames = ops.shape(x)[1]

        def pool():
            return ops.max_pool(x, self.pool_size, self.pool_size, data_format="channels_last")

        if isinstance(frames, int):  # eager, or a graph traced for a known length
            return pool() if frames >= self.pool_size else x[:, :0]
        return ops.cond(frames >= self.pool_size, pool, lambda: x[:, :0])

    def compute_output_shape(self, input_shape):
        time = input_shape[1]
        if time is not None:
            time = time // self.pool_size
        return (input_shape[0], time, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "pool_size": self.pool_size,
                "negative_slope": self.negative_slope,
                "use_bias": self.use_bias,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
