import keras
from keras import ops

from keras_spk.layers import _heads
from keras_spk.losses import _pairwise
from keras_spk.utils import _checks
from keras_spk.utils import _precision

VARIANTS = ("softmax", "sigmoid")
# w is clamped here inside the scores: Wan et al. require w > 0.
_MIN_W = 1e-6


def _check_variant(variant):
    return _checks.check_choice("variant", variant, VARIANTS)


def ge2e_similarity(labels, embeddings, w=10.0, b=-5.0):
    """Scaled cosine similarity of every utterance to every speaker centroid.

    ```
    e_i        = embeddings[i] / ||embeddings[i]||
    c_k        = mean of e_j over the rows j of speaker k           (eq. 7)
    c_k^(-i)   = mean of e_j over the rows j != i of speaker k
    S[i, j]    = w * cos(e_i, c_{y_j}^(-i)) + b   if y_j == y_i        (eq. 6)
                 w * cos(e_i, c_{y_j}) + b        otherwise
    ```

    The centroid of the utterance's own speaker leaves the utterance out, as
    in Wan et al. 2018 (eq. 7 of Heo et al. averages all `M_k` utterances),
    which makes training stable and avoids the trivial solution. Column
    `j` stands for the centroid of the speaker of row `j`, so a speaker with
    `n` rows appears in `n` identical columns; this lets the batch hold any
    number of speakers in any order, read from the labels, with no fixed
    N x M layout. `w` is clamped to at least 1e-6 (Wan et al.: `w > 0`).

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        w: positive scale (float or scalar tensor, e.g. a variable).
        b: offset (float or scalar tensor).

    Returns:
        float tensor `[batch, batch]`.
    """
    embeddings = _pairwise.check_embeddings(embeddings, "ge2e_similarity")
    labels = _pairwise.flat_labels(labels)
    unit = _pairwise.l2_normalize(embeddings)
    same = _pairwise.same_label_mask(labels)
    same_f = ops.cast(same, unit.dtype)
    counts = ops.sum(same_f, axis=1, keepdims=True)  # n_{y_i}
    speaker_sums = ops.matmul(same_f, unit)  # row i: sum over the rows of speaker y_i
    centroids = _pairwise.l2_normalize(speaker_sums / counts)
    # A single-utterance speaker has no exclusive centroid: it stays 0 and
    # the loss drops that row (see ge2e_loss).
    exclusive = _pairwise.l2_normalize((speaker_sums - unit) / ops.maximum(counts - 1.0, 1.0))
    cosine = ops.matmul(unit, ops.transpose(centroids))  # [i, j] = cos(e_i, c_{y_j})
    own = ops.sum(unit * exclusive, axis=1, keepdims=True)  # cos(e_i, c_{y_i}^(-i))
    cosine = ops.where(same, ops.broadcast_to(own, ops.shape(cosine)), cosine)
    w = ops.maximum(ops.cast(w, unit.dtype), _MIN_W)
    return w * cosine + ops.cast(b, unit.dtype)


def ge2e_loss(labels, embeddings, w=10.0, b=-5.0, variant="softmax"):
    """Per-utterance generalized end-to-end loss (Wan et al. 2018; Heo et al. 2019, eq. 6-8).

    With `S` from `ge2e_similarity` (`S[i, k]`: utterance `i` against
    speaker `k`'s centroid, own speaker `y_i` leaving `i` out):

    ```
    softmax:  L(e_i) = -S[i, y_i] + log sum_k exp(S[i, k])
    sigmoid:  L(e_i) = 1 - sigmoid(S[i, y_i]) + max_{k != y_i} sigmoid(S[i, k])
    ```

    `k` runs over the distinct speakers of the batch; the sigmoid
    ("contrast") form is eq. 8 of Heo et al. Rows whose speaker has only one
    utterance in the batch have no positive centroid and give 0; with a
    single speaker in the batch the softmax loss is 0 and the sigmoid loss
    has no negative term.

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        w: positive scale (float or scalar tensor). Defaults to `10.0`.
        b: offset (float or scalar tensor). Defaults to `-5.0`.
        variant: `"softmax"` or `"sigmoid"`.

    Returns:
        float tensor `[batch]`, the loss of each utterance.
    """
    _check_variant(variant)
    labels = _pairwise.flat_labels(labels)
    return _loss_from_scores(labels, ge2e_similarity(labels, embeddings, w=w, b=b), variant)


def _loss_from_scores(labels, scores, variant):
    same = _pairwise.same_label_mask(labels)
    counts = ops.sum(ops.cast(same, scores.dtype), axis=1)
    positive = ops.diagonal(scores)  # S[i, y_i]
    if variant == "softmax":
        # Each speaker fills n_k columns: weighting them 1 / n_k makes the
        # sum run over speakers, log sum_j exp(S[i, j]) / n_{y_j}.
        log_weights = -ops.log(counts)
        losses = ops.logsumexp(scores + ops.expand_dims(log_weights, 0), axis=1) - positive
    else:
        hardest = _pairwise.masked_max(scores, ops.logical_not(same))
        losses = 1.0 - ops.sigmoid(positive) + ops.sigmoid(hardest)
    return losses * ops.cast(ops.greater(counts, 1.0), scores.dtype)


def _check_positive(name, value):
    if not _checks.is_real(value) or not 0 < value < float("inf"):
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_spk")
class GE2ELoss(keras.losses.Loss):
    """Generalized end-to-end loss with a fixed scale (Wan et al. 2018; Heo et al. 2019).

    ```
    S[ji, k] = w * cos(e_ji, c_k) + b                         (eq. 6)
    c_k      = (1 / M_k) sum_i e_ki, leaving e_ji out for k = j  (eq. 7)
    softmax: L(e_ji) = -S[ji, j] + log sum_k exp(S[ji, k])
    sigmoid: L(e_ji) = 1 - sigma(S[ji, j]) + max_{k != j} sigma(S[ji, k])  (eq. 8)
    ```

    A `keras.losses.Loss` owns no variables, so here `w` and `b` are fixed
    numbers. To learn them, as in the paper, put a `GE2EHead` (same file)
    on the embeddings of the training model: it owns `w` and `b` and adds
    this same loss with `add_loss`. Speakers and their utterances are read
    from the labels: the P speakers x K utterances batch may come in any row
    order and K may differ per speaker, but each speaker needs at least two
    utterances in the batch (a row whose speaker has one gives 0).
    Per-utterance losses are averaged over the batch (Wan et al. sum them;
    the difference is the constant batch size).

    Args:
        w: positive float, the similarity scale. Defaults to `10.0`.
        b: float, the similarity offset. Defaults to `-5.0`.
        variant: `"softmax"` (Wan et al.) or `"sigmoid"` (the "contrast"
            form, eq. 8 of Heo et al.). Defaults to `"softmax"`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: integer speaker labels, `[batch]` or `[batch, 1]`.
        y_pred: embeddings, `[batch, dim]` (normalised inside).

    Example:

    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1., 0.1], [1., -0.1], [0.1, 1.], [-0.1, 1.]])
    >>> loss = GE2ELoss(variant="sigmoid")(labels, embeddings)

    Reference:
        - [Wan et al., Generalized end-to-end loss for speaker verification,
          ICASSP 2018](https://arxiv.org/abs/1710.10467)
        - Heo et al., End-to-end losses based on speaker basis vectors and
          all-speaker hard negative mining for speaker verification,
          Interspeech 2019, section 2.4
    """

    def __init__(
        self,
        w=10.0,
        b=-5.0,
        variant="softmax",
        reduction="sum_over_batch_size",
        name="ge2e_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.w = _check_positive("w", w)
        self.b = _checks.check_finite_real("b", b)
        self.variant = _check_variant(variant)

    def call(self, y_true, y_pred):
        return ge2e_loss(y_true, y_pred, w=self.w, b=self.b, variant=self.variant)

    def get_config(self):
        config = super().get_config()
        config.update({"w": self.w, "b": self.b, "variant": self.variant})
        return config


@keras.saving.register_keras_serializable(package="keras_spk")
class GE2EHead(_heads.LossTerms, keras.layers.Layer):
    """Learnable GE2E scoring: owns `w > 0` and `b` and adds the GE2E loss.

    ```
    S[i, j] = w * cos(e_i, c_{y_j}) + b     (own speaker: c_{y_i} without e_i)
    ```

    Returns the scaled similarity matrix `S` of `ge2e_similarity` (column
    `j` is the centroid of the speaker of row `j`) and adds the batch mean
    of `ge2e_loss` (the same loss as `GE2ELoss`, with the learned `w`, `b`)
    through `add_loss`, so a model ending in this head is compiled with
    `loss=None`. As with the package's other heads the loss is added on
    every call, training or not (the labels are always there), so
    `evaluate` and validation report it too. The paper's learnable
    scale needs variables, which a `keras.losses.Loss` cannot own: that is
    why the loss is split into this layer and the fixed-scale `GE2ELoss`.
    `w` carries a non-negative constraint and is clamped to at least 1e-6
    when used. The loss is added times `loss_weight` and logged, as added,
    as the metric `<name>_loss` (`ge2e_head_loss` by default).

    Args:
        init_w: positive float, initial `w`. Defaults to `10.0` (Wan et al.).
        init_b: float, initial `b`. Defaults to `-5.0` (Wan et al.).
        variant: `"softmax"` or `"sigmoid"`. Defaults to `"softmax"`.
        loss_weight: non-negative float multiplying the added loss; 0 adds
            nothing. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: list `[embeddings, labels]`.
        training: unused (no train/inference difference).

    Input shape:
        embeddings `(batch_size, dim)`, labels `(batch_size,)` integers.

    Output shape:
        `(batch_size, batch_size)`.

    Example:

    >>> embeddings = keras.Input((256,))
    >>> labels = keras.Input((), dtype="int32")
    >>> scores = GE2EHead()([embeddings, labels])
    >>> model = keras.Model([embeddings, labels], scores)
    >>> model.compile(optimizer="sgd", loss=None)

    Reference:
        - [Wan et al., Generalized end-to-end loss for speaker verification,
          ICASSP 2018](https://arxiv.org/abs/1710.10467)
        - Heo et al., Interspeech 2019, eq. 6-8
    """

    def __init__(self, init_w=10.0, init_b=-5.0, variant="softmax", loss_weight=1.0, **kwargs):
        super().__init__(**_precision.float32_policy(kwargs))
        self.init_w = _check_positive("init_w", init_w)
        self.init_b = _checks.check_finite_real("init_b", init_b)
        self.variant = _check_variant(variant)
        self.loss_weight = _heads.check_real("loss_weight", loss_weight, minimum=0.0)
        self.track_loss_terms()

    def build(self, input_shape):
        self._check_inputs_shape(input_shape)
        self.w = self.add_weight(
            name="w",
            shape=(),
            initializer=keras.initializers.Constant(self.init_w),
            constraint=keras.constraints.NonNeg(),
        )
        self.b = self.add_weight(
            name="b", shape=(), initializer=keras.initializers.Constant(self.init_b)
        )

    def _check_inputs_shape(self, input_shape):
        pair = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
        if not pair or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ValueError(
                "GE2EHead expects inputs [embeddings, labels]. "
                f"Received: input_shape={input_shape}"
            )
        if len(input_shape[0]) != 2:
            raise ValueError(
                "GE2EHead expects embeddings of shape (batch, dim). "
                f"Received: input_shape={input_shape}"
            )

    def call(self, inputs, training=None):
        embeddings, labels = inputs
        # Cosines and the logsumexp in float32 also under mixed precision.
        embeddings = ops.cast(embeddings, "float32")
        labels = _pairwise.flat_labels(labels)
        scores = ge2e_similarity(labels, embeddings, w=self.w, b=self.b)
        loss = ops.mean(_loss_from_scores(labels, scores, self.variant))
        self.add_weighted_loss(loss, embeddings, self.loss_weight)
        return ops.cast(scores, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return (batch, batch)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "init_w": self.init_w,
                "init_b": self.init_b,
                "variant": self.variant,
                "loss_weight": self.loss_weight,
            }
        )
        return config
