import keras
import numpy as np
import pytest

from keras_spk.layers.conv1d import Conv1D
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _pair(seed, input_shape, *args, **kwargs):
    rng = np.random.default_rng(seed)
    reference, layer = keras.layers.Conv1D(*args, **kwargs), Conv1D(*args, **kwargs)
    reference.build(input_shape)
    layer.build(input_shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return reference, layer


def _output_and_gradients(layer, x):
    """`(y, d sum(y^2) / d [x, kernel, bias...])` as numpy."""
    if keras.backend.backend() == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        y = layer(x)
        (y**2).sum().backward()
        grads = [x.grad] + [v.value.grad for v in layer.trainable_variables]
        return [to_numpy(y.detach())] + [to_numpy(g) for g in grads]
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y**2)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return [to_numpy(y)] + [to_numpy(g) for g in grads]


@pytest.mark.parametrize(
    "steps, channels, kwargs",
    [
        (59049 // 27, 1, {}),  # RawNet's strided convolution on raw samples
        (100, 1, {}),  # one trailing sample dropped
        (31, 2, {"use_bias": False}),
        (12, 3, {"activation": "relu"}),
    ],
)
def test_non_overlapping_filters_match_keras(steps, channels, kwargs):
    reference, layer = _pair(steps, (None, None, channels), 8, 3, strides=3, **kwargs)
    x = np.random.default_rng(1).normal(size=(2, steps, channels)).astype("float32")
    got, expected = _output_and_gradients(layer, x), _output_and_gradients(reference, x)
    assert got[0].shape == (2, steps // 3, 8)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [{"strides": 1}, {"strides": 3, "padding": "same"}, {"strides": 2}, {"dilation_rate": 2}],
)
def test_other_settings_run_keras_call(kwargs):
    reference, layer = _pair(2, (None, None, 2), 4, 3, **kwargs)
    x = np.random.default_rng(3).normal(size=(2, 20, 2)).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(reference(x)), rtol=1e-5, atol=1e-5)


def test_run_layer_test():
    x = np.random.default_rng(4).normal(size=(2, 30, 1)).astype("float32")
    run_layer_test(lambda: Conv1D(6, 3, strides=3), x, expected_output_shape=(2, 10, 6))


def _case_frames():
    x = np.random.default_rng(41).normal(size=(2, 27, 1)).astype("float32")
    return Conv1D(4, 3, strides=3, padding="valid"), x, {}


def _case_general():
    x = np.random.default_rng(42).normal(size=(2, 20, 3)).astype("float32")
    return Conv1D(5, 3, strides=1, padding="same"), x, {}


BACKEND_CASES = {
    "conv1d non-overlapping frames": _case_frames,
    "conv1d overlapping (Keras's path)": _case_general,
}
