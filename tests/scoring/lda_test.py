import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import Pipeline

from keras_spk.metrics import eer
from keras_spk.scoring.cosine import CosineScorer
from keras_spk.scoring.lda import LDA
from keras_spk.scoring.plda import score_matrix


def _draw(rng, mean, between_var, within_var, rotation, n_speakers, per_speaker):
    """Embeddings `R (mu + y + e)` with diagonal covariances before the rotation."""
    speaker = np.repeat(np.arange(n_speakers), per_speaker)
    y = rng.standard_normal((n_speakers, mean.shape[0])) * np.sqrt(between_var)
    e = rng.standard_normal((speaker.shape[0], mean.shape[0])) * np.sqrt(within_var)
    return (mean + y[speaker] + e) @ rotation.T, speaker


def _data(seed=0, n_speakers=40, per_speaker=6, dim=6):
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return _draw(
        rng, rng.standard_normal(dim), np.linspace(0.2, 3.0, dim), np.linspace(2.0, 0.2, dim),
        rotation, n_speakers, per_speaker,
    )


def test_projection_is_sklearns_lda_centred():
    X, y = _data()
    ours = LDA(n_components=3, whiten=False, length_norm=False).fit(X, y)
    ref = LinearDiscriminantAnalysis(n_components=3).fit(X, y)
    expected = ref.transform(X[:10]) - ref.transform(X).mean(axis=0)
    np.testing.assert_allclose(ours.transform(X[:10]), expected, rtol=1e-9, atol=1e-9)
    assert ours.components_.shape == (3, 6) and ours.n_components_ == 3
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_)


def test_whitening_gives_identity_total_covariance():
    X, y = _data()
    Z = LDA(n_components=4, whiten=True, length_norm=False).fit(X, y).transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(Z.T @ Z / len(Z), np.eye(4), atol=1e-9)


@pytest.mark.parametrize("whiten", [True, False])
def test_wccn_gives_identity_average_class_covariance(whiten):
    X, y = _data()
    # Unequal class sizes: drop some rows so Hatch's equal class weighting matters.
    keep = np.ones(len(y), bool)
    keep[np.flatnonzero(y % 3 == 0)[::2]] = False
    X, y = X[keep], y[keep]
    Z = LDA(whiten=whiten, wccn=True, length_norm=False).fit(X, y).transform(X)
    classes = np.unique(y)
    W = sum(np.cov(Z[y == c].T, bias=True) for c in classes) / len(classes)
    np.testing.assert_allclose(W, np.eye(Z.shape[1]), atol=1e-9)


def test_length_norm_and_eigen_solver():
    X, y = _data()
    Z = LDA(n_components=2, solver="eigen", shrinkage="auto").fit(X, y).transform(X)
    assert Z.shape == (len(X), 2)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0)


def _eer_all_pairs(estimator, X, y):
    scores = score_matrix(estimator, X, X)
    iu = np.triu_indices(len(y), 1)
    return eer(scores[iu], (y[:, None] == y[None, :])[iu])


@pytest.mark.parametrize("seed", [0, 1])
def test_lda_cosine_beats_cosine_on_anisotropic_noise_and_does_not_hurt_on_isotropic(seed):
    rng = np.random.default_rng(seed)
    dim = 16
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    mean = 3.0 * rng.standard_normal(dim)
    between = np.ones(dim)
    # 4 nuisance directions with 25x the speaker variance (channel-like), the rest quiet.
    anisotropic = np.r_[np.full(4, 25.0), np.full(dim - 4, 0.3)]
    isotropic = np.full(dim, 0.5)
    results = {}
    for name, within in (("aniso", anisotropic), ("iso", isotropic)):
        X, y = _draw(rng, mean, between, within, rotation, 300, 10)
        Xt, yt = _draw(rng, mean, between, within, rotation, 100, 5)
        cos = CosineScorer().fit(X)
        lda = Pipeline([("lda", LDA()), ("cos", CosineScorer())]).fit(X, y)
        lda12 = Pipeline([("lda", LDA(n_components=12)), ("cos", CosineScorer())]).fit(X, y)
        results[name] = [_eer_all_pairs(p, Xt, yt) for p in (cos, lda, lda12)]
    cos, lda, lda12 = results["aniso"]
    # Observed (seeds 0..5): cosine ~0.42, LDA ~0.11, LDA to the 12-dim speaker subspace ~0.05.
    assert cos > 0.3
    assert lda < 0.5 * cos
    assert lda12 < 0.2 * cos
    cos, lda, _ = results["iso"]
    # Isotropic noise: cosine is already near-optimal; a full-rank LDA + whitening
    # may cost at most 1.5 EER points (observed +0.1 to +0.4).
    assert lda <= cos + 0.015


def test_errors():
    X, y = _data()
    with pytest.raises(ValueError, match="at least 2 speakers"):
        LDA().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="more samples than speakers"):
        LDA().fit(X[:10], np.arange(10))
    with pytest.raises(ValueError, match="NaN"):
        LDA().fit(np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y)
    with pytest.raises(ValueError, match="n_components"):
        LDA(n_components=0).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):  # > n_features (sklearn's check)
        LDA(n_components=7).fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        LDA(solver="lsqr").fit(X, y)
    with pytest.raises(ValueError, match="shrinkage"):
        LDA(shrinkage=0.1).fit(X, y)
    lda = LDA().fit(X, y)
    with pytest.raises(ValueError, match="6 features"):
        lda.transform(np.ones((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        lda.transform(np.full((1, 6), np.nan))
