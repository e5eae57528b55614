import keras
import numpy as np
import pytest

from keras_spk.layers.temporal_average_pooling import TemporalAveragePooling
from tests.test_case import run_layer_test

D = 3


def reference_tap(frames):
    """e = (1 / T) sum_t h_t, in float64."""
    return np.asarray(frames, "float64").mean(axis=0)


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
    rows = make_rows(0)
    x, lengths = pad(rows, np.nan)
    got = to_numpy(TemporalAveragePooling()(x, lengths=lengths))
    layer = TemporalAveragePooling()
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i], to_numpy(layer(row[None]))[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[i], reference_tap(row), rtol=1e-5, atol=1e-6)


def test_explicit_mask_and_lengths_combine():
    # The mask drops frame 2 of row 0 (not a suffix); lengths cut row 2 to
    # 2 frames although its mask says 4. A frame counts only if both agree.
    rows = make_rows(1)
    x, lengths = pad(rows, np.nan)
    mask = np.arange(x.shape[1])[None] < lengths[:, None]
    mask[0, 2] = False
    cut = lengths.copy()
    cut[2] = 2
    got = to_numpy(TemporalAveragePooling()(x, mask=mask, lengths=cut))
    expected = [np.delete(rows[0], 2, axis=0), rows[1], rows[2][:2]]
    for i, row in enumerate(expected):
        np.testing.assert_allclose(got[i], reference_tap(row), rtol=1e-5, atol=1e-6)


def test_keras_mask_from_masking_layer_in_functional_model():
    rows = make_rows(2)
    x, _ = pad(rows, 0.0)
    inputs = keras.Input((None, D))
    pooled = TemporalAveragePooling()(keras.layers.Masking(0.0)(inputs))
    # Pooling removes the time axis, so no mask may travel on.
    assert getattr(pooled, "_keras_mask", None) is None
    got = to_numpy(keras.Model(inputs, pooled)(x))
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i], reference_tap(row), rtol=1e-5, atol=1e-6)


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
    layer = TemporalAveragePooling()
    assert layer.compute_mask(np.zeros((2, 5, D)), np.ones((2, 5), bool)) is None
    assert layer.compute_output_shape((4, None, 16)) == (4, 16)
    assert tuple(layer(keras.Input((None, 16))).shape) == (None, 16)


def test_rejects_inputs_without_time_axis():
    with pytest.raises(ValueError, match="Received: input_shape="):
        TemporalAveragePooling()(np.zeros((2, 3), "float32"))


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(3, 9, D)).astype("float32")
    got = run_layer_test(TemporalAveragePooling, x, expected_output_shape=(3, D))
    np.testing.assert_allclose(got, [reference_tap(r) for r in x], rtol=1e-5, atol=1e-6)


def test_toy_fit_reduces_loss():
    # Class = sign of the mean of feature 0 over each row's valid frames.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 64)
    rows = [
        rng.normal(size=(t, D)) + np.array([2.0 * y - 1.0, 0.0, 0.0])
        for t, y in zip(rng.integers(3, 12, 64), labels)
    ]
    x, lengths = pad([r.astype("float32") for r in rows], 5.0)
    frames, lens = keras.Input((None, D)), keras.Input((), dtype="int32")
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        TemporalAveragePooling()(frames, lengths=lens)
    )
    model = keras.Model([frames, lens], outputs)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    before = model.evaluate([x, lengths], labels, verbose=0)
    history = model.fit([x, lengths], labels, epochs=30, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < 0.5 * before


def _case_plain():
    x = np.random.default_rng(10).normal(size=(2, 7, 5)).astype("float32")
    return TemporalAveragePooling(), x, {}


def _case_lengths():
    x = np.random.default_rng(11).normal(size=(3, 6, 4)).astype("float32")
    return TemporalAveragePooling(), x, {"lengths": np.array([6, 1, 3], "int32")}


BACKEND_CASES = {"plain": _case_plain, "lengths": _case_lengths}
