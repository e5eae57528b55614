import keras
import numpy as np
import pytest

from keras_spk.layers.learnable_dictionary_encoding import LearnableDictionaryEncoding
from tests.helpers.pooling import D
from tests.helpers.pooling import check_compute_mask_and_output_shape
from tests.helpers.pooling import check_keras_mask_from_masking_layer
from tests.helpers.pooling import check_lengths_ignore_padding_even_nan
from tests.helpers.pooling import check_mask_and_lengths_combine
from tests.helpers.pooling import check_toy_fit_reduces_loss
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

C = 4


def reference_lde(frames, codewords, smoothing):
    """Direct formula in float64, with the [T, C, D] residual tensor:
    w_tc = softmax_c(-s_c ||x_t - mu_c||^2), e_c = sum_t w_tc r_tc / sum_t w_tc."""
    frames, codewords = np.asarray(frames, "float64"), np.asarray(codewords, "float64")
    residuals = frames[:, None, :] - codewords[None, :, :]
    logits = -np.asarray(smoothing, "float64") * (residuals**2).sum(-1)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    encoded = (w[:, :, None] * residuals).sum(0) / w.sum(0)[:, None]
    return encoded.reshape(-1)


def layer_with(codewords, smoothing, **kwargs):
    codewords = np.asarray(codewords, "float32")
    layer = LearnableDictionaryEncoding(num_codewords=codewords.shape[0], **kwargs)
    layer.build((None, None, codewords.shape[1]))
    layer.set_weights([codewords, np.asarray(smoothing, "float32")])
    return layer


def seeded_layer(seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-1, 1, size=(C, D)), rng.uniform(0.2, 2.0, size=(C,))]
    return layer_with(*weights), weights


def test_hand_computed_two_codewords():
    # mu = 0 and 10 in 1-D, s = 1; frames 1 and 9. Frame 1 goes to mu_1
    # (weights 1 : e^-80), frame 9 to mu_2, so e_1 ~ 1 - 0 and e_2 ~ 9 - 10.
    layer = layer_with([[0.0], [10.0]], [1.0, 1.0])
    got = to_numpy(layer(np.array([[[1.0], [9.0]]], "float32")))
    np.testing.assert_allclose(got, [[1.0, -1.0]], rtol=1e-6, atol=1e-6)


def test_zero_smoothing_gives_mean_residuals():
    # s = 0: uniform assignment, e_c = mean_t(x_t) - mu_c.
    codewords = np.array([[0.0, 1.0], [2.0, -1.0], [5.0, 5.0]])
    layer = layer_with(codewords, np.zeros(3))
    x = np.array([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]]], "float32")
    expected = (np.array([13 / 3, 17 / 3]) - codewords).reshape(1, -1)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("time", [1, 7, 50])
def test_matches_direct_numpy_formula_and_shapes(time):
    layer, weights = seeded_layer(time)
    x = np.random.default_rng(time).normal(size=(2, time, D)).astype("float32")
    got = to_numpy(layer(x))
    assert got.shape == (2, C * D)
    expected = [reference_lde(r, *weights) for r in x]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_far_codeword_stays_finite_and_exact():
    # A codeword ~15 away from every frame: w_tc ~ exp(-200) underflows in
    # float32, so a plain sum_t w_tc r_tc / sum_t w_tc would give 0 / 0.
    # Its encoding is still the w-weighted mean residual (float64 reference).
    codewords = np.array([[0.0, 0.0, 0.0], [15.0, 0.0, 0.0], [0.5, -0.5, 0.0]])
    layer = layer_with(codewords, [1.0, 1.0, 2.0])
    x = np.random.default_rng(0).normal(size=(1, 20, 3)).astype("float32")
    got = to_numpy(layer(x))
    assert np.all(np.isfinite(got))
    expected = reference_lde(x[0], codewords, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-4)


def test_lengths_ignore_padding_even_nan():
    layer, weights = seeded_layer(1)
    check_lengths_ignore_padding_even_nan(
        layer, lambda row: reference_lde(row, *weights), rtol=1e-5, atol=1e-5, alone_rtol=1e-5
    )


def test_explicit_mask_and_lengths_combine():
    layer, weights = seeded_layer(2)
    check_mask_and_lengths_combine(
        layer, lambda row: reference_lde(row, *weights), rtol=1e-5, atol=1e-5
    )


def test_keras_mask_from_masking_layer_in_functional_model():
    layer, weights = seeded_layer(3)
    check_keras_mask_from_masking_layer(
        layer, lambda row: reference_lde(row, *weights), rtol=1e-5, atol=1e-5
    )


def test_row_without_valid_frames_encodes_to_zeros():
    layer, _ = seeded_layer(4)
    got = to_numpy(layer(np.ones((1, 4, D), "float32"), lengths=np.array([0])))
    np.testing.assert_array_equal(got, np.zeros((1, C * D)))


def test_trainable_parameter_count():
    # C codewords of dimension D, plus one smoothing factor per codeword.
    layer = LearnableDictionaryEncoding()
    layer.build((None, None, 64))
    assert layer.count_params() == 64 * 64 + 64 == 4160
    assert len(layer.trainable_weights) == 2


def test_initial_weights():
    layer = LearnableDictionaryEncoding(num_codewords=16)
    layer.build((None, None, 8))
    codewords = to_numpy(layer.codewords)
    assert codewords.shape == (16, 8) and np.all(np.abs(codewords) <= 1.0)
    np.testing.assert_array_equal(to_numpy(layer.smoothing_factors), np.ones(16))


@pytest.mark.parametrize("constraint, expected", [("non_neg", 0.0), (None, -4.0)])
def test_smoothing_factors_kept_non_negative(constraint, expected):
    # One SGD step of size 5 from s = 1 would give s = -4; NonNeg clips to 0.
    layer = LearnableDictionaryEncoding(num_codewords=C, smoothing_constraint=constraint)
    layer.build((None, None, D))
    optimizer = keras.optimizers.SGD(learning_rate=5.0)
    optimizer.apply_gradients([(keras.ops.ones((C,)), layer.smoothing_factors)])
    np.testing.assert_allclose(to_numpy(layer.smoothing_factors), np.full(C, expected))


def test_compute_mask_and_output_shape():
    check_compute_mask_and_output_shape(LearnableDictionaryEncoding(num_codewords=5), 80)


@pytest.mark.parametrize("num_codewords", [0, -1, 2.0, "64", True, None])
def test_bad_num_codewords_raises(num_codewords):
    with pytest.raises(ValueError, match="Received: num_codewords="):
        LearnableDictionaryEncoding(num_codewords=num_codewords)


def test_get_config():
    layer = LearnableDictionaryEncoding(num_codewords=8, smoothing_constraint=None)
    config = layer.get_config()
    assert config["num_codewords"] == 8 and config["smoothing_constraint"] is None
    restored = LearnableDictionaryEncoding.from_config(config)
    assert restored.smoothing_constraint is None
    assert restored.codeword_initializer.get_config() == layer.codeword_initializer.get_config()


def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(3, 9, D)).astype("float32")
    run_layer_test(
        lambda: LearnableDictionaryEncoding(num_codewords=C), x, expected_output_shape=(3, C * D)
    )


def test_toy_fit_reduces_loss():
    check_toy_fit_reduces_loss(
        lambda: LearnableDictionaryEncoding(num_codewords=4), "mean", fill=5.0
    )


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return LearnableDictionaryEncoding(num_codewords=4), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    layer = LearnableDictionaryEncoding(num_codewords=3)
    return layer, x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
