"""Tests of keras_spk.models.ResNetBackbone.

Run as a script (`KERAS_BACKEND=... python tests/models/resnet_test.py OUT.npz`),
this file computes its `BACKEND_CASES` under that backend; the cross-backend
test below uses it to compare the two backends.
"""

import sys

import keras
import numpy as np
import pytest

from keras_spk import models
from keras_spk.models import ResNetBackbone
from tests.test_case import OTHER_BACKEND
from tests.test_case import run_backend_case
from tests.test_case import run_python
from tests.test_case import set_seeded_weights
from tests.test_case import to_numpy


# Four stages, one block each, the FPM paper's strides: fast to run.
SMALL = {
    "stackwise_num_filters": [4, 8, 16, 32],
    "stackwise_num_blocks": [1, 1, 1, 1],
    "stackwise_num_strides": [1, 2, 2, 2],
    "stem_filters": 4,
    "feature_shape": (None, 16, 1),
}


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _features(batch, time, freq=16, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, time, freq, 1)).astype("float32")


def _shapes(outputs):
    return {key: tuple(value.shape) for key, value in outputs.items()}


# --------------------------------------------------------------------------
# 1. Parameter counts, derived by hand.
# --------------------------------------------------------------------------


def test_parameter_count_of_a_small_basic_block_network():
    backbone = ResNetBackbone(
        stackwise_num_filters=[4, 8, 16],
        stackwise_num_blocks=[2, 1, 2],
        stackwise_num_strides=[1, 2, (2, 1)],
        stem_filters=3,
        feature_shape=(None, 16, 1),
    )
    # Convolutions have no bias; each BN has 2 c trainable (gamma, beta) and
    # 2 c non-trainable (moving mean, variance) weights.
    # stem: 7x7 conv 1 -> 3 = 147, BN 6                                 -> 153
    # stage 1, block 1 (3 -> 4, projection shortcut since 3 != 4):
    #   3x3 3->4 = 108, 3x3 4->4 = 144, two BN 16, 1x1 3->4 = 12, BN 8  -> 288
    # stage 1, block 2 (4 -> 4): 144 + 144 + 16                         -> 304
    # stage 2, block 1 (4 -> 8, stride 2):
    #   3x3 4->8 = 288, 3x3 8->8 = 576, BN 32, 1x1 4->8 = 32, BN 16     -> 944
    # stage 3, block 1 (8 -> 16, stride (2, 1)):
    #   3x3 8->16 = 1152, 3x3 16->16 = 2304, BN 64, 1x1 8->16 = 128, BN 32 -> 3680
    # stage 3, block 2 (16 -> 16): 2304 + 2304 + 64                     -> 4672
    assert _count(backbone.trainable_weights) == 153 + 288 + 304 + 944 + 3680 + 4672 == 10041
    # BN channels: stem 3; stage 1: 4 + 4 + 4, 4 + 4; stage 2: 8 + 8 + 8;
    # stage 3: 16 + 16 + 16, 16 + 16 = 127 channels, 2 moving statistics each.
    assert _count(backbone.non_trainable_weights) == 2 * 127 == 254


def test_parameter_count_of_a_bottleneck_block_with_squeeze_excitation():
    backbone = ResNetBackbone(
        stackwise_num_filters=[2],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="bottleneck_block",
        stem_filters=4,
        use_squeeze_excitation=True,
        squeeze_excitation_ratio=4,
        feature_shape=(None, 8, 1),
    )
    # stem: 7x7 conv 1 -> 4 = 196, BN 8                                 -> 204
    # block (4 -> 4 * 2 = 8 channels):
    #   1x1 4->2 = 8, BN 4; 3x3 2->2 = 36, BN 4; 1x1 2->8 = 16, BN 16;
    #   shortcut 1x1 4->8 = 32, BN 16;
    #   SE on 8 channels, 8 // 4 = 2 units: 8*2 + 2 + 2*8 + 8 = 42     -> 174
    assert _count(backbone.trainable_weights) == 204 + 174 == 378
    assert _shapes(backbone(_features(1, 5, freq=8))) == {"C2": (1, 5, 8, 8)}


def test_paper_resnet_34_parameter_count():
    backbone = ResNetBackbone()  # FPM paper, Table 1
    # stem 7x7x1x32 + BN 64; per stage (c_in -> c, n blocks), 3x3 convolutions
    # 9 c_in c + (2 n - 1) 9 c^2, a 1x1 shortcut c_in c when c_in != c, and
    # 2 c per BN (2 n BNs, one more with a shortcut).
    stem = 49 * 32 + 64
    stage1 = 6 * 9 * 32 * 32 + 6 * 2 * 32
    stage2 = 9 * 32 * 64 + 7 * 9 * 64 * 64 + 32 * 64 + 9 * 2 * 64
    stage3 = 9 * 64 * 128 + 11 * 9 * 128 * 128 + 64 * 128 + 13 * 2 * 128
    stage4 = 9 * 128 * 256 + 5 * 9 * 256 * 256 + 128 * 256 + 7 * 2 * 256
    assert _count(backbone.trainable_weights) == stem + stage1 + stage2 + stage3 + stage4
    assert _count(backbone.trainable_weights) == 5_324_640


def test_multi_metric_paper_resnet_50_with_attention_and_prelu():
    # Xu et al. 2020 (section 4.3): torchvision's ResNet-50 on a 300 x 161
    # spectrogram copied to 3 channels, attention on C2-C4, PReLU in the last block.
    backbone = ResNetBackbone(
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        stem_filters=64,
        stem_kernel_size=7,
        stem_strides=2,
        stem_max_pooling=True,
        feature_shape=(300, 161, 3),
        stackwise_attention=[True, True, True, False],
        attention_units=16,
        final_block_activation="prelu",
    )
    # Bottleneck block c -> 4 f: 1x1 c f + 3x3 9 f^2 + 1x1 4 f^2 + BN 2 (f + f + 4 f)
    # = 12 f; a projection shortcut adds 1x1 4 c f + BN 8 f.
    def block(c, f, projection):
        return c * f + 9 * f * f + 4 * f * f + 12 * f + (4 * c * f + 8 * f if projection else 0)

    def stage(c, f, n):
        return block(c, f, True) + (n - 1) * block(4 * f, f, False)

    stem = 7 * 7 * 3 * 64 + 2 * 64  # 9,536
    stages = [stage(64, 64, 3), stage(256, 128, 4), stage(512, 256, 6), stage(1024, 512, 3)]
    # torchvision's per-layer counts: layer1 215,808 ... layer4 14,964,736.
    assert stages == [215_808, 1_219_584, 7_098_368, 14_964_736]
    resnet50 = stem + sum(stages)
    assert resnet50 == 23_508_032  # torchvision 25,557,032 - fc 2,049,000
    # ResidualAttention, U = 16 squeeze channels on C channels: kernels
    # C x U and U x C, biases U and C: 2 U C + U + C.
    attention = [2 * 16 * c + 16 + c for c in (256, 512, 1024)]
    assert attention == [8_464, 16_912, 33_808] and sum(attention) == 59_184
    per_layer = {
        layer.name: _count(layer.trainable_weights)
        for layer in backbone.layers
        if "attention" in layer.name or "prelu" in layer.name
    }
    assert per_layer == {
        "stack1_attention": 8_464,
        "stack2_attention": 16_912,
        "stack3_attention": 33_808,
        "stack4_block3_prelu": 1,  # one slope shared by the block's three activations
    }
    assert _count(backbone.trainable_weights) == resnet50 + 59_184 + 1 == 23_567_217
    # Non-trainable: the BN moving statistics, 2 per BN channel = the BN
    # trainable count: stem 2 * 64, then 12 f per block and 8 f per shortcut.
    bn = 2 * 64 + sum(12 * f * n + 8 * f for f, n in [(64, 3), (128, 4), (256, 6), (512, 3)])
    assert _count(backbone.non_trainable_weights) == bn == 53_120
    # Stem stride 2: (150, 81); max pooling: (75, 41); then stride 1, 2, 2, 2
    # with ceil: 75 -> 38 -> 19 -> 10 and 41 -> 21 -> 11 -> 6 (as PyTorch).
    assert _shapes(backbone.pyramid_outputs) == {
        "C2": (None, 75, 41, 256),
        "C3": (None, 38, 21, 512),
        "C4": (None, 19, 11, 1024),
        "C5": (None, 10, 6, 2048),
    }


# --------------------------------------------------------------------------
# 2. Shapes, variable length.
# --------------------------------------------------------------------------


def test_paper_output_shapes_for_a_3_second_input():
    backbone = ResNetBackbone()
    # Table 1 for T = 300: 64 x T x 32, 32 x T/2 x 64, 16 x T/4 x 128, 8 x T/8 x 256
    # (time first here; T/8 = 37.5 is rounded up by "same" padding).
    assert {key: tuple(t.shape) for key, t in backbone.pyramid_outputs.items()} == {
        "C2": (None, None, 64, 32),
        "C3": (None, None, 32, 64),
        "C4": (None, None, 16, 128),
        "C5": (None, None, 8, 256),
    }
    spec = backbone.compute_output_spec(keras.KerasTensor((2, 300, 64, 1)))
    assert _shapes(spec) == {
        "C2": (2, 300, 64, 32),
        "C3": (2, 150, 32, 64),
        "C4": (2, 75, 16, 128),
        "C5": (2, 38, 8, 256),
    }
    assert backbone.pyramid_levels == ["C2", "C3", "C4", "C5"]


@pytest.mark.parametrize("time", [1, 2, 7, 37, 64])
def test_variable_length_input_gives_ceil_halved_time(time):
    backbone = ResNetBackbone(**SMALL)
    out = backbone(_features(2, time), training=False)
    expected, t = {}, time
    for level, (freq, channels) in enumerate([(16, 4), (8, 8), (4, 16), (2, 32)]):
        expected[f"C{level + 2}"] = (2, t, freq, channels)
        t = -(-t // 2)
    assert _shapes(out) == expected
    assert all(np.all(np.isfinite(to_numpy(v))) for v in out.values())


def test_one_model_serves_every_length_inside_a_compiled_predict():
    backbone = ResNetBackbone(**SMALL)
    for time in (13, 40):
        out = backbone.predict(_features(1, time), verbose=0)
        assert out["C5"].shape == (1, -(-time // 8), 2, 32)


def test_time_frequency_strides_and_stem_options():
    backbone = ResNetBackbone(
        stackwise_num_filters=[4, 8],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[(1, 2), (2, 1)],
        stem_filters=4,
        stem_kernel_size=3,
        stem_strides=(1, 2),
        stem_max_pooling=True,
        feature_shape=(None, 32, 1),
    )
    # stem stride (1, 2): (20, 16); max pooling 2: (10, 8); stage 1 (1, 2):
    # (10, 4); stage 2 (2, 1): (5, 4).
    assert _shapes(backbone(_features(1, 20, freq=32))) == {
        "C2": (1, 10, 4, 4),
        "C3": (1, 5, 4, 8),
    }
    assert backbone.get_layer("stem_conv").kernel.shape == (3, 3, 1, 4)


def test_an_identity_block_adds_its_input():
    # With the residual branch's last BN scaled to zero, a block whose stride
    # and width do not change returns relu(x): the shortcut is the identity.
    backbone = ResNetBackbone(
        stackwise_num_filters=[3],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        stem_filters=3,
        feature_shape=(None, 6, 1),
    )
    bn = backbone.get_layer("stack1_block1_2_bn")
    bn.gamma.assign(np.zeros(3, "float32"))
    bn.beta.assign(np.zeros(3, "float32"))
    x = _features(1, 9, freq=6, seed=2)
    stem = keras.Model(backbone.input, backbone.get_layer("stem_relu").output)
    np.testing.assert_allclose(
        to_numpy(backbone(x)["C2"]), np.maximum(to_numpy(stem(x)), 0.0), atol=1e-6
    )
    with pytest.raises(ValueError):
        backbone.get_layer("stack1_block1_0_conv")  # no projection shortcut


def test_leaky_relu_is_the_activation_of_the_stem_and_every_block():
    # Heo et al. 2019 (section 4.1): leaky ReLU throughout. With slope 0 the
    # network is the ReLU one (same weights, same outputs); with slope 0.3
    # a negative pre-activation a is kept as 0.3 a.
    relu = ResNetBackbone(**SMALL)
    leaky = ResNetBackbone(**dict(SMALL, activation="leaky_relu", negative_slope=0.3))
    flat = ResNetBackbone(**dict(SMALL, activation="leaky_relu", negative_slope=0.0))
    set_seeded_weights(relu, seed=5, scale=0.3)
    leaky.set_weights(relu.get_weights())
    flat.set_weights(relu.get_weights())
    kinds = [type(layer).__name__ for layer in leaky.layers]
    # Stem, then two per basic block (after the first convolution and after the sum).
    assert kinds.count("LeakyReLU") == 1 + 2 * 4 and "ReLU" not in kinds
    assert all(
        layer.negative_slope == 0.3 for layer in leaky.layers if type(layer).__name__ == "LeakyReLU"
    )
    x = _features(2, 13, seed=6)
    expected, same = relu(x, training=False), flat(x, training=False)
    for key in expected:
        np.testing.assert_allclose(to_numpy(same[key]), to_numpy(expected[key]), atol=1e-6)
    assert np.abs(to_numpy(leaky(x, training=False)["C5"]) - to_numpy(expected["C5"])).max() > 1e-3
    # The stem's output, by hand: 0.3 a for a < 0.
    stem_bn = keras.Model(leaky.input, leaky.get_layer("stem_bn").output)(x, training=False)
    stem_act = keras.Model(leaky.input, leaky.get_layer("stem_relu").output)(x, training=False)
    a = to_numpy(stem_bn)
    np.testing.assert_allclose(to_numpy(stem_act), np.where(a > 0, a, 0.3 * a), atol=1e-6)
    assert leaky.get_config()["activation"] == "leaky_relu"
    assert ResNetBackbone.from_config(leaky.get_config()).get_config() == leaky.get_config()


def _copy_weights_by_name(source, target):
    """Gives every layer of `target` that `source` also has the source's weights."""
    names = {layer.name for layer in source.layers}
    for layer in target.layers:
        if layer.name in names and layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def test_attention_output_is_the_pyramid_level_and_the_next_stage_input():
    # Xu et al. (section 4.3): the attention masks are "added back into the
    # mainstream". With the excitation weights at zero, M = sigmoid(0) = 0.5
    # everywhere and F_o = F + 0.5 F = 1.5 F. Stage 2 starts with two bias-free
    # convolutions of its input (the 3x3 branch and the projection shortcut),
    # so reading 1.5 F is the same as reading F with both kernels scaled by
    # 1.5: a network without attention whose two kernels are scaled must give
    # the same C3..C5, and C2 = 1.5 times its C2.
    attended = ResNetBackbone(**dict(SMALL, stackwise_attention=[True, False, False, False]))
    plain = ResNetBackbone(**SMALL)
    set_seeded_weights(plain, seed=7, scale=0.3)
    _copy_weights_by_name(plain, attended)
    layer = attended.get_layer("stack1_attention")
    assert layer.bottleneck_units == 16 and tuple(layer.squeeze_kernel.shape) == (4, 16)
    layer.excite_kernel.assign(np.zeros((16, 4), "float32"))
    layer.excite_bias.assign(np.zeros(4, "float32"))
    x = _features(2, 19, seed=8)
    before = {key: to_numpy(v) for key, v in plain(x, training=False).items()}
    for name in ("stack2_block1_1_conv", "stack2_block1_0_conv"):
        kernel = plain.get_layer(name).kernel
        kernel.assign(1.5 * to_numpy(kernel))
    scaled = {key: to_numpy(v) for key, v in plain(x, training=False).items()}
    got = {key: to_numpy(v) for key, v in attended(x, training=False).items()}
    np.testing.assert_allclose(got["C2"], 1.5 * before["C2"], rtol=1e-5, atol=1e-5)
    for key in ("C3", "C4", "C5"):
        np.testing.assert_allclose(got[key], scaled[key], rtol=1e-4, atol=1e-4)
        assert np.abs(got[key] - before[key]).max() > 1e-2  # the scaling matters
    # The same symbolic tensor is the pyramid level and stage 2's input.
    assert attended.pyramid_outputs["C2"] is layer.output
    assert attended.get_layer("stack2_block1_1_conv").input is layer.output


def test_attention_on_every_flagged_stage_and_the_layer_names_stay():
    backbone = ResNetBackbone(**dict(SMALL, stackwise_attention=[False, True, False, True]))
    plain = ResNetBackbone(**SMALL)
    names = [layer.name for layer in backbone.layers]
    assert [name for name in names if "attention" in name] == [
        "stack2_attention",
        "stack4_attention",
    ]
    assert [name for name in names if "attention" not in name] == [
        layer.name for layer in plain.layers
    ]
    # Default ratio 16 is not used: 16 units even on 8 channels; 2 U C + U + C.
    assert _count(backbone.get_layer("stack2_attention").weights) == 2 * 16 * 8 + 16 + 8
    assert _count(backbone.get_layer("stack4_attention").weights) == 2 * 16 * 32 + 16 + 32
    assert backbone.pyramid_outputs["C5"] is backbone.get_layer("stack4_attention").output
    custom = ResNetBackbone(
        **dict(SMALL, stackwise_attention=[True, False, False, False], attention_units=3)
    )
    assert _count(custom.trainable_weights) - _count(plain.trainable_weights) == 2 * 3 * 4 + 3 + 4


@pytest.mark.parametrize("block_type, activations", [("basic_block", 2), ("bottleneck_block", 3)])
def test_final_block_prelu_is_one_shared_slope(block_type, activations):
    # The authors' code: one nn.PReLU() (a single slope, 0.25) for the three
    # activations of layer4's last block. With the slope at 0 the network is
    # the ReLU one; only the last block changes, so C2..C4 never differ.
    settings = dict(SMALL, block_type=block_type, stackwise_num_blocks=[1, 1, 1, 2])
    relu = ResNetBackbone(**settings)
    prelu = ResNetBackbone(**dict(settings, final_block_activation="prelu"))
    layers = [layer for layer in prelu.layers if isinstance(layer, keras.layers.PReLU)]
    assert [layer.name for layer in layers] == ["stack4_block2_prelu"]
    (alpha,) = layers[0].weights
    assert tuple(alpha.shape) == (1, 1, 1) and np.all(to_numpy(alpha) == 0.25)
    assert _count(prelu.trainable_weights) == _count(relu.trainable_weights) + 1
    # The block's ReLU layers are gone, those of every other block remain.
    relu_names = [layer.name for layer in relu.layers]
    prelu_names = [layer.name for layer in prelu.layers]
    replaced = [name for name in relu_names if name.startswith("stack4_block2_") and "relu" in name]
    replaced.append("stack4_block2_out")
    assert len(replaced) == activations
    assert [name for name in relu_names if name not in replaced] == [
        name for name in prelu_names if name != "stack4_block2_prelu"
    ]
    set_seeded_weights(relu, seed=9, scale=0.3)
    _copy_weights_by_name(relu, prelu)
    x = _features(2, 17, seed=10)
    expected = {key: to_numpy(v) for key, v in relu(x, training=False).items()}
    got = {key: to_numpy(v) for key, v in prelu(x, training=False).items()}
    for key in ("C2", "C3", "C4"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6)
    assert np.abs(got["C5"] - expected["C5"]).max() > 1e-3
    # Inside the block the same slope is applied: BN output a -> 0.25 a for a < 0.
    probe = keras.Model(
        prelu.input,
        [
            prelu.get_layer("stack4_block2_1_bn").output,
            prelu.get_layer("stack4_block2_2_conv").input,
            prelu.get_layer("stack4_block2_add").output,
        ],
    )
    bn, conv_input, added = (to_numpy(t) for t in probe(x, training=False))
    np.testing.assert_allclose(conv_input, np.where(bn > 0, bn, 0.25 * bn), atol=1e-6)
    np.testing.assert_allclose(got["C5"], np.where(added > 0, added, 0.25 * added), atol=1e-6)
    # One weight for all: slope 0 gives exactly the ReLU network.
    alpha.assign(np.zeros((1, 1, 1), "float32"))
    for key, value in prelu(x, training=False).items():
        np.testing.assert_allclose(to_numpy(value), expected[key], atol=1e-6)


def test_prelu_with_leaky_relu_elsewhere_and_a_single_block_stage():
    backbone = ResNetBackbone(
        **dict(SMALL, activation="leaky_relu", final_block_activation="prelu")
    )
    kinds = [type(layer).__name__ for layer in backbone.layers]
    # Stem and blocks 1-3 keep the leaky ReLU (1 + 2 * 3); the last block's
    # two activations are the one PReLU layer.
    assert kinds.count("LeakyReLU") == 7 and kinds.count("PReLU") == 1
    assert backbone.get_layer("stack4_block1_prelu") is not None


# --------------------------------------------------------------------------
# 3. Saving, config, registry, bad arguments.
# --------------------------------------------------------------------------


def test_config_round_trip_and_keras_file(tmp_path):
    backbone = ResNetBackbone(
        **dict(SMALL, block_type="bottleneck_block", use_squeeze_excitation=True), name="net"
    )
    config = backbone.get_config()
    clone = ResNetBackbone.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "net" and clone.count_params() == backbone.count_params()
    assert config["stackwise_attention"] == [False] * 4
    assert (config["attention_units"], config["final_block_activation"]) == (16, None)
    x = _features(2, 11)
    set_seeded_weights(backbone, seed=1, scale=0.3)
    path = tmp_path / "resnet.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ResNetBackbone)
    expected = backbone(x, training=False)
    got = restored(x, training=False)
    for key in expected:
        np.testing.assert_allclose(to_numpy(got[key]), to_numpy(expected[key]), atol=1e-5)


def test_attention_and_prelu_config_round_trip_and_keras_file(tmp_path):
    backbone = ResNetBackbone(
        **dict(
            SMALL,
            block_type="bottleneck_block",
            stackwise_attention=(True, True, True, False),
            attention_units=4,
            final_block_activation="prelu",
        )
    )
    config = backbone.get_config()
    assert config["stackwise_attention"] == [True, True, True, False]
    assert (config["attention_units"], config["final_block_activation"]) == (4, "prelu")
    assert ResNetBackbone.from_config(config).get_config() == config
    # A config written before these options existed still loads: no attention, ReLU.
    old = {k: v for k, v in config.items() if k not in ("stackwise_attention", "attention_units")}
    old.pop("final_block_activation")
    assert ResNetBackbone.from_config(old).count_params() == ResNetBackbone(
        **dict(SMALL, block_type="bottleneck_block")
    ).count_params()
    set_seeded_weights(backbone, seed=2, scale=0.3)
    path = tmp_path / "resnet.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    x = _features(2, 11)
    expected = backbone(x, training=False)
    got = restored(x, training=False)
    for key in expected:
        np.testing.assert_allclose(to_numpy(got[key]), to_numpy(expected[key]), atol=1e-5)
    np.testing.assert_array_equal(
        to_numpy(restored.get_layer("stack4_block1_prelu").alpha),
        to_numpy(backbone.get_layer("stack4_block1_prelu").alpha),
    )


def test_registry():
    assert models.get("resnet") is ResNetBackbone
    with pytest.raises(ValueError, match="Valid models"):
        models.get("resnet51")


def test_fit_step_trains_through_the_pyramid():
    backbone = ResNetBackbone(**SMALL)
    features = keras.Input((None, 16, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(features)["C5"])
    model = keras.Model(features, keras.layers.Dense(2)(pooled))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = to_numpy(backbone.get_layer("stem_conv").kernel).copy()
    history = model.fit(_features(4, 24), np.ones((4, 2), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.abs(to_numpy(backbone.get_layer("stem_conv").kernel) - before).max() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stackwise_num_filters": []}, "stackwise_num_filters"),
        ({"stackwise_num_blocks": [3, 4, 0, 3]}, "stackwise_num_blocks"),
        ({"stackwise_num_strides": [1, 2, 2]}, "one entry per stage"),
        ({"stackwise_num_strides": [1, 2, (2, 0), 2]}, "stackwise_num_strides"),
        ({"stackwise_num_strides": "2222"}, "stackwise_num_strides"),
        ({"block_type": "basic"}, "block_type"),
        ({"stem_filters": 0}, "stem_filters"),
        ({"stem_strides": (1, 2, 3)}, "stem_strides"),
        ({"stem_max_pooling": 1}, "stem_max_pooling"),
        ({"squeeze_excitation_ratio": 0}, "squeeze_excitation_ratio"),
        ({"feature_shape": (None, 64)}, "feature_shape"),
        ({"feature_shape": (None, 64, None)}, "feature_shape"),
        ({"activation": "gelu"}, "activation"),
        ({"negative_slope": -0.1}, "negative_slope"),
        ({"stackwise_attention": [True, True, True]}, "stackwise_attention"),
        ({"stackwise_attention": [1, 0, 0, 0]}, "stackwise_attention"),
        ({"stackwise_attention": True}, "stackwise_attention"),
        ({"stackwise_attention": "TTTF"}, "stackwise_attention"),
        ({"attention_units": 0}, "attention_units"),
        ({"attention_units": 16.0}, "attention_units"),
        ({"final_block_activation": "relu6"}, "final_block_activation"),
        ({"final_block_activation": "PReLU"}, "final_block_activation"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNetBackbone(**kwargs)


# --------------------------------------------------------------------------
# 4. Same weights, same outputs under both backends.
# --------------------------------------------------------------------------


def _backend_case(**overrides):
    def factory():
        settings = dict(SMALL, **overrides)
        return ResNetBackbone(**settings), _features(2, 21, seed=4), {"training": False}

    return factory


# Computed here and, in a subprocess, under the other backend (see
# `test_same_outputs_under_the_other_backend`).
BACKEND_CASES = {
    "basic blocks": _backend_case(),
    "bottleneck blocks with SE, stem pooling": _backend_case(
        block_type="bottleneck_block", use_squeeze_excitation=True, stem_max_pooling=True
    ),
    "leaky ReLU": _backend_case(activation="leaky_relu", negative_slope=0.3),
    "attention at C2-C4, PReLU last block": _backend_case(
        block_type="bottleneck_block",
        stackwise_attention=[True, True, True, False],
        attention_units=4,
        final_block_activation="prelu",
    ),
}


def compute_cases():
    """{"case|C2": array, ...} of every `BACKEND_CASES` entry under this backend."""
    out = {}
    for case, factory in BACKEND_CASES.items():
        for key, value in run_backend_case(factory, seed=3).items():
            out[f"{case}|{key}"] = np.asarray(value)
    return out


def test_same_outputs_under_the_other_backend(tmp_path):
    here = compute_cases()
    path = tmp_path / "other.npz"
    run_python([__file__, path], backend=OTHER_BACKEND[keras.backend.backend()])
    with np.load(path) as there:
        assert set(there.files) == set(here)
        for key in sorted(here):
            assert np.std(here[key]) > 1e-2, f"{key}: a degenerate output"
            np.testing.assert_allclose(
                there[key], here[key], rtol=1e-4, atol=1e-4, err_msg=f"{key} differs"
            )


if __name__ == "__main__":
    np.savez(sys.argv[1], **compute_cases())
