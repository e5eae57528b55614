import keras
import numpy as np
import pytest

from keras_spk.layers.statistics_pooling import StatisticsPooling
from tests.test_case import run_layer_test

D = 3


def reference_stats(frames, eps=1e-5):
    """concat(mean, sqrt(max(var, eps))), biased variance, in float64."""
    frames = np.asarray(frames, "float64")
    mean = frames.mean(axis=0)
    var = ((frames - mean) ** 2).mean(axis=0)
    return np.concatenate([mean, np.sqrt(np.maximum(var, eps))])


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def pad(rows, fill):
    lengths = np.array([len(r) for r in rows], "int32")
    x = np.full((len(rows), lengths.max(), rows[0].shape[-1]), fill, "float32")
    for i, row in enumerate(rows):
        x[i, : len(row)] = row
    return x, lengths


def make_rows(seed, lengths=(7, 1, 4)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(t, D)).astype("float32") for t in lengths]


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
    rows = make_rows(0)
    x, lengths = pad(rows, np.nan)
    got = to_numpy(StatisticsPooling()(x, lengths=lengths))
    layer = StatisticsPooling()
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i], to_numpy(layer(row[None]))[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[i], reference_stats(row), rtol=1e-5, atol=1e-5)


def test_explicit_mask_and_lengths_combine():
    rows = make_rows(1)
    x, lengths = pad(rows, np.nan)
    mask = np.arange(x.shape[1])[None] < lengths[:, None]
    mask[0, 2] = False
    cut = lengths.copy()
    cut[2] = 2
    got = to_numpy(StatisticsPooling()(x, mask=mask, lengths=cut))
    expected = [np.delete(rows[0], 2, axis=0), rows[1], rows[2][:2]]
    for i, row in enumerate(expected):
        np.testing.assert_allclose(got[i], reference_stats(row), rtol=1e-5, atol=1e-5)


def test_keras_mask_from_masking_layer_in_functional_model():
    rows = make_rows(2)
    x, _ = pad(rows, 0.0)
    inputs = keras.Input((None, D))
    pooled = StatisticsPooling()(keras.layers.Masking(0.0)(inputs))
    # Pooling removes the time axis, so no mask may travel on.
    assert getattr(pooled, "_keras_mask", None) is None
    got = to_numpy(keras.Model(inputs, pooled)(x))
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i], reference_stats(row), rtol=1e-5, atol=1e-5)


def test_row_without_valid_frames():
    x = np.ones((1, 4, D), "float32")
    got = to_numpy(StatisticsPooling(eps=1e-4)(x, lengths=np.array([0])))
    np.testing.assert_allclose(got, [[0.0] * D + [0.01] * D], rtol=1e-6)


def test_compute_mask_and_output_shape():
    layer = StatisticsPooling()
    assert layer.compute_mask(np.zeros((2, 5, D)), np.ones((2, 5), bool)) is None
    assert layer.compute_output_shape((4, None, 16)) == (4, 32)
    assert tuple(layer(keras.Input((None, 16))).shape) == (None, 32)


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
    # Class = spread of feature 0 (std 0.3 or 2), same mean: only the std
    # half of the output separates the classes.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 64)
    rows = [
        rng.normal(size=(t, D)) * np.array([0.3 + 1.7 * y, 1.0, 1.0])
        for t, y in zip(rng.integers(4, 12, 64), labels)
    ]
    x, lengths = pad([r.astype("float32") for r in rows], 0.0)
    frames, lens = keras.Input((None, D)), keras.Input((), dtype="int32")
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        StatisticsPooling()(frames, lengths=lens)
    )
    model = keras.Model([frames, lens], outputs)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    before = model.evaluate([x, lengths], labels, verbose=0)
    history = model.fit([x, lengths], labels, epochs=30, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < 0.5 * before


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return StatisticsPooling(), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    return StatisticsPooling(), x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
