"""Speaker-verification metrics: error rates, DET curve, EER and minDCF.

Pure NumPy (no TensorFlow / PyTorch import), so the metrics can be used on
scores produced by any backend, or offline on a score file.

Convention shared by every function in this module
---------------------------------------------------

* ``labels`` are 1 (or ``True``) for **target** trials (same speaker) and
  0 (or ``False``) for **non-target** trials (different speakers).
* A higher score means "more likely the same speaker".
* The candidate thresholds are the **distinct** score values, sorted in
  increasing order, followed by ``+inf``.
* A trial is **accepted** at threshold ``t`` when ``score >= t``.
  Tied scores are therefore always accepted or rejected together.
* ``P_miss(t)`` is the fraction of target trials with ``score < t`` and
  ``P_fa(t)`` is the fraction of non-target trials with ``score >= t``.

The first operating point (threshold = the smallest score) accepts every
trial: ``P_miss = 0, P_fa = 1``. The last one (threshold = ``+inf``) rejects
every trial: ``P_miss = 1, P_fa = 0``. So the staircase always runs the full
way from one corner to the other.
"""

import numbers

import numpy as np

__all__ = ["error_rates", "det_curve", "eer", "min_dcf"]


def _validate(scores, labels):
    """Checks and converts `scores` / `labels`.

    Returns:
        `(scores, labels)` as a float64 array and a bool array.
    """
    scores_arr = np.asarray(scores)
    labels_arr = np.asarray(labels)

    if scores_arr.ndim != 1:
        raise ValueError(
            "Expected `scores` to be a 1-D array of trial scores; flatten it "
            "first (e.g. with `np.ravel`). "
            f"Received: scores.shape={scores_arr.shape}"
        )
    if labels_arr.ndim != 1:
        raise ValueError(
            "Expected `labels` to be a 1-D array of trial labels; flatten it "
            "first (e.g. with `np.ravel`). "
            f"Received: labels.shape={labels_arr.shape}"
        )
    if scores_arr.shape[0] != labels_arr.shape[0]:
        raise ValueError(
            "`scores` and `labels` must have the same length (one score and "
            "one label per trial). Received: "
            f"len(scores)={scores_arr.shape[0]}, len(labels)={labels_arr.shape[0]}"
        )
    if scores_arr.shape[0] == 0:
        raise ValueError(
            "`scores` and `labels` must contain at least one target and one "
            "non-target trial. Received: empty scores=[] and labels=[]"
        )

    # Scores: real numbers, all finite.
    if not (
        np.issubdtype(scores_arr.dtype, np.number)
        or np.issubdtype(scores_arr.dtype, np.bool_)
    ) or np.issubdtype(scores_arr.dtype, np.complexfloating):
        raise ValueError(
            "Expected `scores` to be an array of real numbers. "
            f"Received: scores with dtype={scores_arr.dtype}"
        )
    scores_arr = scores_arr.astype(np.float64, copy=False)
    finite = np.isfinite(scores_arr)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            "`scores` must be finite: it contains "
            f"{bad.size} NaN or Inf value(s); remove or fix those trials "
            "before scoring. Received: scores with non-finite values at "
            f"indices {bad[:5].tolist()}{' ...' if bad.size > 5 else ''} "
            f"(e.g. scores[{bad[0]}]={scores_arr[bad[0]]})"
        )

    # Labels: bool, or numbers that are all exactly 0 or 1.
    if np.issubdtype(labels_arr.dtype, np.bool_):
        labels_bool = labels_arr
    else:
        if not np.issubdtype(labels_arr.dtype, np.number) or np.issubdtype(
            labels_arr.dtype, np.complexfloating
        ):
            raise ValueError(
                "Expected `labels` to contain only 0/1 (or False/True), with 1 "
                "for target trials and 0 for non-target trials. Received: "
                f"labels with dtype={labels_arr.dtype}"
            )
        is_one = labels_arr == 1
        valid = is_one | (labels_arr == 0)
        if not valid.all():
            bad_values = np.unique(labels_arr[~valid])
            raise ValueError(
                "Expected `labels` to contain only 0/1 (or False/True), with 1 "
                "for target trials and 0 for non-target trials. Received: "
                f"labels with other values {bad_values[:5].tolist()}"
                f"{' ...' if bad_values.size > 5 else ''}"
            )
        labels_bool = is_one

    n_target = int(np.count_nonzero(labels_bool))
    if n_target == 0 or n_target == labels_bool.shape[0]:
        missing = "target (label 1)" if n_target == 0 else "non-target (label 0)"
        raise ValueError(
            "Verification metrics need at least one target and one "
            f"non-target trial, but `labels` has no {missing} trial. "
            f"Received: labels with {n_target} target(s) and "
            f"{labels_bool.shape[0] - n_target} non-target(s)"
        )
    return scores_arr, labels_bool


def _validate_cost(p_target, c_miss, c_fa):
    for name, value in (("p_target", p_target), ("c_miss", c_miss), ("c_fa", c_fa)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"Expected `{name}` to be a real number. "
                f"Received: {name}={value!r}"
            )
    if not 0.0 < p_target < 1.0:
        raise ValueError(
            "Expected `p_target` (prior probability of a target trial) to be "
            "strictly between 0 and 1, e.g. 0.01 or 0.05. "
            f"Received: p_target={p_target}"
        )
    for name, value in (("c_miss", c_miss), ("c_fa", c_fa)):
        if not (0.0 < value < np.inf):
            raise ValueError(
                f"Expected `{name}` to be a positive, finite cost. "
                f"Received: {name}={value}"
            )


def error_rates(scores, labels):
    """Miss and false-alarm rates at every distinct threshold.

    This is the shared primitive behind `det_curve`, `eer` and `min_dcf`.
    The candidate thresholds are the distinct score values in increasing
    order, followed by `+inf`. A trial is accepted when `score >= threshold`,
    so tied scores are accepted or rejected together, and:

    ```
    P_miss(t) = #{target trials with score < t}      / #{target trials}
    P_fa(t)   = #{non-target trials with score >= t} / #{non-target trials}
    ```

    The first operating point accepts every trial (`P_miss=0, P_fa=1`), the
    last one (threshold `+inf`) rejects every trial (`P_miss=1, P_fa=0`).
    `P_miss` is non-decreasing and `P_fa` non-increasing along the arrays,
    and `P_miss - P_fa` is strictly increasing.

    Cost: one `argsort` plus cumulative sums, `O(n log n)`.

    Args:
        scores: 1-D array-like of finite real scores, one per trial
            (higher means "more likely the same speaker").
        labels: 1-D array-like of the same length, 1 (or `True`) for target
            trials and 0 (or `False`) for non-target trials. Must contain at
            least one of each.

    Returns:
        A tuple `(p_miss, p_fa, thresholds)` of 1-D float64 arrays of length
        `n_distinct_scores + 1`, ordered by increasing threshold; the last
        threshold is `+inf`.

    Example:

    >>> p_miss, p_fa, thresholds = error_rates([0.9, 0.2, 0.6], [1, 0, 0])
    >>> p_miss.tolist(), p_fa.tolist(), thresholds.tolist()
    ([0.0, 0.0, 0.0, 1.0], [1.0, 0.5, 0.0, 0.0], [0.2, 0.6, 0.9, inf])
    """
    scores, labels = _validate(scores, labels)
    # Order among tied scores is irrelevant: ties form one threshold.
    order = np.argsort(scores)
    sorted_scores = scores[order]
    sorted_labels = labels[order]

    n = sorted_scores.shape[0]
    # Start index of every run of tied scores: the distinct thresholds.
    is_start = np.empty(n, dtype=bool)
    is_start[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)

    # cum_target[i] = number of targets among the i lowest-scoring trials.
    cum_target = np.empty(n + 1, dtype=np.int64)
    cum_target[0] = 0
    np.cumsum(sorted_labels, out=cum_target[1:])
    n_target = int(cum_target[-1])
    n_nontarget = n - n_target

    # Trials below threshold sorted_scores[starts[k]] are exactly the first
    # starts[k] sorted trials; the final point (+inf) has all n below it.
    below = np.append(starts, n)
    target_below = cum_target[below]
    nontarget_below = below - target_below

    p_miss = target_below / n_target
    p_fa = (n_nontarget - nontarget_below) / n_nontarget
    thresholds = np.append(sorted_scores[starts], np.inf)
    return p_miss, p_fa, thresholds


def det_curve(scores, labels):
    """Operating points of the detection error trade-off (DET) curve.

    Same points and conventions as `error_rates` (accept when
    `score >= threshold`; thresholds are the distinct scores followed by
    `+inf`), returned in the `(x, y)` order used to plot a DET curve. For a
    probit-scaled plot, note that the two end points contain exact 0s and 1s.

    Args:
        scores: 1-D array-like of finite real scores, one per trial.
        labels: 1-D array-like of the same length, 1 (or `True`) for target
            trials and 0 (or `False`) for non-target trials. Must contain at
            least one of each.

    Returns:
        A tuple `(p_fa, p_miss, thresholds)` of 1-D float64 arrays ordered by
        increasing threshold (so `p_fa` goes from 1 down to 0 and `p_miss`
        from 0 up to 1); the last threshold is `+inf`.

    Example:

    >>> p_fa, p_miss, thresholds = det_curve([0.9, 0.2, 0.6], [1, 0, 0])
    >>> p_fa.tolist(), p_miss.tolist()
    ([1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    """
    p_miss, p_fa, thresholds = error_rates(scores, labels)
    return p_fa, p_miss, thresholds


def _eer_from_rates(p_miss, p_fa):
    # d = P_miss - P_fa rises strictly from -1 (accept all) to +1 (reject
    # all), so there is exactly one index i >= 1 with d[i-1] < 0 <= d[i].
    d = p_miss - p_fa
    i = int(np.searchsorted(d, 0.0, side="left"))
    pm0, pm1 = p_miss[i - 1], p_miss[i]
    pf0, pf1 = p_fa[i - 1], p_fa[i]
    # Crossing of the segment (pm0, pf0) -> (pm1, pf1) with the diagonal.
    denom = (pm1 - pm0) + (pf0 - pf1)  # = d[i] - d[i-1] > 0
    return float((pm1 * pf0 - pm0 * pf1) / denom)


def eer(scores, labels):
    """Equal error rate (EER).

    The EER is the error rate at the operating point where the miss rate
    equals the false-alarm rate. Error rates are computed as in
    `error_rates`: thresholds are the distinct scores plus `+inf`, a trial
    is accepted when `score >= threshold` (tied trials are accepted or
    rejected together), `P_miss(t)` is the fraction of targets with
    `score < t` and `P_fa(t)` the fraction of non-targets with `score >= t`,
    over the full staircase from accept-all (`P_miss=0, P_fa=1`) to
    reject-all (`P_miss=1, P_fa=0`).

    `d = P_miss - P_fa` is strictly increasing along that staircase, so there
    is a unique pair of consecutive operating points `(pm0, pf0)`,
    `(pm1, pf1)` with `d0 = pm0 - pf0 < 0 <= d1 = pm1 - pf1`. The curves are
    linearly interpolated between them, and the EER is where they cross:

    ```
    alpha = -d0 / (d1 - d0)                 # in (0, 1]
    EER   = pm0 + alpha * (pm1 - pm0)       # = pf0 + alpha * (pf1 - pf0)
          = (pm1 * pf0 - pm0 * pf1) / ((pm1 - pm0) + (pf0 - pf1))
    ```

    When some operating point has `P_miss == P_fa` exactly, `alpha = 1` and
    the EER is that common value. Consequences: perfectly separated scores
    give 0, fully reversed scores (every target below every non-target)
    give 1, and all-equal scores give 0.5.

    Args:
        scores: 1-D array-like of finite real scores, one per trial
            (higher means "more likely the same speaker").
        labels: 1-D array-like of the same length, 1 (or `True`) for target
            trials and 0 (or `False`) for non-target trials. Must contain at
            least one of each.

    Returns:
        The EER as a Python float in `[0, 1]`.

    Example:

    >>> eer([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0])
    0.3333333333333333
    """
    p_miss, p_fa, _ = error_rates(scores, labels)
    return _eer_from_rates(p_miss, p_fa)


def min_dcf(
    scores,
    labels,
    p_target=0.01,
    c_miss=1.0,
    c_fa=1.0,
    return_threshold=False,
):
    """Normalised minimum detection cost function (minDCF), NIST SRE style.

    The detection cost at threshold `t` is

    ```
    C_det(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)
    ```

    and it is normalised by the cost of the best trivial system (accept
    everything or reject everything):

    ```
    C_default = min(c_miss * p_target, c_fa * (1 - p_target))
    minDCF    = min_t C_det(t) / C_default
    ```

    The minimum is taken over the operating points of `error_rates`
    (thresholds = distinct scores plus `+inf`, accept when
    `score >= threshold`), which includes the accept-all and reject-all
    points, so `minDCF <= 1`. It is 0 for perfectly separated scores.

    Args:
        scores: 1-D array-like of finite real scores, one per trial
            (higher means "more likely the same speaker").
        labels: 1-D array-like of the same length, 1 (or `True`) for target
            trials and 0 (or `False`) for non-target trials. Must contain at
            least one of each.
        p_target: Prior probability of a target trial, strictly between 0
            and 1. Defaults to `0.01` (common values: 0.01, 0.05).
        c_miss: Positive cost of a miss. Defaults to `1.0`.
        c_fa: Positive cost of a false alarm. Defaults to `1.0`.
        return_threshold: If `True`, also return the threshold that attains
            the minimum: the smallest such threshold when several attain
            it (up to float rounding of the costs), `+inf` when rejecting
            every trial is optimal.

    Returns:
        The normalised minDCF as a Python float in `[0, 1]`, or the tuple
        `(min_dcf, threshold)` when `return_threshold=True`.

    Example:

    >>> scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    >>> labels = [1, 1, 0, 1, 0, 0]
    >>> round(min_dcf(scores, labels, p_target=0.01), 6)
    0.333333
    >>> value, threshold = min_dcf(scores, labels, return_threshold=True)
    >>> threshold
    0.8
    """
    _validate_cost(p_target, c_miss, c_fa)
    p_miss, p_fa, thresholds = error_rates(scores, labels)
    return _min_dcf_from_rates(
        p_miss, p_fa, thresholds, p_target, c_miss, c_fa, return_threshold
    )


def _min_dcf_from_rates(
    p_miss, p_fa, thresholds, p_target, c_miss, c_fa, return_threshold
):
    c_det = (c_miss * p_target) * p_miss + (c_fa * (1.0 - p_target)) * p_fa
    c_default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    i = int(np.argmin(c_det))
    value = float(c_det[i] / c_default)
    if return_threshold:
        return value, float(thresholds[i])
    return value


def dcf_key(p_target):
    """The result key of minDCF at `p_target`, e.g. "min_dcf_0.01"."""
    return f"min_dcf_{p_target:g}"


def verification_metrics(scores, labels, p_targets=(0.01, 0.05)):
    """EER and minDCF at several priors from one sort of the scores.

    Args:
        scores, labels: as for `eer`.
        p_targets: target priors for minDCF (C_miss = C_fa = 1).

    Returns:
        `{"eer": ..., "min_dcf_0.01": ..., "min_dcf_0.05": ...}` (keys from
        `dcf_key`), each equal to the value of `eer` / `min_dcf`.

    Example:

    >>> verification_metrics([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0])["eer"]
    0.3333333333333333
    """
    for p in p_targets:
        _validate_cost(p, 1.0, 1.0)
    p_miss, p_fa, thresholds = error_rates(scores, labels)
    results = {"eer": _eer_from_rates(p_miss, p_fa)}
    for p in p_targets:
        results[dcf_key(p)] = _min_dcf_from_rates(p_miss, p_fa, thresholds, p, 1.0, 1.0, False)
    return results
