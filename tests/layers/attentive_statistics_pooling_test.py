import keras
import numpy as np
import pytest

from keras_spk.layers.attentive_statistics_pooling import AttentiveStatisticsPooling
from tests.helpers.pooling import D
from tests.helpers.pooling import check_compute_mask_and_output_shape
from tests.helpers.pooling import check_keras_mask_from_masking_layer
from tests.helpers.pooling import check_lengths_ignore_padding_even_nan
from tests.helpers.pooling import check_mask_and_lengths_combine
from tests.helpers.pooling import check_toy_fit_reduces_loss
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

A = 2
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}


def reference_asp(frames, kernel, bias, context, activation="tanh", eps=1e-5):
    """Okabe et al.: e_t = v^T f(W h_t + b), a = softmax(e), mu = sum a_t h_t,
    sigma = sqrt(sum a_t h_t * h_t - mu * mu), floored at eps; float64."""
    frames = np.asarray(frames, "float64")
    scores = ACTIVATIONS[activation](frames @ kernel + bias) @ context
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    mean = weights @ frames
    var = weights @ (frames * frames) - mean * mean
    return np.concatenate([mean, np.sqrt(np.maximum(var, eps))])


def seeded_layer(seed=0, activation="tanh"):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(D, A)), rng.normal(size=(A,)), 2.0 * rng.normal(size=(A,))]
    layer = AttentiveStatisticsPooling(attention_units=A, activation=activation)
    layer.build((None, None, D))
    layer.set_weights([w.astype("float32") for w in weights])
    return layer, weights


def test_constant_scores_give_plain_statistics():
    # W = 0: equal scores, weights 1 / T: frames 1, 3 -> mean 2, std 1;
    # a constant feature has variance 0, floored to eps = 1e-4 -> std 0.01.
    layer = AttentiveStatisticsPooling(attention_units=A, eps=1e-4)
    layer.build((None, None, 2))
    layer.set_weights([np.zeros((2, A)), np.ones(A), np.ones(A)])
    x = np.array([[[1.0, 5.0], [3.0, 5.0]]], "float32")
    np.testing.assert_allclose(to_numpy(layer(x)), [[2.0, 5.0, 1.0, 0.01]], rtol=1e-5)


def test_hand_computed_two_frames():
    # D = A = 1, W = 1, b = 0, v = 1, tanh: scores 0 and ~1, weights
    # p = 1 / (1 + e), q = e / (1 + e); mean 20 q, variance 400 p q.
    layer = AttentiveStatisticsPooling(attention_units=1)
    layer.build((None, None, 1))
    layer.set_weights([np.ones((1, 1)), np.zeros(1), np.ones(1)])
    x = np.array([[[0.0], [20.0]]], "float32")
    p, q = 1.0 / (1.0 + np.e), np.e / (1.0 + np.e)
    np.testing.assert_allclose(to_numpy(layer(x)), [[20.0 * q, 20.0 * np.sqrt(p * q)]], rtol=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("time", [1, 7, 50])
def test_matches_numpy_reference_and_shapes(time, activation):
    layer, weights = seeded_layer(time, activation)
    x = np.random.default_rng(time).normal(size=(2, time, D)).astype("float32")
    got = to_numpy(layer(x))
    assert got.shape == (2, 2 * D)
    expected = [reference_asp(r, *weights, activation=activation) for r in x]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_lengths_ignore_padding_even_nan():
    layer, weights = seeded_layer(1)
    check_lengths_ignore_padding_even_nan(
        layer, lambda row: reference_asp(row, *weights), rtol=1e-5, atol=1e-5
    )


def test_explicit_mask_and_lengths_combine():
    layer, weights = seeded_layer(2)
    check_mask_and_lengths_combine(
        layer, lambda row: reference_asp(row, *weights), rtol=1e-5, atol=1e-5
    )


def test_keras_mask_from_masking_layer_in_functional_model():
    layer, weights = seeded_layer(3)
    check_keras_mask_from_masking_layer(
        layer, lambda row: reference_asp(row, *weights), rtol=1e-5, atol=1e-5
    )


def test_row_without_valid_frames():
    layer, _ = seeded_layer(4)
    got = to_numpy(layer(np.ones((1, 4, D), "float32"), lengths=np.array([0])))
    np.testing.assert_allclose(got, [[0.0] * D + [np.sqrt(1e-5)] * D], rtol=1e-5)


def test_trainable_parameter_count():
    # W: D x A, b: A, v: A (the paper's score bias k is left out).
    layer = AttentiveStatisticsPooling()
    layer.build((None, None, 64))
    assert layer.count_params() == 64 * 128 + 128 + 128 == 8448
    assert len(layer.trainable_weights) == 3


def test_compute_mask_and_output_shape():
    check_compute_mask_and_output_shape(AttentiveStatisticsPooling(attention_units=4), 32)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"attention_units": 0}, "attention_units"), ({"attention_units": None}, "attention_units"),
     ({"eps": 0.0}, "eps"), ({"eps": -1.0}, "eps")],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        AttentiveStatisticsPooling(**kwargs)


def test_get_config():
    config = AttentiveStatisticsPooling(attention_units=8, activation="relu", eps=1e-3).get_config()
    assert (config["attention_units"], config["activation"], config["eps"]) == (8, "relu", 1e-3)
    restored = AttentiveStatisticsPooling.from_config(config)
    assert restored.activation is keras.activations.relu


def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(3, 9, D)).astype("float32")
    run_layer_test(
        lambda: AttentiveStatisticsPooling(attention_units=A), x, expected_output_shape=(3, 2 * D)
    )


def test_toy_fit_reduces_loss():
    check_toy_fit_reduces_loss(
        lambda: AttentiveStatisticsPooling(attention_units=8), "spread", fill=5.0
    )


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return AttentiveStatisticsPooling(attention_units=4), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    layer = AttentiveStatisticsPooling(attention_units=3, activation="relu")
    return layer, x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
