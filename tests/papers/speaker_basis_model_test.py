"""The speaker-basis recipe's networks (Heo et al. 2019, Tables 1 and 3) and losses (Table 2).

Parameter counts are derived by hand from the tables. No convolution has a
bias (each is followed by BN: 2c trainable, 2c non-trainable); a basic
block c -> f has 9cf + 9f^2 + 4f trainable weights, plus cf + 2f with a
projection shortcut (where the stride or the width changes).
"""

import keras
import numpy as np
import pytest

from keras_spk.layers import AMSoftmax
from keras_spk.layers import CenterLoss
from keras_spk.layers import SoftmaxHead
from keras_spk.layers import SpeakerBasis
from keras_spk.losses import GE2EHead
from keras_spk.scoring.dnn import DNNPairClassifier
from keras_spk.scoring.pairs import BVector
from papers.speaker_basis.model import LOSSES
from papers.speaker_basis.model import build_embedder
from papers.speaker_basis.model import build_speaker_basis_model
from tests.test_case import to_numpy


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _block(c, f, projection):
    return 9 * c * f + 9 * f * f + 4 * f + (c * f + 2 * f if projection else 0)


def _resnet34(stem_in, widths):
    """Trainable weights of a ResNet-34 (3, 4, 6, 3 basic blocks) with a 7x7 stem of widths[0]."""
    total = 7 * 7 * stem_in * widths[0] + 2 * widths[0]
    c = widths[0]
    for f, blocks in zip(widths, (3, 4, 6, 3)):
        total += _block(c, f, projection=c != f)
        total += (blocks - 1) * _block(f, f, projection=False)
        c = f
    return total


# Small widths so that the losses train in a test.
SMALL = {"num_mel_bins": 16, "backbone_config": {"stackwise_num_filters": [4, 4, 8, 8], "stem_filters": 4}}


def test_table_1_backbone_has_1_333_680_trainable_parameters():
    # stem 7*7*16 + 32 = 816; stage 1: 3 x 4,672 = 14,016; stage 2: 14,528 + 3 x 18,560 = 70,208;
    # stage 3: 57,728 + 5 x 73,984 = 427,648; stage 4: 230,144 + 2 x 295,424 = 820,992.
    assert 816 + 14_016 + 70_208 + 427_648 + 820_992 == 1_333_680 == _resnet34(1, [16, 32, 64, 128])
    embedder = build_embedder("vox1")
    backbone = embedder.get_layer("resnet")
    assert _count(backbone.trainable_weights) == 1_333_680
    # BN moving statistics: 2 per channel of every BN (stem, 16 blocks x 2, 3 projections).
    assert _count(backbone.non_trainable_weights) == 4_256
    # The pooled 128-d vector is the embedding (Table 1): nothing after the backbone has weights.
    assert embedder.count_params() == 1_333_680 + 4_256
    assert embedder.output.shape[-1] == 128


def test_table_1_output_shapes_for_300_frames():
    embedder = build_embedder("vox1")
    backbone = embedder.get_layer("resnet")
    outputs = backbone(np.zeros((1, 300, 64, 1), "float32"))
    # Table 1's l x 64 x 16, l/2 x 32 x 32, l/4 x 16 x 64, l/8 x 8 x 128 ("same" padding: ceil).
    assert {k: tuple(v.shape[1:]) for k, v in outputs.items()} == {
        "C2": (300, 64, 16),
        "C3": (150, 32, 32),
        "C4": (75, 16, 64),
        "C5": (38, 8, 128),
    }
    kinds = {type(layer).__name__ for layer in backbone.layers}
    assert "LeakyReLU" in kinds and "ReLU" not in kinds


def test_table_3_network_backbone_dense_and_output_layer():
    # Table 3: conv1 with 64 filters and stride (1, 2), stages of 64 / 128 / 256 / 512.
    assert _resnet34(1, [64, 128, 256, 512]) == 21_278_400
    trainer, embedder = build_speaker_basis_model(6112, "proposed_2", network="vox2", num_hard=100)
    backbone = embedder.get_layer("resnet")
    assert _count(backbone.trainable_weights) == 21_278_400
    assert _count(backbone.non_trainable_weights) == 17_024
    # Dense 512 -> 1024 (with bias) is the embedding; the output layer's W is 1024 x 6,112.
    assert embedder.get_layer("embedding").count_params() == 512 * 1024 + 1024 == 525_312
    assert trainer.get_layer("output_layer").count_params() == 1024 * 6112 == 6_258_688
    c5 = backbone(np.zeros((1, 300, 64, 1), "float32"))["C5"]
    assert tuple(c5.shape[1:]) == (38, 4, 512)  # ceil(l / 8) x 4 x 512


def test_table_2_output_layers_and_their_sizes():
    # Bases 128 x 1,211 = 155,008 (no bias) for L_H + L_BC; eq. 1's bias with softmax.
    sizes = {}
    for loss in LOSSES:
        trainer, _ = build_speaker_basis_model(1211, loss, num_hard=100)
        head = trainer.layers[-1]
        sizes[loss] = (type(head), head.count_params())
        if LOSSES[loss]["center"]:
            centers = trainer.get_layer("center_loss")
            assert isinstance(centers, CenterLoss)
            assert _count(centers.non_trainable_weights) == 155_008
            assert centers.weight == 1e-3 and centers.alpha == 0.5
    assert sizes == {
        "softmax": (SoftmaxHead, 156_219),
        "center": (SoftmaxHead, 156_219),
        "am_softmax": (AMSoftmax, 155_008),
        "ge2e": (GE2EHead, 2),
        "proposed_1": (SpeakerBasis, 156_219),
        "proposed_2": (SpeakerBasis, 155_008),
    }


def test_weight_decay_only_on_the_cosine_losses():
    # Section 4.1: L2 1e-4 on every kernel with AM-softmax, GE2E and Proposed 2 only.
    # ResNet-34: 1 stem + 16 x 2 block convolutions + 3 projections = 36 kernels.
    expected = {
        "softmax": 0,
        "center": 0,
        "proposed_1": 0,
        "am_softmax": 36 + 1,
        "ge2e": 36,
        "proposed_2": 36 + 1,
    }
    for loss, kernels in expected.items():
        trainer, _ = build_speaker_basis_model(50, loss, num_hard=5, **SMALL)
        regularized = [
            layer for layer in trainer._flatten_layers()
            if getattr(layer, "kernel_regularizer", None) is not None
            and not isinstance(layer, keras.Model)
        ]
        assert len(regularized) == kernels, loss
        assert all(float(layer.kernel_regularizer.l2) == pytest.approx(1e-4) for layer in regularized)
    trainer, _ = build_speaker_basis_model(50, "softmax", l2=1e-3, **SMALL)
    assert sum(1 for layer in trainer._flatten_layers() if getattr(layer, "kernel_regularizer", None)) >= 37


def test_proposed_heads_follow_table_2():
    trainer, _ = build_speaker_basis_model(50, "proposed_2", num_hard=7, **SMALL)
    head = trainer.get_layer("output_layer")
    assert (head.softmax_weight, head.hard_weight, head.num_hard, head.use_bias) == (0.0, 1.0, 7, False)
    assert (head.basis_weight, head.basis_reduction) == (5.0, "mean")
    trainer, _ = build_speaker_basis_model(50, "proposed_1", basis_reduction="sum", basis_weight=1.0, **SMALL)
    head = trainer.get_layer("output_layer")
    assert (head.softmax_weight, head.hard_weight, head.use_bias) == (1.0, 0.0, True)
    assert (head.basis_weight, head.basis_reduction) == (1.0, "sum")
    trainer, _ = build_speaker_basis_model(50, "am_softmax", **SMALL)
    head = trainer.get_layer("output_layer")
    assert (head.scale, head.margin) == (5.0, 0.35)


def test_b_vector_dnn_has_2_099_714_parameters():
    # b-vector [e + t, e - t, e * t] of two 1024-d embeddings: 3,072 inputs, three 512-unit
    # layers, two outputs: 3,072 * 512 + 512 + 2 * (512^2 + 512) + 512 * 2 + 2.
    assert 3072 * 512 + 512 + 2 * (512 * 512 + 512) + 1026 == 2_099_714
    rng = np.random.default_rng(0)
    pairs = rng.normal(size=(8, 2, 1024)).astype("float32")
    features = BVector().fit_transform(pairs.reshape(8, 2048))
    assert features.shape == (8, 3072)
    classifier = DNNPairClassifier(hidden_units=(512, 512, 512), epochs=1).fit(features, np.arange(8) % 2)
    assert classifier.model_.count_params() == 2_099_714


def test_num_hard_must_leave_a_negative():
    with pytest.raises(ValueError, match="num_hard.*at most num_speakers - 1 = 9"):
        build_speaker_basis_model(10, "proposed_2", num_hard=10, **SMALL)
    build_speaker_basis_model(10, "proposed_2", num_hard=9, **SMALL)
    build_speaker_basis_model(10, "proposed_1", num_hard=100, **SMALL)  # no L_H: H unused


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "triplet"}, "loss"),
        ({"network": "vox3"}, "network"),
        ({"backbone_config": {"activation": "relu"}}, "activation"),
        ({"embedding_activation": "tanh"}, "embedding_activation"),
        ({"pre_emphasis": 1.5}, "pre_emphasis"),
        ({"l2": -1.0}, "l2"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_speaker_basis_model(10, **{"num_hard": 5, **kwargs})


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_and_logs_its_terms(loss):
    keras.utils.set_random_seed(0)
    trainer, embedder = build_speaker_basis_model(4, loss, num_hard=2, **SMALL)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    rng = np.random.default_rng(1)
    waveforms = rng.normal(size=(8, 4000)).astype("float32")
    labels = np.repeat(np.arange(4), 2).astype("int32")  # 4 speakers x 2 utterances (GE2E's P x K)
    before = to_numpy(embedder.get_layer("resnet").get_layer("stem_conv").kernel).copy()
    history = trainer.fit([waveforms, labels], epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    after = to_numpy(embedder.get_layer("resnet").get_layer("stem_conv").kernel)
    assert np.abs(after - before).max() > 0
    expected_terms = {
        "softmax": {"output_layer_loss"},
        "center": {"output_layer_loss", "center_loss"},
        "am_softmax": {"output_layer_loss"},
        "ge2e": {"ge2e_loss"},
        "proposed_1": {"center_loss", "output_layer_softmax_loss", "output_layer_basis_loss"},
        "proposed_2": {"output_layer_basis_loss", "output_layer_hard_negative_loss"},
    }[loss]
    assert expected_terms <= set(history.history), sorted(history.history)
    # The embedder reads any length: a 0.5-s and a 1-s utterance.
    for samples in (8000, 16000):
        assert embedder.predict_on_batch(waveforms[:1, :1] * 0 + rng.normal(size=(1, samples))).shape == (
            1,
            8,
        )
