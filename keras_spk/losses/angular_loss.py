import math

import keras
from keras import ops

from keras_spk.losses import _pairwise
from keras_spk.utils import _checks


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


def angular_loss(labels, embeddings, alpha_degrees=45.0):
    """Per-anchor angular loss over all in-batch triplets (Xu et al. 2020, eq. 11-13).

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

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        alpha_degrees: float in (0, 90), the angle bound `alpha` in degrees.
            Defaults to `45.0` (the paper's setting).

    Returns:
        float tensor `[batch]`, the loss of each anchor.
    """
    alpha_degrees = _check_alpha(alpha_degrees)
    embeddings = _pairwise.check_embeddings(embeddings, "angular_loss")
    labels = _pairwise.flat_labels(labels)
    tan_squared = math.tan(math.radians(alpha_degrees)) ** 2
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
    L_ang = [ ||x_a - x_p||^2 - 4 tan^2(alpha) ||x_n - x_c||^2 ]_+
    ```

    Bounds the angle at the negative of the triangle formed by `x_n`, the
    midpoint `x_c` of anchor and positive, and a point `x_m` at distance
    `||x_a - x_p|| / 2` from `x_c` perpendicular to `x_c x_n`. Unlike the
    triplet margin, it is invariant to the scale of the embeddings. Every
    row is an anchor, all (positive, negative) pairs of the batch are used
    (mean per anchor), and per-anchor losses are averaged over the batch.

    Args:
        alpha_degrees: float in (0, 90). Defaults to `45.0`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: integer speaker labels, `[batch]` or `[batch, 1]`.
        y_pred: embeddings, `[batch, dim]`.

    Example:

    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0., 0.], [0., 1.], [3., 0.], [3., 1.]])
    >>> float(AngularLoss()(labels, embeddings))
    0.0

    Reference:
        - Xu et al., Deep multi-metric learning for text-independent speaker
          verification, Neurocomputing 2020, section 3.5
        - [Wang et al., Deep metric learning with angular loss, ICCV 2017](
          https://arxiv.org/abs/1708.01682)
    """

    def __init__(
        self, alpha_degrees=45.0, reduction="sum_over_batch_size", name="angular_loss", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha_degrees = _check_alpha(alpha_degrees)

    def call(self, y_true, y_pred):
        return angular_loss(y_true, y_pred, alpha_degrees=self.alpha_degrees)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha_degrees": self.alpha_degrees})
        return config
