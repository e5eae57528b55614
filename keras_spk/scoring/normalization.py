"""Score normalisation with an impostor cohort: z-norm, t-norm, s-norm, adaptive s-norm.

Definitions
-----------
A trial pairs an enrolment embedding `e` with a test embedding `t`; its raw
score is `s(e, t)` for a scoring function `s` (default: cosine similarity).
The cohort is a set of impostor embeddings `c_1..c_M` (speakers that are in
neither side of any trial, e.g. training speakers). For an embedding `x`,
its cohort statistics are the mean and the standard deviation (population,
`ddof=0`) of the cohort scores `{s(x, c_j)}`, taken over all `M` of them or,
with `top_k`, over the `k` highest only:

```
mu(x), sigma(x) = mean, std of top_k{ s(x, c_j) : j = 1..M }

z-norm:  (s(e, t) - mu(e)) / sigma(e)                   # enrolment side
t-norm:  (s(e, t) - mu(t)) / sigma(t)                   # test side
s-norm:  (z-norm + t-norm) / 2                          # symmetric
adaptive s-norm: s-norm with the statistics over the top_k closest cohort
                 members of each side (AS-norm1 of Matejka et al., 2017)
```

Cohort scores are computed as matrix products (cosine: normalised rows,
`E @ C.T`), the top-`k` selection with `np.partition`.

Scoring functions: `"cosine"` (default), `"dot"` (inner product), or a
callable `f(a, b)` taking two `[n, dim]` arrays whose rows are paired and
returning the `[n]` scores (e.g. a fitted pair back-end:
`lambda a, b: backend.decision_function(stack_pairs(a, b))`). A callable is
evaluated on every (embedding, cohort member) pair, in blocks; it is not
persistable by `save_backend` (a string is).

Reference:
    Matejka et al., "Analysis of score normalization in multilingual speaker
    recognition", Interspeech 2017; Cumani et al., "Comparison of speaker
    recognition approaches for real applications", Interspeech 2011.
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.utils._checks import check_choice
from keras_spk.utils._checks import check_positive_int

__all__ = [
    "ScoreNormalizer",
    "adaptive_s_norm",
    "cohort_statistics",
    "s_norm",
    "t_norm",
    "trial_scores",
    "z_norm",
]

SCORINGS = ("cosine", "dot")
METHODS = ("z_norm", "t_norm", "s_norm", "adaptive_s_norm")
# Pairs per call of a callable scoring function (memory bound of repeat/tile).
_CALLABLE_BLOCK = 1 << 18


def _as_embeddings(name, value):
    array = np.asarray(value)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`{name}` must be a 2-D array of embeddings [n, dim]. "
            f"Received: {name}.shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must hold real numbers. Received: {name}.dtype={array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or infinite values; embeddings must be finite.")
    return array


def _check_scoring(scoring):
    if callable(scoring):
        return scoring
    return check_choice("scoring", scoring, SCORINGS)


def _unit_rows(name, x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(
            f"`{name}` has an all-zero row; cosine scoring is undefined for it. "
            f"Rows: {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()}"
        )
    return x / norms


def _check_finite_scores(scores, what):
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"The scoring function returned NaN or infinite {what}.")
    return scores


def _paired_scores(a, b, scoring, names=("enroll", "test")):
    if scoring == "cosine":
        return (_unit_rows(names[0], a) * _unit_rows(names[1], b)).sum(axis=1)
    if scoring == "dot":
        return (a * b).sum(axis=1)
    scores = np.asarray(scoring(a, b), dtype=np.float64).reshape(-1)
    if scores.shape[0] != a.shape[0]:
        raise ValueError(
            "A scoring callable must return one score per row pair. "
            f"Received {scores.shape[0]} scores for {a.shape[0]} pairs."
        )
    return _check_finite_scores(scores, "trial scores")


def _cohort_scores(x, cohort, scoring, name):
    """`[n, M]` scores of every row of `x` against every cohort member."""
    if scoring == "cosine":
        return _unit_rows(name, x) @ _unit_rows("cohort", cohort).T
    if scoring == "dot":
        return x @ cohort.T
    n, m = x.shape[0], cohort.shape[0]
    rows_per_block = max(1, _CALLABLE_BLOCK // m)
    blocks = []
    for start in range(0, n, rows_per_block):
        block = x[start : start + rows_per_block]
        a = np.repeat(block, m, axis=0)
        b = np.tile(cohort, (block.shape[0], 1))
        blocks.append(_paired_scores(a, b, scoring).reshape(block.shape[0], m))
    return np.concatenate(blocks, axis=0)


def _check_top_k(top_k, n_cohort):
    if top_k is None:
        return None
    top_k = check_positive_int("top_k", top_k)
    if not 2 <= top_k <= n_cohort:
        raise ValueError(
            "`top_k` must be between 2 (a standard deviation needs two scores) and the "
            f"cohort size {n_cohort}. Received: top_k={top_k}"
        )
    return top_k


def _statistics(scores, top_k, name):
    if top_k is not None and top_k < scores.shape[1]:
        scores = np.partition(scores, scores.shape[1] - top_k, axis=1)[:, -top_k:]
    mean = scores.mean(axis=1)
    std = scores.std(axis=1)
    if (std == 0).any():
        raise ValueError(
            f"Cohort scores of some `{name}` rows have zero spread (all equal), so they "
            "cannot be normalised; use a larger or more varied cohort. "
            f"Rows: {np.flatnonzero(std == 0)[:10].tolist()}"
        )
    return mean, std


def trial_scores(enroll, test, scoring="cosine"):
    """Raw scores `s(enroll[i], test[i])` of paired rows, `[n]`."""
    enroll = _as_embeddings("enroll", enroll)
    test = _as_embeddings("test", test)
    _check_same_shape(enroll, test)
    return _paired_scores(enroll, test, _check_scoring(scoring))


def cohort_statistics(embeddings, cohort, top_k=None, scoring="cosine"):
    """Mean and standard deviation of each embedding's cohort scores.

    Args:
        embeddings: `[n, dim]` embeddings.
        cohort: `[M, dim]` cohort (impostor) embeddings, `M >= 2`.
        top_k: `None` for all `M` cohort scores, else the `top_k` highest.
        scoring: `"cosine"`, `"dot"` or a paired-rows callable (module doc).

    Returns:
        `(mean, std)`: two `[n]` float64 arrays (std with `ddof=0`).
    """
    embeddings = _as_embeddings("embeddings", embeddings)
    cohort = _check_cohort(cohort, embeddings.shape[1])
    scoring = _check_scoring(scoring)
    top_k = _check_top_k(top_k, cohort.shape[0])
    scores = _check_finite_scores(
        _cohort_scores(embeddings, cohort, scoring, "embeddings"), "cohort scores"
    )
    return _statistics(scores, top_k, "embeddings")


def _check_same_shape(enroll, test):
    if enroll.shape != test.shape:
        raise ValueError(
            "`enroll` and `test` must have the same shape (row i of each forms trial i). "
            f"Received: enroll.shape={enroll.shape}, test.shape={test.shape}"
        )


def _check_cohort(cohort, dim):
    cohort = _as_embeddings("cohort", cohort)
    if cohort.shape[0] < 2:
        raise ValueError(
            "`cohort` needs at least 2 embeddings for a standard deviation. "
            f"Received: n_samples={cohort.shape[0]} (cohort.shape={cohort.shape})"
        )
    if cohort.shape[1] != dim:
        raise ValueError(
            f"`cohort` embeddings must have the trials' size dim={dim}. "
            f"Received: cohort.shape={cohort.shape}"
        )
    return cohort


def _normalize(enroll, test, cohort, method, top_k, scoring):
    enroll = _as_embeddings("enroll", enroll)
    test = _as_embeddings("test", test)
    _check_same_shape(enroll, test)
    cohort = _check_cohort(cohort, enroll.shape[1])
    scoring = _check_scoring(scoring)
    top_k = _check_top_k(top_k, cohort.shape[0])
    raw = _paired_scores(enroll, test, scoring)
    z = t = None
    if method in ("z_norm", "s_norm"):
        scores = _check_finite_scores(
            _cohort_scores(enroll, cohort, scoring, "enroll"), "cohort scores"
        )
        mean, std = _statistics(scores, top_k, "enroll")
        z = (raw - mean) / std
    if method in ("t_norm", "s_norm"):
        scores = _check_finite_scores(
            _cohort_scores(test, cohort, scoring, "test"), "cohort scores"
        )
        mean, std = _statistics(scores, top_k, "test")
        t = (raw - mean) / std
    if method == "z_norm":
        return z
    if method == "t_norm":
        return t
    return 0.5 * (z + t)


def z_norm(enroll, test, cohort, scoring="cosine", top_k=None):
    """z-norm: `(s(e, t) - mu(e)) / sigma(e)`, enrolment-side cohort statistics.

    Args:
        enroll: `[n, dim]` enrolment embeddings; row `i` with `test[i]` is trial `i`.
        test: `[n, dim]` test embeddings.
        cohort: `[M, dim]` cohort embeddings, `M >= 2`.
        scoring: `"cosine"`, `"dot"` or a paired-rows callable (module doc).
        top_k: `None` (whole cohort) or the number of highest cohort scores used.

    Returns:
        `[n]` normalised scores (float64).
    """
    return _normalize(enroll, test, cohort, "z_norm", top_k, scoring)


def t_norm(enroll, test, cohort, scoring="cosine", top_k=None):
    """t-norm: `(s(e, t) - mu(t)) / sigma(t)`, test-side cohort statistics.

    Arguments and result as `z_norm`.
    """
    return _normalize(enroll, test, cohort, "t_norm", top_k, scoring)


def s_norm(enroll, test, cohort, scoring="cosine", top_k=None):
    """s-norm: the mean of z-norm and t-norm of each trial.

    Arguments and result as `z_norm`; with `top_k` this is adaptive s-norm.
    """
    return _normalize(enroll, test, cohort, "s_norm", top_k, scoring)


def adaptive_s_norm(enroll, test, cohort, top_k, scoring="cosine"):
    """Adaptive s-norm: s-norm with statistics over each side's `top_k` best cohort scores.

    Arguments and result as `z_norm`; `top_k` is required (2 <= top_k <= M).
    """
    if top_k is None:
        raise ValueError(
            "`adaptive_s_norm` needs `top_k` (the cohort members kept per side). "
            "Received: top_k=None"
        )
    return _normalize(enroll, test, cohort, "s_norm", top_k, scoring)


class ScoreNormalizer(BaseEstimator):
    """Cohort score normalisation as an estimator: `fit(cohort)`, `score_pairs(enroll, test)`.

    `fit` stores the cohort embeddings; `score_pairs` scores trials with
    `scoring` and normalises them with `method` (definitions in the module
    docstring).

    Args:
        method: `"s_norm"` (default), `"z_norm"`, `"t_norm"` or
            `"adaptive_s_norm"` (needs `top_k`).
        top_k: `None` for the whole cohort, else the number of highest cohort
            scores per side used for the statistics (adaptive normalisation;
            also accepted by z-, t- and s-norm).
        scoring: `"cosine"` (default), `"dot"`, or a paired-rows callable.

    Attributes:
        cohort_: `[M, dim]` cohort embeddings (float64).
        n_features_in_: the embedding size `dim`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> normalizer = ScoreNormalizer(method="adaptive_s_norm", top_k=20)
    >>> normalizer = normalizer.fit(rng.normal(size=(50, 8)))
    >>> normalizer.score_pairs(rng.normal(size=(3, 8)), rng.normal(size=(3, 8))).shape
    (3,)
    """

    def __init__(self, method="s_norm", top_k=None, scoring="cosine"):
        self.method = method
        self.top_k = top_k
        self.scoring = scoring

    def fit(self, X, y=None):
        """Stores the cohort.

        Args:
            X: `[M, dim]` cohort embeddings (impostors, disjoint from the trials' speakers).
            y: ignored.

        Returns:
            self.
        """
        check_choice("method", self.method, METHODS)
        _check_scoring(self.scoring)
        X = validate_data(self, X, dtype=np.float64)
        cohort = _check_cohort(X, X.shape[1])
        _check_top_k(self.top_k, cohort.shape[0])
        if self.method == "adaptive_s_norm" and self.top_k is None:
            raise ValueError('method="adaptive_s_norm" needs `top_k`. Received: top_k=None')
        self.cohort_ = cohort
        return self

    def score_pairs(self, enroll, test):
        """Normalised scores of the trials `(enroll[i], test[i])`.

        Args:
            enroll: `[n, dim]` enrolment embeddings.
            test: `[n, dim]` test embeddings.

        Returns:
            `[n]` float64 normalised scores.
        """
        check_is_fitted(self)
        enroll = _as_embeddings("enroll", enroll)
        if enroll.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`enroll` must have the cohort's size dim={self.n_features_in_}. "
                f"Received: enroll.shape={enroll.shape}"
            )
        method = "s_norm" if self.method == "adaptive_s_norm" else self.method
        return _normalize(enroll, test, self.cohort_, method, self.top_k, self.scoring)
