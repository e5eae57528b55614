"""MIRNet's model (Han et al. 2020, section 3 and Table 1): parameter counts, shapes, PIT training.

Parameter counts derived by hand (K = 2 speakers per mixture, D = 257 bins):

- encoder, Conv1D with bias, `k * c_in * c_out + c_out`:
  conv1 5 * 257 * 512 + 512 = 658,432; conv2, conv3 3 * 512^2 + 512 = 786,944;
  conv4 512^2 + 512 = 262,656; conv5 512 * 1500 + 1500 = 769,500;
  conv6 1500 * 514 + 514 = 771,514; in all 4,035,990.
- attention: fc1 514 * 64 + 64 = 32,960, fc2 64 + 1 = 65: 33,025;
  FC 514 * 257 + 257 = 132,355.
- ResNet-18 on one channel: torchvision's 11,689,512 less fc
  (512 * 1000 + 1000 = 513,000) less 6,272 (a 7 x 7 x 64 stem on one
  channel instead of three: 49 * 64 * 2) = 11,170,240.
- classifier: 512 * 2,338 + 2,338 = 1,199,394.
- trainer: 4,035,990 + 33,025 + 132,355 + 11,170,240 + 1,199,394 = 16,571,004.
"""

import os

import keras
import numpy as np
import pytest

from keras_spk.layers import ChannelExchange
from keras_spk.layers import LossHead
from keras_spk.layers import SpectralAttention
from keras_spk.losses import PermutationInvariantLoss
from papers.mirnet.model import LIBRISPEECH_TRAIN_SPEAKERS
from papers.mirnet.model import build_mirnet
from tests.test_case import to_numpy

SMALL = {
    "encoder_filters": (16, 16, 16, 16, 24),
    "attention_units": 8,
    "resnet_filters": (4, 4, 8, 8),
}


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _basic_block(c, f, projection):
    """Trainable parameters of a basic block c -> f: two 3x3 convs + BNs (+ 1x1 conv + BN)."""
    return 9 * c * f + 9 * f * f + 4 * f + (c * f + 2 * f if projection else 0)


def _resnet18(in_channels):
    total, c = 7 * 7 * in_channels * 64 + 2 * 64, 64
    for f in (64, 128, 256, 512):
        total += _basic_block(c, f, c != f) + _basic_block(f, f, False)
        c = f
    return total


def test_parameter_counts():
    encoder = [5 * 257 * 512 + 512, 3 * 512 * 512 + 512, 3 * 512 * 512 + 512,
               512 * 512 + 512, 512 * 1500 + 1500, 1500 * 514 + 514]
    assert encoder == [658_432, 786_944, 786_944, 262_656, 769_500, 771_514]
    assert sum(encoder) == 4_035_990
    assert _resnet18(3) + 512 * 1000 + 1000 == 11_689_512  # torchvision's resnet18
    assert _resnet18(1) == 11_689_512 - 513_000 - 6_272 == 11_170_240
    assert LIBRISPEECH_TRAIN_SPEAKERS == 2_338

    trainer, embedder = build_mirnet(LIBRISPEECH_TRAIN_SPEAKERS)
    assert [trainer.get_layer(f"conv{i}").count_params() for i in range(1, 7)] == encoder
    attention = trainer.get_layer("spectral_attention")
    fc1_fc2 = _count([attention.attention_kernel, attention.attention_bias,
                      attention.score_kernel, attention.score_bias])
    assert fc1_fc2 == 32_960 + 65 == 33_025
    assert _count([attention.output_kernel, attention.output_bias]) == 132_355
    resnet = trainer.get_layer("resnet")
    assert _count(resnet.trainable_weights) == 11_170_240
    # BN moving mean and variance over the BN channels: the stem's 64, two per block
    # (2 blocks per stage) and one per projection shortcut (stages 2-4).
    bn_channels = 64 + 4 * 64 + (4 * 128 + 128) + (4 * 256 + 256) + (4 * 512 + 512)
    assert bn_channels == 4_800
    assert _count(resnet.non_trainable_weights) == 2 * bn_channels == 9_600
    assert trainer.get_layer("classifier").count_params() == 512 * 2338 + 2338 == 1_199_394
    assert _count(embedder.trainable_weights) == 16_571_004 - 1_199_394 == 15_371_610
    assert _count(trainer.trainable_weights) == (
        4_035_990 + 33_025 + 132_355 + 11_170_240 + 1_199_394
    ) == 16_571_004
    assert _count(trainer.non_trainable_weights) == 9_600
    # No loss-adding classifier: the only loss is the PIT LossHead.
    heads = [layer for layer in trainer.layers if isinstance(layer, LossHead)]
    assert [head.name for head in heads] == ["pit"]
    assert isinstance(heads[0].loss, PermutationInvariantLoss)
    assert isinstance(trainer.get_layer("classifier"), keras.layers.Dense)


def test_shapes_of_a_three_second_mixture():
    trainer, embedder = build_mirnet(LIBRISPEECH_TRAIN_SPEAKERS)
    attention = embedder.get_layer("spectral_attention")
    z = attention.output
    probe = keras.Model(
        embedder.input,
        [
            embedder.get_layer("log_spectrogram").output,
            embedder.get_layer("conv6").output,
            embedder.get_layer("conv6_leaky_relu").output,
            *z,
            embedder.output,
        ],
    )
    mixture = np.random.default_rng(0).normal(size=(1, 48000)).astype("float32")
    spectrum, conv6, v1, z1, z2, embeddings = [to_numpy(t) for t in probe(mixture)]
    assert spectrum.shape == (1, 297, 257)
    assert v1.shape == (1, 297, 514)
    assert z1.shape == z2.shape == (1, 297, 257)
    _, scores = attention(ChannelExchange(2)(v1), return_attention_scores=True)
    assert [tuple(w.shape) for w in scores] == [(1, 297, 1)] * 2
    c5 = embedder.get_layer("resnet")(z1[..., None])["C5"]
    assert tuple(c5.shape) == (1, 10, 9, 512)
    assert embeddings.shape == (1, 2, 512)
    # The embedding is the mean of C5 over frequency and time, per identity.
    np.testing.assert_allclose(
        embeddings[0, 0], to_numpy(c5)[0].mean(axis=(0, 1)), rtol=1e-4, atol=1e-5
    )
    # V_1 is a leaky ReLU's output (slope 0.2 after conv6 too).
    assert conv6.min() < 0
    np.testing.assert_allclose(v1, np.where(conv6 >= 0, conv6, 0.2 * conv6), rtol=1e-6, atol=1e-7)
    assert trainer.output.shape == (None, 2, 2338)


def test_encoder_layers_follow_table_1():
    _, embedder = build_mirnet(10)
    for number, (filters, kernel) in enumerate(
        zip((512, 512, 512, 512, 1500, 514), (5, 3, 3, 1, 1, 1)), start=1
    ):
        conv = embedder.get_layer(f"conv{number}")
        assert (conv.filters, conv.kernel_size, conv.padding, conv.use_bias) == (
            filters, (kernel,), "same", True
        )
        assert embedder.get_layer(f"conv{number}_leaky_relu").negative_slope == pytest.approx(0.2)
    attention = embedder.get_layer("spectral_attention")
    assert (attention.units, attention.output_dim, attention.attend) == (64, 257, "v1")
    resnet = embedder.get_layer("resnet")
    assert resnet.stackwise_num_blocks == [2, 2, 2, 2] and resnet.block_type == "basic_block"
    stem = (resnet.stem_kernel_size, resnet.stem_strides, resnet.stem_max_pooling)
    assert stem == (7, [2, 2], True)
    # Three speakers: conv6 is 3 x 257 wide and there are three embeddings.
    _, embedder = build_mirnet(10, num_identities=3, **SMALL)
    assert embedder.get_layer("conv6").filters == 771
    assert tuple(embedder.output.shape) == (None, 3, 8)


def _fixed_assignment_losses(logits, labels):
    """Cross-entropy summed over the speakers for each of the two assignments (eq. 4, 5)."""
    top = logits.max(axis=-1, keepdims=True)
    log_probs = logits - top - np.log(np.sum(np.exp(logits - top), axis=-1, keepdims=True))
    rows = np.arange(len(labels))

    def ce(estimate, label):
        return -log_probs[rows, estimate, labels[:, label]]

    l1 = ce(0, 0) + ce(1, 1)  # y_1 <-> y_A, y_2 <-> y_B
    l2 = ce(1, 0) + ce(0, 1)  # y_2 <-> y_A, y_1 <-> y_B
    return l1, l2


def test_pit_loss_is_the_minimum_of_the_two_assignments():
    keras.utils.set_random_seed(1)
    trainer, embedder = build_mirnet(6, **SMALL)
    rng = np.random.default_rng(2)
    mixtures = rng.normal(size=(6, 16000)).astype("float32")
    # A classifier scaled to the embeddings, so that the logits are spread out.
    scale = 3.0 / to_numpy(embedder(mixtures)).std()
    trainer.get_layer("classifier").set_weights(
        [rng.normal(0, scale, (8, 6)).astype("float32"), np.zeros(6, "float32")]
    )
    logits = to_numpy(trainer([mixtures, np.zeros((6, 2), "int32")], training=False))
    assert logits.shape == (6, 2, 6)
    # For each row, the labels (a, c) that favour assignment 1 most: a maximises and c
    # minimises log p_1 - log p_2 (eq. 4 minus eq. 5 = d[a] - d[c]); odd rows swapped.
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    d = log_probs[:, 0] - log_probs[:, 1]
    labels = np.stack([np.argmax(d, axis=1), np.argmin(d, axis=1)], axis=1).astype("int32")
    labels[1::2] = labels[1::2, ::-1]
    again = to_numpy(trainer([mixtures, labels], training=False))
    np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-5)  # labels do not change logits
    (pit,) = [to_numpy(loss) for loss in trainer.losses]
    l1, l2 = _fixed_assignment_losses(logits.astype("float64"), labels)
    np.testing.assert_allclose(pit, np.mean(np.minimum(l1, l2)), rtol=1e-5)
    assert np.all(l1[0::2] < l2[0::2] - 1e-3) and np.all(l2[1::2] < l1[1::2] - 1e-3)
    # PIT <= either fixed assignment, strictly here (each wins on half the rows).
    assert pit < l1.mean() and pit < l2.mean()


def test_small_model_trains_one_step_and_logs_pit_loss(tmp_path):
    keras.utils.set_random_seed(3)
    trainer, embedder = build_mirnet(6, **SMALL)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    rng = np.random.default_rng(4)
    mixtures = rng.normal(size=(4, 16000)).astype("float32")
    labels = np.array([[0, 1], [2, 3], [4, 5], [1, 3]], "int32")
    before = to_numpy(embedder(mixtures))
    history = trainer.fit([mixtures, labels], epochs=1, batch_size=4, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["loss"][0] > 0
    assert history["pit_loss"][0] == pytest.approx(history["loss"][0], rel=1e-5)
    after = to_numpy(embedder(mixtures))
    assert before.shape == after.shape == (4, 2, 8)
    assert not np.allclose(before, after)  # the embedder shares the trained layers
    # The embedder saves and reloads as it is.
    path = os.path.join(tmp_path, "embedder.keras")
    embedder.save(path)
    restored = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(to_numpy(restored(mixtures)), after, rtol=1e-5, atol=1e-5)


def test_attend_own_is_an_option():
    _, embedder = build_mirnet(6, attend="own", **SMALL)
    assert embedder.get_layer("spectral_attention").attend == "own"
    assert isinstance(embedder.get_layer("spectral_attention"), SpectralAttention)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"num_speakers": 1}, "num_speakers"),
        ({"num_speakers": 2.0}, "num_speakers"),
        ({"num_identities": 1}, "num_identities"),
        ({"num_identities": 9}, "num_identities"),
        ({"encoder_filters": (512, 0)}, "encoder_filters"),
        ({"encoder_kernels": (5, 3, 3, 1, 1)}, "encoder_kernels"),
        ({"attend": "v2"}, "attend"),
        ({"resnet_filters": []}, "resnet_filters"),
        ({"resnet_blocks": (2, 2, 2)}, "resnet_blocks"),
    ],
)
def test_bad_arguments_raise(kwargs, arg):
    kwargs = dict({"num_speakers": 10}, **kwargs)
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        build_mirnet(**kwargs)


def test_encoder_batch_norm_option_adds_one_bn_per_convolution():
    """4 * C parameters per BN (gamma, beta trainable; moving mean and variance not)."""
    plain, _ = build_mirnet(10, **SMALL)
    normed, _ = build_mirnet(10, encoder_batch_norm=True, **SMALL)
    channels = list(SMALL["encoder_filters"]) + [2 * 257]
    assert [normed.get_layer(f"conv{i}_bn").count_params() for i in range(1, 7)] == [4 * c for c in channels]
    assert normed.count_params() - plain.count_params() == 4 * sum(channels)


def test_views_share_batch_statistics_in_training():
    """The ResNet normalises both identities' views as one batch, as its moving statistics do.

    Once the moving statistics have converged to one batch's statistics
    (BN momentum 0.9: 150 training-mode calls on the same batch), the
    inference-mode embeddings of that batch equal the training-mode ones.
    Per-view batch statistics (the ResNet called once per identity) would
    leave the moving statistics between the two views' and the two modes
    apart.
    """
    _, embedder = build_mirnet(10, **SMALL)
    x = np.random.default_rng(0).normal(size=(2, 4000)).astype("float32") * 0.1
    for _ in range(150):
        training = to_numpy(embedder(x, training=True))
    inference = to_numpy(embedder(x, training=False))
    np.testing.assert_allclose(inference, training, rtol=1e-2, atol=1e-3)
    assert np.abs(training[:, 0] - training[:, 1]).max() > 1e-6
