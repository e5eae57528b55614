"""The bottleneck gate shared by the squeeze-excitation style blocks.

Private module: `SqueezeExcitation` and `ResidualAttention` both compute a
gate `sigmoid(relu(x W1 + b1) W2 + b2)` over the channel axis, with
`W1: (C, bottleneck)` and `W2: (bottleneck, C)`; they differ only in what
`x` is (the squeezed channel means, or every position of the map) and in
how the gate is applied. `BottleneckGate` owns the arguments, the weights
and the config of that gate, so both blocks validate, build and serialise
it the same way.
"""

import keras
from keras import ops

from keras_spk.utils import _checks
from keras_spk.utils._initializers import fresh_initializer


class BottleneckGate(keras.layers.Layer):
    """Base layer owning the squeeze (`C -> units`) and excite (`units -> C`) projections.

    Subclasses implement `call` with `gate(x)`, which maps `(..., C)` to a
    sigmoid gate of the same shape. Inputs are channels last, rank >= 3;
    every position keeps the Keras mask unchanged.
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
        self.ratio = _checks.check_positive_int("ratio", ratio)
        if bottleneck_units is not None:
            bottleneck_units = _checks.check_positive_int("bottleneck_units", bottleneck_units)
        self.bottleneck_units = bottleneck_units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"`{self.__class__.__name__}` expects inputs of rank >= 3 "
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
            initializer=fresh_initializer(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
        )
        self.excite_kernel = self.add_weight(
            name="excite_kernel",
            shape=(units, channels),
            initializer=fresh_initializer(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.squeeze_bias = self.add_weight(
                name="squeeze_bias", shape=(units,), initializer=self.bias_initializer
            )
            self.excite_bias = self.add_weight(
                name="excite_bias", shape=(channels,), initializer=self.bias_initializer
            )

    def gate(self, x):
        """`sigmoid(relu(x W1 + b1) W2 + b2)` over the last (channel) axis."""
        hidden = ops.matmul(x, self.squeeze_kernel)
        if self.use_bias:
            hidden = hidden + self.squeeze_bias
        gate = ops.matmul(ops.relu(hidden), self.excite_kernel)
        if self.use_bias:
            gate = gate + self.excite_bias
        return ops.sigmoid(gate)

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
