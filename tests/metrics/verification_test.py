"""Tests for keras_spk.metrics.verification (EER, minDCF, DET curve).

Convention under test (see the module docstring): thresholds are the distinct
scores followed by +inf, a trial is accepted when score >= threshold,
P_miss(t) = #{targets with score < t} / #targets,
P_fa(t) = #{non-targets with score >= t} / #non-targets, and the EER is the
crossing of the linearly interpolated curves between the consecutive points
(pm0, pf0), (pm1, pf1) where d = P_miss - P_fa goes from < 0 to >= 0:
EER = (pm1*pf0 - pm0*pf1) / ((pm1 - pm0) + (pf0 - pf1)).
"""

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from keras_spk import metrics
from keras_spk.metrics import det_curve
from keras_spk.metrics import eer
from keras_spk.metrics import error_rates
from keras_spk.metrics import min_dcf

# Worked example used in several tests.
#   scores: 0.9  0.8  0.7  0.6  0.5  0.4
#   labels: T    T    N    T    N    N       (3 targets, 3 non-targets)
# Thresholds (ascending) and error rates, accept if score >= t:
#   t=0.4: accept all                      P_miss=0    P_fa=3/3
#   t=0.5: reject 0.4(N)                   P_miss=0    P_fa=2/3
#   t=0.6: reject 0.4,0.5(N,N)             P_miss=0    P_fa=1/3
#   t=0.7: also reject 0.6(T)              P_miss=1/3  P_fa=1/3   <- d = 0
#   t=0.8: also reject 0.7(N)              P_miss=1/3  P_fa=0
#   t=0.9: also reject 0.8(T)              P_miss=2/3  P_fa=0
#   t=inf: reject all                      P_miss=1    P_fa=0
# d = P_miss - P_fa: -1, -2/3, -1/3, 0, 1/3, 2/3, 1. The first d >= 0 is at
# t=0.7 with d=0 exactly, so alpha=1 and EER = 1/3 (no interpolation).
SIX_SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
SIX_LABELS = [1, 1, 0, 1, 0, 0]


def _phi(x):
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _brute_force(scores, labels):
    """Independent reference: plain Python loops and exact fractions.

    Returns (points, thresholds) where points[k] = (P_miss, P_fa) as Fractions
    at thresholds[k] (distinct scores ascending, then inf).
    """
    scores = [float(s) for s in scores]
    labels = [int(lab) for lab in labels]
    n_tar = sum(labels)
    n_non = len(labels) - n_tar
    thresholds = sorted(set(scores)) + [math.inf]
    points = []
    for t in thresholds:
        misses = 0
        false_alarms = 0
        for s, lab in zip(scores, labels):
            if lab == 1 and not s >= t:
                misses += 1
            if lab == 0 and s >= t:
                false_alarms += 1
        points.append((Fraction(misses, n_tar), Fraction(false_alarms, n_non)))
    return points, thresholds


def _brute_eer(scores, labels):
    points, _ = _brute_force(scores, labels)
    for (pm0, pf0), (pm1, pf1) in zip(points[:-1], points[1:]):
        d0, d1 = pm0 - pf0, pm1 - pf1
        if d0 < 0 <= d1:
            alpha = d0 / (d0 - d1)
            value = pm0 + alpha * (pm1 - pm0)
            # Same point reached from the P_fa side.
            assert value == pf0 + alpha * (pf1 - pf0)
            return value
    raise AssertionError("no sign change found")


def _brute_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Exact minDCF and the set of thresholds attaining it (Fractions)."""
    points, thresholds = _brute_force(scores, labels)
    p_target, c_miss, c_fa = Fraction(p_target), Fraction(c_miss), Fraction(c_fa)
    c_default = min(c_miss * p_target, c_fa * (1 - p_target))
    costs = [
        (c_miss * pm * p_target + c_fa * pf * (1 - p_target)) / c_default
        for pm, pf in points
    ]
    best = min(costs)
    return best, {t for t, cost in zip(thresholds, costs) if cost == best}


# ---------------------------------------------------------------------------
# Hand-derived values
# ---------------------------------------------------------------------------


def test_error_rates_worked_example():
    p_miss, p_fa, thresholds = error_rates(SIX_SCORES, SIX_LABELS)
    np.testing.assert_allclose(p_miss, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(p_fa, [1, 2 / 3, 1 / 3, 1 / 3, 0, 0, 0])
    np.testing.assert_array_equal(
        thresholds, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, np.inf]
    )


def test_eer_worked_example():
    assert eer(SIX_SCORES, SIX_LABELS) == pytest.approx(1 / 3, abs=1e-12)


def test_eer_interpolates_when_only_p_miss_moves():
    # scores 0.9 0.8 0.7 0.6 0.5 / labels T N T N N  (2 targets, 3 non-targets)
    #   t=0.5 (0, 1)    t=0.6 (0, 2/3)    t=0.7 (0, 1/3)  d=-1/3
    #   t=0.8 (1/2, 1/3)  d=+1/6  <- first d >= 0
    # Segment (0, 1/3) -> (1/2, 1/3): P_fa stays 1/3 while P_miss goes 0->1/2,
    # alpha = (1/3) / (1/3 + 1/6) = 2/3, EER = 0 + 2/3 * 1/2 = 1/3.
    # Formula: (pm1*pf0 - pm0*pf1) / ((pm1-pm0)+(pf0-pf1)) = (1/6) / (1/2) = 1/3.
    value = eer([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0])
    assert value == pytest.approx(1 / 3, abs=1e-12)


def test_eer_tied_target_and_nontarget():
    # scores 0.9 0.5 0.5 0.1 / labels T T N N: the 0.5 tie is ONE threshold.
    #   t=0.1 (0, 1)   t=0.5 (0, 1/2) d=-1/2   t=0.9 (1/2, 0) d=+1/2
    # alpha = 1/2 -> EER = 1/4.
    # (Breaking the tie target-first would give 0, non-target-first 1/2.)
    assert eer([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.25, abs=1e-12)


def test_eer_tie_asymmetric_interpolation():
    # scores 0.5 0.5 0.1 / labels T N N (1 target, 2 non-targets)
    #   t=0.1 (0, 1)   t=0.5 (0, 1/2) d=-1/2   t=inf (1, 0) d=+1
    # alpha = (1/2) / (1/2 + 1) = 1/3; EER = 0 + 1/3 * 1 = 1/3
    # (check from P_fa side: 1/2 + 1/3 * (0 - 1/2) = 1/3).
    assert eer([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(1 / 3, abs=1e-12)


def test_perfect_separation():
    # Every target above every non-target: at t = lowest target score
    # P_miss = 0 and P_fa = 0, so d = 0 there -> EER 0, and C_det = 0.
    scores = [3.0, 2.5, 2.0, 1.0, 0.5, -1.0]
    labels = [1, 1, 1, 0, 0, 0]
    assert eer(scores, labels) == 0.0
    assert min_dcf(scores, labels, p_target=0.01) == 0.0
    assert min_dcf(scores, labels, p_target=0.05) == 0.0
    value, threshold = min_dcf(scores, labels, return_threshold=True)
    assert value == 0.0
    assert threshold == 2.0


def test_fully_reversed():
    # Every target below every non-target: at t = lowest non-target score all
    # targets are rejected and all non-targets accepted: P_miss = 1, P_fa = 1,
    # d = 0 -> EER = 1. Every point has P_miss = 1 or P_fa = 1, so the best
    # normalised cost is that of a trivial system: minDCF = 1.
    scores = [-1.0, 0.0, 0.5, 1.0, 2.0]
    labels = [1, 1, 0, 0, 0]
    assert eer(scores, labels) == 1.0
    assert min_dcf(scores, labels, p_target=0.01) == pytest.approx(1.0)
    assert min_dcf(scores, labels, p_target=0.05) == pytest.approx(1.0)


def test_all_tied_scores():
    # One threshold plus inf: (0, 1) -> (1, 0); d: -1 -> +1, alpha = 1/2,
    # EER = 1/2. Only trivial systems exist, so minDCF = 1 (reject-all wins
    # for p_target < 0.5: cost p_target vs 1 - p_target).
    scores = [0.3] * 7
    labels = [1, 0, 0, 1, 0, 1, 0]
    assert eer(scores, labels) == 0.5
    value, threshold = min_dcf(scores, labels, p_target=0.01, return_threshold=True)
    assert value == pytest.approx(1.0)
    assert threshold == np.inf


def test_min_dcf_worked_example():
    # Worked example (table at the top of this file), p_target = 0.01:
    #   C_norm = (0.01*P_miss + 0.99*P_fa) / 0.01 = P_miss + 99*P_fa
    #   t:     0.4  0.5  0.6  0.7     0.8  0.9  inf
    #   C:     99   66   33   33.33   1/3  2/3  1     -> min 1/3 at t = 0.8
    value, threshold = min_dcf(SIX_SCORES, SIX_LABELS, return_threshold=True)
    assert value == pytest.approx(1 / 3, abs=1e-12)
    assert threshold == 0.8
    # p_target = 0.05: C_norm = P_miss + 19*P_fa -> 19, 12.67, 6.33, 6.67,
    # 1/3, 2/3, 1 -> min 1/3 at t = 0.8 again.
    value, threshold = min_dcf(
        SIX_SCORES, SIX_LABELS, p_target=0.05, return_threshold=True
    )
    assert value == pytest.approx(1 / 3, abs=1e-12)
    assert threshold == 0.8


# 4 targets (1.0, 0.8, 0.7, 0.6), 40 non-targets: one at 0.9 and 39 evenly in
# [0, 0.5]. Operating points that matter (P_miss, P_fa):
#   t=0.5 -> (0, 2/40)   t=0.6 -> (0, 1/40)   t=0.7 -> (1/4, 1/40)
#   t=0.8 -> (2/4, 1/40) t=0.9 -> (3/4, 1/40) t=1.0 -> (3/4, 0)  t=inf -> (1, 0)
# (lower thresholds only add false alarms).
DCF_TARGETS = [1.0, 0.8, 0.7, 0.6]
DCF_NONTARGETS = [0.9] + np.linspace(0.0, 0.5, 39).tolist()
DCF_SCORES = DCF_TARGETS + DCF_NONTARGETS
DCF_LABELS = [1] * 4 + [0] * 40


def test_min_dcf_depends_on_p_target():
    # p_target = 0.01: C_norm = P_miss + 99*P_fa
    #   t=0.6: 99/40 = 2.475   t=1.0: 0.75   t=inf: 1   t=0.5: 4.95
    #   -> minDCF = 0.75 at t = 1.0
    value, threshold = min_dcf(
        DCF_SCORES, DCF_LABELS, p_target=0.01, return_threshold=True
    )
    assert value == pytest.approx(0.75, abs=1e-12)
    assert threshold == 1.0
    # p_target = 0.05: C_norm = P_miss + 19*P_fa
    #   t=0.6: 19/40 = 0.475   t=0.7: 0.725   t=1.0: 0.75   t=0.5: 0.95
    #   -> minDCF = 0.475 at t = 0.6
    value, threshold = min_dcf(
        DCF_SCORES, DCF_LABELS, p_target=0.05, return_threshold=True
    )
    assert value == pytest.approx(0.475, abs=1e-12)
    assert threshold == 0.6


def test_min_dcf_costs():
    # c_miss = 10, c_fa = 1, p_target = 0.01:
    #   C_default = min(10*0.01, 1*0.99) = 0.1
    #   C_norm = (0.1*P_miss + 0.99*P_fa) / 0.1 = P_miss + 9.9*P_fa
    #   t=0.6: 9.9/40 = 0.2475   t=0.5: 0.495   t=1.0: 0.75  -> 0.2475 at 0.6
    value, threshold = min_dcf(
        DCF_SCORES, DCF_LABELS, p_target=0.01, c_miss=10.0, return_threshold=True
    )
    assert value == pytest.approx(0.2475, abs=1e-12)
    assert threshold == 0.6
    # c_fa = 10, p_target = 0.5: C_default = min(0.5, 5) = 0.5
    #   C_norm = P_miss + 10*P_fa; t=1.0: 0.75, t=0.6: 0.25 + ... = 10/40 = 0.25
    #   -> 0.25 at t = 0.6
    value = min_dcf(DCF_SCORES, DCF_LABELS, p_target=0.5, c_fa=10.0)
    assert value == pytest.approx(0.25, abs=1e-12)


def test_min_dcf_default_cost_from_false_alarm_side():
    # c_miss = 10, c_fa = 1, p_target = 0.5:
    #   C_default = min(10*0.5, 1*0.5) = 0.5   (the false-alarm term)
    #   C_norm = (5*P_miss + 0.5*P_fa) / 0.5 = 10*P_miss + P_fa
    #   t=0.6: 1/40 = 0.025   t=0.5: 2/40   t=0.7: 2.5 + 1/40   t=inf: 10
    #   -> 0.025 at t = 0.6
    value, threshold = min_dcf(
        DCF_SCORES, DCF_LABELS, p_target=0.5, c_miss=10.0, return_threshold=True
    )
    assert value == pytest.approx(0.025, abs=1e-12)
    assert threshold == 0.6
    # p_target = 0.9, unit costs: C_default = min(0.9, 0.1) = 0.1,
    # C_norm = 9*P_miss + P_fa on the worked example:
    #   t: 0.4  0.5  0.6  0.7   0.8  0.9  inf
    #   C: 1    2/3  1/3  10/3  3    6    9     -> 1/3 at t = 0.6
    value, threshold = min_dcf(
        SIX_SCORES, SIX_LABELS, p_target=0.9, return_threshold=True
    )
    assert value == pytest.approx(1 / 3, abs=1e-12)
    assert threshold == 0.6


def test_min_dcf_threshold_tie_takes_smallest():
    # p_target = 0.5, unit costs: C_norm = P_miss + P_fa on the worked example:
    #   t: 0.4  0.5  0.6  0.7  0.8  0.9  inf
    #   C: 1    2/3  1/3  2/3  1/3  2/3  1     -> 1/3 at t = 0.6 and t = 0.8
    # Documented tie rule: the smallest threshold, 0.6.
    value, threshold = min_dcf(
        SIX_SCORES, SIX_LABELS, p_target=0.5, return_threshold=True
    )
    assert value == pytest.approx(1 / 3, abs=1e-12)
    assert threshold == 0.6


def test_det_curve_matches_error_rates():
    p_fa, p_miss, thresholds = det_curve(SIX_SCORES, SIX_LABELS)
    ref_miss, ref_fa, ref_thresholds = error_rates(SIX_SCORES, SIX_LABELS)
    np.testing.assert_array_equal(p_fa, ref_fa)
    np.testing.assert_array_equal(p_miss, ref_miss)
    np.testing.assert_array_equal(thresholds, ref_thresholds)
    # DET ordering: p_fa from 1 down to 0, p_miss from 0 up to 1.
    assert p_fa[0] == 1.0 and p_fa[-1] == 0.0
    assert p_miss[0] == 0.0 and p_miss[-1] == 1.0


def test_return_types():
    value = eer(SIX_SCORES, SIX_LABELS)
    assert type(value) is float
    value = min_dcf(SIX_SCORES, SIX_LABELS)
    assert type(value) is float
    value, threshold = min_dcf(SIX_SCORES, SIX_LABELS, return_threshold=True)
    assert type(value) is float and type(threshold) is float


# ---------------------------------------------------------------------------
# Brute-force reference and invariances
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("with_ties", [False, True])
def test_matches_brute_force(seed, with_ties):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[0], labels[1] = True, False  # at least one of each
    scores = rng.standard_normal(n) + rng.uniform(0.0, 2.0) * labels
    if with_ties:
        scores = np.round(scores, 1)  # many ties, including mixed-label ties

    points, thresholds = _brute_force(scores, labels)
    p_miss, p_fa, got_thresholds = error_rates(scores, labels)
    np.testing.assert_allclose(p_miss, [float(pm) for pm, _ in points], atol=1e-12)
    np.testing.assert_allclose(p_fa, [float(pf) for _, pf in points], atol=1e-12)
    np.testing.assert_array_equal(got_thresholds, thresholds)

    assert eer(scores, labels) == pytest.approx(float(_brute_eer(scores, labels)), abs=1e-12)
    for p_target, c_miss, c_fa in [
        (0.01, 1, 1),
        (0.05, 1, 1),
        (0.3, 2, 1),
        (0.5, 1, 3),
        (0.9, 1, 1),  # C_default = c_fa * (1 - p_target)
        (0.01, 200, 1),  # C_default = c_fa * (1 - p_target)
    ]:
        ref_value, ref_thresholds = _brute_min_dcf(scores, labels, p_target, c_miss, c_fa)
        value, threshold = min_dcf(
            scores, labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa,
            return_threshold=True,
        )
        assert value == pytest.approx(float(ref_value), abs=1e-9)
        # Exact ties in cost may be broken either way by float rounding, so
        # only require an optimal threshold.
        assert threshold in ref_thresholds


@pytest.mark.parametrize("seed", range(3))
def test_invariant_to_trial_order(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(500) < 0.3
    labels[:2] = [True, False]
    scores = np.round(rng.standard_normal(500) + labels, 2)
    perm = rng.permutation(500)
    assert eer(scores[perm], labels[perm]) == eer(scores, labels)
    for p_target in (0.01, 0.05):
        assert min_dcf(scores[perm], labels[perm], p_target=p_target) == min_dcf(
            scores, labels, p_target=p_target
        )
    np.testing.assert_array_equal(
        error_rates(scores[perm], labels[perm])[0], error_rates(scores, labels)[0]
    )


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: 3.0 * s - 7.0,
        np.exp,
        lambda s: 1.0 / (1.0 + np.exp(-s)),
        np.cbrt,
    ],
    ids=["affine", "exp", "sigmoid", "cbrt"],
)
def test_invariant_to_monotone_transform(transform):
    rng = np.random.default_rng(7)
    labels = rng.random(400) < 0.4
    labels[:2] = [True, False]
    # Coarse grid -> ties survive the transform as ties and distinct values
    # stay distinct.
    scores = np.round(rng.standard_normal(400) + 1.2 * labels, 1)
    transformed = transform(scores)
    assert eer(transformed, labels) == pytest.approx(eer(scores, labels), abs=1e-12)
    for p_target in (0.01, 0.05):
        value, threshold = min_dcf(
            transformed, labels, p_target=p_target, return_threshold=True
        )
        ref_value, ref_threshold = min_dcf(
            scores, labels, p_target=p_target, return_threshold=True
        )
        assert value == pytest.approx(ref_value, abs=1e-12)
        # The optimal threshold is carried along by the transform.
        assert threshold == pytest.approx(float(transform(np.float64(ref_threshold))))


def test_label_dtypes_equivalent():
    expected = eer(SIX_SCORES, SIX_LABELS)
    as_bool = np.array(SIX_LABELS, dtype=bool)
    as_float = np.array(SIX_LABELS, dtype=np.float32)
    as_int8 = np.array(SIX_LABELS, dtype=np.int8)
    for labels in (as_bool, as_float, as_int8, as_bool.tolist()):
        assert eer(SIX_SCORES, labels) == expected
        assert min_dcf(SIX_SCORES, labels) == min_dcf(SIX_SCORES, SIX_LABELS)


def test_inputs_not_modified():
    scores = np.array(SIX_SCORES)
    labels = np.array(SIX_LABELS)
    eer(scores, labels)
    min_dcf(scores, labels)
    np.testing.assert_array_equal(scores, SIX_SCORES)
    np.testing.assert_array_equal(labels, SIX_LABELS)


def test_gaussian_eer_and_min_dcf():
    # Targets ~ N(2, 1), non-targets ~ N(0, 1). Accept if s >= t:
    #   P_miss(t) = Phi(t - 2), P_fa(t) = 1 - Phi(t) = Phi(-t);
    #   equal at t = 1 -> EER = Phi(-1) ~= 0.158655.
    rng = np.random.default_rng(1234)
    n = 100_000
    scores = np.concatenate([rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n)])
    labels = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    expected_eer = _phi(-1.0)
    assert expected_eer == pytest.approx(0.158655, abs=1e-6)
    assert eer(scores, labels) == pytest.approx(expected_eer, abs=0.005)

    # Population minDCF(0.05): minimise (0.05*Phi(t-2) + 0.95*Phi(-t)) / 0.05
    # over a fine grid of t.
    grid = np.linspace(-2.0, 6.0, 80_001)
    phi = np.vectorize(_phi)
    population = np.min(phi(grid - 2.0) + 19.0 * phi(-grid))
    assert min_dcf(scores, labels, p_target=0.05) == pytest.approx(population, abs=0.02)


def test_does_not_import_deep_learning_backends():
    code = (
        "import sys, keras_spk.metrics as m; "
        "m.eer([1.0, 0.0], [1, 0]); "
        "bad = [k for k in ('tensorflow', 'torch', 'keras', 'jax') if k in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api():
    for name in ("eer", "min_dcf", "det_curve", "error_rates"):
        assert callable(getattr(metrics, name))


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

ALL_FUNCTIONS = [eer, min_dcf, det_curve, error_rates]


@pytest.mark.parametrize("fn", ALL_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([0.1, 0.2, 0.3], [1, 0], r"same length.*len\(scores\)=3, len\(labels\)=2"),
        ([], [], "empty"),
        ([0.1, 0.2, 0.3], [1, 0, 2], r"only 0/1.*Received: labels with other values \[2\]"),
        ([0.1, 0.2, 0.3], [1, 0, -1], "only 0/1"),
        ([0.1, 0.2, 0.3], [1, 0, 0.5], "only 0/1"),
        ([0.1, 0.2], ["a", "b"], "labels"),
        ([0.1, 0.2, 0.3], [0, 0, 0], r"no target \(label 1\)"),
        ([0.1, 0.2, 0.3], [True, True, True], r"no non-target \(label 0\)"),
        ([0.1, float("nan"), 0.3], [1, 0, 0], r"finite.*scores\[1\]=nan"),
        ([0.1, float("inf"), 0.3], [1, 0, 0], "finite"),
        ([0.1, -float("inf"), 0.3], [1, 0, 0], "finite"),
        ([[0.1, 0.2], [0.3, 0.4]], [1, 0, 1, 0], r"1-D.*scores.shape=\(2, 2\)"),
        ([0.1, 0.2], [[1], [0]], r"1-D.*labels.shape=\(2, 1\)"),
        (["x", "y"], [1, 0], "real numbers"),
    ],
)
def test_bad_inputs_raise(fn, scores, labels, match):
    with pytest.raises(ValueError, match=match):
        fn(scores, labels)


@pytest.mark.parametrize("p_target", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_p_target_raises(p_target):
    with pytest.raises(ValueError, match=r"p_target.*Received: p_target="):
        min_dcf(SIX_SCORES, SIX_LABELS, p_target=p_target)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"c_miss": 0.0}, "c_miss"),
        ({"c_miss": -1.0}, "c_miss"),
        ({"c_fa": 0.0}, "c_fa"),
        ({"c_fa": float("inf")}, "c_fa"),
        ({"p_target": "0.01"}, "p_target"),
        ({"p_target": None}, "p_target"),
    ],
)
def test_bad_costs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        min_dcf(SIX_SCORES, SIX_LABELS, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_verification_metrics_equal_the_single_metrics(seed):
    from keras_spk.metrics import verification_metrics

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 1.5, 1.0), 1)  # rounding makes ties
    results = verification_metrics(scores, labels, p_targets=(0.01, 0.05, 0.3))
    assert results["eer"] == eer(scores, labels)
    for p in (0.01, 0.05, 0.3):
        assert results[f"min_dcf_{p:g}"] == min_dcf(scores, labels, p_target=p)
    with pytest.raises(ValueError):
        verification_metrics(scores, labels, p_targets=(0.0,))
