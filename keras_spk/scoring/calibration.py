"""Score calibration to log-likelihood ratios, and decision thresholds.

Calibration
-----------
`ScoreCalibrator` fits a logistic regression of the trial labels on the
scores (one column, or several systems' scores for linear fusion):

```
logit P(target | s) = w . s + b              # posterior log-odds at the training prior
llr(s) = w . s + b - log(pi / (1 - pi))      # pi = target fraction of the training trials
```

Logistic regression is fitted to the training trials' own proportion of
targets, so its logit is a posterior log-odds under the prior `pi`; by
Bayes' rule, posterior odds = likelihood ratio x prior odds, so subtracting
`logit(pi)` leaves the log-likelihood ratio `log p(s | target) / p(s |
non-target)`, which no longer depends on how many targets the calibration
set had. For a prior `p` (and costs), the Bayes decision accepts a trial
when `llr >= bayes_threshold(p) = log((1 - p) / p) + log(c_fa / c_miss)`.

Thresholds on uncalibrated scores
---------------------------------
`threshold_at_false_alarm` and `threshold_at_min_dcf` pick a threshold on
scores with known labels, with the conventions of `keras_spk.metrics`
(accept a trial when `score >= threshold`; candidates are the distinct
scores and `+inf`).
"""

import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.metrics import error_rates
from keras_spk.metrics import min_dcf
from keras_spk.utils._checks import check_non_negative_real
from keras_spk.utils._checks import check_positive_int
from keras_spk.utils._checks import check_positive_real
from keras_spk.utils._checks import is_real

__all__ = [
    "ScoreCalibrator",
    "bayes_threshold",
    "logit",
    "threshold_at_false_alarm",
    "threshold_at_min_dcf",
]


def _check_prior(name, value):
    if not is_real(value) or not 0.0 < value < 1.0:
        raise ValueError(
            f"`{name}` must be a probability strictly between 0 and 1. Received: {name}={value!r}"
        )
    return float(value)


def logit(p):
    """`log(p / (1 - p))` of a probability strictly between 0 and 1."""
    p = _check_prior("p", p)
    return math.log(p) - math.log1p(-p)


def bayes_threshold(p_target, c_miss=1.0, c_fa=1.0):
    """Bayes decision threshold on calibrated LLRs: `log(c_fa (1 - p) / (c_miss p))`.

    Accepting trials with `llr >= bayes_threshold(p_target)` minimises the
    expected cost `c_miss P_miss p + c_fa P_fa (1 - p)`; with unit costs it
    is `-log(p / (1 - p))`.

    Example:

    >>> round(bayes_threshold(0.01), 4)
    4.5951
    """
    p_target = _check_prior("p_target", p_target)
    c_miss = check_positive_real("c_miss", c_miss)
    c_fa = check_positive_real("c_fa", c_fa)
    return -logit(p_target) + math.log(c_fa) - math.log(c_miss)


def threshold_at_false_alarm(scores, labels, rate):
    """Lowest threshold whose false-alarm rate is at most `rate`.

    With `keras_spk.metrics.error_rates` conventions (accept when
    `score >= threshold`, candidates are the distinct scores and `+inf`),
    this returns the candidate `t` with `P_fa(t) <= rate` and the smallest
    miss rate; the next lower candidate has `P_fa > rate`. `+inf` (reject
    everything) when no score threshold achieves the rate.

    Args:
        scores: 1-D scores, higher meaning "same speaker".
        labels: 1-D labels, 1 target and 0 non-target.
        rate: allowed false-alarm rate in `[0, 1]`.

    Returns:
        The threshold as a float.

    Example:

    >>> threshold_at_false_alarm([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], rate=0.5)
    0.35
    >>> threshold_at_false_alarm([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], rate=0.0)
    0.8
    """
    if not is_real(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"`rate` must be a false-alarm rate in [0, 1]. Received: rate={rate!r}")
    _, p_fa, thresholds = error_rates(scores, labels)
    # p_fa does not increase along the thresholds and ends at 0.
    return float(thresholds[int(np.argmax(p_fa <= rate))])


def threshold_at_min_dcf(scores, labels, p_target=0.01, c_miss=1.0, c_fa=1.0):
    """Threshold attaining the minimum detection cost (`keras_spk.metrics.min_dcf`).

    Returns:
        The threshold as a float (`+inf` when rejecting everything is optimal).
    """
    return min_dcf(
        scores, labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa, return_threshold=True
    )[1]


class ScoreCalibrator(ClassifierMixin, BaseEstimator):
    """Logistic-regression calibration (and linear fusion) of scores to LLRs.

    `fit(scores, labels)` fits `logit P(target | s) = w . s + b` by
    minimising the mean logistic loss plus `alpha / 2 * |w|^2` (Newton's
    method on standardised scores; the offset is not penalised), and records
    `pi`, the target fraction of the training trials. Then

    ```
    predict_llr(s)       = w . s + b - logit(pi)            # calibrated LLR
    decision_function(s) = predict_llr(s) + logit(p_target)  # posterior log-odds
    predict(s)           = target  iff  decision_function(s) > 0
                         = target  iff  llr > bayes_threshold(p_target)
    predict_proba(s)     = [1 - sigmoid(decision), sigmoid(decision)]
    ```

    With the default `p_target=0.5`, `decision_function` is the LLR itself.

    Args:
        alpha: L2 penalty on the score weights (not the offset); a small
            default keeps the fit finite when the classes are separable.
        p_target: target prior used by `decision_function`, `predict` and
            `predict_proba` (not by `predict_llr`).
        max_iter: Newton iterations at most.

    Attributes:
        classes_: the two labels; `classes_[1]` is the target class (1 / True).
        coef_: `[n_scores]` weights `w` (one per score column, original units).
        intercept_: the offset `b` (float), a posterior log-odds at the training prior.
        train_prior_: `pi`, the fraction of `classes_[1]` in the training labels.
        n_iter_: Newton iterations run.

    Input shape:
        `X`: `[n]` scores or `[n, n_scores]` (several systems, fused linearly).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> scores = np.concatenate([rng.normal(2, 1, 2000), rng.normal(-1, 1, 6000)])
    >>> labels = np.repeat([1, 0], [2000, 6000])
    >>> calibrator = ScoreCalibrator().fit(scores, labels)
    >>> calibrator.predict_llr([1.5]).round(1)  # analytic LLR: 3 * 1.5 - 1.5 = 3
    array([3.])

    Reference:
        Brummer and du Preez, "Application-independent evaluation of speaker
        detection", Computer Speech and Language, 2006.
    """

    def __init__(self, alpha=1e-6, p_target=0.5, max_iter=100):
        self.alpha = alpha
        self.p_target = p_target
        self.max_iter = max_iter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    @staticmethod
    def _as_columns(X):
        X = np.asarray(X) if not hasattr(X, "shape") else X
        if getattr(X, "ndim", 2) == 1:
            return np.asarray(X).reshape(-1, 1)
        return X

    def fit(self, X, y):
        """Fits the calibration on scores `X` with labels `y` (1 target, 0 non-target).

        Returns:
            self.
        """
        alpha = check_non_negative_real("alpha", self.alpha)
        _check_prior("p_target", self.p_target)
        max_iter = check_positive_int("max_iter", self.max_iter)
        X, y = validate_data(self, self._as_columns(X), y, dtype=np.float64)
        target_type = type_of_target(y, input_name="y")
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                f"Unknown label type: {target_type!r};"
                " calibration needs trial labels (1 target, 0 non-target)."
            )
        classes, encoded = np.unique(y, return_inverse=True)
        if classes.shape[0] != 2:
            raise ValueError(
                "Only binary classification is supported: ScoreCalibrator needs labels of exactly "
                f"2 classes (target and non-target). Received {classes.shape[0]} class(es): "
                f"{classes.tolist()[:10]}"
            )
        target = encoded.astype(np.float64)

        # Standardised scores keep Newton well conditioned; mapped back below.
        center = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        design = np.concatenate([(X - center) / scale, np.ones((X.shape[0], 1))], axis=1)
        n, k = design.shape
        penalty = np.full(k, alpha)
        penalty[-1] = 0.0
        # Tiny ridge on everything so the Hessian stays invertible when
        # alpha = 0 or some column is constant.
        ridge = penalty + 1e-12

        def objective(w):
            z = design @ w
            return np.mean(np.logaddexp(0.0, z) - target * z) + 0.5 * np.sum(penalty * w * w)

        w = np.zeros(k)
        w[-1] = logit(min(max(target.mean(), 1e-12), 1 - 1e-12))
        value = objective(w)
        converged = False
        for iteration in range(1, max_iter + 1):
            p = 0.5 * (1.0 + np.tanh(0.5 * (design @ w)))  # stable sigmoid
            gradient = design.T @ (p - target) / n + penalty * w
            hessian = (design.T * (p * (1.0 - p))) @ design / n + np.diag(ridge)
            step = np.linalg.solve(hessian, gradient)
            size = 1.0
            candidate = w - step
            candidate_value = objective(candidate)
            while candidate_value > value and size > 1e-10:  # backtracking line search
                size *= 0.5
                candidate = w - size * step
                candidate_value = objective(candidate)
            if candidate_value > value:  # no descent left at float precision
                converged = True
                break
            w, decrease, value = candidate, value - candidate_value, candidate_value
            if np.max(np.abs(size * step)) < 1e-10 or decrease < 1e-15:
                converged = True
                break
        if not converged:
            warnings.warn(
                f"ScoreCalibrator did not converge in max_iter={max_iter} Newton iterations "
                "(separable scores with alpha=0?); raise alpha or max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )

        self.classes_ = classes
        self.coef_ = w[:-1] / scale
        self.intercept_ = float(w[-1] - np.sum(w[:-1] * center / scale))
        self.train_prior_ = float(target.mean())
        self.n_iter_ = iteration
        return self

    def predict_llr(self, X):
        """Calibrated log-likelihood ratios `[n]` (independent of any prior)."""
        check_is_fitted(self)
        X = validate_data(self, self._as_columns(X), reset=False, dtype=np.float64)
        return X @ self.coef_ + self.intercept_ - logit(self.train_prior_)

    def decision_function(self, X):
        """Posterior log-odds of a target at prior `p_target`: `llr + logit(p_target)`."""
        return self.predict_llr(X) + logit(self.p_target)

    def predict_proba(self, X):
        """`[n, 2]` posterior probabilities of `classes_` at prior `p_target`."""
        decision = self.decision_function(X)
        positive = 0.5 * (1.0 + np.tanh(0.5 * decision))
        return np.stack([1.0 - positive, positive], axis=1)

    def predict(self, X):
        """Bayes decisions at prior `p_target`: `classes_[1]` iff `decision_function > 0`."""
        accept = self.decision_function(X) > 0
        return self.classes_[accept.astype(int)]
