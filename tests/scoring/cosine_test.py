import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from keras_spk.scoring.cosine import CosineScorer


def _cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_hand_computed_scores_without_centering():
    scorer = CosineScorer(center=False).fit(np.eye(3))
    scores = scorer.score_pairs([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[1.0, 1.0, 0.0], [0.0, -3.0, 0.0]])
    np.testing.assert_allclose(scores, [1.0 / np.sqrt(2.0), -1.0], rtol=1e-12)


def test_scores_are_cosines_of_centred_embeddings():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 5)) + 4.0
    scorer = CosineScorer().fit(X)
    np.testing.assert_allclose(scorer.mean_, X.mean(axis=0))
    E, T = rng.standard_normal((7, 5)) + 4.0, rng.standard_normal((7, 5)) + 4.0
    m = X.mean(axis=0)
    expected = [_cosine(e - m, t - m) for e, t in zip(E, T)]
    np.testing.assert_allclose(scorer.score_pairs(E, T), expected, rtol=1e-12)
    # Without centring the shared offset pushes every cosine towards 1.
    raw = CosineScorer(center=False).fit(X).score_pairs(E, T)
    assert raw.min() > 0.8 and np.abs(np.array(expected)).mean() < 0.8


def test_matrix_and_indexed_forms_equal_row_aligned_scores():
    rng = np.random.default_rng(1)
    scorer = CosineScorer().fit(rng.standard_normal((30, 4)))
    E, T = rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    matrix = scorer.score_matrix(E, T)
    assert matrix.shape == (5, 6)
    ie, it = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    np.testing.assert_allclose(
        matrix.ravel(), scorer.score_pairs(E[ie.ravel()], T[it.ravel()]), rtol=1e-12
    )
    ie, it = rng.integers(0, 5, 40), rng.integers(0, 6, 40)
    np.testing.assert_allclose(
        scorer.score_pairs(E, T, index=(ie, it)), scorer.score_pairs(E[ie], T[it]), rtol=1e-12
    )


def test_transform_and_scale_invariance():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 3))
    scorer = CosineScorer().fit(X)
    np.testing.assert_allclose(np.linalg.norm(scorer.transform(X), axis=1), 1.0)
    np.testing.assert_allclose(
        CosineScorer(length_norm=False).fit(X).transform(X), X - X.mean(axis=0)
    )
    raw = CosineScorer(center=False).fit(X)
    np.testing.assert_allclose(raw.score_pairs(3.0 * X[:5], X[5:10]), raw.score_pairs(X[:5], X[5:10]))


def test_zero_vector_scores_zero_not_nan():
    scorer = CosineScorer(center=False).fit(np.eye(2))
    assert scorer.score_pairs([[0.0, 0.0]], [[1.0, 2.0]]).tolist() == [0.0]
    assert scorer.transform([[0.0, 0.0]]).tolist() == [[0.0, 0.0]]


def test_errors():
    scorer = CosineScorer()
    with pytest.raises(NotFittedError):
        scorer.score_pairs(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        scorer.fit([[np.nan, 1.0], [1.0, 2.0]])
    scorer.fit(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(ValueError, match="3 features"):
        scorer.score_pairs(np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        scorer.score_pairs([[np.nan, 1.0, 1.0]], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="same number of rows"):
        scorer.score_pairs(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="must index rows 0..1"):
        scorer.score_pairs(np.ones((2, 3)), np.ones((3, 3)), index=([0, 2], [0, 1]))
    with pytest.raises(ValueError, match="integers"):
        scorer.score_pairs(np.ones((2, 3)), np.ones((3, 3)), index=([0.0], [1]))
    with pytest.raises(ValueError, match="same length"):
        scorer.score_pairs(np.ones((2, 3)), np.ones((3, 3)), index=([0, 1], [1]))
