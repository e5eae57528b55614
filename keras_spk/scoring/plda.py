"""Two-covariance PLDA back-end: EM training and closed-form trial scoring.

Model (two-covariance PLDA, Brümmer & de Villiers 2010; Sizov et al. 2014)
--------------------------------------------------------------------------

An embedding `x` of speaker `s` is

```
x = mu + y_s + e,      y_s ~ N(0, Sb)  (one per speaker),  e ~ N(0, Sw)  (one per embedding)
```

with between-speaker covariance `Sb` (positive semi-definite) and
within-speaker covariance `Sw` (positive definite).

Simultaneous diagonalisation. With `Sw = L L^T` (Cholesky) and
`L^-1 Sb L^-T = U diag(psi) U^T` (eigh), the matrix `T = U^T L^-1` gives
`T Sw T^T = I` and `T Sb T^T = diag(psi)`. In the coordinates
`z = T (x - mu)` the dimensions are independent with unit within-speaker
variance and between-speaker variance `psi_k`, so every quantity below is
elementwise in `z`.

Log-likelihood ratio of a trial (x1, x2) (same speaker vs different speakers):

```
LLR = log N([x1; x2]; [mu; mu], [[Sb + Sw, Sb], [Sb, Sb + Sw]])
      - log N(x1; mu, Sb + Sw) - log N(x2; mu, Sb + Sw)
```

Per dimension the 2x2 joint covariance `[[1 + psi, psi], [psi, 1 + psi]]` has
determinant `1 + 2 psi` and inverse `[[1 + psi, -psi], [-psi, 1 + psi]] / (1 + 2 psi)`,
which gives

```
LLR = sum_k q_k (z1_k^2 + z2_k^2) + 2 p_k z1_k z2_k + c
q_k = -psi_k^2 / (2 (1 + psi_k) (1 + 2 psi_k))
p_k =  psi_k / (2 (1 + 2 psi_k))
c   = -1/2 sum_k log((1 + 2 psi_k) / (1 + psi_k)^2)
```

i.e. in the original space, with `xc = x - mu`,
`LLR = xc1^T Q xc1 + xc2^T Q xc2 + 2 xc1^T P xc2 + c` where
`Q = T^T diag(q) T` and `P = T^T diag(p) T` (stored as `Q_`, `P_`).
Scoring uses the diagonal form: one projection per embedding, then
elementwise products, and a single matrix product for `score_matrix`.

Multi-utterance enrolment. Given `n` enrolment embeddings with mean `m`
(`zm = T (m - mu)`), the speaker variable's posterior is, per dimension,
`y | enrol ~ N(a, v)` with `a = n psi zm / (1 + n psi)` and
`v = psi / (1 + n psi)`. The test embedding's predictive density is
`N(z; a, 1 + v)`, so

```
LLR = sum_k log N(z_k; a_k, 1 + v_k) - log N(z_k; 0, 1 + psi_k)
```

which depends on the enrolment embeddings only through their mean and
count; with `n = 1` it equals the symmetric formula above.

EM training (sufficient statistics only: per-speaker count `n_s`, per-speaker
sum `f_s` of centred embeddings, total scatter `S = sum_i xc_i xc_i^T` and
the scatter around speaker means `W = S - sum_s f_s f_s^T / n_s`).
`mu` is the global mean. In the current diagonalising basis, with
`g_s = T f_s` and `zbar_s = g_s / n_s`:

```
E-step:  y_s | data ~ N(yhat_s, diag(c_s)),  c_s = psi / (1 + n_s psi),  yhat_s = c_s * g_s
M-step:  Sb_z = (sum_s yhat_s yhat_s^T + diag(sum_s c_s)) / n_speakers
         Sw_z = (sum_i E[(z_i - y_s)(z_i - y_s)^T]) / n_samples
              = (T W T^T + sum_s n_s (zbar_s - yhat_s)(zbar_s - yhat_s)^T
                 + diag(sum_s n_s c_s)) / n_samples
```

mapped back with `T^-1 = L U`. Each iteration costs a few
`(n_speakers, d) x (d, d)` products and one `d x d` eigendecomposition,
independent of the number of embeddings. The initial values are the
moment estimates (pooled within-speaker covariance; covariance of speaker
means). The marginal log-likelihood of the training data, which EM never
decreases, is

```
sum_s log p(x_s1..x_sn) = -1/2 tr(T S T^T) + 1/2 sum_s sum_k psi_k g_sk^2 / (1 + n_s psi_k)
                          - 1/2 sum_s sum_k log(1 + n_s psi_k)
                          - n_samples / 2 (d log(2 pi) + log det Sw)
```
"""

import numbers

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.scoring.cosine import blockwise_rowdot
from keras_spk.scoring.cosine import check_pair_index
from keras_spk.scoring.cosine import check_same_length

_MODELS = ("two_covariance",)


def _check_well_conditioned(within):
    """Raises unless `within` is numerically positive definite."""
    eigval = np.linalg.eigvalsh(within)
    if not eigval[0] > 1e-12 * eigval[-1]:
        raise ValueError(
            "The within-speaker covariance is not positive definite (some "
            "embedding directions never vary within a speaker, e.g. constant "
            "or linearly dependent features). Reduce the dimension first "
            "(e.g. with LDA) or use more embeddings per speaker. Received: "
            f"eigenvalues from {eigval[0]:.3g} to {eigval[-1]:.3g}"
        )


def _diagonalize(between, within):
    """Simultaneous diagonalisation of `between` (PSD) and `within` (PD).

    Returns:
        `(T, T_inv, psi, logdet_within)` with `T within T^T = I` and
        `T between T^T = diag(psi)`, `psi` sorted in decreasing order.
    """
    try:
        L = np.linalg.cholesky(within)
    except np.linalg.LinAlgError:
        raise ValueError(
            "The within-speaker covariance is not positive definite (some "
            "embedding directions never vary within a speaker, e.g. constant "
            "or linearly dependent features). Reduce the dimension first "
            "(e.g. with LDA) or use more embeddings per speaker."
        ) from None
    L_inv = scipy.linalg.solve_triangular(L, np.eye(L.shape[0]), lower=True)
    B = L_inv @ between @ L_inv.T
    psi, U = np.linalg.eigh(0.5 * (B + B.T))
    # Decreasing order; a contiguous copy, since BLAS is skipped for
    # negative-stride views (6x slower products).
    psi, U = psi[::-1].copy(), np.ascontiguousarray(U[:, ::-1])
    # Sb is PSD; tiny negative eigenvalues are rounding.
    psi = np.clip(psi, 0.0, None)
    logdet = 2.0 * np.sum(np.log(np.diag(L)))
    return U.T @ L_inv, L @ U, psi, logdet


def _check_covariance(name, value, d, positive_definite):
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (d, d):
        raise ValueError(
            f"`{name}` must be a ({d}, {d}) matrix (d = len(mean)). "
            f"Received: {name}.shape={arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite. Received: {name} with NaN or Inf")
    if not np.allclose(arr, arr.T, rtol=1e-8, atol=1e-12 * np.abs(arr).max()):
        raise ValueError(f"`{name}` must be symmetric. Received: a non-symmetric {name}")
    arr = 0.5 * (arr + arr.T)
    eig_min = np.linalg.eigvalsh(arr)[0]
    tol = -1e-10 * max(np.abs(arr).max(), 1e-300)
    if (positive_definite and eig_min <= 0.0) or eig_min < tol:
        kind = "positive definite" if positive_definite else "positive semi-definite"
        raise ValueError(
            f"`{name}` must be {kind}. Received: smallest eigenvalue {eig_min:.3g}"
        )
    return arr


def _check_counts(enroll_counts, n_rows):
    counts = np.asarray(enroll_counts)
    if (
        counts.shape != (n_rows,)
        or not np.issubdtype(counts.dtype, np.integer)
        or (n_rows and counts.min() < 1)
    ):
        raise ValueError(
            "`enroll_counts` must be a 1-D array of positive integers, one per "
            "enrolment row (the number of embeddings averaged into that row). "
            f"Received: enroll_counts with shape={counts.shape}, dtype={counts.dtype}"
            + (f", min={counts.min()}" if counts.size else "")
            + f" for {n_rows} enrolment rows"
        )
    return counts.astype(np.float64)


class PLDA(BaseEstimator):
    """Two-covariance PLDA scoring back-end, trained by EM.

    Models an embedding of speaker `s` as `x = mu + y_s + e` with
    `y_s ~ N(0, between_covariance_)` and `e ~ N(0, within_covariance_)`,
    and scores a trial by the exact log-likelihood ratio of "same speaker"
    against "different speakers" (see the module docstring for the
    derivation). All computation is float64.

    Scoring API:

    * `score_pairs(enroll, test)`: row `i` against row `i`.
    * `score_pairs(enroll, test, index=(ei, ti))`: `enroll` and `test` are
      tables; trial `k` is `enroll[ei[k]]` vs `test[ti[k]]`. Each table row is
      projected once, so this is the fast way to score a trial list
      (`Trials.indices()` gives `(ei, ti)` into `Trials.utterances`).
    * `score_matrix(enroll, test)`: all pairs, one matrix product.
    * Multi-utterance enrolment: pass the MEAN of each speaker's enrolment
      embeddings as its `enroll` row and the number of embeddings averaged in
      `enroll_counts=`; the score then uses the posterior of the speaker
      variable given all `n` embeddings (exact; it depends on them only
      through their mean and count). Works with all three forms above.
    * Through a fitted `Pipeline` (e.g. `LDA` then `PLDA`): the module-level
      `score_pairs(pipeline, enroll, test)` / `score_matrix(...)`, i.e.
      `pipeline[-1].score_pairs(pipeline[:-1].transform(enroll),
      pipeline[:-1].transform(test))`. For multi-utterance enrolment average
      the transformed embeddings (`pipeline[:-1].transform(E).mean(0)`).

    Args:
        n_iter: Maximum number of EM iterations (0 keeps the moment-based
            initial estimates).
        tol: EM stops early when an iteration raises the mean per-embedding
            training log-likelihood by less than `tol`.
        model: PLDA variant; only `"two_covariance"`.

    Attributes:
        mean_: `(d,)` global mean `mu`.
        between_covariance_: `(d, d)` between-speaker covariance `Sb`.
        within_covariance_: `(d, d)` within-speaker covariance `Sw`.
        transform_: `(d, d)` matrix `T` with `T Sw T^T = I`,
            `T Sb T^T = diag(psi_)`.
        psi_: `(d,)` between-speaker variances in that basis (decreasing).
        Q_, P_: `(d, d)` quadratic-form matrices and `llr_constant_` the
            constant of `LLR = xc1^T Q xc1 + xc2^T Q xc2 + 2 xc1^T P xc2 + c`.
        n_iter_: EM iterations run.
        log_likelihood_: mean per-embedding training log-likelihood before
            the first and after each EM iteration (non-decreasing).
        n_speakers_: number of training speakers (0 from `from_parameters`).
        n_features_in_: embedding size.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> speakers = np.repeat(np.arange(50), 10)
    >>> X = 2.0 * rng.standard_normal((50, 4))[speakers] + rng.standard_normal((500, 4))
    >>> plda = PLDA().fit(X, speakers)
    >>> same = plda.score_pairs(X[0::10], X[1::10])  # utterances 0 and 1 of each speaker
    >>> different = plda.score_pairs(X[0::10], np.roll(X[1::10], 1, axis=0))
    >>> bool(same.mean() > 0 > different.mean())
    True

    Reference:
        N. Brümmer and E. de Villiers, "The speaker partitioning problem",
        Odyssey 2010; A. Sizov, K. A. Lee and T. Kinnunen, "Unifying
        probabilistic linear discriminant analysis variants in biometric
        authentication", S+SSPR 2014.
    """

    def __init__(self, n_iter=10, tol=1e-4, model="two_covariance"):
        self.n_iter = n_iter
        self.tol = tol
        self.model = model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _check_params(self):
        if (
            not isinstance(self.n_iter, numbers.Integral)
            or isinstance(self.n_iter, bool)
            or self.n_iter < 0
        ):
            raise ValueError(
                f"`n_iter` must be a non-negative integer. Received: n_iter={self.n_iter!r}"
            )
        if (
            not isinstance(self.tol, numbers.Real)
            or isinstance(self.tol, bool)
            or not self.tol >= 0
        ):
            raise ValueError(f"`tol` must be a number >= 0. Received: tol={self.tol!r}")
        if self.model not in _MODELS:
            raise ValueError(f"`model` must be one of {_MODELS}. Received: model={self.model!r}")

    # === Training ===

    def fit(self, X, y):
        """Estimates `mu`, `Sb` and `Sw` by EM.

        Args:
            X: `(n_samples, n_features)` embeddings.
            y: `(n_samples,)` speaker labels (any hashable, sortable values).
                Needs at least 2 speakers and, so that `Sw` is full rank,
                `n_samples - n_speakers >= n_features`.

        Returns:
            `self`.
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        n_samples, d = X.shape
        _, speaker, counts = np.unique(y, return_inverse=True, return_counts=True)
        n_speakers = counts.shape[0]
        if n_speakers < 2:
            raise ValueError(
                "PLDA needs embeddings of at least 2 speakers to separate "
                f"between- from within-speaker variability. Received: "
                f"{n_samples} sample(s) of 1 class (speaker)"
            )
        if n_samples - n_speakers < d:
            raise ValueError(
                "Too few samples: estimating the within-speaker covariance in "
                f"{d} dimensions needs n_samples - n_speakers >= n_features, "
                "i.e. enough repeated embeddings per speaker. Reduce the "
                "dimension first (e.g. LDA) or add data. Received: "
                f"n_samples={n_samples}, n_speakers={n_speakers}, n_features={d}"
            )

        # === Sufficient statistics ===
        mean = X.mean(axis=0)
        Xc = X - mean
        del X
        membership = scipy.sparse.csr_matrix(
            (np.ones(n_samples), (speaker, np.arange(n_samples))),
            shape=(n_speakers, n_samples),
        )
        F = np.asarray(membership @ Xc)  # per-speaker sums
        scatter = Xc.T @ Xc
        del Xc
        n = counts.astype(np.float64)
        n_col = n[:, None]

        # === Moment initialisation ===
        speaker_means = F / n_col
        within_scatter = scatter - speaker_means.T @ F  # around speaker means
        within = within_scatter / (n_samples - n_speakers)
        # EM keeps Sw >= W / n_samples, so checking W once suffices.
        _check_well_conditioned(within)
        between = speaker_means.T @ speaker_means / n_speakers
        sqrt_n = np.sqrt(n_col)

        # === EM ===
        self.log_likelihood_ = []
        self.n_iter_ = 0
        for _ in range(self.n_iter + 1):
            T, T_inv, psi, logdet = _diagonalize(
                0.5 * (between + between.T), 0.5 * (within + within.T)
            )
            G = F @ T.T
            c = psi / (1.0 + n_col * psi)  # posterior variances, (S, d)
            Y = c * G  # posterior means
            log_lik = (
                -0.5 * np.einsum("ij,ij->", T @ scatter, T)  # tr(T S T^T)
                + 0.5 * np.sum(G * Y)
                - 0.5 * np.sum(np.log1p(n_col * psi))
                - 0.5 * n_samples * (d * np.log(2.0 * np.pi) + logdet)
            ) / n_samples
            self.log_likelihood_.append(float(log_lik))
            if self.n_iter_ == self.n_iter or (
                self.n_iter_ > 0
                and self.log_likelihood_[-1] - self.log_likelihood_[-2] < self.tol
            ):
                break
            between_z = Y.T @ Y + np.diag(c.sum(axis=0))
            between_z /= n_speakers
            # sum_i (z_i - yhat_s)(z_i - yhat_s)^T = T W T^T + sum_s n_s (zbar_s - yhat_s)(...)^T
            # with W the scatter around speaker means and zbar_s = g_s / n_s:
            # two symmetric products per iteration instead of three general ones.
            H = sqrt_n * (Y - G / n_col)
            within_z = (
                T @ within_scatter @ T.T + H.T @ H + np.diag((n_col * c).sum(axis=0))
            ) / n_samples
            between = T_inv @ between_z @ T_inv.T
            within = T_inv @ within_z @ T_inv.T
            self.n_iter_ += 1

        self.n_speakers_ = int(n_speakers)
        self._set_model(mean, 0.5 * (between + between.T), 0.5 * (within + within.T))
        return self

    @classmethod
    def from_parameters(cls, mean, between_covariance, within_covariance, **params):
        """A fitted PLDA with the given parameters (no training).

        Args:
            mean: `(d,)` global mean `mu`.
            between_covariance: `(d, d)` symmetric PSD `Sb`.
            within_covariance: `(d, d)` symmetric positive definite `Sw`.
            **params: constructor arguments (kept for `get_params`).

        Returns:
            A PLDA ready to score, e.g. with the true parameters of a
            synthetic model.
        """
        mean = np.asarray(mean, dtype=np.float64)
        if mean.ndim != 1 or mean.shape[0] == 0 or not np.all(np.isfinite(mean)):
            raise ValueError(
                "`mean` must be a finite non-empty 1-D array. "
                f"Received: mean.shape={mean.shape}"
            )
        d = mean.shape[0]
        between = _check_covariance("between_covariance", between_covariance, d, False)
        within = _check_covariance("within_covariance", within_covariance, d, True)
        _check_well_conditioned(within)
        plda = cls(**params)
        plda._check_params()
        plda.n_features_in_ = d
        plda.n_iter_ = 0
        plda.n_speakers_ = 0
        plda.log_likelihood_ = []
        plda._set_model(mean, between, within)
        return plda

    def _set_model(self, mean, between, within):
        T, _, psi, _ = _diagonalize(between, within)
        q = -0.5 * psi**2 / ((1.0 + psi) * (1.0 + 2.0 * psi))
        p = 0.5 * psi / (1.0 + 2.0 * psi)
        self.mean_ = mean
        self.between_covariance_ = between
        self.within_covariance_ = within
        self.transform_ = T
        self.psi_ = psi
        self.Q_ = T.T @ (q[:, None] * T)
        self.P_ = T.T @ (p[:, None] * T)
        self.llr_constant_ = float(-0.5 * np.sum(np.log1p(2.0 * psi) - 2.0 * np.log1p(psi)))

    # === Scoring ===

    def _project(self, X):
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return (X - self.mean_) @ self.transform_.T

    def _diagonal_terms(self):
        psi = self.psi_
        q = -0.5 * psi**2 / ((1.0 + psi) * (1.0 + 2.0 * psi))
        two_p = psi / (1.0 + 2.0 * psi)
        return q, two_p

    def _enroll_terms(self, Z_mean, counts):
        """`(A, B, c)` with `LLR(enrol i, z) = A[i] . z^2 + B[i] . z + c[i]`."""
        psi = self.psi_
        n = counts[:, None]
        v = psi / (1.0 + n * psi)  # posterior variance of y
        a = n * v * Z_mean  # posterior mean of y
        s = 1.0 + v  # predictive variance of the test embedding
        A = 0.5 * (1.0 / (1.0 + psi) - 1.0 / s)
        B = a / s
        c = np.sum(-0.5 * a * B + 0.5 * (np.log1p(psi) - np.log(s)), axis=1)
        return A, B, c

    def score_pairs(self, enroll, test, enroll_counts=None, index=None):
        """Log-likelihood ratios of trials.

        Args:
            enroll: `(n, d)` enrolment embeddings (with `enroll_counts`: the
                mean of each speaker's enrolment embeddings).
            test: `(n, d)` test embeddings; row `i` is scored against row
                `i` of `enroll` (unless `index` is given).
            enroll_counts: optional `(len(enroll),)` positive integers, the
                number of embeddings averaged into each `enroll` row
                (default: 1 each).
            index: optional `(enroll_index, test_index)` integer arrays;
                `enroll` / `test` are then tables and trial `k` scores
                `enroll[enroll_index[k]]` against `test[test_index[k]]`.

        Returns:
            `(n_trials,)` float64 LLRs (natural log).
        """
        check_is_fitted(self)
        Ze = self._project(enroll)
        Zt = self._project(test)
        if index is None:
            check_same_length(Ze, Zt)
            ie = it = None
        else:
            ie, it = check_pair_index(index, Ze.shape[0], Zt.shape[0])
        if enroll_counts is None:
            q, two_p = self._diagonal_terms()
            qe = (Ze * Ze) @ q
            qt = (Zt * Zt) @ q
            Ze *= two_p
            if ie is None:
                return qe + qt + np.einsum("ij,ij->i", Ze, Zt) + self.llr_constant_
            return qe[ie] + qt[it] + blockwise_rowdot(Ze, Zt, ie, it) + self.llr_constant_
        counts = _check_counts(enroll_counts, Ze.shape[0])
        A, B, c = self._enroll_terms(Ze, counts)
        if ie is None:
            return np.einsum("ij,ij->i", A, Zt * Zt) + np.einsum("ij,ij->i", B, Zt) + c
        AB = np.hstack([A, B])
        Zt2 = np.hstack([Zt * Zt, Zt])
        return blockwise_rowdot(AB, Zt2, ie, it) + c[ie]

    def score_matrix(self, enroll, test, enroll_counts=None):
        """`(n_enroll, n_test)` LLRs of every enrolment-test pair.

        One matrix product: `LLR = qe[:, None] + qt[None, :] + (Ze * 2p) @ Zt^T + c`
        in the diagonalising basis (with `enroll_counts`,
        `[A, B] @ [Zt^2, Zt]^T + c[:, None]`). Arguments as in `score_pairs`.
        """
        check_is_fitted(self)
        Ze = self._project(enroll)
        Zt = self._project(test)
        if enroll_counts is None:
            q, two_p = self._diagonal_terms()
            scores = (Ze * two_p) @ Zt.T
            scores += ((Ze * Ze) @ q + self.llr_constant_)[:, None]
            scores += ((Zt * Zt) @ q)[None, :]
            return scores
        counts = _check_counts(enroll_counts, Ze.shape[0])
        A, B, c = self._enroll_terms(Ze, counts)
        return np.hstack([A, B]) @ np.hstack([Zt * Zt, Zt]).T + c[:, None]


def _split_backend(estimator, method):
    """`(front, back)`: the transforming steps of a Pipeline and its scorer."""
    if isinstance(estimator, Pipeline):
        back = estimator.steps[-1][1]
        front = estimator[:-1] if len(estimator.steps) > 1 else None
    else:
        back, front = estimator, None
    if not hasattr(back, method):
        raise ValueError(
            f"The scoring back-end must have a `{method}` method (e.g. "
            "CosineScorer or PLDA, possibly as the last step of a Pipeline). "
            f"Received: {type(back).__name__}"
        )
    return front, back


def _refuse_counts_through(front, kwargs):
    # The front-end (LDA, length norm) is not linear, so the transform of a
    # mean is not the mean of the transforms the counts refer to.
    if kwargs.get("enroll_counts") is not None:
        raise ValueError(
            "`enroll_counts` cannot go through a Pipeline's front-end: average "
            "the TRANSFORMED enrolment embeddings yourself, e.g. "
            "`front = pipe[:-1]; enroll = np.stack([front.transform(E).mean(0) "
            "for E in models])`, then call "
            "`pipe[-1].score_pairs(enroll, front.transform(test), enroll_counts=...)`. "
            f"Received: enroll_counts with a {len(front.steps)}-step front-end"
        )


def score_pairs(estimator, enroll, test, **kwargs):
    """Trial scores through a fitted back-end or a fitted `Pipeline`.

    For a `Pipeline` (e.g. `Pipeline([("lda", LDA()), ("plda", PLDA())])`),
    both sides go through `pipeline[:-1].transform` and the last step's
    `score_pairs` scores them; with `index=(ei, ti)` only the two tables are
    transformed, once each.

    Args:
        estimator: fitted scorer, or fitted `Pipeline` ending in one.
        enroll, test: embeddings, as for the scorer's `score_pairs`.
        **kwargs: passed on (`index=`; `enroll_counts=` only without a
            front-end, since a mean must be taken after the transform).

    Returns:
        `(n_trials,)` scores.
    """
    front, back = _split_backend(estimator, "score_pairs")
    if front is not None:
        _refuse_counts_through(front, kwargs)
        enroll, test = front.transform(enroll), front.transform(test)
    return back.score_pairs(enroll, test, **kwargs)


def score_matrix(estimator, enroll, test, **kwargs):
    """All-pairs scores through a fitted back-end or `Pipeline` (see `score_pairs`)."""
    front, back = _split_backend(estimator, "score_matrix")
    if front is not None:
        _refuse_counts_through(front, kwargs)
        enroll, test = front.transform(enroll), front.transform(test)
    return back.score_matrix(enroll, test, **kwargs)
