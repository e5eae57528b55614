"""LDA front-end: discriminant projection, whitening, WCCN, length norm."""

import numbers

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.scoring.cosine import length_normalize

_SOLVERS = ("svd", "eigen")


class LDA(TransformerMixin, BaseEstimator):
    """Speaker-discriminant projection of embeddings, trained with speaker labels.

    `transform(x) = length_norm(C (x - mean))`, one affine map `C`
    (`components_`) composed at fit time from up to three stages, each
    estimated on the output of the previous one:

    1. LDA: `sklearn.discriminant_analysis.LinearDiscriminantAnalysis`
       (fit with the speaker labels) projects onto the `n_components`
       directions that maximise between-speaker over within-speaker
       variance, i.e. keeps speaker information and drops channel/session
       directions. With the default `"svd"` solver the projected
       within-speaker (pooled) covariance is the identity.
    2. `whiten=True`: rotates and scales the projected training data so its
       total covariance is the identity (PCA whitening). This is the
       "centre + whiten" step that precedes length normalisation in
       Garcia-Romero & Espy-Wilson (2011).
    3. `wccn=True`: within-class covariance normalisation (Hatch et al.,
       2006): with `W` the average over speakers of each speaker's
       covariance (each speaker weighted equally) and `W = L L^T`, maps
       `z -> L^-1 z`, so that `W` becomes the identity: directions of large
       within-speaker variability are shrunk before cosine scoring.
    4. `length_norm=True`: scales each output vector to unit length, which
       makes the embeddings more Gaussian for PLDA and turns a dot product
       into a cosine.

    Args:
        n_components: Output dimension (at most `min(n_speakers - 1,
            n_features)`; `None` for that maximum).
        length_norm: Unit-length outputs.
        whiten: Total-covariance whitening after the LDA projection.
        wccn: Within-class covariance normalisation after whitening.
        solver: `"svd"` or `"eigen"` (passed to scikit-learn's LDA).
        shrinkage: Covariance shrinkage for `solver="eigen"` (`None`,
            `"auto"` or a float in [0, 1]).
        tol: Rank threshold of the `"svd"` solver.

    Attributes:
        mean_: `(n_features,)` training mean.
        components_: `(n_components_, n_features)` composed map `C`.
        n_components_: output dimension.
        explained_variance_ratio_: between-speaker variance ratio of each
            LDA direction (from scikit-learn).
        n_features_in_: input dimension.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> speakers = np.repeat(np.arange(20), 5)
    >>> X = rng.standard_normal((20, 8))[speakers] + 0.1 * rng.standard_normal((100, 8))
    >>> LDA(n_components=3).fit(X, speakers).transform(X).shape
    (100, 3)

    Reference:
        D. Garcia-Romero and C. Y. Espy-Wilson, "Analysis of i-vector length
        normalization in speaker recognition systems", Interspeech 2011;
        A. O. Hatch, S. Kajarekar and A. Stolcke, "Within-class covariance
        normalization for SVM-based speaker recognition", ICSLP 2006.
    """

    def __init__(
        self,
        n_components=None,
        length_norm=True,
        whiten=True,
        wccn=False,
        solver="svd",
        shrinkage=None,
        tol=1e-4,
    ):
        self.n_components = n_components
        self.length_norm = length_norm
        self.whiten = whiten
        self.wccn = wccn
        self.solver = solver
        self.shrinkage = shrinkage
        self.tol = tol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _check_params(self):
        if self.n_components is not None and (
            not isinstance(self.n_components, numbers.Integral)
            or isinstance(self.n_components, bool)
            or self.n_components < 1
        ):
            raise ValueError(
                "`n_components` must be None or a positive integer. "
                f"Received: n_components={self.n_components!r}"
            )
        if self.solver not in _SOLVERS:
            raise ValueError(f"`solver` must be one of {_SOLVERS}. Received: solver={self.solver!r}")
        if self.shrinkage is not None and self.solver != "eigen":
            raise ValueError(
                "`shrinkage` needs solver='eigen'. "
                f"Received: shrinkage={self.shrinkage!r}, solver={self.solver!r}"
            )

    def fit(self, X, y):
        """Learns the composed projection.

        Args:
            X: `(n_samples, n_features)` embeddings.
            y: `(n_samples,)` speaker labels; at least 2 speakers and more
                samples than speakers.

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
                "LDA needs embeddings of at least 2 speakers. Received: "
                f"{n_samples} sample(s) of 1 class (speaker)"
            )
        if n_samples <= n_speakers:
            raise ValueError(
                "Too few samples: LDA needs more samples than speakers (some "
                "speakers with several embeddings) to estimate within-speaker "
                f"variability. Received: n_samples={n_samples}, n_speakers={n_speakers}"
            )
        lda = LinearDiscriminantAnalysis(
            solver=self.solver,
            shrinkage=self.shrinkage,
            n_components=self.n_components,
            tol=self.tol,
        ).fit(X, speaker)

        # sklearn's transform is affine; read it off as x -> x @ A + offset so
        # that only arrays are kept (and whitening / WCCN compose into it).
        offset = lda.transform(np.zeros((1, d)))
        A = lda.transform(np.eye(d)) - offset
        mean = X.mean(axis=0)
        Z = (X - mean) @ A

        if self.whiten:
            eigval, eigvec = np.linalg.eigh(Z.T @ Z / n_samples)
            # Guard against a (near-)degenerate projected direction.
            eigval = np.maximum(eigval, 1e-12 * max(eigval.max(), 1e-300))
            W = eigvec / np.sqrt(eigval)
            Z = Z @ W
            A = A @ W

        if self.wccn:
            membership = scipy.sparse.csr_matrix(
                (np.ones(n_samples), (speaker, np.arange(n_samples))),
                shape=(n_speakers, n_samples),
            )
            speaker_means = np.asarray(membership @ Z) / counts[:, None]
            weights = 1.0 / counts[speaker]
            within = ((Z * weights[:, None]).T @ Z - speaker_means.T @ speaker_means) / n_speakers
            try:
                L = np.linalg.cholesky(0.5 * (within + within.T))
            except np.linalg.LinAlgError:
                raise ValueError(
                    "WCCN: the within-speaker covariance of the projected "
                    "embeddings is singular; use fewer `n_components` or more "
                    "embeddings per speaker, or set wccn=False."
                ) from None
            L_inv = scipy.linalg.solve_triangular(L, np.eye(L.shape[0]), lower=True)
            A = A @ L_inv.T

        self.mean_ = mean
        self.components_ = np.ascontiguousarray(A.T)
        self.n_components_ = int(A.shape[1])
        self.explained_variance_ratio_ = np.asarray(lda.explained_variance_ratio_, dtype=np.float64)
        return self

    def transform(self, X):
        """Projected (whitened / WCCN'd / unit-length, as configured) embeddings.

        Args:
            X: `(n_samples, n_features_in_)` embeddings.

        Returns:
            `(n_samples, n_components_)` float64 array.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Z = (X - self.mean_) @ self.components_.T
        return length_normalize(Z) if self.length_norm else Z
