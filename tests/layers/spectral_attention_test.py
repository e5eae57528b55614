import keras
import numpy as np
import pytest

from keras_spk.layers.channel_exchange import ChannelExchange
from keras_spk.layers.spectral_attention import SpectralAttention
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _leaky_relu(x, slope=0.2):
    return np.where(x >= 0, x, slope * x)


def reference_spectral_attention(views, weights, attend="v1"):
    """Section 3.2 per frame, in float64: (Z_k, W_k) for every view."""
    w1, b1, w2, b2, w3, b3 = [np.asarray(w, "float64") for w in weights]
    views = [np.asarray(v, "float64") for v in views]
    outputs, scores = [], []
    for view in views:
        w = _sigmoid(np.tanh(view @ w1 + b1) @ w2 + b2)
        attended = w * (views[0] if attend == "v1" else view)
        outputs.append(_leaky_relu(attended @ w3 + b3))
        scores.append(w)
    return outputs, scores


def _random_weights(rng, channels, units, output_dim, scale=0.5):
    shapes = [(channels, units), (units,), (units, 1), (1,), (channels, output_dim), (output_dim,)]
    return [rng.normal(0, scale, shape).astype("float32") for shape in shapes]


def _call(layer, views, **kwargs):
    out = layer(views, **kwargs)
    return keras.tree.map_structure(to_numpy, out)


@pytest.mark.parametrize("attend", ["v1", "own"])
@pytest.mark.parametrize("num_speakers", [2, 3])
def test_matches_numpy_reference(attend, num_speakers):
    rng = np.random.default_rng(num_speakers)
    v1 = rng.normal(size=(2, 7, 4 * num_speakers)).astype("float32")
    views = [to_numpy(v) for v in ChannelExchange(num_speakers)(v1)]
    layer = SpectralAttention(units=5, output_dim=3, attend=attend)
    layer.build([v.shape for v in views])
    weights = _random_weights(rng, 4 * num_speakers, 5, 3)
    layer.set_weights(weights)
    outputs, scores = _call(layer, views, return_attention_scores=True)
    expected_outputs, expected_scores = reference_spectral_attention(views, weights, attend)
    assert len(outputs) == len(scores) == num_speakers
    for got, expected in zip(outputs + scores, expected_outputs + expected_scores):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    for got, expected in zip(_call(layer, views), expected_outputs):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_hand_computed_values():
    # fc2 kernel 0 and bias b: W = sigmoid(b) on every frame; FC = identity, no bias.
    v = np.array([[[1.0, -2.0], [3.0, 0.5]]], "float32")
    layer = SpectralAttention(units=3, output_dim=2)
    layer.build([v.shape, v.shape])
    layer.set_weights(
        [
            np.ones((2, 3), "float32"),
            np.zeros(3, "float32"),
            np.zeros((3, 1), "float32"),
            np.array([np.log(3.0)], "float32"),  # sigmoid(log 3) = 0.75
            np.eye(2, dtype="float32"),
            np.zeros(2, "float32"),
        ]
    )
    (z1, z2), (w1, w2) = _call(layer, [v, v[..., ::-1]], return_attention_scores=True)
    np.testing.assert_allclose(w1, np.full((1, 2, 1), 0.75), rtol=1e-6)
    # Z = leaky_relu(0.75 V_1), slope 0.2, for both speakers (attend="v1").
    expected = [[[0.75, -0.3], [2.25, 0.375]]]
    np.testing.assert_allclose(z1, expected, rtol=1e-6)
    np.testing.assert_allclose(z2, expected, rtol=1e-6)


def test_equal_halves_give_equal_weights():
    rng = np.random.default_rng(1)
    half = rng.normal(size=(2, 9, 6)).astype("float32")
    v1 = np.concatenate([half, half], axis=-1)
    layer = SpectralAttention(units=8, output_dim=4)
    (z1, z2), (w1, w2) = _call(layer, ChannelExchange(2)(v1), return_attention_scores=True)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(z1, z2)
    # With different halves the two speakers' weights differ.
    v1 = rng.normal(size=(2, 9, 12)).astype("float32")
    _, (w1, w2) = _call(layer, ChannelExchange(2)(v1), return_attention_scores=True)
    assert np.max(np.abs(w1 - w2)) > 1e-3


def test_attend_v1_weights_one_shared_embedding():
    # With attend="v1" and no activation, Z_k - b = W_k (V_1 K): the speakers'
    # outputs differ only by a per-frame scale; with "own" they do not.
    rng = np.random.default_rng(2)
    v1 = rng.normal(size=(1, 6, 8)).astype("float32")
    views = ChannelExchange(2)(v1)
    for attend, proportional in (("v1", True), ("own", False)):
        layer = SpectralAttention(units=4, output_dim=5, attend=attend, activation=None)
        (z1, z2), (w1, w2) = _call(layer, views, return_attention_scores=True)
        bias = to_numpy(layer.output_bias)  # zeros
        np.testing.assert_array_equal(bias, 0.0)
        assert np.allclose(z1 / w1, z2 / w2, rtol=1e-4, atol=1e-5) == proportional


def test_weights_are_per_frame_in_unit_interval():
    rng = np.random.default_rng(3)
    v1 = rng.normal(size=(2, 10, 6)).astype("float32")
    layer = SpectralAttention(units=4, output_dim=3)
    _, scores = _call(layer, ChannelExchange(2)(v1), return_attention_scores=True)
    for w in scores:
        assert w.shape == (2, 10, 1)
        assert np.all((w > 0) & (w < 1))
    # Changing one frame changes only that frame's outputs.
    before = _call(layer, ChannelExchange(2)(v1))
    v1[0, 4] += 3.0
    after = _call(layer, ChannelExchange(2)(v1))
    for b, a in zip(before, after):
        changed = np.any(np.abs(a - b) > 1e-6, axis=-1)
        assert changed[0, 4] and changed.sum() == 1


def test_default_activation_is_leaky_relu_02():
    layer = SpectralAttention(units=2, output_dim=1)
    v = np.ones((1, 1, 2), "float32")
    layer.build([v.shape])
    layer.set_weights(
        [np.zeros((2, 2), "float32"), np.zeros(2, "float32"), np.zeros((2, 1), "float32"),
         np.zeros(1, "float32"), -np.ones((2, 1), "float32"), np.zeros(1, "float32")]
    )
    # W = 0.5, pre-activation 0.5 * (-2) = -1, output -0.2.
    (z,) = _call(layer, [v])
    np.testing.assert_allclose(z, [[[-0.2]]], rtol=1e-6)


def test_parameter_count():
    # MIRNet: C = 514, fc1 64, FC 257.
    layer = SpectralAttention()
    layer.build([(None, None, 514)] * 2)
    assert layer.attention_kernel.shape == (514, 64) and layer.output_kernel.shape == (514, 257)
    assert 514 * 64 + 64 == 32_960 and 64 + 1 == 65 and 514 * 257 + 257 == 132_355
    assert layer.count_params() == 32_960 + 65 + 132_355 == 165_380
    # The count does not depend on K (shared by the speakers).
    layer = SpectralAttention(units=3, output_dim=2)
    layer.build([(None, None, 8)] * 4)
    assert layer.count_params() == 8 * 3 + 3 + 3 + 1 + 8 * 2 + 2


def test_mask_passes_through():
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    outputs = SpectralAttention(units=3, output_dim=2)(ChannelExchange(2)(masked))
    pooled = [keras.layers.GlobalAveragePooling1D()(z) for z in outputs]
    model = keras.Model(inputs, pooled)
    x = np.random.default_rng(4).normal(size=(2, 6, 4)).astype("float32")
    x[1, 2:] = 0.0
    full = [to_numpy(p) for p in model(x)]
    trimmed = [to_numpy(p) for p in model(x[1:, :2])]
    for f, t in zip(full, trimmed):
        np.testing.assert_allclose(f[1], t[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attend", ["v1", "own"])
def test_run_layer_test(attend):
    rng = np.random.default_rng(5)
    v1 = rng.normal(size=(2, 9, 8)).astype("float32")
    views = [to_numpy(v) for v in ChannelExchange(2)(v1)]
    run_layer_test(
        lambda: SpectralAttention(units=4, output_dim=3, attend=attend),
        views,
        expected_output_shape=[(2, 9, 3), (2, 9, 3)],
    )


def test_symbolic_call_with_scores():
    v1 = keras.Input((None, 514))
    z, w = SpectralAttention()(ChannelExchange(2)(v1), return_attention_scores=True)
    assert [tuple(t.shape) for t in z] == [(None, None, 257)] * 2
    assert [tuple(t.shape) for t in w] == [(None, None, 1)] * 2
    model = keras.Model(v1, z + w)
    out = model(np.zeros((1, 297, 514), "float32"))
    assert [tuple(t.shape) for t in out] == [(1, 297, 257)] * 2 + [(1, 297, 1)] * 2


def test_fit_learns_a_teacher():
    rng = np.random.default_rng(6)
    v1 = rng.normal(size=(64, 5, 8)).astype("float32")
    views = [to_numpy(v) for v in ChannelExchange(2)(v1)]
    teacher = SpectralAttention(units=4, output_dim=3)
    teacher.build([v.shape for v in views])
    teacher.set_weights(_random_weights(rng, 8, 4, 3, scale=1.5))
    targets = _call(teacher, views)
    inputs = keras.Input((None, 8))
    outputs = SpectralAttention(units=4, output_dim=3)(ChannelExchange(2)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=["mse", "mse"])
    history = model.fit(v1, targets, epochs=40, batch_size=64, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"units": 0}, "units"),
        ({"units": 2.5}, "units"),
        ({"output_dim": -1}, "output_dim"),
        ({"output_dim": None}, "output_dim"),
        ({"attend": "v2"}, "attend"),
        ({"attend": None}, "attend"),
        ({"activation": "no_such_activation"}, "activation"),
    ],
)
def test_bad_arguments_raise(kwargs, arg):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        SpectralAttention(**kwargs)


@pytest.mark.parametrize(
    "shape",
    [
        (None, 10, 8),  # one tensor, not a list of views
        [(None, 10, 8), (None, 10, 6)],  # channels differ
        [(None, 10, None)] * 2,  # channels unknown
        [(None, 10, 8), (None, 8)],  # ranks differ
        [],
    ],
)
def test_bad_input_shape_raises(shape):
    with pytest.raises(ValueError, match="Received: input_shape="):
        SpectralAttention().build(shape)


def test_get_config():
    layer = SpectralAttention(
        units=16,
        output_dim=40,
        attend="own",
        activation="tanh",
        kernel_regularizer="l2",
        name="att",
    )
    config = layer.get_config()
    assert config["units"] == 16 and config["output_dim"] == 40 and config["attend"] == "own"
    assert config["activation"] == "tanh" and config["kernel_regularizer"] is not None
    assert SpectralAttention.from_config(config).get_config() == config
    defaults = SpectralAttention().get_config()
    assert (defaults["units"], defaults["output_dim"], defaults["attend"]) == (64, 257, "v1")
    assert defaults["activation"] == "leaky_relu"


def _views_case(seed, num_speakers, channels_per_speaker=3):
    v1 = np.random.default_rng(seed).normal(size=(2, 6, num_speakers * channels_per_speaker))
    size = channels_per_speaker
    return [np.roll(v1, -k * size, axis=-1).astype("float32") for k in range(num_speakers)]


def _case_v1():
    return SpectralAttention(units=4, output_dim=5), _views_case(30, 2), {}


def _case_own_scores():
    layer = SpectralAttention(units=3, output_dim=4, attend="own")
    return layer, _views_case(31, 3), {"return_attention_scores": True}


BACKEND_CASES = {
    "spectral attention v1": _case_v1,
    "spectral attention own, K=3, scores": _case_own_scores,
}
