"""Tests for the separation metrics: BSS-eval SDR, SI-SDR, SDRi and PESQi."""

import sys

import fast_bss_eval
import numpy as np
import pytest
from scipy.signal import lfilter

from keras_spk.data.speech_synthesis import synthesize_utterance
from keras_spk.metrics import pesq_available
from keras_spk.metrics import pesq_improvement
from keras_spk.metrics import sdr
from keras_spk.metrics import sdr_improvement
from keras_spk.metrics import si_sdr

needs_pesq = pytest.mark.skipif(not pesq_available(), reason="the optional pesq package")


def reference_sdr(reference, estimate, filter_length=512):
    """BSS-eval v3 SDR by its definition: least squares on the delayed copies of the reference.

    The signals are zero-padded by `filter_length - 1` samples (as in
    mir_eval's `_project`), the estimate is projected on the columns
    `reference delayed by 0 .. filter_length - 1`, and the SDR is the
    energy ratio of the projection to the residual.
    """
    length = len(reference) + filter_length - 1
    delayed = np.zeros((length, filter_length))
    for tau in range(filter_length):
        delayed[tau : tau + len(reference), tau] = reference
    padded = np.concatenate([estimate, np.zeros(filter_length - 1)])
    coefficients, *_ = np.linalg.lstsq(delayed, padded, rcond=None)
    target = delayed @ coefficients
    return 10 * np.log10(np.sum(target**2) / np.sum((padded - target) ** 2))


@pytest.fixture(scope="module")
def speech():
    """Two 2-s utterances of two synthetic speakers, and their mixture."""
    sources = np.stack([synthesize_utterance(0, speaker, 0, 0, 2.0) for speaker in (1, 2)])
    return sources, sources.sum(axis=0)


# --------------------------------------------------------------------------
# sdr and si_sdr
# --------------------------------------------------------------------------


def test_sdr_matches_its_definition_by_least_squares():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=3000)
    estimate = lfilter([0.8, 0.3, -0.1], [1.0], reference) + 0.3 * rng.normal(size=3000)
    for filter_length in (512, 64, 1):
        np.testing.assert_allclose(
            sdr(reference, estimate, filter_length),
            reference_sdr(reference, estimate, filter_length),
            atol=1e-6,
        )


def test_sdr_matches_fast_bss_eval_and_is_batched(speech):
    sources, mixture = speech
    rng = np.random.default_rng(1)
    estimates = sources + 0.05 * rng.normal(size=sources.shape) + 0.2 * sources[::-1]
    # fast_bss_eval.sdr scores [sources, samples] under the best permutation,
    # here the identity.
    want = fast_bss_eval.sdr(sources, estimates)
    np.testing.assert_allclose(sdr(sources, estimates), want, rtol=1e-9)
    np.testing.assert_allclose([sdr(s, e) for s, e in zip(sources, estimates)], want, rtol=1e-9)
    # Broadcasting: one reference against several estimates.
    got = sdr(sources[0], np.stack([estimates[0], mixture]))
    np.testing.assert_allclose(got, [want[0], sdr(sources[0], mixture)], rtol=1e-9)
    assert isinstance(sdr(sources[0], mixture), float)


def test_sdr_allows_a_short_filter_and_a_gain():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=4000)
    noisy = reference + 0.1 * rng.normal(size=4000)
    # 20 dB of white noise: SDR close to 20 dB (the 512 taps also explain
    # a little of the noise, so slightly more).
    assert 20.0 < sdr(reference, noisy) < 21.5
    # A gain, a delay and a short filter are not distortion.
    np.testing.assert_allclose(sdr(reference, 3.0 * noisy), sdr(reference, noisy), atol=1e-9)
    # Trailing silence, so that the filter's tail is not cut off at the end.
    quiet_end = np.concatenate([reference[:3990], np.zeros(10)])
    filtered = lfilter([0.0, 0.0, 1.0, 0.5, -0.2], [1.0], quiet_end)
    assert sdr(quiet_end, filtered) > 80.0
    assert sdr(quiet_end, filtered, filter_length=1) < 10.0
    # Scale does not matter for either signal, however quiet.
    np.testing.assert_allclose(sdr(1e-9 * reference, 1e-9 * noisy), sdr(reference, noisy))


def test_si_sdr_by_hand_and_against_fast_bss_eval():
    x = np.array([1.0, -1.0, 2.0, -2.0])
    noise = np.array([0.1, 0.1, -0.1, -0.1])  # orthogonal to x, zero mean
    # alpha = 1: 10 log10(|x|^2 / |noise|^2) = 10 log10(10 / 0.04)
    np.testing.assert_allclose(si_sdr(x, x + noise), 10 * np.log10(250.0))
    # A gain does not change it; an offset is removed with the mean.
    np.testing.assert_allclose(si_sdr(x, 5.0 * (x + noise) + 3.0), 10 * np.log10(250.0))
    assert si_sdr(x, x) == np.inf
    rng = np.random.default_rng(3)
    refs, ests = rng.normal(size=(2, 3, 1000))
    ests = refs + 0.5 * ests
    for zero_mean in (True, False):
        want = [
            fast_bss_eval.si_sdr(r[None], e[None], zero_mean=zero_mean)[0]
            for r, e in zip(refs, ests)
        ]
        np.testing.assert_allclose(si_sdr(refs, ests, zero_mean=zero_mean), want, rtol=1e-9)


@pytest.mark.parametrize(
    "reference, estimate, match",
    [
        (np.ones(600), np.ones(599), "same number of samples"),
        (np.ones((2, 600)), np.ones((3, 600)), "broadcastable"),
        (np.ones(600), np.zeros(600), "`estimate` has an all-zero signal"),
        (np.zeros((2, 600)), np.ones(600), r"`reference` has an all-zero signal \(at index"),
        (np.ones(600), np.full(600, np.nan), "NaN or infinite"),
        (np.ones(0), np.ones(0), "at least one sample"),
        (np.array(["a"] * 600), np.ones(600), "real array"),
    ],
)
def test_sdr_bad_inputs_raise(reference, estimate, match):
    with pytest.raises(ValueError, match=match):
        sdr(reference, estimate)


def test_bad_filter_length_and_zero_mean_raise():
    x = np.random.default_rng(0).normal(size=600)
    with pytest.raises(ValueError, match="must not exceed the signals' length"):
        sdr(x[:500], x[:500])
    with pytest.raises(ValueError, match="filter_length=0"):
        sdr(x, x, filter_length=0)
    with pytest.raises(ValueError, match="zero_mean"):
        si_sdr(x, x, zero_mean=1)
    with pytest.raises(ValueError, match="after removing its mean"):
        si_sdr(np.ones(600), x)


# --------------------------------------------------------------------------
# sdr_improvement
# --------------------------------------------------------------------------


def test_identity_mask_gives_exactly_zero(speech):
    sources, mixture = speech
    # Every estimate is the mixture: each source's SDR is its mixture SDR.
    assert sdr_improvement(sources, np.stack([mixture, mixture]), mixture) == 0.0
    rng = np.random.default_rng(4)
    three = rng.normal(size=(3, 2000))
    mix3 = three.sum(axis=0)
    assert sdr_improvement(three, np.stack([mix3] * 3), mix3) == 0.0


def test_improvement_is_the_mean_over_sources_of_the_best_assignment(speech):
    sources, mixture = speech
    rng = np.random.default_rng(5)
    estimates = sources + 0.002 * rng.normal(size=sources.shape)  # about 30 dB SNR
    value, details = sdr_improvement(sources, estimates, mixture, return_details=True)
    np.testing.assert_array_equal(details["permutation"], [0, 1])
    mixture_sdr = [sdr(s, mixture) for s in sources]
    matched = [sdr(s, e) for s, e in zip(sources, estimates)]
    np.testing.assert_allclose(details["mixture_sdr"], mixture_sdr, rtol=1e-12)
    np.testing.assert_allclose(details["sdr"], matched, rtol=1e-12)
    np.testing.assert_allclose(value, np.mean(np.subtract(matched, mixture_sdr)), rtol=1e-12)
    # A clean estimate scores far higher than the mixture; the order does not matter.
    assert value > 25.0
    swapped, swapped_details = sdr_improvement(
        sources, estimates[::-1], mixture, return_details=True
    )
    assert swapped == value
    np.testing.assert_array_equal(swapped_details["permutation"], [1, 0])
    # Half-way between the mixture and the sources: a positive but smaller gain.
    halfway = 0.5 * (estimates + mixture)
    assert 0.0 < sdr_improvement(sources, halfway, mixture) < value


@pytest.mark.parametrize(
    "shapes, match",
    [
        (((2, 800), (2, 800), (2, 800)), r"`mixture` must have shape \[samples\]"),
        (((2, 800), (800,), (800,)), r"`estimates` must have shape \[sources, samples\]"),
        (((2, 800), (3, 800), (800,)), "same number of samples"),
        (((2, 800), (2, 800), (799,)), "same number of samples"),
        (((9, 800), (9, 800), (800,)), "At most 8 sources"),
    ],
)
def test_improvement_shape_errors(shapes, match):
    rng = np.random.default_rng(6)
    arrays = [rng.normal(size=shape) for shape in shapes]
    with pytest.raises(ValueError, match=match):
        sdr_improvement(*arrays)


# --------------------------------------------------------------------------
# PESQ
# --------------------------------------------------------------------------


def test_pesq_missing_raises_a_clear_import_error(monkeypatch, speech):
    sources, mixture = speech
    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` fail
    assert pesq_available() is False
    with pytest.raises(ImportError, match=r"pip install keras_spk\[separation\]"):
        pesq_improvement(sources, sources, mixture)


def test_pesq_argument_errors(speech):
    sources, mixture = speech
    with pytest.raises(ValueError, match="`sample_rate` must be 16000"):
        pesq_improvement(sources, sources, mixture, sample_rate=8000)
    with pytest.raises(ValueError, match="`permutation` must list each"):
        pesq_improvement(sources, sources, mixture, permutation=[0, 0])


@needs_pesq
def test_pesq_identity_gives_zero_and_clean_estimates_improve(speech):
    import pesq

    sources, mixture = speech
    assert pesq_available() is True
    assert pesq_improvement(sources, np.stack([mixture, mixture]), mixture) == 0.0
    rng = np.random.default_rng(7)
    estimates = sources + 0.001 * rng.normal(size=sources.shape)
    value, details = pesq_improvement(sources, estimates[::-1], mixture, return_details=True)
    np.testing.assert_array_equal(details["permutation"], [1, 0])
    want = [
        pesq.pesq(16000, s, e, "wb") - pesq.pesq(16000, s, mixture, "wb")
        for s, e in zip(sources, estimates)
    ]
    np.testing.assert_allclose(value, np.mean(want), rtol=1e-9)
    assert value > 1.0
    # A given permutation is used as it is (here the wrong one).
    wrong = pesq_improvement(sources, estimates, mixture, permutation=[1, 0])
    assert wrong < value


@needs_pesq
def test_pesq_failure_names_the_pair(speech):
    sources, mixture = speech
    short = sources[:, :2000]  # PESQ needs at least a quarter of a second
    with pytest.raises(ValueError, match="PESQ failed on the mixture against source 0"):
        pesq_improvement(short, short, mixture[:2000])
