import keras
import numpy as np
import pytest

from keras_spk.layers.batch_normalization import BatchNormalization
from keras_spk.layers.batch_normalization import batch_normalize
from keras_spk.layers.batch_normalization import inference_affine
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _pair(shape, seed, **kwargs):
    """A Keras BatchNormalization and this one, built, with the same random weights."""
    rng = np.random.default_rng(seed)
    reference, layer = keras.layers.BatchNormalization(**kwargs), BatchNormalization(**kwargs)
    reference.build(shape)
    layer.build(shape)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return reference, layer


def _output_and_gradients(layer, x, upstream, training):
    """`(y, dy/dx . upstream, dy/dgamma . upstream, dy/dbeta . upstream)` as numpy."""
    if keras.backend.backend() == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        for v in layer.trainable_variables:
            v.value.grad = None
        y = layer(x, training=training)
        y.backward(torch.tensor(upstream))
        grads = [x.grad] + [v.value.grad for v in layer.trainable_variables]
        return [to_numpy(y.detach())] + [to_numpy(g) for g in grads]
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
    variables = [x] + layer.trainable_variables
    grads = tape.gradient(y, variables, output_gradients=tf.constant(upstream))
    return [to_numpy(y)] + [to_numpy(g) for g in grads]


@pytest.mark.parametrize("shape", [(4, 50, 8), (6, 8), (2, 5, 7, 8)])
@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_outputs_gradients_and_moving_statistics(shape, training):
    reference, layer = _pair(shape, seed=len(shape))
    rng = np.random.default_rng(1)
    x = (rng.normal(size=shape) * 2.0 + 1.0).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    expected = _output_and_gradients(reference, x, upstream, training)
    got = _output_and_gradients(layer, x, upstream, training)
    for g, e, what in zip(got, expected, ("y", "dx", "dgamma", "dbeta")):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=what)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            to_numpy(getattr(layer, name)), to_numpy(getattr(reference, name)), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("kwargs", [{"axis": 1}, {"center": False}, {"scale": False}])
def test_other_settings_run_keras_call(kwargs):
    shape = (4, 6, 5)
    reference, layer = _pair(shape, seed=3, **kwargs)
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    for training in (True, False):
        np.testing.assert_allclose(
            to_numpy(layer(x, training=training)), to_numpy(reference(x, training=training)),
            rtol=1e-6, atol=1e-6,
        )


@pytest.mark.parametrize("training", [True, False])
def test_bias_is_folded_in_with_its_gradient(training):
    """`batch_normalize(x, bias=b)` normalizes `x + b`; `b`'s gradient is 0 in training."""
    shape = (3, 20, 4)
    reference, layer = _pair(shape, seed=5)
    rng = np.random.default_rng(6)
    x = rng.normal(size=shape).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    expected = to_numpy(reference(x + bias, training=training))
    if keras.backend.backend() == "torch":
        import torch

        b = torch.tensor(bias, requires_grad=True)
        y = batch_normalize(layer, torch.tensor(x), training, bias=b)
        y.backward(torch.tensor(upstream))
        y, bias_grad = to_numpy(y.detach()), to_numpy(b.grad)
    else:
        import tensorflow as tf

        b = tf.constant(bias)
        with tf.GradientTape() as tape:
            tape.watch(b)
            y = batch_normalize(layer, tf.constant(x), training, bias=b)
        bias_grad = to_numpy(tape.gradient(y, b, output_gradients=tf.constant(upstream)))
        y = to_numpy(y)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(layer.moving_mean), to_numpy(reference.moving_mean), rtol=1e-6, atol=1e-6
    )
    if training:
        np.testing.assert_array_equal(bias_grad, np.zeros(4, "float32"))
    else:  # the gradient of x * s + shift with respect to the bias: sum(upstream) * s
        scale, _ = inference_affine(layer)
        np.testing.assert_allclose(
            bias_grad, upstream.sum(axis=(0, 1)) * to_numpy(scale), rtol=1e-5, atol=1e-5
        )


def test_inference_affine_is_the_layer_at_inference():
    shape = (2, 9, 3)
    _, layer = _pair(shape, seed=7)
    x = np.random.default_rng(8).normal(size=shape).astype("float32")
    bias = np.array([0.5, -1.0, 2.0], "float32")
    scale, shift = inference_affine(layer, bias=bias)
    np.testing.assert_allclose(
        x * to_numpy(scale) + to_numpy(shift), to_numpy(layer(x + bias, training=False)),
        rtol=1e-5, atol=1e-5,
    )


def test_run_layer_test():
    x = np.random.default_rng(9).normal(size=(4, 10, 6)).astype("float32")
    run_layer_test(BatchNormalization, x, expected_output_shape=(4, 10, 6))


def _case_batch_statistics():
    x = np.random.default_rng(43).normal(2.0, 3.0, size=(4, 9, 5)).astype("float32")
    return BatchNormalization(), x, {"training": True}


def _case_moving_statistics():
    x = np.random.default_rng(44).normal(size=(3, 7, 4)).astype("float32")
    return BatchNormalization(), x, {"training": False}


BACKEND_CASES = {
    "batch normalization, batch statistics": _case_batch_statistics,
    "batch normalization, moving statistics": _case_moving_statistics,
}
