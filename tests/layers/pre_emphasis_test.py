import keras
import numpy as np
import pytest

from keras_spk.layers import PreEmphasis


def reference_pre_emphasis(x, coefficient):
    x = np.asarray(x, dtype="float64")
    y = np.empty_like(x)
    for row in range(x.shape[0]):
        y[row, 0] = x[row, 0] if x.shape[1] else 0.0
        for t in range(1, x.shape[1]):
            y[row, t] = x[row, t] - coefficient * x[row, t - 1]
    return y


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_hand_computed_example():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, -2.0, 0.0, 1.0]], dtype="float32")
    np.testing.assert_allclose(
        to_numpy(PreEmphasis(0.5)(x)), [[1.0, 1.5, 2.0, 2.5], [4.0, -4.0, 1.0, 1.0]], rtol=1e-6
    )
    # Default coefficient 0.97: 2 - 1.94 = 0.06, ...
    np.testing.assert_allclose(
        to_numpy(PreEmphasis()(x[:1])), [[1.0, 1.03, 1.06, 1.09]], rtol=1e-6
    )


@pytest.mark.parametrize("samples", [16000, 16001, 12345])
def test_matches_numpy_reference(samples):
    x = np.random.RandomState(samples).uniform(-1, 1, size=(2, samples)).astype("float32")
    got = to_numpy(PreEmphasis()(x))
    assert got.shape == x.shape
    np.testing.assert_allclose(got, reference_pre_emphasis(x, 0.97), rtol=1e-4, atol=1e-6)


def test_coefficient_zero_is_identity():
    x = np.random.RandomState(0).normal(size=(3, 50)).astype("float32")
    np.testing.assert_array_equal(to_numpy(PreEmphasis(0.0)(x)), x)


def test_short_inputs():
    layer = PreEmphasis()
    np.testing.assert_array_equal(to_numpy(layer(np.array([[0.25]], "float32"))), [[0.25]])
    assert to_numpy(layer(np.zeros((2, 0), "float32"))).shape == (2, 0)


def test_output_shapes_static_and_symbolic():
    layer = PreEmphasis()
    assert layer.compute_output_shape((3, 16000)) == (3, 16000)
    assert tuple(layer(keras.Input((None,))).shape) == (None, None)


def test_variable_length_functional_model():
    inputs = keras.Input((None,))
    model = keras.Model(inputs, PreEmphasis(0.9)(inputs))
    for samples in (100, 12345):
        x = np.random.RandomState(samples).normal(size=(2, samples)).astype("float32")
        np.testing.assert_allclose(
            to_numpy(model(x)), reference_pre_emphasis(x, 0.9), rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("coefficient", [-0.1, 1.5, float("nan"), "0.97", True, None])
def test_bad_coefficient_raises(coefficient):
    with pytest.raises(ValueError, match="Received: coefficient="):
        PreEmphasis(coefficient)


def test_get_config():
    config = PreEmphasis(0.9, name="pre").get_config()
    assert config["coefficient"] == 0.9 and config["name"] == "pre"
    assert PreEmphasis.from_config(config).coefficient == 0.9


def test_keras_save_and_load(tmp_path):
    inputs = keras.Input((None,))
    model = keras.Model(inputs, PreEmphasis(0.95)(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.random.RandomState(1).normal(size=(2, 16001)).astype("float32")
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(model(x)))
    assert restored.layers[-1].coefficient == 0.95


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF SavedModel export")
def test_tf_saved_model_export(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((None,))
    model = keras.Model(inputs, PreEmphasis()(inputs))
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    for samples in (16000, 12345):
        x = np.random.RandomState(samples).normal(size=(2, samples)).astype("float32")
        np.testing.assert_allclose(
            reloaded.serve(x).numpy(), to_numpy(model(x)), rtol=1e-4, atol=1e-6
        )


BACKEND_CASES = {
    "odd length": lambda: (
        PreEmphasis(0.97),
        np.random.default_rng(0).uniform(-1, 1, (2, 1001)).astype("float32"),
        None,
    ),
}
