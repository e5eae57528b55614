"""Checks of the shared layer-test helper itself: it must catch broken layers."""

import keras
import numpy as np
import pytest

from tests.test_case import run_backend_case
from tests.test_case import run_layer_test
from tests.test_case import set_seeded_weights


@keras.saving.register_keras_serializable(package="keras_spk_test")
class _Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w * self.factor

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="keras_spk")
class _ForgetsFactor(_Scale):
    def get_config(self):
        return keras.layers.Layer.get_config(self)  # drops "factor"


@keras.saving.register_keras_serializable(package="keras_spk")
class _GoodScale(_Scale):
    pass


def test_run_layer_test_passes_a_correct_layer_and_returns_the_output():
    x = np.ones((2, 5, 3), "float32")
    out = run_layer_test(lambda: _GoodScale(3.0), x, expected_output_shape=(2, 5, 3))
    np.testing.assert_allclose(out, 3.0 * x)


def test_run_layer_test_rejects_an_unregistered_layer():
    with pytest.raises(AssertionError, match="not registered"):
        run_layer_test(lambda: _Scale(), np.ones((2, 4, 3), "float32"), fit=False)


def test_run_layer_test_rejects_a_lossy_config():
    with pytest.raises((AssertionError, TypeError)):
        run_layer_test(lambda: _ForgetsFactor(5.0), np.ones((2, 4, 3), "float32"), fit=False)


def test_run_layer_test_rejects_a_wrong_expected_shape():
    with pytest.raises(AssertionError, match="shape"):
        run_layer_test(lambda: _GoodScale(), np.ones((2, 4, 3), "float32"), expected_output_shape=(2, 4, 4))


def test_seeded_weights_are_reproducible():
    a, b = _GoodScale(), _GoodScale()
    a.build((None, 3))
    b.build((None, 3))
    set_seeded_weights(a, seed=3)
    set_seeded_weights(b, seed=3)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    out = run_backend_case(lambda: (_GoodScale(1.0), np.ones((1, 2, 3), "float32"), None), seed=3)
    np.testing.assert_allclose(out[0, 0], a.get_weights()[0], rtol=1e-6)
