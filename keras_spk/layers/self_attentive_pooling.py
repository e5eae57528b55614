import keras
from keras import ops

from keras_spk.layers import _masking
from keras_spk.utils import _checks
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class SelfAttentivePooling(keras.layers.Layer):
    """Self-attentive pooling (SAP): an attention-weighted mean over time.

    Each frame `x_t` (dimension `D`) gets a hidden representation from a
    one-layer perceptron, its importance is the similarity of that
    representation with a learnable context vector `mu`, and the utterance
    representation is the importance-weighted sum of the frames:

    ```
    h_t = tanh(W x_t + b)                          W: [A, D], b: [A]
    w_t = exp(h_t^T mu) / sum_t' exp(h_t'^T mu)    mu: [A], the context vector
    e   = sum_t w_t x_t
    ```

    This is the SAP layer of Cai et al. (2018), the one the FPM paper (Jung
    et al., 2020, ref. [9] there) uses; the FPM paper itself gives no
    equation for it. The context vector plays the role of a fixed query
    "which frames are informative". Trainable parameters:
    `D * A + A + A` (kernel, bias, context vector).

    Padded frames (Keras mask or beyond `lengths`) get weight exactly 0 and
    the softmax is taken over the valid frames only. A row with no valid
    frame pools to zeros.

    Args:
        attention_units: positive int `A`, the size of the hidden
            representation `h_t`. `None` (default) uses the input feature
            size `D`, as in the authors' implementation.
        kernel_initializer: initializer of `W`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        context_initializer: initializer of `mu`. Defaults to
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
        2D tensor `(batch_size, features)`. No mask is propagated.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(2, 50, 64)).astype("float32")
    >>> tuple(SelfAttentivePooling(attention_units=32)(x).shape)
    (2, 64)

    Reference:
        - [Cai et al., Exploring the Encoding Layer and Loss Function in
          End-to-End Speaker and Language Recognition System, Odyssey 2018](
          https://arxiv.org/abs/1804.05160)
        - [Jung et al., Improving Multi-Scale Aggregation Using Feature
          Pyramid Module for Robust Speaker Verification of Variable-Duration
          Utterances, Interspeech 2020](https://arxiv.org/abs/2004.03194)
    """

    def __init__(
        self,
        attention_units=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        context_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.attention_units = _checks.check_positive_int(
            "attention_units", attention_units, allow_none=True
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.context_initializer = keras.initializers.get(context_initializer)

    def build(self, input_shape):
        features = _masking.check_frames_shape(self, input_shape)
        units = self.attention_units or features
        _masking.build_frame_attention(self, features, units)

    def call(self, inputs, mask=None, lengths=None):
        valid = _masking.valid_frames(inputs, mask, lengths)
        inputs = _masking.zero_invalid(inputs, valid)
        weights = _masking.frame_attention(self, inputs, valid, ops.tanh)
        return ops.sum(inputs * ops.expand_dims(weights, -1), axis=1)

    def compute_mask(self, inputs, mask=None):
        # The time axis is pooled away, so there is nothing left to mask.
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "attention_units": self.attention_units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "context_initializer": keras.initializers.serialize(self.context_initializer),
            }
        )
        return config
