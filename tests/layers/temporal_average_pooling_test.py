import keras
import numpy as np
import pytest

from keras_spk.layers.temporal_average_pooling import TemporalAveragePooling
from tests.helpers.pooling import D
from tests.helpers.pooling import check_compute_mask_and_output_shape
from tests.helpers.pooling import check_keras_mask_from_masking_layer
from tests.helpers.pooling import check_lengths_ignore_padding_even_nan
from tests.helpers.pooling import check_mask_and_lengths_combine
from tests.helpers.pooling import check_toy_fit_reduces_loss
from tests.helpers.pooling import make_rows
from tests.helpers.pooling import pad
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def reference_tap(frames):
    """e = (1 / T) sum_t h_t, in float64."""
    return np.asarray(frames, "float64").mean(axis=0)


def test_hand_computed_example():
    x = np.array([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]]], "float32")
    np.testing.assert_allclose(to_numpy(TemporalAveragePooling()(x)), [[13 / 3, 17 / 3]], rtol=1e-6)
    np.testing.assert_allclose(
        to_numpy(TemporalAveragePooling()(x, lengths=np.array([2]))), [[2.0, 4.0]], rtol=1e-6
    )


@pytest.mark.parametrize("time", [1, 7, 50])
def test_matches_numpy_reference_and_shapes(time):
    x = np.random.default_rng(time).normal(size=(2, time, D)).astype("float32")
    got = to_numpy(TemporalAveragePooling()(x))
    assert got.shape == (2, D)
    np.testing.assert_allclose(got, [reference_tap(r) for r in x], rtol=1e-5, atol=1e-6)


def test_lengths_ignore_padding_even_nan():
    check_lengths_ignore_padding_even_nan(
        TemporalAveragePooling(), reference_tap, rtol=1e-5, atol=1e-6
    )


def test_explicit_mask_and_lengths_combine():
    check_mask_and_lengths_combine(TemporalAveragePooling(), reference_tap, rtol=1e-5, atol=1e-6)


def test_keras_mask_from_masking_layer_in_functional_model():
    check_keras_mask_from_masking_layer(
        TemporalAveragePooling(), reference_tap, rtol=1e-5, atol=1e-6
    )


def test_lengths_as_model_input():
    rows = make_rows(3)
    x, lengths = pad(rows, 1e3)
    frames, lens = keras.Input((None, D)), keras.Input((), dtype="int32")
    model = keras.Model([frames, lens], TemporalAveragePooling()(frames, lengths=lens))
    got = to_numpy(model([x, lengths]))
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i], reference_tap(row), rtol=1e-5, atol=1e-6)


def test_row_without_valid_frames_pools_to_zeros():
    x = np.ones((2, 4, D), "float32")
    got = to_numpy(TemporalAveragePooling()(x, lengths=np.array([0, 4])))
    np.testing.assert_array_equal(got, [[0.0] * D, [1.0] * D])


def test_compute_mask_and_output_shape():
    check_compute_mask_and_output_shape(TemporalAveragePooling(), 16)


def test_rejects_inputs_without_time_axis():
    with pytest.raises(ValueError, match="Received: input_shape="):
        TemporalAveragePooling()(np.zeros((2, 3), "float32"))


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(3, 9, D)).astype("float32")
    got = run_layer_test(TemporalAveragePooling, x, expected_output_shape=(3, D))
    np.testing.assert_allclose(got, [reference_tap(r) for r in x], rtol=1e-5, atol=1e-6)


def test_toy_fit_reduces_loss():
    check_toy_fit_reduces_loss(TemporalAveragePooling, "mean", fill=5.0)


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return TemporalAveragePooling(), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    return TemporalAveragePooling(), x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
