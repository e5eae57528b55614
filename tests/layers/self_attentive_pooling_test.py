import numpy as np
import pytest

from keras_spk.layers.self_attentive_pooling import SelfAttentivePooling
from tests.helpers.pooling import D
from tests.helpers.pooling import check_compute_mask_and_output_shape
from tests.helpers.pooling import check_keras_mask_from_masking_layer
from tests.helpers.pooling import check_lengths_ignore_padding_even_nan
from tests.helpers.pooling import check_mask_and_lengths_combine
from tests.helpers.pooling import check_toy_fit_reduces_loss
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

A = 2


def reference_sap(frames, kernel, bias, context):
    """h_t = tanh(W x_t + b); w_t = softmax_t(h_t^T mu); e = sum_t w_t x_t (float64)."""
    frames = np.asarray(frames, "float64")
    hidden = np.tanh(frames @ kernel + bias)
    scores = hidden @ context
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    return weights @ frames


def seeded_layer(seed=0, units=A, features=D):
    """A built layer with random weights (large enough for uneven attention)."""
    rng = np.random.default_rng(seed)
    weights = [
        rng.normal(size=(features, units)),
        rng.normal(size=(units,)),
        2.0 * rng.normal(size=(units,)),
    ]
    layer = SelfAttentivePooling(attention_units=units)
    layer.build((None, None, features))
    layer.set_weights([w.astype("float32") for w in weights])
    return layer, weights


def test_constant_scores_give_the_plain_mean():
    # W = 0: every frame has h_t = tanh(b), the same score, weight 1 / T.
    layer = SelfAttentivePooling(attention_units=A)
    layer.build((None, None, 2))
    layer.set_weights([np.zeros((2, A)), np.ones(A), np.ones(A)])
    x = np.array([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]]], "float32")
    np.testing.assert_allclose(to_numpy(layer(x)), [[13 / 3, 17 / 3]], rtol=1e-6)


def test_hand_computed_two_frames():
    # D = A = 1, W = 1, b = 0, mu = 1: scores tanh(0) = 0 and tanh(big) ~ 1,
    # so the weights are 1 / (1 + e) and e / (1 + e).
    layer = SelfAttentivePooling()
    layer.build((None, None, 1))
    layer.set_weights([np.ones((1, 1)), np.zeros(1), np.ones(1)])
    x = np.array([[[0.0], [20.0]]], "float32")
    expected = 20.0 * np.e / (1.0 + np.e)
    np.testing.assert_allclose(to_numpy(layer(x)), [[expected]], rtol=1e-6)


@pytest.mark.parametrize("time", [1, 7, 50])
def test_matches_numpy_reference_and_shapes(time):
    layer, weights = seeded_layer(time)
    x = np.random.default_rng(time).normal(size=(2, time, D)).astype("float32")
    got = to_numpy(layer(x))
    assert got.shape == (2, D)
    np.testing.assert_allclose(got, [reference_sap(r, *weights) for r in x], rtol=1e-5, atol=1e-6)


def test_lengths_ignore_padding_even_nan():
    layer, weights = seeded_layer(1)
    check_lengths_ignore_padding_even_nan(
        layer, lambda row: reference_sap(row, *weights), rtol=1e-5, atol=1e-6
    )


def test_explicit_mask_and_lengths_combine():
    layer, weights = seeded_layer(2)
    check_mask_and_lengths_combine(
        layer, lambda row: reference_sap(row, *weights), rtol=1e-5, atol=1e-6
    )


def test_keras_mask_from_masking_layer_in_functional_model():
    layer, weights = seeded_layer(3)
    check_keras_mask_from_masking_layer(
        layer, lambda row: reference_sap(row, *weights), rtol=1e-5, atol=1e-6
    )


def test_row_without_valid_frames_pools_to_zeros():
    layer, _ = seeded_layer(4)
    x = np.ones((2, 4, D), "float32")
    got = to_numpy(layer(x, lengths=np.array([0, 4])))
    np.testing.assert_array_equal(got[0], np.zeros(D))
    np.testing.assert_allclose(got[1], np.ones(D), rtol=1e-6)


def test_trainable_parameter_count():
    # kernel D x A, bias A, context vector A.
    layer = SelfAttentivePooling(attention_units=32)
    layer.build((None, None, 64))
    assert layer.count_params() == 64 * 32 + 32 + 32 == 2112
    assert len(layer.trainable_weights) == 3
    # Default A = D, as in the authors' implementation: 64 * 64 + 64 + 64.
    default = SelfAttentivePooling()
    default.build((None, None, 64))
    assert default.count_params() == 4224


def test_compute_mask_and_output_shape():
    check_compute_mask_and_output_shape(SelfAttentivePooling(attention_units=4), 16)


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True])
def test_bad_attention_units_raises(units):
    with pytest.raises(ValueError, match="Received: attention_units="):
        SelfAttentivePooling(attention_units=units)


def test_get_config():
    config = SelfAttentivePooling(attention_units=8, name="sap").get_config()
    assert config["attention_units"] == 8 and config["name"] == "sap"
    assert SelfAttentivePooling.from_config(config).attention_units == 8


def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(3, 9, D)).astype("float32")
    run_layer_test(lambda: SelfAttentivePooling(attention_units=A), x, expected_output_shape=(3, D))


def test_toy_fit_reduces_loss():
    check_toy_fit_reduces_loss(lambda: SelfAttentivePooling(attention_units=8), "mean", fill=5.0)


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return SelfAttentivePooling(attention_units=4), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    return SelfAttentivePooling(), x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
