import keras
import numpy as np
import pytest

from keras_spk.layers.residual_attention import ResidualAttention
from tests.test_case import run_layer_test


def reference_residual_attention(f, w_s, b_s, w_e, b_e):
    """Xu et al. eq. 6-7 with the 1x1 convolutions as per-position products."""
    f = np.asarray(f, dtype="float64")
    squeeze = np.maximum(np.einsum("...c,cu->...u", f, w_s) + b_s, 0.0)
    m = 1.0 / (1.0 + np.exp(-(np.einsum("...u,uc->...c", squeeze, w_e) + b_e)))
    return f + f * m, m


def _random_weights(rng, channels, units):
    return [
        rng.normal(0, 0.5, (channels, units)).astype("float32"),
        rng.normal(0, 0.5, (units, channels)).astype("float32"),
        rng.normal(0, 0.5, (units,)).astype("float32"),
        rng.normal(0, 0.5, (channels,)).astype("float32"),
    ]


def _to_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("shape", [(2, 6, 5, 8), (2, 7, 8)])
def test_matches_numpy_reference(shape):
    rng = np.random.default_rng(0)
    f = rng.normal(size=shape).astype("float32")
    layer = ResidualAttention(ratio=4)
    layer.build(shape)
    w_s, w_e, b_s, b_e = _random_weights(rng, 8, 2)
    layer.set_weights([w_s, w_e, b_s, b_e])
    expected, m = reference_residual_attention(f, w_s, b_s, w_e, b_e)
    assert m.shape == f.shape  # the attention map keeps the spatial size
    # M varies over positions (no global pooling), unlike an SE gate.
    assert np.ptp(m[0, :, ..., 0]) > 1e-3
    np.testing.assert_allclose(_to_numpy(layer(f)), expected, rtol=1e-5, atol=1e-6)


def test_hand_computed_values():
    # Zero excitation weights and bias: M = sigmoid(0) = 0.5, F_o = 1.5 F.
    f = np.random.default_rng(1).normal(size=(1, 3, 2, 4)).astype("float32")
    layer = ResidualAttention(bottleneck_units=2)
    layer.build(f.shape)
    layer.set_weights(
        [np.ones((4, 2), "float32"), np.zeros((2, 4), "float32"),
         np.zeros(2, "float32"), np.zeros(4, "float32")]
    )
    np.testing.assert_allclose(_to_numpy(layer(f)), 1.5 * f, rtol=1e-6)
    # One channel, one unit, all weights 1, biases 0: at F = 2,
    # M = sigmoid(relu(2)) = sigmoid(2) and F_o = 2 + 2 sigmoid(2);
    # at F = -1, relu gives 0, M = 0.5 and F_o = -1.5.
    layer = ResidualAttention(bottleneck_units=1)
    f = np.array([[[2.0], [-1.0]]], "float32")
    layer.build(f.shape)
    layer.set_weights([np.ones((1, 1), "float32"), np.ones((1, 1), "float32"),
                       np.zeros(1, "float32"), np.zeros(1, "float32")])
    sig2 = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_allclose(_to_numpy(layer(f)), [[[2.0 + 2.0 * sig2], [-1.5]]], rtol=1e-6)


def test_positions_are_independent():
    # A 1x1 convolution: changing one position changes only that position.
    rng = np.random.default_rng(2)
    f = rng.normal(size=(1, 6, 4, 8)).astype("float32")
    layer = ResidualAttention(ratio=2)
    before = _to_numpy(layer(f))
    g = f.copy()
    g[0, 2, 1] += 5.0
    after = _to_numpy(layer(g))
    changed = np.any(np.abs(after - before) > 1e-6, axis=-1)[0]
    assert changed[2, 1] and changed.sum() == 1


def test_parameter_count():
    # C = 64, r = 16 -> 4 squeeze channels: 64*4 + 4 + 4*64 + 64 = 580.
    layer = ResidualAttention()
    layer.build((None, None, 40, 64))
    assert tuple(layer.squeeze_kernel.shape) == (64, 4)
    assert layer.count_params() == 580
    # ResNet-50 conv-4 maps (1024 channels): 1024*64 + 64 + 64*1024 + 1024.
    layer = ResidualAttention()
    layer.build((None, None, 10, 1024))
    assert layer.count_params() == 2 * 1024 * 64 + 64 + 1024
    layer = ResidualAttention(bottleneck_units=5, use_bias=False)
    layer.build((None, None, 12))
    assert layer.count_params() == 2 * 12 * 5


def test_mask_passes_through():
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    attended = ResidualAttention(ratio=2)(masked)
    # A mask-consuming layer after it sees the padding (LSTM would too).
    pooled = keras.layers.GlobalAveragePooling1D()(attended)
    model = keras.Model(inputs, pooled)
    x = np.random.default_rng(3).normal(size=(2, 6, 4)).astype("float32")
    x[1, 2:] = 0.0
    full = _to_numpy(model(x))
    trimmed = _to_numpy(model(x[1:, :2]))
    np.testing.assert_allclose(full[1], trimmed[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 9, 5, 16), (2, 9, 16)])
def test_run_layer_test(shape):
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    out = run_layer_test(lambda: ResidualAttention(ratio=4), x, expected_output_shape=shape)
    # F_o = F (1 + M) with M in (0, 1): same sign, magnitude between |F| and 2|F|.
    ratio = out / x
    assert np.all(ratio >= 1.0 - 1e-5) and np.all(ratio <= 2.0 + 1e-5)


def test_fit_learns_a_teacher_attention():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 6, 5, 8)).astype("float32")
    teacher = ResidualAttention(ratio=2)
    teacher.build(x.shape)
    teacher.set_weights([w * 3 for w in _random_weights(rng, 8, 4)])
    y = _to_numpy(teacher(x))
    inputs = keras.Input((None, 5, 8))
    model = keras.Model(inputs, ResidualAttention(ratio=2)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"ratio": 0}, "ratio"),
        ({"ratio": -4}, "ratio"),
        ({"ratio": None}, "ratio"),
        ({"bottleneck_units": 1.5}, "bottleneck_units"),
        ({"bottleneck_units": -1}, "bottleneck_units"),
    ],
)
def test_bad_arguments_raise(kwargs, arg):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        ResidualAttention(**kwargs)


@pytest.mark.parametrize("shape", [(None, 8), (None, None, 5, None)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(ValueError, match="Received: input_shape="):
        ResidualAttention().build(shape)


def test_get_config():
    layer = ResidualAttention(ratio=8, bottleneck_units=None, kernel_regularizer="l2", name="att")
    config = layer.get_config()
    assert config["ratio"] == 8 and config["bottleneck_units"] is None
    assert config["name"] == "att" and config["kernel_regularizer"] is not None
    assert ResidualAttention.from_config(config).get_config() == config


def _case_2d():
    x = np.random.default_rng(20).normal(size=(2, 7, 5, 8)).astype("float32")
    return ResidualAttention(ratio=4), x, {}


def _case_1d():
    x = np.random.default_rng(21).normal(size=(2, 9, 6)).astype("float32")
    return ResidualAttention(bottleneck_units=3), x, {}


BACKEND_CASES = {
    "residual attention 2-D": _case_2d,
    "residual attention 1-D": _case_1d,
}
