import keras
import numpy as np
import pytest

from keras_spk.layers.feature_pyramid import FeaturePyramid
from keras_spk.layers.learnable_dictionary_encoding import LearnableDictionaryEncoding
from keras_spk.layers.multi_scale_aggregation import MultiScaleAggregation
from keras_spk.layers.self_attentive_pooling import SelfAttentivePooling
from keras_spk.layers.temporal_average_pooling import TemporalAveragePooling
from tests.helpers.numpy_reference import np_bilinear
from tests.helpers.numpy_reference import np_conv
from tests.helpers.numpy_reference import np_crop_or_pad
from tests.helpers.numpy_reference import np_transposed_conv
from tests.test_case import run_layer_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def pyramid(time, freq=8, channels=4, levels=(3, 4, 5), batch=2, seed=0, ceil=True):
    """Random P-levels, sizes as after stride-2 'same' convs (ceil) or 'valid' pooling (floor)."""
    rng = np.random.default_rng(seed)
    maps = {}
    for level in levels:
        maps[f"P{level}"] = rng.normal(size=(batch, time, freq, channels)).astype("float32")
        time = -(-time // 2) if ceil else time // 2
        freq = -(-freq // 2) if ceil else freq // 2
    return maps


def seeded(layer, inputs, seed=5):
    layer(inputs)
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def np_sap(frames, kernel, bias, context):
    """SAP (Cai et al. 2018): w = softmax_t(tanh(x W + b) . mu), e = sum_t w_t x_t."""
    scores = np.tanh(frames @ kernel + bias) @ context
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("bt,btd->bd", weights, frames)


# === shapes ===


@pytest.mark.parametrize("mode", ["msea", "msfa"])
@pytest.mark.parametrize("pooling", ["gap", "sap", "lde"])
def test_output_shapes_for_odd_and_even_lengths(mode, pooling):
    layer = MultiScaleAggregation(mode, pooling, embedding_dim=16, projection_channels=8)
    for time in (37, 7, 20):
        out = layer(pyramid(time))
        assert tuple(out.shape) == (2, 16)
        assert np.all(np.isfinite(to_numpy(out)))
    assert layer.compute_output_shape({"P3": (2, None, 8, 4), "P4": (2, None, 4, 4)}) == (2, 16)


@pytest.mark.parametrize("mode", ["msea", "msfa"])
def test_variable_length_functional_model_on_feature_pyramid(mode):
    maps = {f"C{l}": keras.Input((None, 16 >> (l - 2), 2**l), name=f"C{l}") for l in range(2, 6)}
    p = FeaturePyramid(channels=8)(maps)
    out = MultiScaleAggregation(mode, "gap", embedding_dim=12, levels=[3, 4, 5])(p)
    model = keras.Model(maps, out)
    for time in (300, 301, 37, 7):
        rng = np.random.default_rng(time)
        x, t = {}, time
        for l in range(2, 6):
            x[f"C{l}"] = rng.normal(size=(2, t, 16 >> (l - 2), 2**l)).astype("float32")
            t = -(-t // 2)
        assert tuple(model(x).shape) == (2, 12)


# === the paper's sharing and head rules ===


def test_paper_defaults_per_pooling():
    maps = pyramid(16, channels=32)
    gap = MultiScaleAggregation("msea", "gap")
    gap(maps)
    # MSEA: one 1x1 conv to 64 channels per stage, GAP (no weights), FC 3*64 -> 128.
    assert gap.count_params() == 3 * (32 * 64 + 64) + (3 * 64 * 128 + 128)
    assert len(gap.poolings) == 1 and not gap.level_denses

    sap = MultiScaleAggregation("msea", "sap")
    sap(maps)
    # SAP layers are not shared; frames are freq * 64 long (8, 4, 2 bins).
    assert len(sap.poolings) == 3 and len({id(p) for p in sap.poolings}) == 3
    dims = [8 * 64, 4 * 64, 2 * 64]
    sap_params = sum(d * d + 2 * d for d in dims)
    assert sap.count_params() == 3 * (32 * 64 + 64) + sap_params + (sum(dims) * 128 + 128)

    lde = MultiScaleAggregation("msea", "lde")
    lde(maps)
    # One LDE (64 codewords on 64-channel positions) and one FC 4096 -> 128
    # shared by all stages, then FC 3 * 128 -> 128.
    assert len(lde.poolings) == 1 and isinstance(lde.poolings[0], LearnableDictionaryEncoding)
    assert len(lde.level_denses) == 1
    assert lde.count_params() == (
        3 * (32 * 64 + 64) + (64 * 64 + 64) + (64 * 64 * 128 + 128) + (3 * 128 * 128 + 128)
    )


def test_msfa_parameter_counts():
    maps = pyramid(16, channels=32)
    # C3 down: one 3x3 stride-2 conv 32 -> 32 (9248); GAP on 96 channels; FC 96 -> 128.
    bilinear = MultiScaleAggregation("msfa", "gap")
    bilinear(maps)
    assert bilinear.count_params() == (9 * 32 * 32 + 32) + (96 * 128 + 128)
    # Transposed upsampling of P5 adds one 3x3 transposed conv 32 -> 32.
    transposed = MultiScaleAggregation("msfa", "gap", msfa_upsampling="transposed")
    transposed(maps)
    assert transposed.count_params() == bilinear.count_params() + (9 * 32 * 32 + 32)


def test_sharing_overrides():
    maps = pyramid(16, channels=32)
    shared_sap = MultiScaleAggregation("msea", "sap", descriptors="positions", share_pooling=True)
    shared_sap(maps)
    assert len(shared_sap.poolings) == 1
    lde_unshared = MultiScaleAggregation("msea", "lde", share_pooling=False, share_dense=False)
    lde_unshared(maps)
    assert len(lde_unshared.poolings) == 3 and len(lde_unshared.level_denses) == 3
    with pytest.raises(ValueError, match="same descriptor size"):
        MultiScaleAggregation("msea", "sap", share_pooling=True)(maps)


def test_pooling_layer_instance_shared_or_cloned():
    maps = pyramid(10, channels=4)
    shared = SelfAttentivePooling(attention_units=3)
    layer = MultiScaleAggregation("msea", shared, projection_channels=None, descriptors="positions")
    layer(maps)
    assert layer.poolings == [shared]
    sap = SelfAttentivePooling(attention_units=3)
    cloned = MultiScaleAggregation("msea", sap, share_pooling=False)
    cloned(maps)
    assert len({id(p) for p in cloned.poolings}) == 3
    assert [p.attention_units for p in cloned.poolings] == [3, 3, 3]


# === values ===


def test_msea_gap_matches_numpy():
    maps = pyramid(9, channels=3, seed=1)
    layer = MultiScaleAggregation("msea", "gap", embedding_dim=5, projection_channels=4)
    seeded(layer, maps)
    pooled = []
    for conv, x in zip(layer.projections, maps.values()):
        pooled.append(np_conv(x, *conv.get_weights()).mean(axis=(1, 2)))  # mean over time and freq
    kernel, bias = layer.embedding_dense.get_weights()
    expected = np.concatenate(pooled, -1) @ kernel + bias
    np.testing.assert_allclose(to_numpy(layer(maps)), expected, rtol=1e-4, atol=1e-4)


def test_msea_sap_on_frames_matches_numpy():
    maps = pyramid(9, channels=3, seed=2)
    layer = MultiScaleAggregation("msea", "sap", embedding_dim=5, projection_channels=None)
    seeded(layer, maps)
    pooled = []
    for sap, x in zip(layer.poolings, maps.values()):
        frames = x.reshape(x.shape[0], x.shape[1], -1).astype("float64")  # [B, T, F * C]
        pooled.append(np_sap(frames, *sap.get_weights()))
    kernel, bias = layer.embedding_dense.get_weights()
    expected = np.concatenate(pooled, -1) @ kernel + bias
    np.testing.assert_allclose(to_numpy(layer(maps)), expected, rtol=1e-4, atol=1e-4)


def test_msea_lde_head_is_l2_normalised_shared_fc():
    maps = pyramid(9, channels=3, seed=3)
    layer = MultiScaleAggregation("msea", "lde", embedding_dim=6, projection_channels=4)
    seeded(layer, maps)
    lde = layer.poolings[0]
    level_kernel, level_bias = layer.level_denses[0].get_weights()
    pooled = []
    for conv, x in zip(layer.projections, maps.values()):
        projected = np_conv(x, *conv.get_weights())
        positions = projected.reshape(x.shape[0], -1, projected.shape[-1])  # [B, T * F, C]
        encoded = to_numpy(lde(positions.astype("float32"))).astype("float64")
        encoded /= np.linalg.norm(encoded, axis=-1, keepdims=True)
        pooled.append(encoded @ level_kernel + level_bias)
    kernel, bias = layer.embedding_dense.get_weights()
    expected = np.concatenate(pooled, -1) @ kernel + bias
    np.testing.assert_allclose(to_numpy(layer(maps)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
@pytest.mark.parametrize("time,ceil", [(11, True), (11, False)])
def test_msfa_gap_matches_numpy(upsampling, time, ceil):
    maps = pyramid(time, channels=2, ceil=ceil, seed=time)
    layer = seeded(
        MultiScaleAggregation("msfa", "gap", embedding_dim=4, msfa_upsampling=upsampling), maps
    )
    p3, p4, p5 = maps.values()
    height, width = p4.shape[1:3]
    down_conv, up_convs = layer.resample_convs[0][0], layer.resample_convs[2]
    down = np_crop_or_pad(np_conv(p3, *down_conv.get_weights(), stride=2), height, width)
    if upsampling == "bilinear":
        up = np_bilinear(p5, height, width)
    else:
        up = np_transposed_conv(p5, *up_convs[0].get_weights())
        up = np_crop_or_pad(up, height, width)
    fused = np.concatenate([down, p4, up], axis=-1)
    kernel, bias = layer.embedding_dense.get_weights()
    expected = fused.mean(axis=(1, 2)) @ kernel + bias
    np.testing.assert_allclose(to_numpy(layer(maps)), expected, rtol=1e-4, atol=1e-4)


def test_msfa_resolution_and_two_step_resampling():
    maps = pyramid(13, channels=2, levels=(2, 3, 4, 5))
    layer = MultiScaleAggregation("msfa", "gap", embedding_dim=3, msfa_resolution=3,
                                  msfa_upsampling="transposed")
    assert tuple(layer(maps).shape) == (2, 3)
    assert [len(steps) for steps in layer.resample_convs] == [1, 0, 1, 2]
    with pytest.raises(ValueError, match="msfa_resolution"):
        MultiScaleAggregation("msfa", "gap", msfa_resolution=7)(maps)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF graph with dynamic time")
@pytest.mark.parametrize("mode", ["msea", "msfa"])
def test_dynamic_time_inside_tf_function(mode):
    import tensorflow as tf

    maps = pyramid(13, channels=2, ceil=False)
    layer = MultiScaleAggregation(mode, "sap", embedding_dim=4, msfa_upsampling="transposed")
    eager = to_numpy(layer(maps))
    spec = {k: tf.TensorSpec((None, None) + v.shape[2:]) for k, v in maps.items()}
    graph = tf.function(lambda m: layer(m), input_signature=[spec])
    np.testing.assert_allclose(graph(maps).numpy(), eager, atol=1e-5)


# === the standard checks ===


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "msea", "pooling": "gap"},
        {"mode": "msfa", "pooling": "gap"},
        {"mode": "msea", "pooling": "sap", "projection_channels": 4},
        {"mode": "msea", "pooling": "lde", "projection_channels": 4},
    ],
)
def test_run_layer_test(kwargs):
    maps = list(pyramid(11, channels=3).values())
    run_layer_test(
        lambda: MultiScaleAggregation(embedding_dim=8, levels=[3, 4, 5], **kwargs),
        maps,
        expected_output_shape=(2, 8),
    )


def test_run_layer_test_with_pooling_layer_instance():
    maps = list(pyramid(11, channels=3).values())
    run_layer_test(
        lambda: MultiScaleAggregation(
            "msea", SelfAttentivePooling(attention_units=4), embedding_dim=8,
            descriptors="positions",
        ),
        maps,
        expected_output_shape=(2, 8),
        fit=False,
    )


def test_training_decreases_loss():
    y = np.array([0, 1] * 8)
    maps = pyramid(12, channels=4, batch=16, seed=9)
    maps = {k: v + 1.0 * y[:, None, None, None] for k, v in maps.items()}
    inputs = {k: keras.Input((None,) + v.shape[2:], name=k) for k, v in maps.items()}
    embedding = MultiScaleAggregation("msea", "lde", embedding_dim=8, projection_channels=4)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(embedding)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    before = model.evaluate(maps, y, verbose=0)
    model.fit(maps, y, epochs=6, batch_size=16, verbose=0)
    after = model.evaluate(maps, y, verbose=0)
    assert np.isfinite(after) and after < 0.8 * before


# === arguments and config ===


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "concat"},
        {"embedding_dim": 0},
        {"embedding_dim": None},
        {"projection_channels": -1},
        {"projection_channels": "none"},
        {"descriptors": "bins"},
        {"share_pooling": 1},
        {"l2_normalize": "yes"},
        {"level_units": 0},
        {"share_dense": None},
        {"msfa_resolution": "P4"},
        {"msfa_upsampling": "nearest"},
        {"levels": [4, 4]},
        {"pooling": 3},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received:"):
        MultiScaleAggregation(**kwargs)


def test_unknown_pooling_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"\['gap', 'lde', 'sap'\].*Received: pooling='tap'"):
        MultiScaleAggregation(pooling="tap")


def test_msfa_needs_consecutive_levels():
    maps = pyramid(8, levels=(3, 4, 5))
    with pytest.raises(ValueError, match="consecutive"):
        MultiScaleAggregation("msfa")({"P3": maps["P3"], "P5": maps["P5"]})


def test_get_config_round_trip():
    layer = MultiScaleAggregation(
        "msfa", TemporalAveragePooling(name="tap"), embedding_dim=64, levels=[3, 4, 5],
        projection_channels=None, descriptors="frames", share_pooling=False, l2_normalize=True,
        level_units=32, share_dense=False, msfa_resolution=4, msfa_upsampling="transposed",
        name="msa",
    )
    config = layer.get_config()
    clone = MultiScaleAggregation.from_config(config)
    assert clone.get_config() == config
    assert isinstance(clone.pooling, TemporalAveragePooling) and clone.pooling.name == "tap"
    assert config["mode"] == "msfa" and config["msfa_resolution"] == 4
    default = MultiScaleAggregation().get_config()
    assert default["projection_channels"] == "auto" and default["share_pooling"] == "auto"


def _backend_case(mode, pooling, **kwargs):
    def factory():
        layer = MultiScaleAggregation(
            mode, pooling, embedding_dim=6, projection_channels=4, **kwargs
        )
        return layer, pyramid(13, channels=3, ceil=False, seed=4), {"training": False}

    return factory


BACKEND_CASES = {
    "msea gap": _backend_case("msea", "gap"),
    "msfa gap bilinear": _backend_case("msfa", "gap"),
    "msfa gap transposed": _backend_case("msfa", "gap", msfa_upsampling="transposed"),
    "msea sap": _backend_case("msea", "sap"),
    "msea lde": _backend_case("msea", "lde"),
    "msfa lde": _backend_case("msfa", "lde"),
}
