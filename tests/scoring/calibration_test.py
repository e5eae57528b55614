"""Calibration to LLRs against the analytic Gaussian LLR; decision thresholds."""

import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from keras_spk.metrics import error_rates
from keras_spk.metrics import min_dcf
from keras_spk.scoring.calibration import ScoreCalibrator
from keras_spk.scoring.calibration import bayes_threshold
from keras_spk.scoring.calibration import logit
from keras_spk.scoring.calibration import threshold_at_false_alarm
from keras_spk.scoring.calibration import threshold_at_min_dcf

MU1, MU0, SIGMA = 2.0, -1.0, 1.5


def gaussian_scores(n_target, n_nontarget, seed):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(MU1, SIGMA, n_target), rng.normal(MU0, SIGMA, n_nontarget)])
    labels = np.repeat([1, 0], [n_target, n_nontarget])
    return scores, labels


def analytic_llr(s):
    # log N(s; mu1, sigma^2) - log N(s; mu0, sigma^2)
    return (MU1 - MU0) / SIGMA**2 * s - (MU1**2 - MU0**2) / (2 * SIGMA**2)


# Tolerance: with 40000 trials the fitted slope and offset have standard
# errors of about 0.01; 0.1 on LLRs over [mu0 - sigma, mu1 + sigma] is many
# standard errors wide, yet 10x smaller than the prior term logit(0.2) = -1.39
# that an uncorrected fit would leave in.
LLR_TOLERANCE = 0.1


@pytest.mark.parametrize("target_fraction", [0.5, 0.2])
def test_calibrated_llr_matches_analytic_gaussian_llr(target_fraction):
    n_target = int(40000 * target_fraction)
    scores, labels = gaussian_scores(n_target, 40000 - n_target, seed=0)
    calibrator = ScoreCalibrator().fit(scores, labels)
    assert calibrator.train_prior_ == pytest.approx(target_fraction)
    grid = np.linspace(MU0 - SIGMA, MU1 + SIGMA, 41)
    np.testing.assert_allclose(calibrator.predict_llr(grid), analytic_llr(grid), atol=LLR_TOLERANCE)
    assert calibrator.coef_[0] == pytest.approx((MU1 - MU0) / SIGMA**2, abs=0.05)
    # The raw logistic-regression offset is a posterior log-odds at the
    # training prior: LLR offset + logit(pi).
    assert calibrator.intercept_ == pytest.approx(
        -(MU1**2 - MU0**2) / (2 * SIGMA**2) + logit(target_fraction), abs=0.05
    )


def test_calibrator_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    scores, labels = gaussian_scores(3000, 7000, seed=1)
    reference = LogisticRegression(C=1e8, tol=1e-12, max_iter=10000).fit(scores[:, None], labels)
    calibrator = ScoreCalibrator(alpha=0.0).fit(scores[:, None], labels)
    np.testing.assert_allclose(calibrator.coef_, reference.coef_[0], rtol=1e-5)
    assert calibrator.intercept_ == pytest.approx(reference.intercept_[0], rel=1e-5)


def test_decision_predict_and_proba_use_p_target():
    scores, labels = gaussian_scores(2000, 2000, seed=2)
    llr = ScoreCalibrator().fit(scores, labels).predict_llr(scores)
    calibrator = ScoreCalibrator(p_target=0.01).fit(scores, labels)
    decision = calibrator.decision_function(scores)
    np.testing.assert_allclose(decision, llr + math.log(0.01 / 0.99), rtol=1e-12)
    np.testing.assert_array_equal(
        calibrator.predict(scores), (llr > bayes_threshold(0.01)).astype(int)
    )
    proba = calibrator.predict_proba(scores)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-decision)), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Default p_target=0.5: decision_function is the LLR itself.
    np.testing.assert_allclose(ScoreCalibrator().fit(scores, labels).decision_function(scores), llr)


def test_linear_fusion_of_two_systems():
    # The second system is the first plus independent noise: the optimal
    # fusion weighs the first much more.
    rng = np.random.default_rng(33)
    scores, labels = gaussian_scores(5000, 5000, seed=3)
    X = np.stack([scores, scores + rng.normal(0, 3, scores.size)], axis=1)
    calibrator = ScoreCalibrator().fit(X, labels)
    assert calibrator.coef_.shape == (2,)
    assert calibrator.coef_[0] > 5 * abs(calibrator.coef_[1])


def test_separable_scores_give_finite_llrs():
    calibrator = ScoreCalibrator().fit([0.0, 0.1, 0.2, 1.0, 1.1, 1.2], [0, 0, 0, 1, 1, 1])
    llr = calibrator.predict_llr([0.0, 0.6, 1.2])
    assert np.isfinite(llr).all() and llr[0] < 0 < llr[2]


def test_string_labels_second_class_is_target():
    scores, labels = gaussian_scores(500, 500, seed=4)
    names = np.where(labels == 1, "target", "nontarget")
    calibrator = ScoreCalibrator().fit(scores, names)
    assert calibrator.classes_.tolist() == ["nontarget", "target"]
    assert calibrator.coef_[0] > 0
    assert set(calibrator.predict(scores)) == {"nontarget", "target"}


@pytest.mark.parametrize(
    "X, y, match",
    [
        ([0.1, 0.2, np.nan], [0, 1, 1], "NaN"),
        ([0.1, 0.2, 0.3], [0, 1], "inconsistent numbers of samples"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "2 classes"),
        ([0.1, 0.2, 0.3], [0, 1, 2], "Only binary"),
        ([0.1, 0.2, 0.3], [0.5, 1.5, 0.2], "Unknown label type"),
    ],
)
def test_calibrator_bad_inputs(X, y, match):
    with pytest.raises(ValueError, match=match):
        ScoreCalibrator().fit(X, y)


def test_calibrator_bad_parameters_and_use():
    with pytest.raises(NotFittedError):
        ScoreCalibrator().predict_llr([0.0])
    for params, match in [
        ({"alpha": -1}, "alpha"),
        ({"p_target": 1.0}, "p_target"),
        ({"max_iter": 0}, "max_iter"),
    ]:
        with pytest.raises(ValueError, match=match):
            ScoreCalibrator(**params).fit([0.0, 1.0], [0, 1])
    fitted = ScoreCalibrator().fit(np.ones((4, 2)) * [[0], [1], [2], [3]], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="features"):
        fitted.predict_llr([[0.0, 1.0, 2.0]])


# === Thresholds ===


def test_bayes_threshold_values():
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01) == pytest.approx(math.log(99))
    assert bayes_threshold(0.1, c_miss=10, c_fa=1) == pytest.approx(math.log(0.9 / (10 * 0.1)))
    for bad in (0.0, 1.0, -0.1, "0.1"):
        with pytest.raises(ValueError, match="p_target"):
            bayes_threshold(bad)


def test_bayes_threshold_on_calibrated_llrs_is_near_min_dcf():
    # Calibrated LLRs thresholded at the Bayes threshold cost about as little
    # as the best threshold found with the labels (the minDCF).
    scores, labels = gaussian_scores(20000, 20000, seed=5)
    calibrator = ScoreCalibrator().fit(scores, labels)
    test_scores, test_labels = gaussian_scores(20000, 20000, seed=6)
    llr = calibrator.predict_llr(test_scores)
    p = 0.05
    accept = llr >= bayes_threshold(p)
    p_miss = np.mean(~accept[test_labels == 1])
    p_fa = np.mean(accept[test_labels == 0])
    actual = (p * p_miss + (1 - p) * p_fa) / min(p, 1 - p)
    assert actual == pytest.approx(min_dcf(llr, test_labels, p_target=p), abs=0.02)


def test_threshold_at_false_alarm_hand_example():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.35, 0.8]
    labels = [0, 0, 0, 0, 0, 0, 1, 1]
    # Non-targets 0.1..0.5, 0.9: P_fa(t) = #{non-target >= t} / 6.
    assert threshold_at_false_alarm(scores, labels, 2 / 6) == 0.5  # 0.5 and 0.9 accepted
    assert threshold_at_false_alarm(scores, labels, 0.3) == 0.8  # only 0.9 accepted
    assert threshold_at_false_alarm(scores, labels, 0.0) == np.inf
    assert threshold_at_false_alarm(scores, labels, 1.0) == 0.1


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.1, 0.5])
def test_threshold_at_false_alarm_gives_the_rate(rate):
    scores, labels = gaussian_scores(3000, 7000, seed=7)
    threshold = threshold_at_false_alarm(scores, labels, rate)
    nontarget = scores[labels == 0]
    achieved = np.mean(nontarget >= threshold)
    assert achieved <= rate
    # The next lower non-target score would exceed the rate: the threshold is the lowest.
    lower = nontarget[nontarget < threshold].max()
    assert np.mean(nontarget >= lower) > rate
    assert achieved == pytest.approx(rate, abs=1 / 7000)


def test_threshold_at_min_dcf_attains_min_dcf():
    scores, labels = gaussian_scores(1000, 9000, seed=8)
    for p in (0.01, 0.05, 0.3):
        threshold = threshold_at_min_dcf(scores, labels, p_target=p)
        p_miss, p_fa, thresholds = error_rates(scores, labels)
        costs = (p * p_miss + (1 - p) * p_fa) / min(p, 1 - p)
        index = int(np.flatnonzero(thresholds == threshold)[0])
        assert costs[index] == pytest.approx(costs.min(), abs=1e-12)
        accept = scores >= threshold
        cost = (p * np.mean(~accept[labels == 1]) + (1 - p) * np.mean(accept[labels == 0])) / min(
            p, 1 - p
        )
        assert cost == pytest.approx(min_dcf(scores, labels, p_target=p), abs=1e-12)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "x"])
def test_threshold_at_false_alarm_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        threshold_at_false_alarm([0.1, 0.2], [0, 1], rate)


def test_thresholds_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        threshold_at_false_alarm([0.1, 0.2, 0.3], [0, 1], 0.1)
    with pytest.raises(ValueError, match="same length"):
        threshold_at_min_dcf([0.1, 0.2, 0.3], [0, 1])
