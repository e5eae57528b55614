import keras
import numpy as np
import pytest

from keras_spk.layers import _pyramid
from keras_spk.layers.feature_pyramid import FeaturePyramid
from tests.helpers.numpy_reference import np_bilinear
from tests.helpers.numpy_reference import np_conv
from tests.helpers.numpy_reference import np_crop_or_pad
from tests.helpers.numpy_reference import np_transposed_conv
from tests.test_case import run_layer_test

RESNET34_CHANNELS = (32, 64, 128, 256)  # C2..C5 of the FPM paper, Table 1


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


# === numpy references, straight from the definitions ===


def np_feature_pyramid(layer, maps):
    """P_l = conv3x3(L_l + up(M_{l+1})), L_l = conv1x1(C_l), from the layer's weights."""
    laterals = [
        np_conv(x, *(w for w in conv.get_weights())) for conv, x in zip(layer.lateral_convs, maps)
    ]
    merged = [None] * len(maps)
    merged[-1] = laterals[-1]
    for i in range(len(maps) - 2, -1, -1):
        height, width = laterals[i].shape[1:3]
        if layer.upsampling == "bilinear":
            up = np_bilinear(merged[i + 1], height, width)
        else:
            up = np_crop_or_pad(
                np_transposed_conv(merged[i + 1], *layer.upsample_convs[i].get_weights()),
                height,
                width,
            )
        merged[i] = laterals[i] + up
    return [np_conv(m, *conv.get_weights()) for conv, m in zip(layer.output_convs, merged)]


# === helpers ===


def pyramid_inputs(time, freq=16, channels=(2, 3, 4, 5), batch=2, seed=0, ceil=True):
    """Random C2..C5 with the sizes a stride-2 CNN gives ('same': ceil, 'valid' pooling: floor)."""
    rng = np.random.default_rng(seed)
    maps = {}
    for level, c in zip(range(2, 2 + len(channels)), channels):
        maps[f"C{level}"] = rng.normal(size=(batch, time, freq, c)).astype("float32")
        time = -(-time // 2) if ceil else time // 2
        freq = -(-freq // 2) if ceil else freq // 2
    return maps


def tiny_backbone(freq=16):
    """A 4-stage CNN, stride 2 ('same') between stages, exposing C2..C5."""
    inputs = keras.Input((None, freq, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = {"C2": x}
    for level, channels in zip((3, 4, 5), (8, 16, 32)):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu")(x)
        outputs[f"C{level}"] = x
    return keras.Model(inputs, outputs)


# === shapes and variable length ===


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
def test_p_levels_match_c_levels_for_odd_and_even_lengths(upsampling):
    backbone = tiny_backbone()
    pyramid = FeaturePyramid(channels=6, upsampling=upsampling)
    inputs = keras.Input((None, 16, 1))
    model = keras.Model(inputs, [backbone(inputs), pyramid(backbone(inputs))])
    expected_times = {300: (300, 150, 75, 38), 301: (301, 151, 76, 38), 37: (37, 19, 10, 5),
                      7: (7, 4, 2, 1)}
    for time, times in expected_times.items():
        x = np.random.default_rng(time).normal(size=(2, time, 16, 1)).astype("float32")
        c, p = model(x)
        assert list(p) == ["P2", "P3", "P4", "P5"]
        for level, t in zip(range(2, 6), times):
            assert tuple(p[f"P{level}"].shape) == (2, t) + tuple(c[f"C{level}"].shape[2:3]) + (6,)
            assert tuple(c[f"C{level}"].shape[1:2]) == (t,)


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
@pytest.mark.parametrize("ceil", [True, False])
def test_output_shapes_static_and_symbolic(upsampling, ceil):
    # floor sizes (e.g. 37 -> 18 -> 9 -> 4) make the lateral one longer than
    # 2 n, so the transposed output must be padded, not cropped.
    maps = pyramid_inputs(37, ceil=ceil)
    layer = FeaturePyramid(channels=5, upsampling=upsampling)
    out = layer(maps)
    shapes = {k: tuple(v.shape) for k, v in maps.items()}
    expected = {f"P{k[1:]}": s[:-1] + (5,) for k, s in shapes.items()}
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert layer.compute_output_shape(shapes) == expected
    symbolic = FeaturePyramid(channels=5, upsampling=upsampling)(
        {k: keras.Input((None,) + s[2:]) for k, s in shapes.items()}
    )
    assert {k: tuple(v.shape) for k, v in symbolic.items()} == {
        k: (None, None) + s[2:] for k, s in expected.items()
    }


def test_list_input_and_level_selection():
    maps = pyramid_inputs(20)
    as_list = FeaturePyramid(channels=4)(list(maps.values()))
    assert list(as_list) == ["P2", "P3", "P4", "P5"]
    selected = FeaturePyramid(channels=4, levels=[3, 4, 5])(maps)
    assert list(selected) == ["P3", "P4", "P5"]
    assert tuple(selected["P3"].shape) == maps["C3"].shape[:3] + (4,)
    numbered = FeaturePyramid(channels=4, levels=[3, 4, 5])([maps["C3"], maps["C4"], maps["C5"]])
    assert list(numbered) == ["P3", "P4", "P5"]


# === parameter counts ===


def build_resnet34_pyramid(upsampling, use_bias=True):
    layer = FeaturePyramid(channels=32, upsampling=upsampling, use_bias=use_bias)
    levels = zip(range(2, 6), RESNET34_CHANNELS)
    layer.build({f"C{l}": (None, None, 64 >> (l - 2), c) for l, c in levels})
    return layer


def test_exact_parameter_counts_on_fpm_paper_resnet34():
    # Laterals: 1x1 convs C_l -> 32:   (32 + 64 + 128 + 256) * 32 + 4 * 32 = 15360 + 128 = 15488
    # 3x3 convs on P2..P5, 32 -> 32:   4 * (3 * 3 * 32 * 32 + 32)       = 4 * 9248    = 36992
    # FPM-B:                           15488 + 36992                                 = 52480
    # Transposed 3x3 stride-2 convs, one per merge (P5->P4, P4->P3, P3->P2):
    #                                  3 * (3 * 3 * 32 * 32 + 32)       = 3 * 9248    = 27744
    # FPM-TC:                          52480 + 27744                                 = 80224
    fpm_b = build_resnet34_pyramid("bilinear")
    fpm_tc = build_resnet34_pyramid("transposed")
    assert fpm_b.count_params() == 52480
    assert fpm_tc.count_params() == 80224
    assert fpm_tc.count_params() > fpm_b.count_params()
    assert len(fpm_b.trainable_weights) == 16 and len(fpm_tc.trainable_weights) == 22
    # Without biases: 480 * 32 + 4 * 9216 = 52224, plus 3 * 9216 = 79872.
    assert build_resnet34_pyramid("bilinear", use_bias=False).count_params() == 52224
    assert build_resnet34_pyramid("transposed", use_bias=False).count_params() == 79872


def test_transposed_kernel_size_changes_only_the_upsampling_parameters():
    small = FeaturePyramid(channels=8, upsampling="transposed", transposed_kernel_size=2)
    large = FeaturePyramid(channels=8, upsampling="transposed", transposed_kernel_size=4)
    shapes = [(None, None, 8, 3), (None, None, 4, 3)]
    small.build(shapes)
    large.build(shapes)
    # One transposed conv (2 levels): (16 - 4) * 8 * 8 more parameters.
    assert large.count_params() - small.count_params() == (16 - 4) * 64
    out = large(pyramid_inputs(9, channels=(3, 3)))
    assert tuple(out["P2"].shape) == (2, 9, 16, 8)


# === values ===


def test_bilinear_resize_matches_keras_image_resize_and_numpy():
    x = np.random.default_rng(1).normal(size=(2, 5, 4, 3)).astype("float32")
    for size in [(10, 8), (9, 8), (9, 7), (5, 4), (1, 2), (3, 2), (17, 5)]:
        got = to_numpy(_pyramid.resize_bilinear(x, *size))
        keras_resize = to_numpy(keras.ops.image.resize(x, size, interpolation="bilinear"))
        np.testing.assert_allclose(got, keras_resize, atol=1e-5)
        np.testing.assert_allclose(got, np_bilinear(x, *size), atol=1e-5)


def test_top_down_merge_hand_case():
    # Identity laterals (1x1, channels 1 -> 1), zero biases and centred-delta
    # 3x3 convs: P_l is the merged map itself.
    c3 = np.arange(6, dtype="float32").reshape(1, 3, 2, 1)  # time 3 -> 2 above
    c4 = np.array([[[[10.0]], [[20.0]]]], dtype="float32")  # (1, 2, 1, 1)
    layer = FeaturePyramid(channels=1)
    layer({"C3": c3, "C4": c4})
    delta = np.zeros((3, 3, 1, 1), "float32")
    delta[1, 1] = 1.0
    layer.set_weights(
        [np.ones((1, 1, 1, 1)), np.zeros(1), np.ones((1, 1, 1, 1)), np.zeros(1)]
        + [delta, np.zeros(1), delta, np.zeros(1)]
    )
    out = layer({"C3": c3, "C4": c4})
    np.testing.assert_allclose(to_numpy(out["P4"])[0, :, :, 0], [[10.0], [20.0]])
    # Time 2 -> 3: sources (i + 0.5) * 2/3 - 0.5 = -1/6 (clamped 0), 0.5, 7/6
    # -> [10, 15, 20]; frequency 1 -> 2 copies.
    up = np.array([[10.0, 10.0], [15.0, 15.0], [20.0, 20.0]])
    np.testing.assert_allclose(
        to_numpy(out["P3"])[0, :, :, 0], c3[0, :, :, 0] + up, rtol=1e-6
    )


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
@pytest.mark.parametrize("time,ceil", [(13, True), (13, False), (8, True)])
def test_matches_numpy_reference(upsampling, time, ceil):
    maps = pyramid_inputs(time, freq=8, channels=(2, 3, 4), ceil=ceil, seed=time)
    layer = FeaturePyramid(channels=3, upsampling=upsampling)
    layer(maps)
    rng = np.random.default_rng(7)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    out = layer(maps)
    expected = np_feature_pyramid(layer, list(maps.values()))
    for key, ref in zip(out, expected):
        np.testing.assert_allclose(to_numpy(out[key]), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF graph with dynamic time")
@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
def test_dynamic_time_inside_tf_function(upsampling):
    import tensorflow as tf

    maps = pyramid_inputs(13, freq=8, channels=(2, 3, 4), ceil=False)
    layer = FeaturePyramid(channels=3, upsampling=upsampling)
    eager = layer(maps)
    spec = {k: tf.TensorSpec((None, None) + v.shape[2:]) for k, v in maps.items()}
    graph = tf.function(lambda m: layer(m), input_signature=[spec])
    out = graph(maps)
    for key in eager:
        np.testing.assert_allclose(out[key].numpy(), to_numpy(eager[key]), atol=1e-5)


# === the standard checks ===


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
def test_run_layer_test(upsampling):
    maps = list(pyramid_inputs(11, freq=8, channels=(2, 3, 4)).values())
    out = run_layer_test(
        lambda: FeaturePyramid(channels=4, upsampling=upsampling),
        maps,
        expected_output_shape={"P2": (2, 11, 8, 4), "P3": (2, 6, 4, 4), "P4": (2, 3, 2, 4)},
    )
    assert set(out) == {"P2", "P3", "P4"}


def test_gradients_reach_every_weight_and_loss_decreases():
    backbone = tiny_backbone(freq=8)
    inputs = keras.Input((None, 8, 1))
    fpm = FeaturePyramid(channels=4, upsampling="transposed")
    pooled = [keras.layers.GlobalAveragePooling2D()(p) for p in fpm(backbone(inputs)).values()]
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()(pooled))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 8)
    x = (rng.normal(size=(16, 12, 8, 1)) + 1.5 * y[:, None, None, None]).astype("float32")
    model.compile(keras.optimizers.Adam(2e-2), "sparse_categorical_crossentropy")
    before_weights = [w.copy() for w in fpm.get_weights()]
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < 0.8 * before
    # Every lateral, 3x3 and transposed convolution weight was updated.
    for old, new in zip(before_weights, fpm.get_weights()):
        assert np.all(np.isfinite(new)) and not np.allclose(old, new)


# === arguments and config ===


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 0},
        {"channels": 2.5},
        {"channels": True},
        {"upsampling": "nearest"},
        {"levels": [3, 3]},
        {"levels": []},
        {"levels": "C3"},
        {"transposed_kernel_size": 0},
        {"use_bias": 1},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received:"):
        FeaturePyramid(**kwargs)


def test_bad_inputs_raise():
    maps = pyramid_inputs(8)
    with pytest.raises(ValueError, match="consecutive"):
        FeaturePyramid()({"C2": maps["C2"], "C4": maps["C4"]})
    with pytest.raises(ValueError, match="needs"):
        FeaturePyramid(levels=[5, 6])(maps)
    with pytest.raises(ValueError, match="level number"):
        FeaturePyramid()({"low": maps["C2"], "high": maps["C3"]})
    with pytest.raises(ValueError, match="4D feature maps"):
        FeaturePyramid().build([(None, 10, 4), (None, 5, 4)])


def test_get_config_round_trip():
    layer = FeaturePyramid(
        channels=16, upsampling="transposed", levels=[3, 4], transposed_kernel_size=2,
        use_bias=False, kernel_regularizer="l2", name="fpm",
    )
    config = layer.get_config()
    assert config["channels"] == 16 and config["upsampling"] == "transposed"
    assert config["levels"] == [3, 4] and config["name"] == "fpm"
    assert FeaturePyramid.from_config(config).get_config() == config


def _backend_case(upsampling, ceil):
    def factory():
        return (
            FeaturePyramid(channels=3, upsampling=upsampling),
            pyramid_inputs(13, freq=8, channels=(2, 3, 4, 5), ceil=ceil, seed=3),
            None,
        )

    return factory


BACKEND_CASES = {
    "bilinear, ceil sizes": _backend_case("bilinear", True),
    "transposed, ceil sizes": _backend_case("transposed", True),
    "transposed, floor sizes (padding)": _backend_case("transposed", False),
}
