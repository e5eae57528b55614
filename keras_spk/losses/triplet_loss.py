import keras
from keras import ops

from keras_spk.losses import _pairwise
from keras_spk.utils import _checks

MININGS = ("batch_hard", "semi_hard")


def _check_triplet_args(margin, mining, distance):
    margin = _checks.check_non_negative_real("margin", margin)
    _checks.check_choice("mining", mining, MININGS)
    _checks.check_choice("distance", distance, _pairwise.DISTANCES)
    return margin


def triplet_loss(labels, embeddings, margin=0.3, mining="batch_hard", distance="squared"):
    """Per-anchor triplet loss with in-batch mining (Xu et al. 2020, eq. 8).

    ```
    L_tri(a, p, n) = [ d(x_a, x_p) + m - d(x_a, x_n) ]_+
    ```

    where `d` is `||x_a - x_p||^2` in the paper (`distance="squared"`).
    Every row of the batch is an anchor; positives are the other rows with
    the same label, negatives the rows with another label.

    - `mining="batch_hard"` (Hermans et al. 2017): per anchor, the farthest
      positive and the closest negative,
      `loss_a = [max_p d(a, p) + m - min_n d(a, n)]_+`.
    - `mining="semi_hard"` (Schroff et al. 2015, as in TF Addons'
      `triplet_semihard_loss`): per (anchor, positive) pair, the closest
      negative that is still farther than the positive
      (`d(a, n) > d(a, p)`), or, if there is none, the farthest negative;
      `loss_a` is the mean of the pair losses over the anchor's positives.

    Anchors without a positive or without a negative in the batch give 0.
    `semi_hard` builds a `batch^3` cube of (anchor, positive, negative)
    distances. The paper names batch-hard mining in its set-up (section 4.3)
    and semi-hard in its ablation (section 4.5); both are offered.

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        margin: non-negative float `m`. The paper does not state it; 0.3 is
            the usual batch-hard value. Defaults to `0.3`.
        mining: `"batch_hard"` or `"semi_hard"`.
        distance: `"squared"` (eq. 8), `"euclidean"` or `"cosine"`
            (`1 - cos`).

    Returns:
        float tensor `[batch]`, the loss of each anchor.
    """
    margin = _check_triplet_args(margin, mining, distance)
    embeddings = _pairwise.check_embeddings(embeddings, "triplet_loss")
    labels = _pairwise.flat_labels(labels)
    dist = _pairwise.pairwise_distances(embeddings, distance)
    positive, negative = _pairwise.positive_negative_masks(labels)
    has_positive = ops.any(positive, axis=1)
    has_negative = ops.any(negative, axis=1)
    valid = ops.cast(ops.logical_and(has_positive, has_negative), dist.dtype)

    if mining == "batch_hard":
        hardest_positive = _pairwise.masked_max(dist, positive)
        hardest_negative = _pairwise.masked_min(dist, negative)
        losses = ops.relu(hardest_positive - hardest_negative + margin)
        return losses * valid

    # semi_hard: a [anchor, positive, negative] cube.
    d_ap = ops.expand_dims(dist, 2)  # [a, p, 1]
    d_an = ops.expand_dims(dist, 1)  # [a, 1, n]
    negative_an = ops.expand_dims(negative, 1)
    farther = ops.logical_and(negative_an, ops.greater(d_an, d_ap))
    semi_hard = _pairwise.masked_min(ops.broadcast_to(d_an, ops.shape(farther)), farther)
    easiest_hard = ops.expand_dims(_pairwise.masked_max(dist, negative), 1)  # [a, 1]
    chosen = ops.where(ops.any(farther, axis=2), semi_hard, easiest_hard)
    pair_losses = ops.relu(dist - chosen + margin)  # [a, p]
    positive_f = ops.cast(positive, dist.dtype)
    num_positives = ops.maximum(ops.sum(positive_f, axis=1), 1.0)
    losses = ops.sum(pair_losses * positive_f, axis=1) / num_positives
    return losses * valid


@keras.saving.register_keras_serializable(package="keras_spk")
class TripletLoss(keras.losses.Loss):
    """Triplet loss with in-batch hard or semi-hard mining (Xu et al. 2020, eq. 8).

    ```
    L_tri = [ ||x_a - x_p||^2 + m - ||x_a - x_n||^2 ]_+
    ```

    Every row of the batch is an anchor; positives and negatives are the
    other rows of the batch, chosen by label (the P speakers x K utterances
    sampler gives each anchor K - 1 positives), so the row order does not
    matter. See `triplet_loss` for the two mining rules. The per-anchor
    losses are averaged over the batch (Keras' default reduction).

    Args:
        margin: non-negative float `m`. Defaults to `0.3`.
        mining: `"batch_hard"` (farthest positive, closest negative per
            anchor) or `"semi_hard"` (per anchor-positive pair, the closest
            negative farther than the positive). Defaults to `"batch_hard"`.
        distance: `"squared"` (as in eq. 8), `"euclidean"` or `"cosine"`.
            Defaults to `"squared"`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: integer speaker labels, `[batch]` or `[batch, 1]`.
        y_pred: embeddings, `[batch, dim]`.

    Example:

    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0., 0.], [0., 1.], [3., 0.], [3., 1.]])
    >>> float(TripletLoss(margin=1.0)(labels, embeddings))
    0.0

    Reference:
        - Xu et al., Deep multi-metric learning for text-independent speaker
          verification, Neurocomputing 2020, section 3.3
        - [Hermans et al., In defense of the triplet loss for person
          re-identification, 2017](https://arxiv.org/abs/1703.07737)
        - [Schroff et al., FaceNet, CVPR 2015](https://arxiv.org/abs/1503.03832)
    """

    def __init__(
        self,
        margin=0.3,
        mining="batch_hard",
        distance="squared",
        reduction="sum_over_batch_size",
        name="triplet_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _check_triplet_args(margin, mining, distance)
        self.mining = mining
        self.distance = distance

    def call(self, y_true, y_pred):
        return triplet_loss(
            y_true, y_pred, margin=self.margin, mining=self.mining, distance=self.distance
        )

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "mining": self.mining, "distance": self.distance})
        return config
