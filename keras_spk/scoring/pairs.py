"""Trial pairs for pair back-ends: sampling, the stacked-pair format, pair features.

The stacked-pair format
-----------------------
A pair back-end sees one trial as one row `[enroll | test]`: `X` has shape
`[n_trials, 2 * dim]`, the enrolment embedding in the first `dim` columns and
the test embedding in the last `dim` (`stack_pairs` builds it, `split_pairs`
takes it apart). So a whole back-end is an ordinary scikit-learn `Pipeline`
that maps trial rows to a score:

```python
index_a, index_b, same = sample_pairs(train_speakers, n_pairs=20000)
X_train = stack_pairs(train_emb[index_a], train_emb[index_b])
backend = make_pipeline(BVector(), LogisticRegression()).fit(X_train, same)
scores = backend.decision_function(stack_pairs(enroll_emb, test_emb))
```

The transformers here turn each row into the pair features of the RawNet
paper (Jung et al., 2019, section 3), to be followed by any classifier, e.g.
`LogisticRegression` or `DNNPairClassifier` (the papers' DNN back-end):

* `BVector`: `[e + t, e - t, e * t]` (b-vector; Lee et al. via RawNet §3 and
  speaker basis §4.3).
* `ConcatMul`: `[e, t, e * t]` (RawNet §3, the proposed "concat&mul").
* `RBVector`: the b-vector followed by the r-vectors of `e` and of `t`
  (rb-vector; Heo et al. 2016 via RawNet §3), learned from training embeddings.

`e` is the enrolment and `t` the test embedding; products are element-wise.
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_array
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.utils._checks import check_positive_int
from keras_spk.utils._checks import is_int
from keras_spk.utils._checks import is_real

__all__ = [
    "BVector",
    "ConcatMul",
    "RBVector",
    "b_vector",
    "sample_pairs",
    "split_pairs",
    "stack_pairs",
]

_FLOATS = [np.float64, np.float32]


# === Pair sampling ===


def sample_pairs(labels, n_pairs, target_fraction=0.5, seed=0):
    """Samples same- and different-speaker pairs of utterances.

    `round(n_pairs * target_fraction)` target pairs are drawn as: an anchor
    utterance uniformly among the utterances whose speaker has at least two,
    then a partner uniformly among the *other* utterances of that speaker
    (so never a self-pair). The remaining non-target pairs are drawn as: an
    anchor uniformly among all utterances, then a partner uniformly among the
    utterances of every other speaker. The two sides of each pair are then
    swapped with probability 1/2 (enrolment and test play the same role) and
    the pairs are shuffled. Pairs are drawn with replacement, so a pair may
    occur more than once. Everything comes from
    `np.random.default_rng(seed)`: the same arguments give the same pairs.

    Args:
        labels: 1-D array-like of speaker labels (any sortable type), one per
            utterance (embedding).
        n_pairs: positive int, number of pairs to return.
        target_fraction: fraction of target (same-speaker) pairs, in `[0, 1]`.
        seed: int seed of the generator.

    Returns:
        `(index_a, index_b, same)`: int64 arrays of length `n_pairs`; the
        pair `k` is utterances `index_a[k]` and `index_b[k]` (positions in
        `labels`) and `same[k]` is 1 for a target pair, 0 otherwise.

    Example:

    >>> a, b, same = sample_pairs(["x", "x", "y", "y"], n_pairs=4)
    >>> bool((a != b).all()), int(same.sum())
    (True, 2)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(
            "`labels` must be a non-empty 1-D array of speaker labels. "
            f"Received: labels.shape={labels.shape}"
        )
    n_pairs = check_positive_int("n_pairs", n_pairs)
    if not is_real(target_fraction) or not 0.0 <= target_fraction <= 1.0:
        raise ValueError(
            "`target_fraction` must be a number in [0, 1]. "
            f"Received: target_fraction={target_fraction!r}"
        )
    if not is_int(seed):
        raise ValueError(f"`seed` must be an integer. Received: seed={seed!r}")

    n_target = round(n_pairs * target_fraction)
    n_nontarget = n_pairs - n_target
    n = labels.shape[0]
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    # Utterances grouped by speaker: speaker c occupies grouped positions
    # starts[c] .. starts[c] + counts[c] - 1; rank[i] is utterance i's position.
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    rng = np.random.default_rng(seed)

    eligible = np.flatnonzero(counts[codes] >= 2)
    if n_target and eligible.size == 0:
        raise ValueError(
            "Target pairs need a speaker with at least two utterances; every "
            "speaker in `labels` has one. Use target_fraction=0 or more data."
        )
    anchor = eligible[rng.integers(0, max(eligible.size, 1), n_target)]
    speaker = codes[anchor]
    size = counts[speaker]
    # A shift in 1..size-1 within the speaker's block never lands on the anchor.
    shift = rng.integers(1, np.maximum(size, 2))
    partner = order[starts[speaker] + (rank[anchor] - starts[speaker] + shift) % size]

    if n_nontarget and counts.size < 2:
        raise ValueError(
            "Non-target pairs need at least two speakers; `labels` has one. "
            "Use target_fraction=1 or more speakers."
        )
    anchor_nt = rng.integers(0, n, n_nontarget)
    speaker_nt = codes[anchor_nt]
    size_nt = counts[speaker_nt]
    # Uniform over the grouped positions with the anchor speaker's block cut out.
    position = rng.integers(0, n - size_nt)
    position = np.where(position >= starts[speaker_nt], position + size_nt, position)
    partner_nt = order[position]

    index_a = np.concatenate([anchor, anchor_nt]).astype(np.int64)
    index_b = np.concatenate([partner, partner_nt]).astype(np.int64)
    same = np.concatenate([np.ones(n_target, np.int64), np.zeros(n_nontarget, np.int64)])
    swap = rng.random(n_pairs) < 0.5
    index_a, index_b = np.where(swap, index_b, index_a), np.where(swap, index_a, index_b)
    permutation = rng.permutation(n_pairs)
    return index_a[permutation], index_b[permutation], same[permutation]


# === The stacked-pair format ===


def _check_embeddings(name, value):
    array = np.asarray(value)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`{name}` must be a 2-D array of embeddings [n, dim]. "
            f"Received: {name}.shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must hold real numbers. Received: {name}.dtype={array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or infinite values; embeddings must be finite.")
    return array


def stack_pairs(enroll, test):
    """Trial rows `[enroll | test]`: the input format of the pair back-ends.

    Args:
        enroll: `[n, dim]` enrolment embeddings, one row per trial.
        test: `[n, dim]` test embeddings, row `i` paired with `enroll[i]`.

    Returns:
        `[n, 2 * dim]` array, `np.concatenate([enroll, test], axis=1)`.
    """
    enroll = _check_embeddings("enroll", enroll)
    test = _check_embeddings("test", test)
    if enroll.shape != test.shape:
        raise ValueError(
            "`enroll` and `test` must have the same shape (one test embedding "
            "per enrolment embedding). "
            f"Received: enroll.shape={enroll.shape}, test.shape={test.shape}"
        )
    return np.concatenate([enroll, test], axis=1)


def split_pairs(X):
    """`(enroll, test)` halves of trial rows built by `stack_pairs`.

    Raises:
        ValueError: when `X` is not 2-D or has an odd number of columns.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] % 2 != 0 or X.shape[1] == 0:
        raise ValueError(
            "Pair back-ends take trial rows [enroll | test] of shape [n, 2 * dim] "
            "(see `stack_pairs`), so the number of columns must be even. "
            f"Received: n_features={X.shape[1] if X.ndim == 2 else None} (X.shape={X.shape})"
        )
    dim = X.shape[1] // 2
    return X[:, :dim], X[:, dim:]


def b_vector(enroll, test):
    """`[e + t, e - t, e * t]`: the b-vector of two embeddings (rows paired).

    Plain (signed) subtraction `e - t`, as in the papers' text ("addition,
    subtraction, and multiplication") and the RawNet authors' code.
    """
    return np.concatenate([enroll + test, enroll - test, enroll * test], axis=1)


# === Pair feature transformers ===


class _PairTransformer(TransformerMixin, BaseEstimator):
    """Shared input checks of the pair transformers (stacked-pair rows)."""

    def _validate_pairs(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=_FLOATS)
        split_pairs(X)  # raises on an odd number of columns
        return X

    def fit(self, X, y=None):
        """Checks the trial rows and records the embedding size.

        Args:
            X: `[n, 2 * dim]` trial rows `[enroll | test]`.
            y: ignored.

        Returns:
            self.
        """
        X = self._validate_pairs(X, reset=True)
        self.embedding_dim_ = X.shape[1] // 2
        return self

    def transform(self, X):
        """Pair features of each trial row.

        Args:
            X: `[n, 2 * dim]` trial rows `[enroll | test]`.

        Returns:
            `[n, n_features_out]` features.
        """
        check_is_fitted(self)
        X = self._validate_pairs(X, reset=False)
        enroll, test = split_pairs(X)
        return self._features(enroll, test)


class BVector(_PairTransformer):
    """b-vector pair features: `[e + t, e - t, e * t]`.

    The element-wise sum, difference and product of the enrolment embedding
    `e` and the test embedding `t`, concatenated: `3 * dim` features per
    trial. The difference is signed (`e - t`), as the papers describe
    ("addition, subtraction, and multiplication") and as the RawNet authors'
    b-vector model computes it (a Keras `Subtract` layer); a DNN back-end
    sees both orders of a pair during training when pairs come from
    `sample_pairs`, which swaps sides at random.

    Input shape:
        `[n, 2 * dim]` trial rows `[enroll | test]` (`stack_pairs`).

    Output shape:
        `[n, 3 * dim]`.

    Example:

    >>> BVector().fit_transform([[1.0, 2.0, 3.0, 5.0]]).tolist()
    [[4.0, 7.0, -2.0, -3.0, 3.0, 10.0]]

    Reference:
        Jung et al., "RawNet: Advanced end-to-end deep neural network using
        raw waveforms for text-independent speaker verification", Interspeech
        2019, section 3; Heo et al., "End-to-end losses based on speaker
        basis vectors and all-speaker hard negative mining for speaker
        verification", Interspeech 2019, section 4.3.
    """

    def _features(self, enroll, test):
        return b_vector(enroll, test)


class ConcatMul(_PairTransformer):
    """concat&mul pair features: `[e, t, e * t]`.

    The enrolment embedding, the test embedding and their element-wise
    product, concatenated (`3 * dim` features): the RawNet paper's proposed
    DNN back-end input, on the argument that a DNN's weighted sums can
    replace the b-vector's addition and subtraction, while the product is
    the term that matters.

    Input shape:
        `[n, 2 * dim]` trial rows `[enroll | test]` (`stack_pairs`).

    Output shape:
        `[n, 3 * dim]`.

    Example:

    >>> ConcatMul().fit_transform([[1.0, 2.0, 3.0, 5.0]]).tolist()
    [[1.0, 2.0, 3.0, 5.0, 3.0, 10.0]]

    Reference:
        Jung et al., "RawNet: ...", Interspeech 2019, section 3 (Table 4,
        "concat&mul").
    """

    def _features(self, enroll, test):
        return np.concatenate([enroll, test, enroll * test], axis=1)


class RBVector(_PairTransformer):
    """rb-vector pair features: the b-vector followed by two r-vectors.

    RawNet §3 (after Heo et al., 2016): the r-vector represents how an
    embedding relates to the training set. `fit` takes `n_representatives`
    representative vectors `r_1..r_K`: the k-means centroids of the training
    embeddings. For an embedding `x`, the b-vectors `b(x, r_k)` against every
    representative are each reduced by PCA to `n_components` dimensions (one
    PCA per representative, fitted on the b-vectors of the training
    embeddings against that representative) and concatenated:

    ```
    r(x) = [P_1 (b(x, r_1) - m_1), ..., P_K (b(x, r_K) - m_K)]     # K * n_components
    rb(e, t) = [b(e, t), r(e), r(t)]            # 3 * dim + 2 * K * n_components
    ```

    with `b(x, y) = [x + y, x - y, x * y]`, `m_k` the mean and `P_k` the
    top principal axes of the training b-vectors against `r_k`. Since each
    `r_k` is fixed, `b(x, r_k)` is affine in `x`; `transform` uses that to
    apply every PCA as one matrix product (no `[n, K, 3 * dim]` array).

    Training embeddings: `fit(X, embeddings=E)` uses the rows of `E`
    (`[n_train, dim]`, e.g. all training utterances); without `embeddings`,
    the distinct rows of both halves of `X` (the embeddings the training
    pairs were built from) are used. In a pipeline, pass
    `pipeline.fit(X, y, rbvector__embeddings=E)`.

    Args:
        n_representatives: number of k-means representatives `K`.
        n_components: PCA dimensions kept per representative (at most `dim`).
        seed: seed of k-means (`KMeans(random_state=seed, n_init=10)`).

    Attributes:
        representatives_: `[K, dim]` k-means centroids of the training embeddings.
        pca_means_: `[K, 3 * dim]` mean b-vector per representative.
        pca_components_: `[K, n_components, 3 * dim]` principal axes (rows,
            unit norm, largest-magnitude entry positive), by decreasing variance.
        explained_variance_: `[K, n_components]` variance along each axis.

    Input shape:
        `[n, 2 * dim]` trial rows `[enroll | test]` (`stack_pairs`).

    Output shape:
        `[n, 3 * dim + 2 * n_representatives * n_components]`.

    Reference:
        Jung et al., "RawNet: ...", Interspeech 2019, section 3; Heo et al.,
        "Advanced b-vector system based deep neural network as classifier for
        speaker verification", ICASSP 2016.
    """

    def __init__(self, n_representatives=16, n_components=8, seed=0):
        self.n_representatives = n_representatives
        self.n_components = n_components
        self.seed = seed

    def fit(self, X, y=None, embeddings=None):
        """Finds the representatives and the per-representative PCAs.

        Args:
            X: `[n, 2 * dim]` training trial rows `[enroll | test]`.
            y: ignored.
            embeddings: optional `[n_train, dim]` training embeddings; default:
                the distinct rows of the two halves of `X`.

        Returns:
            self.
        """
        n_representatives = check_positive_int("n_representatives", self.n_representatives)
        n_components = check_positive_int("n_components", self.n_components)
        if not is_int(self.seed):
            raise ValueError(f"`seed` must be an integer. Received: seed={self.seed!r}")
        X = self._validate_pairs(X, reset=True)
        dim = X.shape[1] // 2
        if embeddings is None:
            train = np.unique(np.concatenate(split_pairs(X), axis=0), axis=0)
        else:
            train = check_array(embeddings, dtype=_FLOATS, input_name="embeddings")
            if train.shape[1] != dim:
                raise ValueError(
                    f"`embeddings` must have dim={dim} columns, the size of one half of X. "
                    f"Received: embeddings.shape={train.shape}"
                )
        train = train.astype(np.float64)
        n_distinct = np.unique(train, axis=0).shape[0]
        if n_representatives > n_distinct:
            raise ValueError(
                "`n_representatives` must be at most the number of distinct training "
                f"embeddings ({n_distinct}). Received: n_representatives={n_representatives}"
            )
        if n_components > dim:
            raise ValueError(
                "`n_components` must be at most the embedding size (the b-vectors of one "
                f"representative span at most dim={dim} dimensions). "
                f"Received: n_components={n_components}"
            )

        from sklearn.cluster import KMeans

        kmeans = KMeans(n_clusters=n_representatives, n_init=10, random_state=self.seed)
        representatives = kmeans.fit(train).cluster_centers_

        mean = train.mean(axis=0)
        centered = train - mean
        covariance = centered.T @ centered / train.shape[0]
        identity = np.eye(dim)
        means, components, variances = [], [], []
        for r in representatives:
            # b(x, r) - b(mean, r) = M (x - mean) with M = [I; I; diag(r)], so
            # the b-vectors' covariance is M C M^T (no [n, 3 * dim] array).
            lift = np.concatenate([identity, identity, np.diag(r)], axis=0)
            eigenvalues, eigenvectors = np.linalg.eigh(lift @ covariance @ lift.T)
            top = np.argsort(eigenvalues, kind="stable")[::-1][:n_components]
            axes = eigenvectors[:, top].T
            # Sign convention of scikit-learn's svd_flip: largest |entry| positive.
            pivot = axes[np.arange(n_components), np.argmax(np.abs(axes), axis=1)]
            axes = axes * np.where(pivot < 0, -1.0, 1.0)[:, None]
            means.append(b_vector(mean[None], r[None])[0])
            components.append(axes)
            variances.append(np.maximum(eigenvalues[top], 0.0))
        self.embedding_dim_ = dim
        self.representatives_ = representatives
        self.pca_means_ = np.stack(means)
        self.pca_components_ = np.stack(components)
        self.explained_variance_ = np.stack(variances)
        return self

    def r_vector(self, embeddings):
        """r-vectors `[n, K * n_components]` of single embeddings `[n, dim]`."""
        check_is_fitted(self)
        embeddings = check_array(embeddings, dtype=_FLOATS, input_name="embeddings")
        if embeddings.shape[1] != self.embedding_dim_:
            raise ValueError(
                f"`embeddings` must have {self.embedding_dim_} columns. "
                f"Received: embeddings.shape={embeddings.shape}"
            )
        return self._r_vector(embeddings)

    def _r_vector(self, x):
        dim = self.embedding_dim_
        axes = self.pca_components_  # [K, c, 3 * dim]
        r = self.representatives_  # [K, dim]
        # P_k (b(x, r_k) - m_k) = x W_k + P_k (s_k - m_k), s_k = [r_k, -r_k, 0].
        weights = (
            axes[:, :, :dim] + axes[:, :, dim : 2 * dim] + axes[:, :, 2 * dim :] * r[:, None, :]
        )
        shift = np.concatenate([r, -r, np.zeros_like(r)], axis=1) - self.pca_means_
        offset = np.einsum("kcj,kj->kc", axes, shift)
        projection = np.einsum("nd,kcd->nkc", x, weights) + offset
        return projection.reshape(x.shape[0], -1).astype(x.dtype, copy=False)

    def _features(self, enroll, test):
        return np.concatenate(
            [b_vector(enroll, test), self._r_vector(enroll), self._r_vector(test)], axis=1
        )
