"""Cosine scoring back-end (optionally mean-centred)."""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

# Trials scored per block in the indexed form of `score_pairs`: the two
# gathered (block, n_features) float64 slices then stay in L2/L3 cache,
# which measured ~2x faster than 16k-row blocks for 1M trials x 256 dims.
_BLOCK = 2048


def length_normalize(X):
    """Rows of `X` scaled to unit Euclidean length; all-zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    # A zero vector has no direction: leave it at zero (score 0) instead of NaN.
    norms[norms == 0.0] = 1.0
    return X / norms[:, None]


def check_pair_index(index, n_enroll, n_test):
    """Validates `index=(enroll_index, test_index)` against table sizes.

    Returns:
        Two int64 arrays of equal length.
    """
    if not isinstance(index, (tuple, list)) or len(index) != 2:
        raise ValueError(
            "`index` must be a pair (enroll_index, test_index) of 1-D integer "
            f"arrays. Received: index of type {type(index).__name__}"
        )
    out = []
    for name, idx, size in (
        ("enroll_index", index[0], n_enroll),
        ("test_index", index[1], n_test),
    ):
        arr = np.asarray(idx)
        if arr.ndim != 1 or not (
            np.issubdtype(arr.dtype, np.integer) or arr.size == 0
        ):
            raise ValueError(
                f"`{name}` must be a 1-D array of integers (row numbers). "
                f"Received: {name} with shape={arr.shape}, dtype={arr.dtype}"
            )
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= size):
            raise ValueError(
                f"`{name}` must index rows 0..{size - 1} of its table. "
                f"Received: values in [{arr.min()}, {arr.max()}]"
            )
        out.append(arr)
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(
            "`enroll_index` and `test_index` must have the same length (one "
            f"entry per trial). Received: lengths {out[0].shape[0]} and "
            f"{out[1].shape[0]}"
        )
    return out[0], out[1]


def check_same_length(enroll, test):
    if enroll.shape[0] != test.shape[0]:
        raise ValueError(
            "`score_pairs` scores row i of `enroll` against row i of `test`, "
            "so both must have the same number of rows (use `score_matrix` "
            "for all pairs, or `index=` for a trial list). Received: "
            f"enroll.shape={enroll.shape}, test.shape={test.shape}"
        )


def blockwise_rowdot(A, B, ia, ib):
    """`sum(A[ia] * B[ib], axis=1)` without materialising the full gathers."""
    out = np.empty(ia.shape[0], dtype=np.float64)
    for start in range(0, ia.shape[0], _BLOCK):
        stop = start + _BLOCK
        out[start:stop] = np.einsum(
            "ij,ij->i", np.take(A, ia[start:stop], axis=0), np.take(B, ib[start:stop], axis=0)
        )
    return out


class CosineScorer(TransformerMixin, BaseEstimator):
    """Cosine similarity between embeddings, after optional mean-centring.

    ```
    score(e, t) = <e - mean, t - mean> / (||e - mean|| * ||t - mean||)
    ```

    `mean` is the average training embedding (learned by `fit`, zero when
    `center=False`). Centring on in-domain data removes the offset shared by
    all embeddings, which otherwise inflates every cosine. Scores are always
    cosines; `length_norm` only decides whether `transform` returns unit
    vectors (useful when the scorer is a preprocessing step).

    Args:
        center: If `True`, `fit` learns the mean embedding and `transform` /
            the scores subtract it.
        length_norm: If `True`, `transform` scales each centred embedding to
            unit length (a zero vector stays zero).

    Attributes:
        mean_: `(n_features,)` mean of the training embeddings (zeros when
            `center=False`).
        n_features_in_: embedding size seen by `fit`.

    Example:

    >>> import numpy as np
    >>> scorer = CosineScorer(center=False).fit(np.eye(3))
    >>> scorer.score_pairs([[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]).round(4).tolist()
    [0.7071]
    """

    def __init__(self, center=True, length_norm=True):
        self.center = center
        self.length_norm = length_norm

    def fit(self, X, y=None):
        """Learns the mean embedding.

        Args:
            X: `(n_samples, n_features)` training embeddings.
            y: ignored (accepted for pipelines).

        Returns:
            `self`.
        """
        X = validate_data(self, X, dtype=np.float64)
        if self.center:
            self.mean_ = X.mean(axis=0)
        else:
            self.mean_ = np.zeros(X.shape[1])
        return self

    def _center(self, X):
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X - self.mean_

    def transform(self, X):
        """Centred (and, with `length_norm`, unit-length) embeddings."""
        check_is_fitted(self)
        X = self._center(X)
        return length_normalize(X) if self.length_norm else X

    def score_pairs(self, enroll, test, index=None):
        """Cosine scores of trials.

        Args:
            enroll: `(n, n_features)` enrolment embeddings.
            test: `(n, n_features)` test embeddings; row `i` is scored
                against row `i` of `enroll`.
            index: optional `(enroll_index, test_index)` integer arrays. Then
                `enroll` and `test` are tables of embeddings (any numbers of
                rows) and trial `k` scores `enroll[enroll_index[k]]` against
                `test[test_index[k]]`; each table row is normalised once,
                which is how to score a long trial list
                (`Trials.indices()`).

        Returns:
            `(n_trials,)` float64 scores in `[-1, 1]`.
        """
        check_is_fitted(self)
        E = length_normalize(self._center(enroll))
        T = length_normalize(self._center(test))
        if index is None:
            check_same_length(E, T)
            return np.einsum("ij,ij->i", E, T)
        ie, it = check_pair_index(index, E.shape[0], T.shape[0])
        return blockwise_rowdot(E, T, ie, it)

    def score_matrix(self, enroll, test):
        """`(n_enroll, n_test)` cosine scores of every pair, one matrix product."""
        check_is_fitted(self)
        E = length_normalize(self._center(enroll))
        T = length_normalize(self._center(test))
        return E @ T.T
