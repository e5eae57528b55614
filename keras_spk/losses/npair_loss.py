import keras
from keras import ops

from keras_spk.losses import _pairwise
from keras_spk.utils import _checks


def _occurrence_index(labels):
    """`[batch]` int: how many earlier rows of the batch share the row's label."""
    same = _pairwise.same_label_mask(labels)
    index = ops.arange(ops.shape(labels)[0])
    earlier = ops.less(ops.expand_dims(index, 0), ops.expand_dims(index, 1))  # j < i
    return ops.sum(ops.cast(ops.logical_and(same, earlier), "int32"), axis=1)


def npair_tuplets(labels):
    """Which rows form each anchor's (N+1)-tuplet in a P x K batch.

    The `k`-th utterance (in batch order) of every speaker forms view `k`.
    The anchor `i`, in view `r_i`, is paired with view `r_i + 1`: its
    positive is the next utterance of its own speaker and its negatives are
    the utterances of the other speakers in that view (cyclically, modulo
    each speaker's number of utterances `n_j`):

    ```
    selected[i, j] = (r_j == (r_i + 1) mod n_j)
    ```

    With K = 2 this is eq. 10 applied to (anchors = first utterances,
    positives = second utterances) and again with the roles swapped.

    Returns:
        (positive, negative, has_positive): `[batch, batch]` bool masks of
        the anchor's positive (one per row, none for a speaker with a single
        utterance) and negatives, and the `[batch]` bool of rows that have a
        positive.
    """
    same = _pairwise.same_label_mask(labels)
    counts = ops.sum(ops.cast(same, "int32"), axis=1)  # n_i
    occurrence = _occurrence_index(labels)  # r_i
    target = ops.mod(ops.expand_dims(occurrence, 1) + 1, ops.expand_dims(counts, 0))
    selected = ops.equal(ops.expand_dims(occurrence, 0), target)
    not_self = ops.logical_not(_pairwise.eye_like(same))
    positive = ops.logical_and(ops.logical_and(selected, same), not_self)
    negative = ops.logical_and(selected, ops.logical_not(same))
    return positive, negative, ops.any(positive, axis=1)


def npair_loss(labels, embeddings, l2_reg=0.002):
    """Per-anchor multi-class N-pair loss (Xu et al. 2020, eq. 9-10; Sohn 2016).

    ```
    L_n-pair = sum_i log(1 + sum_{j != i} exp(f_i^T f_j^+ - f_i^T f_i^+))
               + l2_reg * ||f_i||^2
    ```

    The anchors `f_i`, positives `f_i^+` and the other speakers' positives
    `f_j^+` come from the P speakers x K utterances batch by label (see
    `npair_tuplets`): every row is an anchor, compared with the next
    utterance of each speaker. Rows of a speaker with a single utterance have
    no positive; they add only the `l2_reg` term (and serve as negatives).
    The inner products are not normalised: Sohn regularises the embedding
    norms with `l2_reg` instead.

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        l2_reg: non-negative float, weight of the squared-norm penalty.
            Defaults to `0.002` (Sohn 2016).

    Returns:
        float tensor `[batch]`, the loss of each anchor.
    """
    l2_reg = _checks.check_non_negative_real("l2_reg", l2_reg)
    embeddings = _pairwise.check_embeddings(embeddings, "npair_loss")
    labels = _pairwise.flat_labels(labels)
    positive, negative, has_positive = npair_tuplets(labels)
    similarity = ops.matmul(embeddings, ops.transpose(embeddings))
    zeros = ops.zeros_like(similarity)
    positive_similarity = ops.sum(ops.where(positive, similarity, zeros), axis=1)
    logits = similarity - ops.expand_dims(positive_similarity, 1)
    logits = ops.where(negative, logits, -_pairwise.BIG)
    # log(1 + sum exp(z)) = logsumexp([0, z_1, ..., z_n]), stable for large z.
    logits = ops.concatenate([ops.zeros_like(logits[:, :1]), logits], axis=1)
    losses = ops.logsumexp(logits, axis=1) * ops.cast(has_positive, similarity.dtype)
    if l2_reg:
        losses = losses + l2_reg * ops.sum(ops.square(embeddings), axis=1)
    return losses


@keras.saving.register_keras_serializable(package="keras_spk")
class NPairLoss(keras.losses.Loss):
    """Multi-class N-pair ((N+1)-tuplet) loss (Xu et al. 2020, eq. 9-10).

    ```
    L_n-pair = sum_{i=1}^N log(1 + sum_{j != i} exp(f_i^T f_j^+ - f_i^T f_i^+))
    ```

    `f_i`, `f_i^+` are an anchor and a positive of speaker `i`; the `f_j^+`
    are one utterance of each other speaker. From a P speakers x K
    utterances batch (K >= 2, as the paper's P = 64, K = 2), the tuplets are
    read from the labels: the `k`-th utterance of every speaker forms view
    `k`, and each row (anchor, view `r`) is compared with view `r + 1`
    (cyclically), so every row is an anchor once and the batch order within
    a speaker decides only which utterance plays positive. With K = 2 this is
    eq. 10 on (first, second) utterances plus the same with roles swapped. A
    squared-norm penalty `l2_reg * ||f_i||^2` per row (Sohn 2016) keeps the
    unnormalised inner products bounded. Per-row losses are averaged over the
    batch (Keras' default reduction).

    Args:
        l2_reg: non-negative float. Defaults to `0.002`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: integer speaker labels, `[batch]` or `[batch, 1]`.
        y_pred: embeddings, `[batch, dim]`.

    Example:

    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1., 0.], [1., 0.], [0., 1.], [0., 1.]])
    >>> round(float(NPairLoss(l2_reg=0.0)(labels, embeddings)), 4)  # log(1 + e^-1)
    0.3133

    Reference:
        - Xu et al., Deep multi-metric learning for text-independent speaker
          verification, Neurocomputing 2020, section 3.4
        - Sohn, Improved deep metric learning with multi-class N-pair loss
          objective, NeurIPS 2016
    """

    def __init__(
        self, l2_reg=0.002, reduction="sum_over_batch_size", name="npair_loss", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.l2_reg = _checks.check_non_negative_real("l2_reg", l2_reg)

    def call(self, y_true, y_pred):
        return npair_loss(y_true, y_pred, l2_reg=self.l2_reg)

    def get_config(self):
        config = super().get_config()
        config.update({"l2_reg": self.l2_reg})
        return config
