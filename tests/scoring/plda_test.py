import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from keras_spk.metrics import eer
from keras_spk.scoring.cosine import CosineScorer
from keras_spk.scoring.lda import LDA
from keras_spk.scoring.plda import PLDA
from keras_spk.scoring.plda import score_matrix
from keras_spk.scoring.plda import score_pairs


def _model(seed, dim, between_rank=None):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((dim, between_rank or dim))
    B = rng.standard_normal((dim, dim))
    between = A @ A.T / dim + (0 if between_rank else 0.1 * np.eye(dim))
    within = B @ B.T / (2 * dim) + 0.05 * np.eye(dim)
    return rng.standard_normal(dim), between, within


def _draw(rng, mean, between, within, counts):
    """Embeddings of len(counts) speakers, counts[s] each, and their labels."""
    speaker = np.repeat(np.arange(len(counts)), counts)
    y = rng.multivariate_normal(np.zeros(len(mean)), between, len(counts))
    e = rng.multivariate_normal(np.zeros(len(mean)), within, len(speaker))
    return mean + y[speaker] + e, speaker


def _same_speaker_cov(between, within, n):
    """Covariance of n stacked embeddings of ONE speaker: Sb everywhere, + Sw on the diagonal."""
    return np.kron(np.ones((n, n)), between) + np.kron(np.eye(n), within)


def _llr_direct(mean, between, within, enroll_list, test):
    """log p(enrol..., test | same) - log p(enrol... | one speaker) - log p(test), by scipy."""
    n = len(enroll_list)
    joint = multivariate_normal(np.tile(mean, n + 1), _same_speaker_cov(between, within, n + 1))
    enrol = multivariate_normal(np.tile(mean, n), _same_speaker_cov(between, within, n))
    single = multivariate_normal(mean, between + within)
    stacked = np.concatenate(list(enroll_list))
    return joint.logpdf(np.r_[stacked, test]) - enrol.logpdf(stacked) - single.logpdf(test)


# === Closed-form scoring against direct Gaussian densities ===


@pytest.mark.parametrize("between_rank", [None, 2])  # full-rank and singular Sb
def test_score_pairs_equals_gaussian_llr_with_true_parameters(between_rank):
    mean, between, within = _model(0, 5, between_rank)
    plda = PLDA.from_parameters(mean, between, within)
    rng = np.random.default_rng(1)
    X, _ = _draw(rng, mean, between, within, [2] * 6)
    E, T = X[0::2], X[1::2]
    expected = [_llr_direct(mean, between, within, [e], t) for e, t in zip(E, T)]
    np.testing.assert_allclose(plda.score_pairs(E, T), expected, rtol=1e-6, atol=1e-9)
    # Symmetric in the two sides.
    np.testing.assert_allclose(plda.score_pairs(T, E), expected, rtol=1e-6, atol=1e-9)


def test_quadratic_form_matrices_match_block_inverse():
    mean, between, within = _model(2, 4)
    plda = PLDA.from_parameters(mean, between, within)
    # Independent derivation: J = [[A, B], [B, A]], A = Sb + Sw, B = Sb;
    # J^-1 = [[M, -A^-1 B M], [., M]] with M = (A - B A^-1 B)^-1.
    A, B = between + within, between
    A_inv = np.linalg.inv(A)
    M = np.linalg.inv(A - B @ A_inv @ B)
    np.testing.assert_allclose(plda.Q_, 0.5 * (A_inv - M), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(plda.P_, 0.5 * A_inv @ B @ M, rtol=1e-8, atol=1e-12)
    J = np.block([[A, B], [B, A]])
    constant = -0.5 * np.linalg.slogdet(J)[1] + np.linalg.slogdet(A)[1]
    assert plda.llr_constant_ == pytest.approx(constant, rel=1e-10)
    x1, x2 = np.random.default_rng(3).standard_normal((2, 4)) + mean
    c1, c2 = x1 - mean, x2 - mean
    quadratic = c1 @ plda.Q_ @ c1 + c2 @ plda.Q_ @ c2 + 2 * c1 @ plda.P_ @ c2 + constant
    assert plda.score_pairs([x1], [x2])[0] == pytest.approx(quadratic, rel=1e-9)


def test_multi_utterance_enrolment_equals_direct_gaussian():
    mean, between, within = _model(4, 4)
    plda = PLDA.from_parameters(mean, between, within)
    rng = np.random.default_rng(5)
    X, _ = _draw(rng, mean, between, within, [3, 3, 1, 5, 1, 1, 1, 1])
    models = [X[0:3], X[3:6], X[6:7], X[7:12]]
    tests = X[12:16]
    counts = np.array([len(m) for m in models])
    means = np.stack([m.mean(axis=0) for m in models])
    expected = [_llr_direct(mean, between, within, m, t) for m, t in zip(models, tests)]
    np.testing.assert_allclose(
        plda.score_pairs(means, tests, enroll_counts=counts), expected, rtol=1e-6
    )
    # All models x all tests at once.
    expected_matrix = [[_llr_direct(mean, between, within, m, t) for t in tests] for m in models]
    np.testing.assert_allclose(
        plda.score_matrix(means, tests, enroll_counts=counts), expected_matrix, rtol=1e-6
    )
    # Counts of one give the single-enrolment scores.
    np.testing.assert_allclose(
        plda.score_pairs(X[:4], tests, enroll_counts=np.ones(4, int)),
        plda.score_pairs(X[:4], tests),
        rtol=1e-12,
    )


def test_score_matrix_and_indexed_pairs_equal_row_aligned_scores():
    mean, between, within = _model(6, 5)
    plda = PLDA.from_parameters(mean, between, within)
    rng = np.random.default_rng(7)
    E, T = rng.standard_normal((4, 5)), rng.standard_normal((6, 5))
    ie, it = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    ie, it = ie.ravel(), it.ravel()
    matrix = plda.score_matrix(E, T)
    assert matrix.shape == (4, 6)
    np.testing.assert_allclose(matrix.ravel(), plda.score_pairs(E[ie], T[it]), rtol=1e-10)
    np.testing.assert_allclose(
        plda.score_pairs(E, T, index=(ie, it)), plda.score_pairs(E[ie], T[it]), rtol=1e-10
    )
    counts = np.array([1, 2, 3, 7])
    np.testing.assert_allclose(
        plda.score_pairs(E, T, enroll_counts=counts, index=(ie, it)),
        plda.score_matrix(E, T, enroll_counts=counts).ravel(),
        rtol=1e-10,
    )


# === EM training ===


def test_em_recovers_true_covariances():
    mean, between, within = _model(8, 8)
    rng = np.random.default_rng(9)
    X, y = _draw(rng, mean, between, within, rng.integers(5, 15, 3000))
    plda = PLDA(n_iter=30).fit(X, y)

    def rel(estimate, truth):
        return np.linalg.norm(estimate - truth) / np.linalg.norm(truth)

    # 3,000 speakers, ~30,000 embeddings in 8 dims: sampling error is a few %.
    assert rel(plda.between_covariance_, between) < 0.10
    assert rel(plda.within_covariance_, within) < 0.10
    np.testing.assert_allclose(plda.mean_, X.mean(axis=0))
    assert plda.n_speakers_ == 3000
    assert np.all(np.diff(plda.log_likelihood_) >= -1e-10)  # EM never decreases it
    assert len(plda.log_likelihood_) == plda.n_iter_ + 1


def test_one_em_step_equals_per_speaker_reference():
    """The vectorised EM step against textbook per-speaker posteriors with inverses."""
    mean, between, within = _model(10, 3)
    rng = np.random.default_rng(11)
    X, y = _draw(rng, mean, between, within, [1, 2, 3, 4, 6, 2, 5])
    plda = PLDA(n_iter=1, tol=0.0).fit(X, y)

    Xc = X - X.mean(axis=0)
    groups = [Xc[y == s] for s in np.unique(y)]
    # Moment initialisation.
    sw = sum((g - g.mean(0)).T @ (g - g.mean(0)) for g in groups) / (len(X) - len(groups))
    sb = sum(np.outer(g.mean(0), g.mean(0)) for g in groups) / len(groups)
    # E-step: posterior of y_s given its embeddings.
    sb_new, sw_new = np.zeros((3, 3)), np.zeros((3, 3))
    sw_inv = np.linalg.inv(sw)
    for g in groups:
        cov = np.linalg.inv(np.linalg.inv(sb) + len(g) * sw_inv)
        y_hat = cov @ sw_inv @ g.sum(0)
        sb_new += cov + np.outer(y_hat, y_hat)
        for x in g:
            sw_new += cov + np.outer(x - y_hat, x - y_hat)
    np.testing.assert_allclose(plda.between_covariance_, sb_new / len(groups), rtol=1e-9)
    np.testing.assert_allclose(plda.within_covariance_, sw_new / len(X), rtol=1e-9)
    # Its log-likelihood bookkeeping, for the initial parameters, from scipy.
    loglik = sum(
        multivariate_normal(np.zeros(3 * len(g)), _same_speaker_cov(sb, sw, len(g))).logpdf(g.ravel())
        for g in groups
    )
    assert plda.log_likelihood_[0] == pytest.approx(loglik / len(X), rel=1e-9)


# === Versus cosine ===


def _eer_all_pairs(estimator, X, y):
    scores = score_matrix(estimator, X, X)
    iu = np.triu_indices(len(y), 1)
    return eer(scores[iu], (y[:, None] == y[None, :])[iu])


def test_plda_beats_cosine_on_anisotropic_noise_and_does_not_hurt_on_isotropic():
    rng = np.random.default_rng(12)
    dim = 16
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    mean = 3.0 * rng.standard_normal(dim)
    between = rotation @ rotation.T  # identity, rotated: speaker variance 1 everywhere
    aniso = rotation @ np.diag(np.r_[np.full(4, 25.0), np.full(dim - 4, 0.3)]) @ rotation.T
    iso = 0.5 * np.eye(dim)
    eers = {}
    for name, within in (("aniso", aniso), ("iso", iso)):
        X, y = _draw(rng, mean, between, within, [10] * 300)
        Xt, yt = _draw(rng, mean, between, within, [5] * 100)
        eers[name] = [
            _eer_all_pairs(est.fit(X, y), Xt, yt)
            for est in (CosineScorer(), PLDA(), Pipeline([("lda", LDA()), ("plda", PLDA())]))
        ]
    cos, plda, lda_plda = eers["aniso"]
    # Observed: cosine ~0.42, PLDA ~0.035, LDA+PLDA ~0.045.
    assert cos > 0.3 and plda < 0.2 * cos and lda_plda < 0.2 * cos
    cos, plda, lda_plda = eers["iso"]
    # Isotropic: cosine is near-optimal; PLDA may cost at most 1 EER point
    # (observed it is 0.5-1.5 points better), LDA+PLDA at most 2.
    assert plda <= cos + 0.01 and lda_plda <= cos + 0.02


# === Pipelines ===


def test_pipeline_fit_score_and_clone():
    mean, between, within = _model(13, 6)
    rng = np.random.default_rng(14)
    X, y = _draw(rng, mean, between, within, [8] * 60)
    pipe = Pipeline([("lda", LDA(n_components=4)), ("plda", PLDA(n_iter=5))]).fit(X, y)
    assert pipe[-1].n_features_in_ == 4
    E, T = X[:10], X[10:20]
    front = pipe[:-1]
    expected = pipe[-1].score_pairs(front.transform(E), front.transform(T))
    np.testing.assert_allclose(score_pairs(pipe, E, T), expected)
    np.testing.assert_allclose(
        score_pairs(pipe, E, T, index=([0, 1, 2], [0, 1, 2])), expected[:3]
    )
    np.testing.assert_allclose(np.diag(score_matrix(pipe, E, T)), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="average the TRANSFORMED"):
        score_pairs(pipe, E, T, enroll_counts=np.ones(10, int))

    copy = clone(pipe)
    assert copy.get_params()["lda__n_components"] == 4
    assert copy.get_params()["plda__n_iter"] == 5
    with pytest.raises(NotFittedError):
        copy[-1].score_pairs(E[:, :4], T[:, :4])
    refit = copy.fit(X, y)
    np.testing.assert_allclose(score_pairs(refit, E, T), expected)
    # from_parameters keeps constructor params; its clone is a fresh estimator.
    fixed = PLDA.from_parameters(mean, between, within, n_iter=3)
    assert clone(fixed).get_params() == {"n_iter": 3, "tol": 1e-4, "model": "two_covariance"}


# === Errors ===


def test_errors():
    mean, between, within = _model(15, 4)
    rng = np.random.default_rng(16)
    X, y = _draw(rng, mean, between, within, [5] * 10)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        PLDA().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Too few samples"):
        PLDA().fit(X[:12], np.r_[np.arange(10), 0, 1])  # 12 - 10 < 4 dims
    with pytest.raises(ValueError, match="NaN"):
        PLDA().fit(np.where(np.eye(len(X), 4, dtype=bool), np.nan, X), y)
    with pytest.raises(ValueError, match="NaN"):
        PLDA().fit(X, np.where(np.arange(len(y)) == 3, np.nan, y.astype(float)))
    with pytest.raises(ValueError, match="not positive definite"):
        PLDA().fit(np.c_[X, X[:, :1]], y)  # a duplicated feature
    with pytest.raises(ValueError, match="model"):
        PLDA(model="simplified").fit(X, y)
    with pytest.raises(ValueError, match="n_iter"):
        PLDA(n_iter=-1).fit(X, y)

    plda = PLDA().fit(X, y)
    with pytest.raises(ValueError, match="4 features"):
        plda.score_pairs(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        plda.score_matrix(np.full((1, 4), np.nan), X[:2])
    with pytest.raises(ValueError, match="same number of rows"):
        plda.score_pairs(X[:2], X[:3])
    with pytest.raises(ValueError, match="enroll_counts"):
        plda.score_pairs(X[:2], X[2:4], enroll_counts=[1, 0])
    with pytest.raises(ValueError, match="enroll_counts"):
        plda.score_pairs(X[:2], X[2:4], enroll_counts=[1.5, 2.0])
    with pytest.raises(ValueError, match="enroll_counts"):
        plda.score_matrix(X[:2], X[2:4], enroll_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="test_index"):
        plda.score_pairs(X[:2], X[2:4], index=([0], [5]))

    with pytest.raises(ValueError, match="positive definite"):
        PLDA.from_parameters(mean, between, np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        PLDA.from_parameters(mean, between[:3, :3], within)
    with pytest.raises(ValueError, match="symmetric"):
        PLDA.from_parameters(mean, between + np.triu(np.ones((4, 4)), 1), within)
    with pytest.raises(ValueError, match="score_pairs"):
        score_pairs(Pipeline([("lda", LDA())]).fit(X, y), X, X)
