"""Tests of the FPM recipe's models (papers/fpm/model.py).

The paper's sizes are only built and counted (Table 2); everything that
runs uses a narrow backbone (`SMALL`), since the full ResNet-34 over 20 s
of audio is slow on CPU.
"""

import keras
import numpy as np
import pytest

from keras_spk import export
from papers.fpm.model import SYSTEMS
from papers.fpm.model import build_fpm_model
from papers.fpm.model import build_system
from papers.fpm.model import default_levels
from tests.helpers.export import check_serving_matches_keras
from tests.helpers.export import keras_embed
from tests.test_case import to_numpy

SAMPLE_RATE = 16000
VOXCELEB1_SPEAKERS = 1211
# The paper's stage layout (four stages, strides 1, 2, 2, 2) at a fraction of the width.
SMALL = {
    "stackwise_num_filters": [8, 8, 16, 16],
    "stackwise_num_blocks": [1, 1, 1, 1],
    "stem_filters": 8,
}

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export_saved_model runs under the TensorFlow backend only",
)


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _waveforms(batch, seconds, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, (batch, int(seconds * SAMPLE_RATE))).astype("float32")


# --------------------------------------------------------------------------
# 1. Table 2: parameter counts.
# --------------------------------------------------------------------------
#
# What is counted: the trainable parameters of the training model for
# VoxCeleb1 dev (1,211 speakers) with the softmax loss and GAP, as Table 2
# is. That is the ResNet-34 (bias-free convolutions, BN scale and shift), the
# FPM, the aggregation (1x1 and resampling convolutions, the embedding FC)
# and the 1,211-way softmax output layer with its bias. BN moving
# statistics are not counted: the paper's models are PyTorch models, whose
# `parameters()` leave out BN's running buffers.
#
# Why this reading:
# - The output layer is part of the count: without it every count is lower
#   by 156,219 and "Single" is 5,586,912 (-3.2 %), the MSEA FPM systems
#   5.60M / 5.62M (-4.0 %); with it six of the seven are within 1.8 %.
# - GAP averages each frame's whole frequency x channel vector over time
#   (8 x 256 = 2,048 features for C5): averaging over frequency as well
#   would give "Single" 5,513,755 (-4.4 %), while every other part of
#   "Single" is fixed by Table 1 (ResNet-34, 128-d embedding, output layer).
# - MSEA's 1x1 convolutions map to 64 channels (C3-C5) and keep the FPM's
#   32 (P3-P5): mapping the P maps to 64 as well would make FPM-B 5,988,251
#   (+2.7 %) and larger than MSEA without FPM, against the paper's own
#   statement (sections 3.2, 5.1) that the FPM has fewer parameters.
#
# MSFA without FPM cannot be brought within 2 % together with the other six
# (it is 6,435,419, +3.8 % over 6.20M): its fused C4-resolution map has
# 64 + 128 + 256 = 448 channels x 16 frequency bins = 7,168 frame features,
# so the embedding FC alone has 917,632 weights. The paper's figures imply
# MSFA w/o FPM - MSFA FPM-B = 0.38M; the FPM's fused map has 96 channels,
# so each of the 352 extra channels would cost ~1,100 parameters, while GAP
# over frames at C4 costs 16 x 128 = 2,048 per channel (difference 0.71M)
# and GAP over positions 128 (0.03M). A 1x1 reduction before pooling moves
# all three MSFA systems together (to 64/32 channels: MSFA FPM-B 5.60M,
# -3.8 %; w/o FPM 5.68M, -8.4 %), and fusing at C5's 8 bins instead (against
# "C5 is upsampled", section 5.1) fits w/o FPM (6.16M) but drops FPM-B and
# FPM-TC to 5.65M / 5.67M (-2.9 % / -3.1 %). So no single structure
# matches all three MSFA counts; the one here follows the text.


def conv(kernel, c_in, c_out):
    """Conv2D with bias (FPM, aggregation): kernel^2 c_in c_out + c_out."""
    return kernel * kernel * c_in * c_out + c_out


def dense(units_in, units_out):
    return units_in * units_out + units_out


BACKBONE = 5_324_640  # ResNet-34 of Table 1, derived in tests/models/resnet_test.py
OUTPUT_LAYER = dense(128, VOXCELEB1_SPEAKERS)  # 156,219
# Laterals 1x1 C3, C4, C5 -> 32 and one 3x3 32 -> 32 per level: 42,176.
FPM_B = conv(1, 64, 32) + conv(1, 128, 32) + conv(1, 256, 32) + 3 * conv(3, 32, 32)
# Plus one 3x3 stride-2 transposed convolution 32 -> 32 per merge (P5->P4, P4->P3).
FPM_TC = FPM_B + 2 * conv(3, 32, 32)


def frames(channels):
    """Frame sizes (freq x channels) of C3, C4, C5 (32, 16, 8 bins) summed, at one width."""
    return (32 + 16 + 8) * channels


HEADS = {
    # GAP over the 8 x 256 frames of C5, FC to 128.
    "single": dense(8 * 256, 128),
    # C3 down by a 3x3 stride-2 conv (64 -> 64), C5 up bilinearly, concat at
    # C4 (16 bins x 448 channels), GAP, FC to 128.
    "msfa": conv(3, 64, 64) + dense(16 * (64 + 128 + 256), 128),
    # The same on the 32-channel P maps: concat 16 bins x 96 channels.
    "msfa_fpm_b": FPM_B + conv(3, 32, 32) + dense(16 * 96, 128),
    "msfa_fpm_tc": FPM_TC + conv(3, 32, 32) + dense(16 * 96, 128),
    # 1x1 C3, C4, C5 -> 64, GAP per level, concat, FC to 128.
    "msea": conv(1, 64, 64) + conv(1, 128, 64) + conv(1, 256, 64) + dense(frames(64), 128),
    # 1x1 P3, P4, P5 32 -> 32, GAP per level, concat, FC to 128.
    "msea_fpm_b": FPM_B + 3 * conv(1, 32, 32) + dense(frames(32), 128),
    "msea_fpm_tc": FPM_TC + 3 * conv(1, 32, 32) + dense(frames(32), 128),
}
PAPER_MILLIONS = {
    "single": 5.77,
    "msfa": 6.20,
    "msfa_fpm_b": 5.82,
    "msfa_fpm_tc": 5.85,
    "msea": 5.90,
    "msea_fpm_b": 5.83,
    "msea_fpm_tc": 5.85,
}
TABLE_2 = list(PAPER_MILLIONS)


@pytest.fixture(scope="module")
def table_2_counts():
    counts = {}
    for name in TABLE_2:
        trainer, embedder = build_system(name, VOXCELEB1_SPEAKERS)
        counts[name] = (_count(trainer.trainable_weights), _count(embedder.trainable_weights))
    return counts


def test_hand_derivation_of_the_parts():
    assert (FPM_B, FPM_TC - FPM_B, OUTPUT_LAYER) == (42_176, 18_496, 156_219)
    expected = {name: BACKBONE + head + OUTPUT_LAYER for name, head in HEADS.items()}
    assert expected == {
        "single": 5_743_131,
        "msfa": 6_435_419,
        "msfa_fpm_b": 5_729_019,
        "msfa_fpm_tc": 5_747_515,
        "msea": 5_968_603,
        "msea_fpm_b": 5_755_707,
        "msea_fpm_tc": 5_774_203,
    }


@pytest.mark.parametrize("name", TABLE_2)
def test_parameter_count_is_the_hand_derived_one(name, table_2_counts):
    trainer_count, embedder_count = table_2_counts[name]
    assert trainer_count == BACKBONE + HEADS[name] + OUTPUT_LAYER
    # The embedder is the trainer without its output layer.
    assert embedder_count == trainer_count - OUTPUT_LAYER


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(
                strict=True,
                reason="MSFA w/o FPM is 6.44M, +3.8 % over the paper's 6.20M; no reading "
                "of the paper fits all three MSFA counts (see the comment above)",
            ),
        )
        if name == "msfa"
        else name
        for name in TABLE_2
    ],
)
def test_parameter_count_within_2_percent_of_table_2(name, table_2_counts):
    count = table_2_counts[name][0]
    paper = PAPER_MILLIONS[name] * 1e6
    assert abs(count - paper) / paper < 0.02, f"{name}: {count:,} vs the paper's {paper:,.0f}"


def test_fpm_tc_above_fpm_b_and_both_below_msea_without_fpm(table_2_counts):
    counts = {name: table_2_counts[name][0] for name in TABLE_2}
    # Section 5.1: "FPM-TC has slightly more parameters than FPM-B because the
    # transposed convolutional layer has learnable parameters"; "by adding the
    # FPM, we obtain better performance with fewer parameters".
    for mode in ("msea", "msfa"):
        assert counts[f"{mode}_fpm_b"] < counts[f"{mode}_fpm_tc"] < counts[mode]
        assert counts[f"{mode}_fpm_tc"] - counts[f"{mode}_fpm_b"] == 2 * conv(3, 32, 32)


# --------------------------------------------------------------------------
# 2. The systems' structure: stage sets, sharing, heads.
# --------------------------------------------------------------------------


def test_default_levels_follow_sections_5_1_and_5_2():
    assert default_levels("single", "gap") == [5]
    assert default_levels("msea", "gap") == [3, 4, 5]
    assert default_levels("msfa", "sap") == [3, 4, 5]
    # "For the LDE layer, we only aggregate features from stage 3 and 4".
    assert default_levels("msea", "lde") == [4, 5]


def test_lde_head_is_shared_across_levels():
    trainer, _ = build_system("msea_fpm_tc", 5, pooling="lde", backbone_config=SMALL)
    aggregation = trainer.get_layer("aggregation")
    assert aggregation.levels == [4, 5]
    # One 1x1 convolution to 64 channels per level, one LDE (64 codewords)
    # and one FC to 128 for all levels, then FC 2 x 128 -> 128.
    assert [tuple(p.kernel.shape) for p in aggregation.projections] == [(1, 1, 32, 64)] * 2
    (lde,) = aggregation.poolings
    assert tuple(lde.codewords.shape) == (64, 64)
    (shared_fc,) = aggregation.level_denses
    assert tuple(shared_fc.kernel.shape) == (64 * 64, 128)
    assert tuple(aggregation.embedding_dense.kernel.shape) == (2 * 128, 128)
    assert len(trainer.get_layer("feature_pyramid").lateral_convs) == 2


def test_single_lde_is_conv_lde_l2_fc():
    trainer, _ = build_system("single", 5, pooling="lde", backbone_config=SMALL)
    aggregation = trainer.get_layer("aggregation")
    assert aggregation.levels == [5]
    assert [tuple(p.kernel.shape) for p in aggregation.projections] == [(1, 1, 16, 64)]
    assert not aggregation.level_denses  # L2 then the embedding FC itself
    assert tuple(aggregation.embedding_dense.kernel.shape) == (64 * 64, 128)


def test_sap_layers_are_not_shared():
    trainer, _ = build_system("msea", 5, pooling="sap", backbone_config=SMALL)
    aggregation = trainer.get_layer("aggregation")
    assert len({id(p) for p in aggregation.poolings}) == 3
    # Frames of C3, C4, C5 (32, 16, 8 bins) after the 1x1 convolutions to
    # min(64, 8) = 8 channels (SMALL's C3 has 8), 128 attention units each.
    sizes = [tuple(p.weights[0].shape) for p in aggregation.poolings]
    assert sizes == [(32 * 8, 128), (16 * 8, 128), (8 * 8, 128)]


def test_table_4_systems():
    trainer, embedder = build_system("proposed_1", 7, embedding_dim=256, backbone_config=SMALL)
    assert trainer.get_layer("aggregation").levels == [2, 3, 4, 5]
    pyramid = trainer.get_layer("feature_pyramid")
    assert pyramid.upsampling == "transposed" and len(pyramid.lateral_convs) == 4
    assert trainer.get_layer("output_layer").__class__.__name__ == "ASoftmax"
    assert trainer.get_layer("ring_loss").weight == 0.01
    assert tuple(embedder.output.shape) == (None, 256)
    trainer, _ = build_system("proposed_2", 7, backbone_config=SMALL)
    assert trainer.get_layer("aggregation").levels == [3, 4, 5]
    assert trainer.get_layer("aggregation").pooling == "lde"
    assert set(SYSTEMS) >= set(TABLE_2) | {"proposed_1", "proposed_2"}


def test_embedder_shares_the_trainers_layers():
    trainer, embedder = build_system("msfa_fpm_b", 5, backbone_config=SMALL)
    for name in ("log_mel", "resnet", "feature_pyramid", "aggregation"):
        assert trainer.get_layer(name) is embedder.get_layer(name)
    assert trainer.get_layer("log_mel").num_mel_bins == 64


def test_keras_file_round_trip_of_the_embedder(tmp_path):
    keras.utils.set_random_seed(11)
    # SAP: the aggregation holds pooling layer instances, one per level.
    _, embedder = build_system("msea_fpm_tc", 5, pooling="sap", backbone_config=SMALL)
    embedder.save(tmp_path / "embedder.keras")
    restored = keras.saving.load_model(tmp_path / "embedder.keras")
    x = _waveforms(1, 0.75, seed=12)
    np.testing.assert_allclose(
        to_numpy(restored(x, training=False)), to_numpy(embedder(x, training=False)), atol=1e-6
    )


# --------------------------------------------------------------------------
# 3. Variable-length inference.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, pooling",
    [("single", "gap"), ("msfa_fpm_b", "gap"), ("msea_fpm_tc", "sap"), ("msea_fpm_tc", "lde")],
)
def test_embeddings_of_half_a_second_and_twenty_seconds(name, pooling):
    keras.utils.set_random_seed(1)
    _, embedder = build_system(name, 5, pooling=pooling, backbone_config=SMALL)
    embeddings = []
    for seconds in (0.5, 20.0):
        out = to_numpy(embedder(_waveforms(1, seconds, seed=2), training=False))
        assert out.shape == (1, 128)
        assert np.all(np.isfinite(out))
        embeddings.append(out)
    assert np.abs(embeddings[0] - embeddings[1]).max() > 1e-4


# --------------------------------------------------------------------------
# 4. Training: the added losses, one fit step.
# --------------------------------------------------------------------------


def test_softmax_trainer_adds_cross_entropy_and_weight_decay():
    keras.utils.set_random_seed(3)
    trainer, _ = build_system("msea_fpm_tc", 4, backbone_config=SMALL, l2=1e-3)
    x, labels = _waveforms(3, 0.5, seed=4), np.array([0, 3, 1])
    logits = to_numpy(trainer([x, labels], training=False))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    cross_entropy = -np.mean(log_probs[np.arange(3), labels])
    # Weight decay: 1e-3 * ||W||^2 on every convolution, FC and output kernel:
    # backbone 12 (stem; 2 + 3 + 3 + 3 in the stages, with 3 shortcuts),
    # FPM-TC 8 (3 laterals, 3 3x3, 2 transposed), aggregation 4 (3 1x1, the
    # embedding FC), the output layer 1.
    kernels = [w for w in trainer.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) == 12 + 8 + 4 + 1
    decay = 1e-3 * sum(float(np.sum(to_numpy(w) ** 2)) for w in kernels)
    total = sum(float(to_numpy(loss)) for loss in trainer.losses)
    np.testing.assert_allclose(total, cross_entropy + decay, rtol=1e-4)


def test_a_softmax_trainer_adds_ring_loss():
    keras.utils.set_random_seed(5)
    trainer, embedder = build_system(
        "msea_fpm_b", 4, head="a_softmax", ring_loss_weight=0.5, l2=0.0, backbone_config=SMALL
    )
    x, labels = _waveforms(2, 0.5, seed=6), np.array([1, 2])
    trainer([x, labels], training=False)
    losses = [float(to_numpy(loss)) for loss in trainer.losses]
    norms = np.linalg.norm(to_numpy(embedder(x, training=False)), axis=1)
    radius = float(to_numpy(trainer.get_layer("ring_loss").radius))
    ring = 0.5 * 0.5 * np.mean((norms - radius) ** 2)
    assert len(losses) == 2  # ring loss, A-softmax
    np.testing.assert_allclose(losses[0], ring, rtol=1e-4)
    assert np.isfinite(losses[1]) and losses[1] > 0


def test_fit_step_updates_every_part():
    keras.utils.set_random_seed(7)
    trainer, _ = build_system("msea_fpm_tc", 3, head="a_softmax", backbone_config=SMALL)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=None)
    parts = ["resnet", "feature_pyramid", "aggregation", "output_layer"]
    before = {name: to_numpy(trainer.get_layer(name).trainable_weights[0]).copy() for name in parts}
    x, labels = _waveforms(3, 1.0, seed=8), np.array([0, 1, 2])
    history = trainer.fit([x, labels], epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for name in parts:
        after = to_numpy(trainer.get_layer(name).trainable_weights[0])
        assert np.abs(after - before[name]).max() > 0, f"{name} did not train"


def test_embedding_batch_norm_normalises_the_embedders_output():
    keras.utils.set_random_seed(9)
    trainer, embedder = build_system(
        "msea_fpm_tc", 4, backbone_config=SMALL, embedding_batch_norm=True
    )
    plain_trainer, _ = build_system("msea_fpm_tc", 4, backbone_config=SMALL)
    # One BN over the 128-d embedding: gamma and beta train, the moving
    # statistics do not.
    assert _count(trainer.trainable_weights) == _count(plain_trainer.trainable_weights) + 2 * 128
    assert _count(trainer.non_trainable_weights) == _count(plain_trainer.non_trainable_weights) + 2 * 128
    bn = embedder.get_layer("embedding_bn")
    assert bn is trainer.get_layer("embedding_bn")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9)
    # BN(y) = gamma (y - mean) / sqrt(var + eps) + beta on the FC output y,
    # with the moving statistics at inference and the batch's in training.
    gamma, beta = np.linspace(0.5, 1.5, 128), np.linspace(-0.2, 0.2, 128)
    mean, var = np.linspace(-1.0, 1.0, 128), np.linspace(0.5, 2.0, 128)
    bn.set_weights([v.astype("float32") for v in (gamma, beta, mean, var)])
    x = _waveforms(4, 0.5, seed=10)
    fc = keras.Model(embedder.input, embedder.get_layer("aggregation").output)
    y = to_numpy(fc(x, training=False))
    np.testing.assert_allclose(
        to_numpy(embedder(x, training=False)),
        gamma * (y - mean) / np.sqrt(var + 1e-5) + beta,
        rtol=1e-4,
        atol=1e-4,
    )
    y = to_numpy(fc(x, training=True))
    batch = gamma * (y - y.mean(0)) / np.sqrt(y.var(0) + 1e-5) + beta
    np.testing.assert_allclose(to_numpy(embedder(x, training=True)), batch, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------
# 5. Bad arguments.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"aggregation": "msa"}, "aggregation"),
        ({"fpm": "fpm_tc"}, "fpm"),
        ({"pooling": "asp"}, "pooling"),
        ({"head": "aam_softmax"}, "head"),
        ({"aggregation": "single", "fpm": "bilinear"}, "no feature pyramid"),
        ({"aggregation": "single", "levels": [4, 5]}, "one level"),
        ({"levels": [4, 5, 6]}, "does not have"),
        ({"levels": "345"}, "levels"),
        ({"projection_channels": 0}, "projection_channels"),
        ({"backbone_config": {"feature_shape": (None, 40, 1)}}, "num_mel_bins"),
        ({"backbone_config": [32, 64]}, "backbone_config"),
        ({"embedding_batch_norm": "yes"}, "embedding_batch_norm"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_fpm_model(5, **kwargs)


def test_unknown_system_lists_the_valid_ones():
    with pytest.raises(ValueError, match="msea_fpm_tc"):
        build_system("msea_fpm", 5)


def test_one_speaker_is_an_error():
    with pytest.raises(ValueError, match="num_speakers"):
        build_fpm_model(1)


# --------------------------------------------------------------------------
# 6. SavedModel export (TensorFlow backend).
# --------------------------------------------------------------------------


def _seed(embedder, seed):
    """Weights that keep every layer in a useful range (kernels ~ 1 / sqrt(fan-in))."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in embedder.weights:
        shape = tuple(weight.shape)
        name = weight.path.split("/")[-1]
        if name in ("gamma", "moving_variance", "smoothing_factors"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        elif name == "codewords":
            value = rng.normal(0.0, 1.0, shape)
        else:  # biases, BN beta and moving mean
            value = rng.normal(0.0, 0.1, shape)
        values.append(value.astype("float32"))
    embedder.set_weights(values)
    return embedder


# Two lengths with different frame counts at every level: 0.5 s (48 frames,
# C5 6) and 23,456 samples (144 frames, C5 18).
EXPORT_LENGTHS = (8000, 23456)


@TF_ONLY
def test_saved_model_matches_keras_without_keras(tmp_path):
    # "Proposed 2" (Table 4): MSEA with FPM-TC and LDE on C3-C5, with the
    # embedding BN of the recipe's configs.
    _, embedder = build_system("proposed_2", 5, backbone_config=SMALL, embedding_batch_norm=True)
    _seed(embedder, seed=9)
    path = export.export_saved_model(embedder, tmp_path / "fpm" / "1")
    singles, _, _ = check_serving_matches_keras(tmp_path, embedder, path, EXPORT_LENGTHS, batch=2, dim=128)
    for x in singles:
        assert np.std(keras_embed(embedder, x)) > 1e-2  # a non-degenerate embedding
