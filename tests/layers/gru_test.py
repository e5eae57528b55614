import keras
import numpy as np
import pytest

from keras_spk.layers.gru import GRU
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

SETTINGS = [
    {},
    {"reset_after": False},
    {"reset_after": False, "recurrent_activation": "hard_sigmoid"},
    {"use_bias": False},
    {"return_sequences": True},
]


def _pair(seed, features=5, units=6, **kwargs):
    """A Keras GRU and this one, with the same weights and the same dropout seed."""
    rng = np.random.default_rng(seed)
    reference, layer = keras.layers.GRU(units, seed=11, **kwargs), GRU(units, seed=11, **kwargs)
    reference.build((None, None, features))
    layer.build((None, None, features))
    weights = [rng.normal(0.0, 0.5, w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return reference, layer


def _output_and_gradients(layer, x, training):
    if keras.backend.backend() == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        for v in layer.trainable_variables:
            v.value.grad = None
        y = layer(x, training=training)
        (y**2).sum().backward()
        grads = [x.grad] + [v.value.grad for v in layer.trainable_variables]
        return [to_numpy(y.detach())] + [to_numpy(g) for g in grads]
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y**2)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return [to_numpy(y)] + [to_numpy(g) for g in grads]


@pytest.mark.parametrize("kwargs", SETTINGS)
@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_gru_with_recurrent_dropout(kwargs, training):
    """Same outputs and gradients, the same recurrent dropout masks (same seed) in training."""
    reference, layer = _pair(1, recurrent_dropout=0.3, **kwargs)
    x = np.random.default_rng(2).normal(size=(3, 7, 5)).astype("float32")
    got = _output_and_gradients(layer, x, training)
    expected = _output_and_gradients(reference, x, training)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    if training:  # dropout is on: the masks change the output
        plain = to_numpy(layer(x, training=False))
        assert not np.allclose(got[0], plain, atol=1e-3)


@pytest.mark.parametrize("kwargs", SETTINGS)
def test_matches_keras_gru_without_recurrent_dropout(kwargs):
    """Keras's fused GRU with reset_after=True; this layer's loop otherwise (no fused GRU)."""
    reference, layer = _pair(7, **kwargs)
    x = np.random.default_rng(8).normal(size=(3, 7, 5)).astype("float32")
    for g, e in zip(_output_and_gradients(layer, x, True), _output_and_gradients(reference, x, True)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recurrent_dropout": 0.3, "go_backwards": True},
        {"recurrent_dropout": 0.3, "dropout": 0.2},
    ],
)
def test_other_settings_run_keras_loop(kwargs):
    reference, layer = _pair(3, **kwargs)
    x = np.random.default_rng(4).normal(size=(2, 6, 5)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)),
        to_numpy(reference(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a graph of unknown length")
def test_unknown_length_in_a_graph():
    import tensorflow as tf

    reference, layer = _pair(5, recurrent_dropout=0.3)
    call = tf.function(
        lambda x: layer(x, training=False), input_signature=[tf.TensorSpec([None, None, 5])]
    )
    for steps in (1, 4, 9):
        x = np.random.default_rng(steps).normal(size=(2, steps, 5)).astype("float32")
        np.testing.assert_allclose(
            to_numpy(call(x)), to_numpy(reference(x, training=False)), rtol=1e-5, atol=1e-5
        )


def test_run_layer_test():
    x = np.random.default_rng(6).normal(size=(2, 7, 4)).astype("float32")
    run_layer_test(
        lambda: GRU(3, recurrent_dropout=0.3), x, expected_output_shape=(2, 3),
        call_kwargs={"training": False},
    )


def _case_authors():
    x = np.random.default_rng(45).normal(size=(2, 9, 5)).astype("float32")
    layer = GRU(6, recurrent_dropout=0.3, reset_after=False,
                recurrent_activation="hard_sigmoid", return_sequences=True)
    return layer, x, {"training": False}


def _case_default():
    x = np.random.default_rng(46).normal(size=(2, 8, 5)).astype("float32")
    return GRU(6, recurrent_dropout=0.3), x, {"training": False}


BACKEND_CASES = {
    "gru reset_after=False, hard sigmoid gates (projection before the loop)": _case_authors,
    "gru default gates": _case_default,
}
