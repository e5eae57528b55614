import keras
from keras import ops

from keras_spk.layers import _masking
from keras_spk.utils import _checks
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class LearnableDictionaryEncoding(keras.layers.Layer):
    """Learnable dictionary encoding (LDE): soft-assigned residuals to codewords.

    Learns `C` codewords `mu_c` (dimension `D`, like the frames) and one
    smoothing factor `s_c` per codeword. Each frame `x_t` is softly assigned
    to the codewords, and each codeword accumulates the assignment-weighted
    mean of its residuals `x_t - mu_c`:

    ```
    w_tc = exp(-s_c ||x_t - mu_c||^2) / sum_c' exp(-s_c' ||x_t - mu_c'||^2)
    e_c  = sum_t w_tc (x_t - mu_c) / sum_t w_tc
    e    = concat([e_1, ..., e_C])                   (length C * D)
    ```

    This is the LDE layer of Cai et al. (2018), which the FPM paper (Jung et
    al., 2020, ref. [9] there; 64 codewords) uses; unlike the Deep-TEN
    encoding layer it normalises each `e_c` by the total assignment weight
    `sum_t w_tc`, which makes it independent of the utterance length.

    How it is computed: `||x - mu||^2` is expanded as
    `||x||^2 - 2 x.mu + ||mu||^2` (floored at 0 against rounding), so no
    `[batch, time, C, D]` tensor is formed; and the normalised weights
    `w_tc / sum_t w_tc` are a softmax over time of `log w_tc` (a log-softmax
    over codewords), so a codeword far from every frame still gets weights
    summing to 1 instead of `0 / 0`. Then `e_c = sum_t a_tc x_t - mu_c`.

    Smoothing factors start at 1, as in the authors' implementation, and
    are used as they are in the formula (no reparametrisation), kept
    non-negative by a `NonNeg` constraint that projects them after every
    optimizer step (a negative `s_c` would make the assignment favour far
    codewords). Pass `smoothing_constraint=None` for the unconstrained
    original. Trainable parameters: `C * D + C`.

    Padded frames (Keras mask or beyond `lengths`) get weight exactly 0. A
    row with no valid frame encodes to zeros.

    Args:
        num_codewords: positive int `C`, the dictionary size. Defaults to
            `64`.
        codeword_initializer: initializer of the `[C, D]` codewords.
            Defaults to uniform on `[-1, 1]`, as in the authors'
            implementation.
        smoothing_initializer: initializer of the `[C]` smoothing factors.
            Defaults to `"ones"`.
        smoothing_constraint: constraint on the smoothing factors. Defaults
            to `"non_neg"`.
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
        2D tensor `(batch_size, num_codewords * features)`, codeword-major
        (`e_1` first). No mask is propagated.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(2, 50, 64)).astype("float32")
    >>> tuple(LearnableDictionaryEncoding(num_codewords=8)(x).shape)
    (2, 512)

    Reference:
        - [Cai et al., Exploring the Encoding Layer and Loss Function in
          End-to-End Speaker and Language Recognition System, Odyssey 2018](
          https://arxiv.org/abs/1804.05160)
        - [Cai et al., A Novel Learnable Dictionary Encoding Layer for
          End-to-End Language Identification, ICASSP 2018](
          https://arxiv.org/abs/1804.00385)
        - [Jung et al., Improving Multi-Scale Aggregation Using Feature
          Pyramid Module for Robust Speaker Verification of Variable-Duration
          Utterances, Interspeech 2020](https://arxiv.org/abs/2004.03194)
    """

    def __init__(
        self,
        num_codewords=64,
        codeword_initializer=None,
        smoothing_initializer="ones",
        smoothing_constraint="non_neg",
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.num_codewords = _checks.check_positive_int("num_codewords", num_codewords)
        if codeword_initializer is None:
            codeword_initializer = keras.initializers.RandomUniform(-1.0, 1.0)
        self.codeword_initializer = keras.initializers.get(codeword_initializer)
        self.smoothing_initializer = keras.initializers.get(smoothing_initializer)
        self.smoothing_constraint = keras.constraints.get(smoothing_constraint)

    def build(self, input_shape):
        features = _masking.check_frames_shape(self, input_shape)
        self.codewords = self.add_weight(
            name="codewords",
            shape=(self.num_codewords, features),
            initializer=self.codeword_initializer,
        )
        self.smoothing_factors = self.add_weight(
            name="smoothing_factors",
            shape=(self.num_codewords,),
            initializer=self.smoothing_initializer,
            constraint=self.smoothing_constraint,
        )

    def call(self, inputs, mask=None, lengths=None):
        valid = _masking.valid_frames(inputs, mask, lengths)
        inputs = _masking.zero_invalid(inputs, valid)
        codewords = ops.cast(self.codewords, inputs.dtype)
        smoothing = ops.cast(self.smoothing_factors, inputs.dtype)
        # ||x_t - mu_c||^2 = ||x_t||^2 - 2 x_t . mu_c + ||mu_c||^2, [batch, time, C].
        distances = (
            ops.sum(ops.square(inputs), axis=-1, keepdims=True)
            - 2.0 * ops.matmul(inputs, ops.transpose(codewords))
            + ops.sum(ops.square(codewords), axis=-1)
        )
        distances = ops.maximum(distances, ops.zeros_like(distances))
        log_assignments = ops.log_softmax(-smoothing * distances, axis=-1)
        # a_tc = w_tc / sum_t w_tc, a softmax over (valid) time of log w_tc.
        weights = _masking.masked_softmax_over_time(log_assignments, valid)
        weighted_frames = ops.matmul(ops.transpose(weights, (0, 2, 1)), inputs)
        # sum_t a_tc is 1 for rows with a valid frame and 0 for all-padded
        # rows, whose encoding is then 0 rather than -mu_c.
        total = ops.expand_dims(ops.sum(weights, axis=1), -1)
        encoded = weighted_frames - total * codewords  # [batch, C, D]
        return ops.reshape(encoded, (-1, self.num_codewords * self.codewords.shape[-1]))

    def compute_mask(self, inputs, mask=None):
        # The time axis is pooled away, so there is nothing left to mask.
        return None

    def compute_output_shape(self, input_shape):
        features = input_shape[-1]
        return (input_shape[0], None if features is None else self.num_codewords * features)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_codewords": self.num_codewords,
                "codeword_initializer": keras.initializers.serialize(self.codeword_initializer),
                "smoothing_initializer": keras.initializers.serialize(self.smoothing_initializer),
                "smoothing_constraint": keras.constraints.serialize(self.smoothing_constraint),
            }
        )
        return config
