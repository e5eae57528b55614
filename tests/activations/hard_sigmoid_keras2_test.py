import keras
import numpy as np

from keras_spk import activations
from keras_spk.activations import hard_sigmoid_keras2
from tests.test_case import to_numpy

X = np.array([-10.0, -3.0, -2.5, -2.0, -1.0, 0.0, 0.5, 1.0, 2.4, 2.5, 3.0, 10.0], "float32")


def test_values_are_keras_2_hard_sigmoid():
    # Keras 2: 0.2 x + 0.5, clipped to [0, 1], i.e. 0 below -2.5, 1 above 2.5.
    want = [0.0, 0.0, 0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.98, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(to_numpy(hard_sigmoid_keras2(X)), want, rtol=0, atol=1e-7)
    grid = np.linspace(-4.0, 4.0, 81).astype("float32")
    np.testing.assert_allclose(
        to_numpy(hard_sigmoid_keras2(grid)), np.clip(0.2 * grid + 0.5, 0.0, 1.0), atol=1e-7
    )


def test_differs_from_keras_3_hard_sigmoid():
    # Keras 3's hard_sigmoid is x / 6 + 0.5 clipped: 1/6 at x = -2, ours 0.1.
    keras3 = to_numpy(keras.activations.hard_sigmoid(np.array([-2.0], "float32")))
    np.testing.assert_allclose(keras3, [1.0 / 6.0], atol=1e-6)
    assert abs(float(keras3[0]) - float(to_numpy(hard_sigmoid_keras2(np.float32(-2.0))))) > 0.05


def test_registered_and_found_by_name():
    assert keras.saving.get_registered_name(hard_sigmoid_keras2) == "keras_spk>hard_sigmoid_keras2"
    name = keras.activations.serialize(hard_sigmoid_keras2)
    assert keras.activations.get(name) is hard_sigmoid_keras2
    assert activations.get("hard_sigmoid_keras2") is hard_sigmoid_keras2


def test_gru_with_it_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 3))
    gru = keras.layers.GRU(4, recurrent_activation=hard_sigmoid_keras2, reset_after=False)
    model = keras.Model(inputs, gru(inputs))
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    model.save(tmp_path / "gru.keras")
    restored = keras.saving.load_model(tmp_path / "gru.keras")
    assert restored.layers[-1].cell.recurrent_activation is hard_sigmoid_keras2
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), atol=1e-6)
