import keras
import numpy as np
import pytest

from keras_spk.layers.rawnet_block import RawNetBlock
from tests.test_case import run_layer_test


def _conv_same(x, kernel, bias):
    """Stride-1 'same' cross-correlation, x (B, T, Cin), kernel (K, Cin, Cout)."""
    k = kernel.shape[0]
    left = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
    out = sum(padded[:, i : i + x.shape[1]] @ kernel[i] for i in range(k))
    return out + (0.0 if bias is None else bias)


def _batch_norm(x, gamma, beta, mean, var, epsilon, training):
    if training:
        # Batch statistics over batch and time, biased variance.
        mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    return gamma * (x - mean) / np.sqrt(var + epsilon) + beta


def _leaky_relu(x, slope):
    return np.where(x >= 0, x, slope * x)


def reference_rawnet_block(x, w, slope=0.3, pool=3, epsilon=1e-3, training=False):
    """Table 1: conv-BN-LReLU-conv-BN, + shortcut, LReLU, MaxPool (floor)."""
    x = np.asarray(x, "float64")
    h = _leaky_relu(_batch_norm(_conv_same(x, *w["conv1"]), *w["bn1"], epsilon, training), slope)
    h = _batch_norm(_conv_same(h, *w["conv2"]), *w["bn2"], epsilon, training)
    s = x
    if "shortcut_conv" in w:
        s = _batch_norm(_conv_same(x, *w["shortcut_conv"]), *w["shortcut_bn"], epsilon, training)
    y = _leaky_relu(h + s, slope)
    frames = y.shape[1] // pool
    return y[:, : frames * pool].reshape(y.shape[0], frames, pool, y.shape[2]).max(axis=2)


def _set_random_weights(layer, rng, use_bias=True):
    """Random values for every weight, returned by sub-layer for the reference."""
    values, by_name = [], {}
    for v in layer.weights:
        name = v.path.split("/")[-2]
        if "variance" in v.path:
            value = rng.uniform(0.5, 1.5, v.shape)
        elif "gamma" in v.path:
            value = rng.uniform(0.5, 1.5, v.shape)
        else:
            value = rng.normal(0, 0.5, v.shape)
        value = value.astype("float32")
        values.append(value)
        by_name.setdefault(name, []).append(value)
    layer.set_weights(values)
    for name in ("conv1", "conv2", "shortcut_conv"):
        if name in by_name and not use_bias:
            by_name[name].append(None)
    return by_name


def _to_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "channels, filters, frames, training",
    [
        (6, 6, 27, False),  # identity shortcut
        (4, 6, 28, False),  # 1x1 conv + BN shortcut, one frame dropped
        (4, 6, 29, True),  # batch statistics
        (6, 6, 30, True),
    ],
)
def test_matches_numpy_reference(channels, filters, frames, training):
    rng = np.random.default_rng(frames)
    x = rng.normal(size=(2, frames, channels)).astype("float32")
    layer = RawNetBlock(filters)
    layer.build(x.shape)
    weights = _set_random_weights(layer, rng)
    assert ("shortcut_conv" in weights) == (channels != filters)
    got = _to_numpy(layer(x, training=training))
    expected = reference_rawnet_block(x, weights, training=training)
    assert got.shape == (2, frames // 3, filters)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_options_match_numpy_reference():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 20, 5)).astype("float32")
    layer = RawNetBlock(
        4, kernel_size=5, pool_size=2, negative_slope=0.01, use_bias=False,
        batch_norm_epsilon=1e-5,
    )
    layer.build(x.shape)
    weights = _set_random_weights(layer, rng, use_bias=False)
    expected = reference_rawnet_block(x, weights, slope=0.01, pool=2, epsilon=1e-5)
    np.testing.assert_allclose(_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)
    # The slope matters: the default 0.3 gives a different result.
    assert not np.allclose(reference_rawnet_block(x, weights, pool=2, epsilon=1e-5), expected)


def test_leaky_relu_slope_default_is_keras_0_3():
    assert RawNetBlock(8).negative_slope == 0.3
    # Identity shortcut, zero convolutions, BN = identity: out = pool(lrelu(x)).
    layer = RawNetBlock(1)
    x = np.array([[[-1.0], [-2.0], [-4.0], [3.0], [-1.0], [0.5]]], "float32")
    layer.build(x.shape)
    layer.set_weights(
        [np.zeros((3, 1, 1)), np.zeros(1), np.ones(1), np.zeros(1), np.zeros(1), np.ones(1) - 1e-3,
         np.zeros((3, 1, 1)), np.zeros(1), np.ones(1), np.zeros(1), np.zeros(1), np.ones(1) - 1e-3]
    )
    # max(-0.3, -0.6, -1.2) = -0.3; max(3, -0.3, 0.5) = 3.
    np.testing.assert_allclose(_to_numpy(layer(x)), [[[-0.3], [3.0]]], rtol=1e-5)


@pytest.mark.parametrize("frames", [27, 28, 29, 59049 // 3, 59049 // 3**4, 59049 // 3**8, 3, 2, 1])
def test_output_length_floors(frames):
    layer = RawNetBlock(3)
    x = np.random.default_rng(frames).normal(size=(1, frames, 2)).astype("float32")
    assert _to_numpy(layer(x)).shape == (1, frames // 3, 3)
    assert layer.compute_output_shape((1, frames, 2)) == (1, frames // 3, 3)


def test_symbolic_shapes():
    layer = RawNetBlock(16)
    assert layer.compute_output_shape((None, None, 8)) == (None, None, 16)
    assert tuple(layer(keras.Input((None, 8))).shape) == (None, None, 16)
    assert tuple(RawNetBlock(16, pool_size=2)(keras.Input((10, 8))).shape) == (None, 5, 16)


def _count(layer):
    trainable = sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in layer.non_trainable_weights)
    return trainable, frozen


def test_parameter_counts():
    # 128 -> 128, identity shortcut: two convs 3*128*128 + 128 each (weights
    # + bias), two BNs with 2*128 trainable (gamma, beta) and 2*128
    # non-trainable (moving mean, variance) each.
    layer = RawNetBlock(128)
    layer.build((None, None, 128))
    assert _count(layer) == (2 * (3 * 128 * 128 + 128) + 2 * 256, 2 * 256)
    assert layer.count_params() == 99584
    # 128 -> 256: conv 3*128*256 + 256, conv 3*256*256 + 256, shortcut
    # 1x1 conv 128*256 + 256 and three BNs of 256 channels.
    layer = RawNetBlock(256)
    layer.build((None, None, 128))
    trainable = (3 * 128 * 256 + 256) + (3 * 256 * 256 + 256) + (128 * 256 + 256) + 3 * 512
    assert _count(layer) == (trainable, 3 * 512)
    assert layer.count_params() == 331520
    # Without conv biases: 2 * 128 fewer parameters.
    layer = RawNetBlock(128, use_bias=False)
    layer.build((None, None, 128))
    assert layer.count_params() == 99584 - 256


def test_moving_statistics_update_with_momentum():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 12, 3)).astype("float32")
    layer = RawNetBlock(3, batch_norm_momentum=0.5)
    layer.build(x.shape)
    weights = _set_random_weights(layer, rng)
    old_mean = weights["bn1"][2]
    layer(x, training=True)
    conv1 = _conv_same(x.astype("float64"), *weights["conv1"])
    np.testing.assert_allclose(
        _to_numpy(layer.bn1.moving_mean), 0.5 * old_mean + 0.5 * conv1.mean(axis=(0, 1)),
        rtol=1e-4, atol=1e-5,
    )
    # Inference leaves them alone.
    before = _to_numpy(layer.bn1.moving_mean)
    layer(x, training=False)
    np.testing.assert_array_equal(_to_numpy(layer.bn1.moving_mean), before)


@pytest.mark.parametrize("channels, filters", [(4, 4), (2, 8)])
def test_run_layer_test(channels, filters):
    x = np.random.default_rng(9).normal(size=(2, 28, channels)).astype("float32")
    run_layer_test(
        lambda: RawNetBlock(filters), x, expected_output_shape=(2, 9, filters),
        call_kwargs={"training": False},
    )


def test_fit_learns_a_teacher_block():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(32, 27, 2)).astype("float32")
    teacher = RawNetBlock(4)
    teacher.build(x.shape)
    _set_random_weights(teacher, rng)
    y = _to_numpy(teacher(x, training=False))
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, RawNetBlock(4)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"filters": 0}, "filters"),
        ({"filters": 8.0}, "filters"),
        ({"filters": 8, "kernel_size": 0}, "kernel_size"),
        ({"filters": 8, "pool_size": -3}, "pool_size"),
        ({"filters": 8, "negative_slope": -0.1}, "negative_slope"),
        ({"filters": 8, "negative_slope": float("nan")}, "negative_slope"),
        ({"filters": 8, "negative_slope": "0.3"}, "negative_slope"),
        ({"filters": 8, "batch_norm_momentum": 1.0}, "batch_norm_momentum"),
        ({"filters": 8, "batch_norm_epsilon": 0.0}, "batch_norm_epsilon"),
    ],
)
def test_bad_arguments_raise(kwargs, arg):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        RawNetBlock(**kwargs)


@pytest.mark.parametrize("shape", [(None, 8), (None, None, None), (None, 4, 4, 8)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(ValueError, match="Received: input_shape="):
        RawNetBlock(8).build(shape)


def test_get_config():
    layer = RawNetBlock(64, negative_slope=0.01, batch_norm_momentum=0.9, name="block")
    config = layer.get_config()
    assert config["filters"] == 64 and config["negative_slope"] == 0.01
    assert config["batch_norm_momentum"] == 0.9 and config["name"] == "block"
    assert RawNetBlock.from_config(config).get_config() == config


def _case_identity():
    x = np.random.default_rng(30).normal(size=(2, 28, 6)).astype("float32")
    return RawNetBlock(6), x, {"training": False}


def _case_projection():
    x = np.random.default_rng(31).normal(size=(2, 27, 3)).astype("float32")
    return RawNetBlock(6), x, {"training": False}


def _case_training():
    x = np.random.default_rng(32).normal(size=(3, 30, 4)).astype("float32")
    return RawNetBlock(5, negative_slope=0.01), x, {"training": True}


BACKEND_CASES = {
    "rawnet block identity shortcut": _case_identity,
    "rawnet block projection shortcut": _case_projection,
    "rawnet block batch statistics": _case_training,
}


def _sublayer_composition(layer, x, training):
    """The block as its sub-layers' own calls: Keras Conv1D (bias added), BatchNormalization."""
    ops = keras.ops
    x = ops.convert_to_tensor(x)
    h = ops.leaky_relu(layer.bn1(layer.conv1(x), training=training), layer.negative_slope)
    h = layer.bn2(layer.conv2(h), training=training)
    s = x
    if layer.has_projection:
        s = layer.shortcut_bn(layer.shortcut_conv(x), training=training)
    return ops.max_pool(ops.leaky_relu(h + s, layer.negative_slope), 3, 3)


def _gradients(function, layer, x):
    if keras.backend.backend() == "torch":
        for v in layer.trainable_variables:
            v.value.grad = None
        (function() ** 2).sum().backward()
        return {v.path: _to_numpy(v.value.grad) for v in layer.trainable_variables}
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(function() ** 2)
    grads = tape.gradient(loss, layer.trainable_variables)
    return {v.path: _to_numpy(g) for v, g in zip(layer.trainable_variables, grads)}


@pytest.mark.parametrize("channels, filters", [(4, 4), (3, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_match_the_sub_layers_calls(channels, filters, training):
    """Folding the convolution biases into the normalizations changes no gradient but theirs:

    with batch statistics a bias before batch normalization cancels, so its
    gradient is exactly 0 (Keras's layers give rounding noise); at
    inference it is the same as Keras's.
    """
    rng = np.random.default_rng(40)
    x = rng.normal(size=(3, 27, channels)).astype("float32")
    layer = RawNetBlock(filters)
    layer.build(x.shape)
    _set_random_weights(layer, rng)
    weights = layer.get_weights()
    expected = _gradients(lambda: _sublayer_composition(layer, x, training), layer, x)
    layer.set_weights(weights)  # the same moving statistics before each call
    got = _gradients(lambda: layer(x, training=training), layer, x)
    for path, value in expected.items():
        if training and path.endswith("bias"):
            np.testing.assert_array_equal(got[path], np.zeros_like(value), err_msg=path)
            kernel = got[path.replace("bias", "kernel")]
            assert np.max(np.abs(value)) < 1e-3 * np.max(np.abs(kernel))
        else:
            np.testing.assert_allclose(got[path], value, rtol=1e-4, atol=1e-4, err_msg=path)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a graph of unknown length")
def test_unknown_length_in_a_graph_pools_like_a_known_one():
    import tensorflow as tf

    layer = RawNetBlock(3)
    layer.build((None, None, 2))
    call = tf.function(
        lambda x: layer(x, training=False), input_signature=[tf.TensorSpec([None, None, 2])]
    )
    for frames in (1, 2, 3, 28):
        x = np.random.default_rng(frames).normal(size=(2, frames, 2)).astype("float32")
        got = _to_numpy(call(x))
        assert got.shape == (2, frames // 3, 3)
        np.testing.assert_allclose(got, _to_numpy(layer(x, training=False)), rtol=1e-6, atol=1e-6)
