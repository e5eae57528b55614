import keras
import numpy as np
import pytest

from keras_spk.layers.squeeze_excitation import SqueezeExcitation
from tests.test_case import run_layer_test


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_se(x, w1, b1, w2, b2, mask=None):
    """Hu et al. eq. 2-4: global average pool, FC-ReLU-FC-sigmoid, rescale."""
    x = np.asarray(x, dtype="float64")
    axes = tuple(range(1, x.ndim - 1))
    if mask is None:
        z = x.mean(axis=axes)
    else:
        weights = np.asarray(mask, "float64").reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
        weights = np.broadcast_to(weights, x.shape[:-1] + (1,))
        z = (x * weights).sum(axis=axes) / weights.sum(axis=axes)
    gate = _sigmoid(np.maximum(z @ w1 + b1, 0.0) @ w2 + b2)
    return x * gate.reshape((x.shape[0],) + (1,) * len(axes) + (x.shape[-1],)), gate


def _random_weights(rng, channels, units):
    return [
        rng.normal(0, 0.5, (channels, units)).astype("float32"),
        rng.normal(0, 0.5, (units, channels)).astype("float32"),
        rng.normal(0, 0.5, (units,)).astype("float32"),
        rng.normal(0, 0.5, (channels,)).astype("float32"),
    ]


def _to_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("shape", [(2, 7, 8), (3, 5, 4, 8)])
def test_matches_numpy_reference(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    layer = SqueezeExcitation(ratio=4)
    layer.build(shape)
    w1, w2, b1, b2 = _random_weights(rng, 8, 2)
    layer.set_weights([w1, w2, b1, b2])
    expected, _ = reference_se(x, w1, b1, w2, b2)
    np.testing.assert_allclose(_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_hand_computed_gate():
    # Channel means z = [1, 3]; W1 = [[1], [-1]], b1 = 2 -> relu(1 - 3 + 2) = 0
    # for the first row, so its gate is sigmoid(b2) = sigmoid([0, ln 3]) =
    # [0.5, 0.75]. Second row: z = [2, 0] -> relu(4) = 4, W2 = [[0.5, -0.25]]
    # -> sigmoid([2, -1 + ln 3]).
    x = np.array([[[0.0, 2.0], [2.0, 4.0]], [[2.0, 0.0], [2.0, 0.0]]], "float32")
    layer = SqueezeExcitation(bottleneck_units=1)
    layer.build(x.shape)
    layer.set_weights(
        [
            np.array([[1.0], [-1.0]], "float32"),
            np.array([[0.5, -0.25]], "float32"),
            np.array([2.0], "float32"),
            np.array([0.0, np.log(3.0)], "float32"),
        ]
    )
    gate0 = np.array([0.5, 0.75])
    gate1 = _sigmoid(np.array([2.0, -1.0 + np.log(3.0)]))
    np.testing.assert_allclose(
        _to_numpy(layer(x)), np.stack([x[0] * gate0, x[1] * gate1]), rtol=1e-6
    )


def test_mask_excludes_padding_from_the_squeeze():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 5, 8)).astype("float32")
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    x[1, 4:] = 100.0  # padding that would dominate an unmasked mean
    layer = SqueezeExcitation(ratio=2)
    layer.build(x.shape)
    w1, w2, b1, b2 = _random_weights(rng, 8, 4)
    layer.set_weights([w1, w2, b1, b2])
    got = _to_numpy(layer(x, mask=mask))
    expected, _ = reference_se(x, w1, b1, w2, b2, mask=mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Row 1's valid part equals the layer applied to the unpadded utterance.
    np.testing.assert_allclose(got[1, :4], _to_numpy(layer(x[1:, :4]))[0], rtol=1e-5, atol=1e-5)
    # A (B, T, F) mask with whole time steps masked gives the same result.
    full_mask = np.repeat(mask[:, :, None], 5, axis=2)
    np.testing.assert_allclose(_to_numpy(layer(x, mask=full_mask)), got, rtol=1e-5, atol=1e-5)


def test_keras_mask_is_used_and_propagated():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    x[0, 3:] = 0.0  # padding, found by Masking
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    se = SqueezeExcitation(ratio=2)
    outputs = se(masked)
    model = keras.Model(inputs, outputs)
    w1, w2, b1, b2 = [_to_numpy(w) for w in (se.squeeze_kernel, se.excite_kernel,
                                            se.squeeze_bias, se.excite_bias)]
    expected, _ = reference_se(x, w1, b1, w2, b2, mask=np.any(x != 0.0, axis=-1))
    np.testing.assert_allclose(_to_numpy(model(x)), expected, rtol=1e-5, atol=1e-6)
    assert se.compute_mask(x, np.ones((2, 6), bool)) is not None


def test_bottleneck_size_and_parameter_count():
    # C = 64, r = 16 -> 4 units: 64*4 + 4 + 4*64 + 64 = 580 parameters.
    layer = SqueezeExcitation()
    layer.build((None, None, 64))
    assert tuple(layer.squeeze_kernel.shape) == (64, 4)
    assert layer.count_params() == 580
    # bottleneck_units overrides the ratio: 64*7 + 7 + 7*64 + 64 = 967.
    layer = SqueezeExcitation(ratio=16, bottleneck_units=7)
    layer.build((None, None, 40, 64))
    assert layer.count_params() == 967
    # Fewer channels than the ratio still gives one unit: 8 + 1 + 8 + 8 = 25.
    layer = SqueezeExcitation(ratio=16)
    layer.build((None, None, 8))
    assert layer.count_params() == 25
    # No biases: 2 * 64 * 4 = 512.
    layer = SqueezeExcitation(use_bias=False)
    layer.build((None, None, 64))
    assert layer.count_params() == 512 and len(layer.weights) == 2


@pytest.mark.parametrize("shape", [(2, 9, 16), (2, 9, 5, 16)])
def test_run_layer_test(shape):
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    out = run_layer_test(lambda: SqueezeExcitation(ratio=4), x, expected_output_shape=shape)
    # Output is the input scaled per channel by a gate in (0, 1).
    assert np.all(np.abs(out) <= np.abs(x) + 1e-6)


def test_variable_time_length():
    inputs = keras.Input((None, 3, 8))
    model = keras.Model(inputs, SqueezeExcitation(ratio=2)(inputs))
    for frames in (1, 17):
        x = np.random.default_rng(frames).normal(size=(2, frames, 3, 8)).astype("float32")
        assert _to_numpy(model(x)).shape == (2, frames, 3, 8)


def test_fit_learns_a_teacher_gate():
    # Student SE fitted to a teacher SE's outputs: the loss can only fall if
    # gradients reach the SE weights (the model has no other weights).
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 10, 8)).astype("float32")
    teacher = SqueezeExcitation(ratio=2)
    teacher.build(x.shape)
    teacher.set_weights([w * 3 for w in _random_weights(rng, 8, 4)])
    y = _to_numpy(teacher(x))
    inputs = keras.Input((None, 8))
    model = keras.Model(inputs, SqueezeExcitation(ratio=2)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y, epochs=30, batch_size=64, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"ratio": 0}, "ratio"),
        ({"ratio": 2.5}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"bottleneck_units": 0}, "bottleneck_units"),
        ({"bottleneck_units": "4"}, "bottleneck_units"),
    ],
)
def test_bad_arguments_raise(kwargs, arg):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        SqueezeExcitation(**kwargs)


@pytest.mark.parametrize("shape", [(None, 8), (None, None, None)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(ValueError, match="Received: input_shape="):
        SqueezeExcitation().build(shape)


def test_get_config():
    layer = SqueezeExcitation(ratio=8, bottleneck_units=3, use_bias=False, name="se")
    config = layer.get_config()
    assert config["ratio"] == 8 and config["bottleneck_units"] == 3
    assert config["use_bias"] is False and config["name"] == "se"
    assert SqueezeExcitation.from_config(config).get_config() == config


def _case_1d():
    x = np.random.default_rng(10).normal(size=(2, 11, 8)).astype("float32")
    return SqueezeExcitation(ratio=4), x, {}


def _case_2d():
    x = np.random.default_rng(11).normal(size=(2, 7, 5, 8)).astype("float32")
    return SqueezeExcitation(bottleneck_units=3), x, {}


def _case_masked():
    x = np.random.default_rng(12).normal(size=(2, 9, 8)).astype("float32")
    mask = np.arange(9)[None, :] < np.array([[9], [5]])
    return SqueezeExcitation(ratio=2), x, {"mask": mask}


BACKEND_CASES = {
    "se 1-D": _case_1d,
    "se 2-D": _case_2d,
    "se masked": _case_masked,
}
