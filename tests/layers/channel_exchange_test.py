import keras
import numpy as np
import pytest

from keras_spk.layers.channel_exchange import ChannelExchange
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def reference_views(v1, num_speakers):
    """Eq. 2 for K speakers: V_k is V_1 rolled left by (k - 1) D channels."""
    size = v1.shape[-1] // num_speakers
    return [np.roll(v1, -k * size, axis=-1) for k in range(num_speakers)]


def _views(layer, x):
    return [to_numpy(v) for v in layer(x)]


def test_eq_2_for_two_speakers():
    rng = np.random.default_rng(0)
    v1 = rng.normal(size=(2, 5, 6)).astype("float32")  # D = 3
    first, second = _views(ChannelExchange(2), v1)
    np.testing.assert_array_equal(first, v1)
    # V_2 = Concat(V_1[D+1:2D], V_1[1:D]) (1-based in the paper).
    np.testing.assert_array_equal(second, np.concatenate([v1[..., 3:], v1[..., :3]], axis=-1))


def test_hand_computed_example():
    v1 = np.arange(6, dtype="float32").reshape(1, 1, 6)
    views = _views(ChannelExchange(3), v1)  # D = 2
    assert [v[0, 0].tolist() for v in views] == [
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        [2.0, 3.0, 4.0, 5.0, 0.0, 1.0],
        [4.0, 5.0, 0.0, 1.0, 2.0, 3.0],
    ]


@pytest.mark.parametrize("num_speakers", [1, 2, 3, 4])
def test_matches_cyclic_rolls(num_speakers):
    rng = np.random.default_rng(num_speakers)
    v1 = rng.normal(size=(2, 7, 5 * num_speakers)).astype("float32")
    views = _views(ChannelExchange(num_speakers), v1)
    assert len(views) == num_speakers
    for got, expected in zip(views, reference_views(v1, num_speakers)):
        np.testing.assert_array_equal(got, expected)
    # Speaker k's block is at the front of V_k.
    for k, view in enumerate(views):
        np.testing.assert_array_equal(view[..., :5], v1[..., 5 * k : 5 * (k + 1)])


def test_exchanging_twice_gives_v1_back():
    v1 = np.random.default_rng(5).normal(size=(3, 4, 8)).astype("float32")
    layer = ChannelExchange(2)
    v2 = layer(v1)[1]
    np.testing.assert_array_equal(to_numpy(layer(v2)[1]), v1)


@pytest.mark.parametrize("num_speakers", [3, 4, 5])
def test_k_rolls_give_v1_back(num_speakers):
    v1 = np.random.default_rng(6).normal(size=(2, 3, 2 * num_speakers)).astype("float32")
    layer = ChannelExchange(num_speakers)
    views = _views(layer, v1)
    # Exchanging V_j gives V_j, V_{j+1}, ..., the views of V_1 shifted by j - 1.
    for j in range(num_speakers):
        again = _views(layer, views[j])
        for k in range(num_speakers):
            np.testing.assert_array_equal(again[k], views[(j + k) % num_speakers])
    # Taking V_2 K times returns to V_1 (and not before).
    x = v1
    for step in range(1, num_speakers + 1):
        x = to_numpy(layer(x)[1])
        assert np.array_equal(x, v1) == (step == num_speakers)


def test_higher_rank_inputs():
    v1 = np.random.default_rng(7).normal(size=(2, 3, 4, 6)).astype("float32")
    for got, expected in zip(_views(ChannelExchange(3), v1), reference_views(v1, 3)):
        np.testing.assert_array_equal(got, expected)


def test_mask_passes_to_every_view():
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    views = ChannelExchange(2)(masked)
    pooled = [keras.layers.GlobalAveragePooling1D()(v) for v in views]
    model = keras.Model(inputs, pooled)
    x = np.random.default_rng(8).normal(size=(2, 6, 4)).astype("float32")
    x[1, 3:] = 0.0
    full = [to_numpy(p) for p in model(x)]
    trimmed = [to_numpy(p) for p in model(x[1:, :3])]
    for f, t in zip(full, trimmed):
        np.testing.assert_allclose(f[1], t[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_speakers", [2, 3])
def test_run_layer_test(num_speakers):
    x = np.random.default_rng(9).normal(size=(2, 9, 4 * num_speakers)).astype("float32")
    out = run_layer_test(
        lambda: ChannelExchange(num_speakers),
        x,
        expected_output_shape=[x.shape] * num_speakers,
    )
    for got, expected in zip(out, reference_views(x, num_speakers)):
        np.testing.assert_array_equal(got, expected)


def test_symbolic_output_shapes():
    outputs = ChannelExchange(2)(keras.Input((None, 514)))
    assert [tuple(v.shape) for v in outputs] == [(None, None, 514)] * 2
    assert ChannelExchange(3).compute_output_shape((None, 10, 6)) == [(None, 10, 6)] * 3


@pytest.mark.parametrize("value", [0, -2, 1.5, True, None, "2"])
def test_bad_num_speakers_raises(value):
    with pytest.raises(ValueError, match="Received: num_speakers="):
        ChannelExchange(value)


@pytest.mark.parametrize("shape", [(None, 10, 7), (None, 10, None), (5,)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(ValueError, match="Received: input_shape="):
        ChannelExchange(2).build(shape)


def test_get_config():
    layer = ChannelExchange(3, name="exchange")
    config = layer.get_config()
    assert config["num_speakers"] == 3 and config["name"] == "exchange"
    assert ChannelExchange.from_config(config).get_config() == config
    assert ChannelExchange().num_speakers == 2


def _case_two():
    x = np.random.default_rng(20).normal(size=(2, 5, 8)).astype("float32")
    return ChannelExchange(2), x, {}


def _case_three():
    x = np.random.default_rng(21).normal(size=(2, 4, 9)).astype("float32")
    return ChannelExchange(3), x, {}


BACKEND_CASES = {
    "channel exchange K=2": _case_two,
    "channel exchange K=3": _case_three,
}
