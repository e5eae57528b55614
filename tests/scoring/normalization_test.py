"""Cohort score normalisation checked against plain loops over the definitions."""

import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from keras_spk.metrics import eer
from keras_spk.scoring.normalization import ScoreNormalizer
from keras_spk.scoring.normalization import adaptive_s_norm
from keras_spk.scoring.normalization import cohort_statistics
from keras_spk.scoring.normalization import s_norm
from keras_spk.scoring.normalization import t_norm
from keras_spk.scoring.normalization import trial_scores
from keras_spk.scoring.normalization import z_norm


def cosine(x, y):
    return float(np.dot(x, y) / math.sqrt(np.dot(x, x) * np.dot(y, y)))


def loop_statistics(x, cohort, top_k, score=cosine):
    """Mean and population std of x's cohort scores (the top_k highest when given)."""
    scores = sorted((score(x, c) for c in cohort), reverse=True)
    if top_k is not None:
        scores = scores[:top_k]
    mean = sum(scores) / len(scores)
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def loop_normalize(enroll, test, cohort, method, top_k, score=cosine):
    out = []
    for e, t in zip(enroll, test):
        raw = score(e, t)
        mu_e, sd_e = loop_statistics(e, cohort, top_k, score)
        mu_t, sd_t = loop_statistics(t, cohort, top_k, score)
        z, tn = (raw - mu_e) / sd_e, (raw - mu_t) / sd_t
        out.append({"z_norm": z, "t_norm": tn, "s_norm": 0.5 * (z + tn)}[method])
    return np.array(out)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 5)), rng.normal(size=(7, 5)), rng.normal(size=(30, 5))


FUNCTIONS = {"z_norm": z_norm, "t_norm": t_norm, "s_norm": s_norm}


@pytest.mark.parametrize("method", ["z_norm", "t_norm", "s_norm"])
@pytest.mark.parametrize("top_k", [None, 5, 30])
def test_normalization_matches_loop(data, method, top_k):
    enroll, test, cohort = data
    got = FUNCTIONS[method](enroll, test, cohort, top_k=top_k)
    np.testing.assert_allclose(got, loop_normalize(enroll, test, cohort, method, top_k), rtol=1e-10)


def test_adaptive_s_norm_matches_loop_and_differs_from_s_norm(data):
    enroll, test, cohort = data
    got = adaptive_s_norm(enroll, test, cohort, top_k=5)
    np.testing.assert_allclose(got, loop_normalize(enroll, test, cohort, "s_norm", 5), rtol=1e-10)
    assert np.abs(got - s_norm(enroll, test, cohort)).max() > 1e-3


def test_dot_and_callable_scoring_match_loop(data):
    enroll, test, cohort = data
    dot = lambda x, y: float(np.dot(x, y))
    np.testing.assert_allclose(
        s_norm(enroll, test, cohort, scoring="dot", top_k=4),
        loop_normalize(enroll, test, cohort, "s_norm", 4, score=dot),
        rtol=1e-10,
    )
    # Negative Euclidean distance, given as a paired-rows callable.
    distance = lambda a, b: -np.linalg.norm(a - b, axis=1)
    np.testing.assert_allclose(
        z_norm(enroll, test, cohort, scoring=distance),
        loop_normalize(
            enroll, test, cohort, "z_norm", None, score=lambda x, y: -float(np.linalg.norm(x - y))
        ),
        rtol=1e-10,
    )


def test_cohort_statistics_and_trial_scores_match_loop(data):
    enroll, test, cohort = data
    mean, std = cohort_statistics(enroll, cohort, top_k=6)
    expected = np.array([loop_statistics(e, cohort, 6) for e in enroll])
    np.testing.assert_allclose(mean, expected[:, 0], rtol=1e-10)
    np.testing.assert_allclose(std, expected[:, 1], rtol=1e-10)
    np.testing.assert_allclose(
        trial_scores(enroll, test), [cosine(e, t) for e, t in zip(enroll, test)], rtol=1e-12
    )


def test_score_normalizer_matches_functions(data):
    enroll, test, cohort = data
    for method, top_k, function in [
        ("z_norm", None, z_norm),
        ("t_norm", 4, t_norm),
        ("s_norm", None, s_norm),
        ("adaptive_s_norm", 8, s_norm),
    ]:
        normalizer = ScoreNormalizer(method=method, top_k=top_k).fit(cohort)
        np.testing.assert_array_equal(normalizer.cohort_, cohort)
        np.testing.assert_allclose(
            normalizer.score_pairs(enroll, test),
            function(enroll, test, cohort, top_k=top_k),
            rtol=1e-12,
        )


def test_s_norm_aligns_speaker_dependent_score_offsets():
    # Each enrolment speaker's scores carry its own offset: embeddings near
    # a shared "hub" direction get high cosine scores against everyone.
    # s-norm removes the offset, so pooled EER improves.
    rng = np.random.default_rng(1)
    dim, n_speakers = 20, 60
    hub = rng.normal(size=dim)
    weight = rng.uniform(0, 3, n_speakers)
    speakers = rng.normal(size=(n_speakers, dim)) + weight[:, None] * hub
    cohort = rng.normal(size=(200, dim)) + rng.uniform(0, 3, 200)[:, None] * hub
    enroll_ids = rng.integers(0, n_speakers, 3000)
    same = rng.random(3000) < 0.5
    test_ids = np.where(
        same, enroll_ids, (enroll_ids + rng.integers(1, n_speakers, 3000)) % n_speakers
    )
    enroll = speakers[enroll_ids] + 0.9 * rng.normal(size=(3000, dim))
    test = speakers[test_ids] + 0.9 * rng.normal(size=(3000, dim))
    raw = eer(trial_scores(enroll, test), same)
    normalized = eer(s_norm(enroll, test, cohort), same)
    assert normalized < raw - 0.02, (raw, normalized)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"enroll": np.ones((3, 5)), "test": np.ones((4, 5))}, "same shape"),
        ({"cohort": np.ones((1, 5))}, "n_samples=1"),
        ({"cohort": np.ones((10, 4))}, "dim=5"),
        ({"top_k": 1}, "top_k"),
        ({"top_k": 31}, "top_k"),
        ({"scoring": "euclid"}, "scoring"),
        ({"enroll": np.full((7, 5), np.nan)}, "NaN"),
        ({"enroll": np.zeros((7, 5))}, "all-zero row"),
        ({"cohort": np.tile([1.0, 2, 3, 4, 5], (10, 1))}, "zero spread"),
    ],
)
def test_bad_inputs_raise(data, kwargs, match):
    enroll, test, cohort = data
    arguments = {"enroll": enroll, "test": test, "cohort": cohort, **kwargs}
    with pytest.raises(ValueError, match=match):
        s_norm(**arguments)


def test_adaptive_s_norm_needs_top_k(data):
    enroll, test, cohort = data
    with pytest.raises(ValueError, match="top_k"):
        adaptive_s_norm(enroll, test, cohort, top_k=None)
    with pytest.raises(ValueError, match="top_k"):
        ScoreNormalizer(method="adaptive_s_norm").fit(cohort)


def test_score_normalizer_bad_use(data):
    enroll, test, cohort = data
    with pytest.raises(NotFittedError):
        ScoreNormalizer().score_pairs(enroll, test)
    with pytest.raises(ValueError, match="method"):
        ScoreNormalizer(method="zt_norm").fit(cohort)
    with pytest.raises(ValueError, match="dim=5"):
        ScoreNormalizer().fit(cohort).score_pairs(enroll[:, :4], test[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        ScoreNormalizer().fit(np.full((4, 5), np.nan))
