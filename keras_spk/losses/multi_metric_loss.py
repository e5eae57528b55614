import math

import keras
from keras import ops

from keras_spk.losses import _pairwise
from keras_spk.utils import _checks
from keras_spk.utils import _precision
from keras_spk.losses.angular_loss import _check_alpha
from keras_spk.losses.angular_loss import _check_form
from keras_spk.losses.angular_loss import angular_loss
from keras_spk.losses.npair_loss import npair_loss
from keras_spk.losses.triplet_loss import _check_triplet_args
from keras_spk.losses.triplet_loss import triplet_loss

TERMS = ("triplet", "npair", "angular", "softmax")
# Section 4.3 of Xu et al.: lambda_n-pair, lambda_soft, lambda_tri, lambda_ang.
PAPER_WEIGHTS = {"triplet": 1.0, "npair": 0.5, "angular": 1.0, "softmax": 0.1}


def _check_weights(weights):
    if weights is None:
        return dict(PAPER_WEIGHTS)
    if not isinstance(weights, dict):
        raise ValueError(
            f"`weights` must be a dict with keys among {TERMS}. Received: weights={weights!r}"
        )
    unknown = [key for key in weights if key not in TERMS]
    if unknown:
        raise ValueError(
            f"`weights` has unknown terms {unknown}; valid terms are {TERMS}. "
            f"Received: weights={weights!r}"
        )
    for key, value in weights.items():
        if not _checks.is_real(value) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"`weights[{key!r}]` must be a non-negative number. Received: weights={weights!r}"
            )
    return {key: float(weights[key]) for key in TERMS if key in weights}


def multi_metric_loss(
    labels,
    embeddings,
    logits=None,
    weights=None,
    margin=0.3,
    mining="batch_hard",
    distance="squared",
    l2_reg=0.002,
    alpha_degrees=45.0,
    angular_form="hinge",
):
    """Per-row weighted sum of triplet, N-pair, angular and softmax losses (Xu et al. 2020, eq. 14).

    ```
    L = l_n-pair L_n-pair + l_tri L_tri + l_ang L_ang + l_soft L_soft
    ```

    `L_tri`, `L_n-pair` and `L_ang` are `triplet_loss`, `npair_loss` and
    `angular_loss` on the embeddings; `L_soft` is the sparse categorical
    cross-entropy of `logits` (a classifier over the training speakers on
    top of the embeddings). A term whose weight is 0 or missing from
    `weights` is not computed.

    Args:
        labels: integer tensor `[batch]` (or `[batch, 1]`) of speaker ids.
        embeddings: float tensor `[batch, dim]`.
        logits: float tensor `[batch, num_speakers]`, required when the
            `"softmax"` weight is positive.
        weights: dict `{term: weight}` over `"triplet"`, `"npair"`,
            `"angular"`, `"softmax"`; `None` for the paper's
            `{"triplet": 1.0, "npair": 0.5, "angular": 1.0, "softmax": 0.1}`.
        margin, mining, distance: passed to `triplet_loss`.
        l2_reg: passed to `npair_loss`.
        alpha_degrees: passed to `angular_loss`.
        angular_form: `"hinge"` (default) or `"npair"`, passed to
            `angular_loss` as `form`.

    Returns:
        float tensor `[batch]`.
    """
    weights = _check_weights(weights)
    _check_form(angular_form, "angular_form")
    active = {key: value for key, value in weights.items() if value > 0}
    if "softmax" in active and logits is None:
        raise ValueError(
            "The 'softmax' term of MultiMetricLoss needs classifier logits: pass "
            "y_pred=(embeddings, logits), or drop 'softmax' from `weights` and add a "
            "cross-entropy loss on a second model output. "
            f"Received: weights={weights!r} and no logits"
        )
    embeddings = _pairwise.check_embeddings(embeddings, "multi_metric_loss")
    labels = _pairwise.flat_labels(labels)
    total = ops.zeros_like(embeddings[:, 0])
    if "triplet" in active:
        term = triplet_loss(labels, embeddings, margin=margin, mining=mining, distance=distance)
        total = total + active["triplet"] * term
    if "npair" in active:
        total = total + active["npair"] * npair_loss(labels, embeddings, l2_reg=l2_reg)
    if "angular" in active:
        total = total + active["angular"] * angular_loss(
            labels, embeddings, alpha_degrees=alpha_degrees, form=angular_form
        )
    if "softmax" in active:
        logits = _precision.at_least_float32(logits)
        term = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        total = total + active["softmax"] * ops.cast(term, total.dtype)
    return total


def _split_prediction(y_pred):
    """(embeddings, logits or None) from a tensor, a pair or a dict."""
    if isinstance(y_pred, dict):
        unknown = set(y_pred) - {"embeddings", "logits"}
        if "embeddings" not in y_pred or unknown:
            raise ValueError(
                "MultiMetricLoss expects a y_pred dict with keys 'embeddings' and "
                f"optionally 'logits'. Received: keys {sorted(y_pred)}"
            )
        return y_pred["embeddings"], y_pred.get("logits")
    if isinstance(y_pred, (list, tuple)):
        if len(y_pred) != 2:
            raise ValueError(
                "MultiMetricLoss expects y_pred=(embeddings, logits). "
                f"Received: a {type(y_pred).__name__} of length {len(y_pred)}"
            )
        return y_pred[0], y_pred[1]
    return y_pred, None


@keras.saving.register_keras_serializable(package="keras_spk")
class MultiMetricLoss(keras.losses.Loss):
    """Deep multi-metric loss: weighted triplet + N-pair + angular + softmax (Xu et al. 2020).

    ```
    L = l_n-pair L_n-pair + l_tri L_tri + l_ang L_ang + l_soft L_soft   (eq. 14)
    ```

    The metric terms are `TripletLoss` (eq. 8), `NPairLoss` (eq. 10) and
    `AngularLoss` (eq. 13) on the embeddings of a P speakers x K utterances
    batch; the paper trains with P = 64, K = 2 and the default weights
    below. The softmax term needs classifier logits, which can be given in
    two ways:

    1. `y_pred=(embeddings, logits)` (or a dict with keys `"embeddings"`
       and `"logits"`) in a direct call, e.g. in a custom training step;
    2. with `model.fit`, where Keras gives each loss one model output: a
       model with outputs `[embeddings, logits]` compiled with
       `loss=[MultiMetricLoss(weights={...without "softmax"}),
       keras.losses.SparseCategoricalCrossentropy(from_logits=True)]`,
       `loss_weights=[1.0, 0.1]` and targets `[labels, labels]`: the
       compile loss weight plays `l_soft`.

    A positive `"softmax"` weight with embeddings alone raises `ValueError`.
    Per-row losses are averaged over the batch.

    Args:
        weights: dict `{term: weight}` over `"triplet"`, `"npair"`,
            `"angular"`, `"softmax"`; missing terms are off. `None` gives
            the paper's `{"triplet": 1.0, "npair": 0.5, "angular": 1.0,
            "softmax": 0.1}`.
        margin: triplet margin. Defaults to `0.3`.
        mining: triplet mining, `"batch_hard"` or `"semi_hard"`.
        distance: triplet distance, `"squared"`, `"euclidean"` or `"cosine"`.
        l2_reg: N-pair squared-norm penalty. Defaults to `0.002`.
        alpha_degrees: angular bound in degrees. Defaults to `45.0`.
        angular_form: `"hinge"` (default, the text's eq. 12-13) or
            `"npair"` (the log-sum-exp form of the authors' code), see
            `AngularLoss`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: integer speaker labels, `[batch]` or `[batch, 1]`.
        y_pred: embeddings `[batch, dim]`, or `(embeddings, logits)` with
            logits `[batch, num_speakers]`, or a dict of the two.

    Example:

    >>> loss = MultiMetricLoss()
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.normal(size=(4, 8))
    >>> logits = np.random.normal(size=(4, 10))
    >>> value = loss(labels, (embeddings, logits))

    Reference:
        - Xu et al., Deep multi-metric learning for text-independent speaker
          verification, Neurocomputing 2020, sections 3.3-3.6 and 4.3
    """

    def __init__(
        self,
        weights=None,
        margin=0.3,
        mining="batch_hard",
        distance="squared",
        l2_reg=0.002,
        alpha_degrees=45.0,
        angular_form="hinge",
        reduction="sum_over_batch_size",
        name="multi_metric_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.weights = _check_weights(weights)
        self.margin = _check_triplet_args(margin, mining, distance)
        self.mining = mining
        self.distance = distance
        self.l2_reg = _checks.check_non_negative_real("l2_reg", l2_reg)
        self.alpha_degrees = _check_alpha(alpha_degrees)
        self.angular_form = _check_form(angular_form, "angular_form")

    def call(self, y_true, y_pred):
        embeddings, logits = _split_prediction(y_pred)
        return multi_metric_loss(
            y_true,
            embeddings,
            logits=logits,
            weights=self.weights,
            margin=self.margin,
            mining=self.mining,
            distance=self.distance,
            l2_reg=self.l2_reg,
            alpha_degrees=self.alpha_degrees,
            angular_form=self.angular_form,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weights": dict(self.weights),
                "margin": self.margin,
                "mining": self.mining,
                "distance": self.distance,
                "l2_reg": self.l2_reg,
                "alpha_degrees": self.alpha_degrees,
                "angular_form": self.angular_form,
            }
        )
        return config
