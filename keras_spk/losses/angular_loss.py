import math

import keras
from keras import ops

from keras_spk.losses import _pairwise
from keras_spk.losses.npair_loss import npair_tuplets
from keras_spk.utils import _checks

FORMS = ("hinge", "npair")


def _check_form(form, name="form"):
    return _checks.check_choice(name, form, FORMS)


def _check_alpha(alpha_degrees):
    if (
        not _checks.is_real(alpha_degrees)
        or not math.isfinite(alpha_degrees)
        or not 0.0 < alpha_degrees < 90.0
    ):
        raise ValueError(
            "`alpha_degrees` must be a number in (0, 90). "
            f"Received: alpha_degrees={alpha_degrees!r}"
        )
    return float(alpha_degrees)


def _npair_angular_loss(labels, embeddings, tan_squared):
    """Wang et al.'s N-pair angular loss per anchor, over the tuplets of `npair_tuplets`."""
    positive, negative, has_positive = npair_tuplets(labels)
    gram = ops.matmul(embeddings, ops.transpose(embeddings))
    # x_a . x_p: the anchor's row of the Gram matrix at its (single) positive.
    anchor_positive = ops.sum(ops.where(positive, gram, ops.zeros_like(gram)), axis=1)
    # x_p . x_n at [a, n]: the positive's row of the Gram matrix, picked by a
    # one-hot matrix product (each row of `positive` has at most one True).
    positive_negative = ops.matmul(ops.cast(positive, gram.dtype), gram)
    logits = 4.0 * tan_squared * (gram + positive_negative) - 2.0 * (
        1.0 + tan_squared
    ) * ops.expand_dims(anchor_positive, 1)
    logits = ops.where(negative, logits, -_pairwise.BIG)
    # log(1 + sum exp(f)) = logsumexp([0, f_1, ..., f_n]), stable for large f.
    logits = ops.concatenate([ops.zeros_like(logits[:, :1]), logits], axis=1)
    return ops.logsumexp(logits, axis=1) * ops.cast(has_positive, gram.dtype)


def angular_loss(labels, embeddings, alpha_degrees=45.0, form="hinge"):
    """Per-anchor angular loss (Xu et al. 2020, eq. 11-13; Wang et al. 2017).

    `form="hinge"` (default), over all in-batch triplets:

    ```
    x_c = (x_a + x_p) / 2
    L_ang(a, p, n) = [ ||x_a - x_p||^2 - 4 tan^2(alpha) ||x_n - x_c||^2 ]_+
    ```

    the hinge on the constraint of eq. 12,
    `||x_p - x_a||^2 <= 4 ||x_n - x_c||^2 tan^2(alpha)`, i.e. the angle at
    `x_n` of the triangle (x_m, x_c, x_n) stays below `alpha` (Wang et al.
    2017). Eq. 13 as printed in Xu et al. has the two terms the other way
    round, which would pull negatives towards the pair; this is Wang et al.'s
    hinge, which the text ("minimizing the following hinge loss" on the
    constraint of eq. 12) describes. Every row is an anchor; the anchor's
    loss is the mean over all its
    (positive, negative) pairs in the batch, with no mining (as in the
    paper). Anchors without a positive or a negative give 0. The cube of
    triplets takes `batch^3` memory.

    `form="npair"`, the N-pair angular loss of Wang et al. (2017), the form
    of the multi-metric authors' code:

    ```
    f(a, p, n) = 4 tan^2(alpha) (x_a + x_p)^T x_n - 2 (1 + tan^2(alpha)) x_a^T x_p
    L_ang(a)   = log(1 + sum_n exp(f(a, p, n)))
    ```

    Expanding the hinge's argument gives `f(a, p, n) + (1 - tan^2) (|x_a|^2
    + |x_p|^2) - 4 tan^2 |x_n|^2`: for embeddings of a fixed norm `f` is
    that argument up to a constant, and `log(1 + sum_n exp(f))` is a smooth
    upper bound of `max(0, max_n f)`. The tuplets are
    those of `NPairLoss` (`npair_tuplets`): each row is an anchor, its
    positive is the next utterance of its speaker and its negatives are the
    other speakers' utterances of that view. With K = 2 utterances per
    speaker this is Wang et al.'s N-pair batch (the negatives of a pair are
    the other pairs' positives), applied in both directions as
    `NPairLoss` does. Anchors without a positive give 0; `batch^2` memory.
    No norm penalty is added (unlike `npair_loss`'s `l2_reg`), and the
    value is not scale invariant.

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        alpha_degrees: float in (0, 90), the angle bound `alpha` in degrees.
            Defaults to `45.0` (the paper's setting).
        form: `"hinge"` (default) or `"npair"`, as above.

    Returns:
        float tensor `[batch]`, the loss of each anchor.
    """
    alpha_degrees = _check_alpha(alpha_degrees)
    _check_form(form)
    embeddings = _pairwise.check_embeddings(embeddings, "angular_loss")
    labels = _pairwise.flat_labels(labels)
    tan_squared = math.tan(math.radians(alpha_degrees)) ** 2
    if form == "npair":
        return _npair_angular_loss(labels, embeddings, tan_squared)
    gram = ops.matmul(embeddings, ops.transpose(embeddings))
    norms = ops.diagonal(gram)
    d_ap = _pairwise.squared_distances(embeddings)  # ||x_a - x_p||^2, [a, p]
    # ||x_n - (x_a + x_p) / 2||^2 = |n|^2 - n.a - n.p + |a + p|^2 / 4, cube [a, p, n].
    half_sum_squared = (
        ops.expand_dims(norms, 1) + ops.expand_dims(norms, 0) + 2.0 * gram
    ) / 4.0
    d_nc = (
        ops.expand_dims(ops.expand_dims(norms, 0), 0)
        - ops.expand_dims(gram, 1)  # n.a at [a, :, n]
        - ops.expand_dims(gram, 0)  # n.p at [:, p, n]
        + ops.expand_dims(half_sum_squared, 2)
    )
    violation = ops.relu(ops.expand_dims(d_ap, 2) - 4.0 * tan_squared * d_nc)
    positive, negative = _pairwise.positive_negative_masks(labels)
    triplets = ops.cast(
        ops.logical_and(ops.expand_dims(positive, 2), ops.expand_dims(negative, 1)),
        violation.dtype,
    )
    count = ops.sum(triplets, axis=(1, 2))
    return ops.sum(violation * triplets, axis=(1, 2)) / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="keras_spk")
class AngularLoss(keras.losses.Loss):
    """Angular loss on in-batch triplets (Xu et al. 2020, eq. 11-13; Wang et al. 2017).

    ```
    x_c = (x_a + x_p) / 2
    L_ang = [ ||x_a - x_p||^2 - 4 tan^2(alpha) ||x_n - x_c||^2 ]_+       (form="hinge")
    L_ang = log(1 + sum_n exp(4 tan^2(alpha) (x_a + x_p)^T x_n
                              - 2 (1 + tan^2(alpha)) x_a^T x_p))     (form="npair")
    ```

    Bounds the angle at the negative of the triangle formed by `x_n`, the
    midpoint `x_c` of anchor and positive, and a point `x_m` at distance
    `||x_a - x_p|| / 2` from `x_c` perpendicular to `x_c x_n`. Unlike the
    triplet margin, the hinge is invariant to the scale of the embeddings
    (up to the square). Every row is an anchor, all (positive, negative)
    pairs of the batch are used (mean per anchor), and per-anchor losses
    are averaged over the batch.

    `form="npair"` is the N-pair (log-sum-exp) angular loss of Wang et al.,
    which the multi-metric authors' code trains with (the text describes
    the hinge): every row is an anchor with the N-pair tuplet of
    `NPairLoss` (the next utterance of its speaker as the positive, the
    other speakers' utterances of that view as negatives); see
    `angular_loss`.

    Args:
        alpha_degrees: float in (0, 90). Defaults to `45.0`.
        form: `"hinge"` (default) or `"npair"`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: integer speaker labels, `[batch]` or `[batch, 1]`.
        y_pred: embeddings, `[batch, dim]`.

    Example:

    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0., 0.], [0., 1.], [3., 0.], [3., 1.]])
    >>> float(AngularLoss()(labels, embeddings))
    0.0
    >>> x = np.array([[1., 0.], [0., 1.], [1., 1.], [-1., 0.]])
    >>> round(float(AngularLoss(form="npair")(labels, x)), 4)  # f = -4, 8, 8, 4
    5.0092

    Reference:
        - Xu et al., Deep multi-metric learning for text-independent speaker
          verification, Neurocomputing 2020, section 3.5
        - [Wang et al., Deep metric learning with angular loss, ICCV 2017](
          https://arxiv.org/abs/1708.01682)
    """

    def __init__(
        self,
        alpha_degrees=45.0,
        form="hinge",
        reduction="sum_over_batch_size",
        name="angular_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha_degrees = _check_alpha(alpha_degrees)
        self.form = _check_form(form)

    def call(self, y_true, y_pred):
        return angular_loss(y_true, y_pred, alpha_degrees=self.alpha_degrees, form=self.form)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha_degrees": self.alpha_degrees, "form": self.form})
        return config
