import numpy as np
import pytest

from keras_spk.layers.statistics_pooling import StatisticsPooling
from tests.helpers.pooling import D
from tests.helpers.pooling import check_compute_mask_and_output_shape
from tests.helpers.pooling import check_keras_mask_from_masking_layer
from tests.helpers.pooling import check_lengths_ignore_padding_even_nan
from tests.helpers.pooling import check_mask_and_lengths_combine
from tests.helpers.pooling import check_toy_fit_reduces_loss
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def reference_stats(frames, eps=1e-5):
    """concat(mean, sqrt(max(var, eps))), biased variance, in float64."""
    frames = np.asarray(frames, "float64")
    mean = frames.mean(axis=0)
    var = ((frames - mean) ** 2).mean(axis=0)
    return np.concatenate([mean, np.sqrt(np.maximum(var, eps))])


def test_hand_computed_example():
    # Frames 1, 3 (and a padded 100): mean 2, biased variance 1, std 1.
    # Second feature constant 5: variance 0 is floored to eps.
    x = np.array([[[1.0, 5.0], [3.0, 5.0], [100.0, 5.0]]], "float32")
    got = to_numpy(StatisticsPooling(eps=1e-4)(x, lengths=np.array([2])))
    np.testing.assert_allclose(got, [[2.0, 5.0, 1.0, 0.01]], rtol=1e-5)


@pytest.mark.parametrize("time", [1, 7, 50])
def test_matches_numpy_reference_and_shapes(time):
    x = np.random.default_rng(time).normal(size=(2, time, D)).astype("float32")
    got = to_numpy(StatisticsPooling()(x))
    assert got.shape == (2, 2 * D)
    np.testing.assert_allclose(got, [reference_stats(r) for r in x], rtol=1e-5, atol=1e-5)


def test_large_offset_has_no_cancellation():
    # E[h^2] - mu^2 in float32 would lose the unit variance under a 1e4 offset.
    x = 1e4 + np.random.default_rng(0).normal(size=(1, 50, D))
    got = to_numpy(StatisticsPooling()(x.astype("float32")))
    np.testing.assert_allclose(got[0], reference_stats(x[0].astype("float32")), rtol=1e-3)


def test_lengths_ignore_padding_even_nan():
    check_lengths_ignore_padding_even_nan(
        StatisticsPooling(), reference_stats, rtol=1e-5, atol=1e-5
    )


def test_explicit_mask_and_lengths_combine():
    check_mask_and_lengths_combine(StatisticsPooling(), reference_stats, rtol=1e-5, atol=1e-5)


def test_keras_mask_from_masking_layer_in_functional_model():
    check_keras_mask_from_masking_layer(StatisticsPooling(), reference_stats, rtol=1e-5, atol=1e-5)


def test_row_without_valid_frames():
    x = np.ones((1, 4, D), "float32")
    got = to_numpy(StatisticsPooling(eps=1e-4)(x, lengths=np.array([0])))
    np.testing.assert_allclose(got, [[0.0] * D + [0.01] * D], rtol=1e-6)


def test_compute_mask_and_output_shape():
    check_compute_mask_and_output_shape(StatisticsPooling(), 32)


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), "1e-5", True, None])
def test_bad_eps_raises(eps):
    with pytest.raises(ValueError, match="Received: eps="):
        StatisticsPooling(eps=eps)


def test_get_config():
    config = StatisticsPooling(eps=1e-3, name="stats").get_config()
    assert config["eps"] == 1e-3 and config["name"] == "stats"


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(3, 9, D)).astype("float32")
    got = run_layer_test(StatisticsPooling, x, expected_output_shape=(3, 2 * D))
    np.testing.assert_allclose(got, [reference_stats(r) for r in x], rtol=1e-5, atol=1e-5)


def test_toy_fit_reduces_loss():
    check_toy_fit_reduces_loss(StatisticsPooling, "spread", fill=0.0)


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return StatisticsPooling(), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    return StatisticsPooling(), x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
