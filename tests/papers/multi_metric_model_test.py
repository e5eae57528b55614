"""The multi-metric recipe's networks (Xu et al. 2020, sections 3.2 and 4.3) and trainers.

Parameter counts derived by hand. ResNet-50 (bottleneck blocks c -> 4f:
c f + 9 f^2 + 4 f^2 + 12 f trainable, plus 4 c f + 8 f with a projection
shortcut; stem 7 * 7 * 3 * 64 + 128) is torchvision's 25,557,032 less its
fc layer (2,048 * 1,000 + 1,000 = 2,049,000): 23,508,032. A residual
attention block on C channels with 16 squeeze units has 2 * 16 * C + 16 + C.
"""

import os

import keras
import numpy as np
import pytest

from keras_spk.layers import LossHead
from keras_spk.layers import ResidualAttention
from keras_spk.layers import SoftmaxHead
from papers.multi_metric.model import build_embedder
from papers.multi_metric.model import build_multi_metric_trainer
from papers.multi_metric.model import build_pretrainer
from papers.multi_metric.model import load_torchvision_resnet50
from papers.multi_metric.model import torchvision_names
from tests.test_case import to_numpy


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _bottleneck(c, f, projection):
    return c * f + 9 * f * f + 4 * f * f + 12 * f + (4 * c * f + 8 * f if projection else 0)


def _resnet50():
    total, c = 7 * 7 * 3 * 64 + 2 * 64, 64
    for f, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        total += _bottleneck(c, f, True) + (blocks - 1) * _bottleneck(4 * f, f, False)
        c = 4 * f
    return total


SMALL = {"embedding_dim": 16, "backbone_config": {"stackwise_num_filters": [4, 4, 8, 8], "stem_filters": 4}}


def test_embedder_and_trainer_parameter_counts():
    assert _resnet50() == 25_557_032 - 2_049_000 == 23_508_032
    attention = sum(2 * 16 * c + 16 + c for c in (256, 512, 1024))
    assert attention == 8_464 + 16_912 + 33_808 == 59_184
    head = 2 * 2048 + (2048 * 1024 + 1024) + 2 * 1024  # BN(2048), FC, BN(1024)
    assert head == 2_104_320
    embedder = build_embedder()
    assert _count(embedder.trainable_weights) == 23_508_032 + 59_184 + 1 + 2_104_320 == 25_671_537
    backbone = embedder.get_layer("resnet")
    attention_layers = [layer for layer in backbone.layers if isinstance(layer, ResidualAttention)]
    assert len(attention_layers) == 3
    assert sum(layer.count_params() for layer in attention_layers) == 59_184
    prelus = [layer for layer in backbone.layers if isinstance(layer, keras.layers.PReLU)]
    assert len(prelus) == 1 and prelus[0].count_params() == 1
    trainer = build_pretrainer(embedder, 5994)
    assert trainer.get_layer("classifier").count_params() == 1024 * 5994 + 5994 == 6_143_850
    assert _count(trainer.trainable_weights) == 31_815_387
    # Without attention: 25,671,537 - 59,184.
    assert _count(build_embedder(attention=False).trainable_weights) == 25_612_353


def test_pyramid_shapes_on_a_300_by_161_input():
    embedder = build_embedder()
    backbone = embedder.get_layer("resnet")
    outputs = backbone(np.zeros((1, 300, 161, 3), "float32"))
    assert {k: tuple(v.shape[1:]) for k, v in outputs.items()} == {
        "C2": (75, 41, 256),
        "C3": (38, 21, 512),
        "C4": (19, 11, 1024),
        "C5": (10, 6, 2048),
    }
    # The front-end: a 3-s crop of 48,160 samples is 300 frames of 161 bins, on 3 channels.
    frontend = keras.Model(embedder.input, embedder.get_layer("three_channels").output)
    features = to_numpy(frontend(np.random.default_rng(0).normal(size=(1, 48160)).astype("float32")))
    assert features.shape == (1, 300, 161, 3)
    np.testing.assert_array_equal(features[..., 0], features[..., 2])
    # Per-bin mean/variance normalisation over the utterance's frames.
    np.testing.assert_allclose(features[0, :, :, 0].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(features[0, :, :, 0].std(axis=0), 1.0, atol=1e-2)


def test_multi_metric_trainer_has_every_term_of_eq_14_and_logs_it():
    keras.utils.set_random_seed(0)
    embedder = build_embedder(**SMALL)
    trainer = build_multi_metric_trainer(embedder, 4)
    heads = {layer.name: layer for layer in trainer.layers if isinstance(layer, (LossHead, SoftmaxHead))}
    assert {name: head.weight if isinstance(head, LossHead) else head.loss_weight for name, head in heads.items()} == {
        "triplet": 1.0,
        "npair": 0.5,
        "angular": 1.0,
        "classifier": 0.1,
    }
    assert heads["triplet"].loss.distance == "cosine" and heads["triplet"].loss.margin == 0.5
    assert heads["npair"].loss.l2_reg == 0.02
    trainer.compile(optimizer=keras.optimizers.Adam(3e-4), loss=None)
    rng = np.random.default_rng(1)
    waveforms = rng.normal(size=(8, 8000)).astype("float32")
    labels = np.repeat(np.arange(4), 2).astype("int32")  # P x K = 4 x 2
    history = trainer.fit([waveforms, labels], epochs=1, batch_size=8, shuffle=False, verbose=0)
    logged = {k: v[0] for k, v in history.history.items()}
    for term in ("triplet_loss", "npair_loss", "classifier_loss"):
        assert np.isfinite(logged[term]) and logged[term] > 0, (term, logged)
    # The hinge of eq. 13 is 0 until a positive pair is further apart than the negatives allow
    # (||a - p||^2 > 4 tan^2(alpha) ||n - c||^2): 0 on these untrained embeddings.
    assert logged["angular_loss"] >= 0.0
    # Terms are logged weighted, as added: with no weight decay they sum to the loss.
    total = sum(logged[t] for t in ("triplet_loss", "npair_loss", "angular_loss", "classifier_loss"))
    assert total == pytest.approx(logged["loss"], rel=1e-4)


def test_the_authors_angular_form_is_an_option():
    # Wang et al.'s log-sum-exp form (the authors' code) is positive on any batch.
    embedder = build_embedder(**SMALL)
    trainer = build_multi_metric_trainer(embedder, 4, angular_form="npair")
    assert trainer.get_layer("angular").loss.form == "npair"
    trainer.compile(optimizer="adam", loss=None)
    waveforms = np.random.default_rng(5).normal(size=(8, 8000)).astype("float32")
    labels = np.repeat(np.arange(4), 2).astype("int32")
    history = trainer.fit([waveforms, labels], epochs=1, batch_size=8, verbose=0)
    assert history.history["angular_loss"][0] > 0
    with pytest.raises(ValueError, match="angular_form"):
        build_multi_metric_trainer(embedder, 4, angular_form="softplus")


def test_a_zero_weight_term_is_logged_as_zero():
    embedder = build_embedder(**SMALL)
    trainer = build_multi_metric_trainer(embedder, 4, npair_weight=0.0, angular_weight=0.0)
    trainer.compile(optimizer="adam", loss=None)
    waveforms = np.random.default_rng(2).normal(size=(4, 8000)).astype("float32")
    history = trainer.fit([waveforms, np.array([0, 0, 1, 1], "int32")], epochs=1, batch_size=4, verbose=0)
    assert history.history["npair_loss"] == [0.0] and history.history["angular_loss"] == [0.0]
    assert history.history["triplet_loss"][0] > 0


def _torchvision_state(backbone, rng):
    """A torchvision-named state dict of random tensors in PyTorch's layouts."""
    state = {}
    for ours, theirs in torchvision_names(backbone).items():
        try:
            layer = backbone.get_layer(ours)
        except ValueError:
            continue
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            state[f"{theirs}.weight"] = rng.normal(size=(cout, cin, kh, kw)).astype("float32")
        else:
            n = layer.gamma.shape[0]
            for key in ("weight", "bias", "running_mean"):
                state[f"{theirs}.{key}"] = rng.normal(size=(n,)).astype("float32")
            state[f"{theirs}.running_var"] = rng.uniform(0.5, 2.0, size=(n,)).astype("float32")
    state["fc.weight"] = rng.normal(size=(1000, 2048)).astype("float32")
    return state


def test_imagenet_initialisation_from_a_torchvision_state_dict(tmp_path):
    embedder = build_embedder(**SMALL)
    backbone = embedder.get_layer("resnet")
    state = _torchvision_state(backbone, np.random.default_rng(3))
    path = str(tmp_path / "resnet50.npz")
    np.savez(path, **state)
    # 1 stem conv + BN, 16 blocks x 3 convs + BNs, 4 projections (conv + BN).
    assert load_torchvision_resnet50(backbone, path) == 2 + 16 * 6 + 4 * 2
    np.testing.assert_array_equal(
        to_numpy(backbone.get_layer("stack2_block1_2_conv").kernel),
        np.transpose(state["layer2.0.conv2.weight"], (2, 3, 1, 0)),
    )
    bn = backbone.get_layer("stack4_block3_3_bn")
    np.testing.assert_array_equal(to_numpy(bn.moving_variance), state["layer4.2.bn3.running_var"])
    np.testing.assert_array_equal(to_numpy(bn.gamma), state["layer4.2.bn3.weight"])
    # A file of another network is refused with the tensor named.
    del state["layer3.1.conv2.weight"]
    np.savez(path, **state)
    with pytest.raises(ValueError, match="layer3.1.conv2.weight"):
        load_torchvision_resnet50(backbone, path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_torchvision_resnet50(backbone, str(tmp_path / "missing.pth"))
    wide = build_embedder(embedding_dim=16, backbone_config={"stackwise_num_filters": [4, 4, 8, 16], "stem_filters": 4})
    np.savez(path, **_torchvision_state(backbone, np.random.default_rng(4)))
    with pytest.raises(ValueError, match="shapes"):
        load_torchvision_resnet50(wide.get_layer("resnet"), path)
    assert os.path.exists(path)
