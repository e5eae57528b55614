import keras
from keras import ops

from keras_spk.utils import _checks

ATTENDS = ("v1", "own")


def _check_views_shape(layer, input_shape):
    """The common channel count of a list of `(batch, ..., C)` shapes."""
    is_list = isinstance(input_shape, (list, tuple)) and input_shape and all(
        isinstance(shape, (list, tuple)) for shape in input_shape
    )
    channels = {shape[-1] for shape in input_shape if len(shape) >= 2} if is_list else set()
    if (
        not is_list
        or any(len(shape) < 2 for shape in input_shape)
        or len({len(shape) for shape in input_shape}) != 1
        or len(channels) != 1
        or None in channels
    ):
        raise ValueError(
            f"{layer.__class__.__name__} expects a list [V_1, ..., V_K] of tensors "
            "(batch_size, ..., channels) of one rank >= 2 and one known channel count "
            f"(ChannelExchange's output). Received: input_shape={input_shape}"
        )
    return int(channels.pop())


@keras.saving.register_keras_serializable(package="keras_spk")
class SpectralAttention(keras.layers.Layer):
    """MIRNet's spectral attention, shared by the K speakers of a mixture.

    Given the channel-exchanged views `V_1, ..., V_K` of the speech
    encoder's output (`ChannelExchange`), each frame `t` of view `k` gets a
    scalar weight, and a fully-connected layer maps the weighted embedding
    to speaker `k`'s spectral representation:

    ```
    W_k[t] = sigmoid(fc2(tanh(fc1(V_k[t]))))        fc1: C -> units, fc2: units -> 1
    Z_k[t] = act(FC(W_k[t] * V_1[t]))               attend="v1"  (the paper's text)
    Z_k[t] = act(FC(W_k[t] * V_k[t]))               attend="own"
                                                    FC: C -> output_dim
    ```

    The same `fc1`, `fc2` and `FC` serve every speaker: speaker `k` differs
    only by the order of the blocks in `V_k`. The text says twice that
    both attention vectors multiply `V_1` ("They are each multiplied with
    the spectral embedding V_1", section 3.2), which is the default; the
    weights then only rescale frames of one shared embedding, and
    `attend="own"` multiplies each speaker's own view instead. As `W_k[t]`
    is a scalar, `FC(W_k[t] V_1[t]) = W_k[t] (V_1[t] K) + b`, which is how
    `"v1"` is computed (one product with the `C x output_dim` kernel
    instead of K).

    Trainable parameters: `C * units + units` (fc1), `units + 1` (fc2),
    `C * output_dim + output_dim` (FC); for MIRNet (C = 514, 64 units,
    257 outputs): 32,960 + 65 + 132,355. Weights, in order:
    `attention_kernel (C, units)`, `attention_bias (units,)`,
    `score_kernel (units, 1)`, `score_bias (1,)`,
    `output_kernel (C, output_dim)`, `output_bias (output_dim,)`.

    Every frame is processed alone, so Keras masks pass through.

    Args:
        units: positive int, the width of `fc1`. Defaults to `64` (Table 1).
        output_dim: positive int, the width of `FC`, i.e. of each `Z_k`.
            Defaults to `257` (the spectrum's bins, section 4.1.1).
        attend: `"v1"` (default) or `"own"`, the embedding each `W_k`
            multiplies, see above.
        activation: the activation `act` after `FC`: a Keras activation
            name or function, `None` for none. The paper only calls it
            "non-linear"; defaults to `"leaky_relu"` (slope 0.2, as the
            encoder's).
        kernel_initializer: initializer of the three kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the three biases. Defaults to
            `"zeros"`.
        kernel_regularizer: optional regularizer of the three kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[V_1, ..., V_K]` of float tensors of one shape,
            `V_1` first (as `ChannelExchange` returns them). `K = 1` is
            allowed (one view, plain frame attention).
        return_attention_scores: bool, also return the weights `W_k`.
            Defaults to `False`.

    Input shape:
        A list of `K` tensors `(batch_size, time, C)` (any rank >= 2; `C`
        known).

    Output shape:
        A list of `K` tensors `(batch_size, time, output_dim)`; with
        `return_attention_scores`, a tuple `(outputs, scores)` where
        `scores` is a list of `K` tensors `(batch_size, time, 1)`.

    Example:

    >>> v1 = np.random.normal(size=(2, 297, 514)).astype("float32")
    >>> views = ChannelExchange(2)(v1)
    >>> z, w = SpectralAttention()(views, return_attention_scores=True)
    >>> [tuple(t.shape) for t in z + w]
    [(2, 297, 257), (2, 297, 257), (2, 297, 1), (2, 297, 1)]

    Reference:
        - Han, Chung and Kang, MIRNet: Learning multiple identities
          representations in overlapped speech, Interspeech 2020, section
          3.2 and Table 1
    """

    def __init__(
        self,
        units=64,
        output_dim=257,
        attend="v1",
        activation="leaky_relu",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _checks.check_positive_int("units", units)
        self.output_dim = _checks.check_positive_int("output_dim", output_dim)
        self.attend = _checks.check_choice("attend", attend, ATTENDS)
        try:
            self.activation = keras.activations.get(activation)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "`activation` must be None, a Keras activation name or a callable. "
                f"Received: activation={activation!r}"
            ) from error
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = True

    def build(self, input_shape):
        channels = _check_views_shape(self, input_shape)
        kernel = {
            "initializer": self.kernel_initializer,
            "regularizer": self.kernel_regularizer,
        }
        self.attention_kernel = self.add_weight(
            shape=(channels, self.units), name="attention_kernel", **kernel
        )
        self.attention_bias = self.add_weight(
            shape=(self.units,), name="attention_bias", initializer=self.bias_initializer
        )
        self.score_kernel = self.add_weight(shape=(self.units, 1), name="score_kernel", **kernel)
        self.score_bias = self.add_weight(
            shape=(1,), name="score_bias", initializer=self.bias_initializer
        )
        self.output_kernel = self.add_weight(
            shape=(channels, self.output_dim), name="output_kernel", **kernel
        )
        self.output_bias = self.add_weight(
            shape=(self.output_dim,), name="output_bias", initializer=self.bias_initializer
        )

    def attention_weights(self, view):
        """`W = sigmoid(fc2(tanh(fc1(view))))`, shape `(..., 1)`, one weight per frame."""
        hidden = ops.tanh(ops.matmul(view, self.attention_kernel) + self.attention_bias)
        return ops.sigmoid(ops.matmul(hidden, self.score_kernel) + self.score_bias)

    def _output(self, projected):
        return self.activation(projected + self.output_bias)

    def call(self, inputs, return_attention_scores=False):
        views = list(inputs)
        scores = [self.attention_weights(view) for view in views]
        if self.attend == "v1":
            projected = ops.matmul(views[0], self.output_kernel)
            outputs = [self._output(w * projected) for w in scores]
        else:
            outputs = [
                self._output(ops.matmul(w * view, self.output_kernel))
                for w, view in zip(scores, views)
            ]
        if return_attention_scores:
            return outputs, scores
        return outputs

    def compute_mask(self, inputs, mask=None):
        if mask is None or all(m is None for m in mask):
            return None
        return list(mask)

    def compute_output_shape(self, input_shape):
        _check_views_shape(self, input_shape)
        return [tuple(shape[:-1]) + (self.output_dim,) for shape in input_shape]

    def compute_output_spec(self, inputs, return_attention_scores=False):
        shapes = [tuple(view.shape) for view in inputs]
        outputs = [
            keras.KerasTensor(shape, dtype=self.compute_dtype)
            for shape in self.compute_output_shape(shapes)
        ]
        if not return_attention_scores:
            return outputs
        scores = [
            keras.KerasTensor(shape[:-1] + (1,), dtype=self.compute_dtype) for shape in shapes
        ]
        return outputs, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "output_dim": self.output_dim,
                "attend": self.attend,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
