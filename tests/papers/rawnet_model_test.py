"""Tests of the RawNet recipe's models (papers/rawnet/model.py).

Forward passes use short waveforms (a few thousand samples) and few
speakers, since a 1024-unit GRU over 59,049-sample crops is slow on CPU;
the paper's sizes are checked symbolically (parameter counts, Table 1's
shapes).

Run as a script (`KERAS_BACKEND=... python tests/papers/rawnet_model_test.py
WEIGHTS INPUT OUTPUT`), this file embeds INPUT with the weights in WEIGHTS;
the cross-backend test uses it to compute the same embeddings under the
other backend.
"""

import sys

import keras
import numpy as np
import pytest

from keras_spk.activations import hard_sigmoid_keras2
from papers.rawnet.model import build_rawnet
from papers.rawnet.model import build_rawnet_cnn
from papers.rawnet.model import rawnet_frontend
from papers.rawnet.model import transfer_pretrained
from tests.test_case import OTHER_BACKEND
from tests.test_case import run_python
from tests.test_case import set_seeded_weights
from tests.test_case import to_numpy

# 2 * 3**7 samples: 2 frames after the strided convolution and six poolings.
SHORT = 2 * 3**7
NUM_SPEAKERS = 3


def _size(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _waveforms(batch, samples, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, samples)).astype("float32")


def _frontend_layer(model, name):
    return model.get_layer("rawnet_cnn").get_layer(name)


# --------------------------------------------------------------------------
# 1. Parameter counts, derived by hand from Table 1.
# --------------------------------------------------------------------------


def conv(kernel, c_in, c_out):
    """Conv1D kernel + bias."""
    return kernel * c_in * c_out + c_out


def bn(channels):
    """(trainable gamma + beta, non-trainable moving mean + variance)."""
    return 2 * channels, 2 * channels


def block(c_in, c_out):
    """(trainable, non-trainable) of one residual block of Table 1."""
    trainable = conv(3, c_in, c_out) + bn(c_out)[0] + conv(3, c_out, c_out) + bn(c_out)[0]
    frozen = 2 * bn(c_out)[1]
    if c_in != c_out:  # 1x1 convolution + BN on the shortcut
        trainable += conv(1, c_in, c_out) + bn(c_out)[0]
        frozen += bn(c_out)[1]
    return trainable, frozen


def expected_counts(num_speakers):
    """(trainable, non-trainable) parameters of RawNet, from Table 1 and section 4.2."""
    # Strided conv Conv(3, 3, 128) on 1 channel: 3 * 1 * 128 + 128 = 512, BN 4 * 128.
    trainable = conv(3, 1, 128) + bn(128)[0]
    frozen = bn(128)[1]
    # Residual blocks: 2 x 128 (128 -> 128), then 4 x 256 (the first 128 -> 256).
    for c_in, c_out in [(128, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 256)]:
        t, f = block(c_in, c_out)
        trainable += t
        frozen += f
    # GRU(1024) on 256 features, Keras's reset_after=True: per gate (update,
    # reset, candidate) an input kernel, a recurrent kernel and two biases.
    trainable += 3 * (256 * 1024 + 1024 * 1024 + 2 * 1024)
    # Speaker embedding FC(128) + BN (the authors' code: Dense, BN, LeakyReLU).
    trainable += 1024 * 128 + 128 + bn(128)[0]
    frozen += bn(128)[1]
    # Output layer: one 128-d basis per training speaker, no bias (the code's).
    trainable += 128 * num_speakers
    # Center-loss centers: one 128-d center per speaker, moved by the alpha
    # rule, not by gradients, hence non-trainable.
    frozen += num_speakers * 128
    return trainable, frozen


def test_expected_counts_arithmetic():
    # The CNN (Table 1 up to the last block) is 1,719,040 parameters and the
    # GRU 3,938,304; the helper above adds them up.
    cnn = 512 + 512 + 2 * 99_584 + 331_520 + 3 * 395_776
    assert cnn == 1_719_040
    assert block(128, 128) == (99_584 - 512, 512)
    assert block(128, 256) == (331_520 - 1_536, 1_536)
    assert block(256, 256) == (395_776 - 1_024, 1_024)
    assert 3 * (256 * 1024 + 1024 * 1024 + 2 * 1024) == 3_938_304
    assert sum(expected_counts(1211)) == cnn + 3_938_304 + 131_200 + 512 + 2 * 1211 * 128


@pytest.mark.parametrize("num_speakers", [1211, 5])
def test_parameter_count_matches_table_1(num_speakers):
    trainer, embedder = build_rawnet(num_speakers)
    trainable, frozen = expected_counts(num_speakers)
    assert _size(trainer.trainable_weights) == trainable
    assert _size(trainer.non_trainable_weights) == frozen
    assert trainer.count_params() == trainable + frozen
    if num_speakers == 1211:
        assert trainer.count_params() == 6_099_072
    # The embedder is the trainer less the output layer and the centers.
    assert embedder.count_params() == trainable + frozen - 2 * 128 * num_speakers


def test_pretraining_model_parameter_count():
    # CNN + pooling (no weights) + output layer on the 256-d pooled vector
    # + 256-d centers.
    trainer, embedder = build_rawnet_cnn(1211)
    assert trainer.count_params() == 1_719_040 + 256 * 1211 + 1211 * 256
    assert embedder.count_params() == 1_719_040
    trainer, _ = build_rawnet_cnn(1211, center_loss_weight=0.0)
    assert trainer.count_params() == 1_719_040 + 256 * 1211


# --------------------------------------------------------------------------
# 2. Shapes.
# --------------------------------------------------------------------------


def test_frontend_shapes_of_table_1():
    frontend = rawnet_frontend()
    waveform = keras.Input((59049,))
    x = frontend.get_layer("pre_emphasis")(waveform)
    x = frontend.get_layer("add_channel_axis")(x)
    x = frontend.get_layer("strided_conv_act")(
        frontend.get_layer("strided_conv_bn")(frontend.get_layer("strided_conv")(x))
    )
    assert tuple(x.shape) == (None, 19683, 128)
    expected = [6561, 2187, 729, 243, 81, 27]
    filters = [128, 128, 256, 256, 256, 256]
    for i, (frames, channels) in enumerate(zip(expected, filters)):
        x = frontend.get_layer(f"res_block_{i + 1}")(x)
        assert tuple(x.shape) == (None, frames, channels)
    assert tuple(frontend(waveform).shape) == (None, 27, 256)


@pytest.mark.parametrize("samples, frames", [(16000, 7), (24001, 10)])
def test_embedding_shapes_for_several_lengths(samples, frames):
    _, embedder = build_rawnet(NUM_SPEAKERS)
    # The CNN's frames (the GRU's input) and the embeddings in one pass.
    probe = keras.Model(embedder.input, [embedder.get_layer("gru").input, embedder.output])
    frame_features, embeddings = (to_numpy(y) for y in probe(_waveforms(2, samples)))
    # samples // 3 ** 7 frames: 16000 -> 7, 24001 -> 10.
    assert samples // 3**7 == frames
    assert frame_features.shape == (2, frames, 256)
    assert embeddings.shape == (2, 128)
    assert np.all(np.isfinite(embeddings))


def test_embedder_is_part_of_trainer():
    trainer, embedder = build_rawnet(NUM_SPEAKERS)
    embedder_ids = {id(v) for v in embedder.weights}
    trainer_ids = {id(v) for v in trainer.weights}
    assert embedder_ids <= trainer_ids
    # Only the output layer and the centers are the trainer's own.
    own = [v.path for v in trainer.weights if id(v) not in embedder_ids]
    assert sorted(own) == ["center_loss/centers", "speaker_basis/kernel"]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="stackwise_filters"):
        rawnet_frontend(stackwise_filters=[])
    with pytest.raises(ValueError, match="recurrent_dropout"):
        build_rawnet(NUM_SPEAKERS, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        build_rawnet(1)


# --------------------------------------------------------------------------
# 3. Pre-training transfer.
# --------------------------------------------------------------------------


def test_transfer_pretrained_copies_every_cnn_weight():
    cnn_trainer, cnn_embedder = build_rawnet_cnn(NUM_SPEAKERS)
    rawnet_trainer, rawnet_embedder = build_rawnet(NUM_SPEAKERS)
    # "Pre-trained" CNN weights, unlike any fresh initialisation.
    pretrained = set_seeded_weights(cnn_trainer.get_layer("rawnet_cnn"), seed=1, scale=0.1)
    others = {
        name: [np.copy(to_numpy(w)) for w in rawnet_trainer.get_layer(name).weights]
        for name in ("gru", "embedding_dense", "embedding_bn", "speaker_basis", "center_loss")
    }

    copied = transfer_pretrained(cnn_trainer, rawnet_trainer)

    assert copied == ["strided_conv", "strided_conv_bn"] + [f"res_block_{i}" for i in range(1, 7)]
    target = rawnet_trainer.get_layer("rawnet_cnn").weights
    assert len(target) == len(pretrained) == 2 + 4 + 6 * 12 + 6  # +6: block 3's shortcut
    for value, variable in zip(pretrained, target):
        np.testing.assert_array_equal(to_numpy(variable), value, err_msg=variable.path)
    for name, values in others.items():
        for value, variable in zip(values, rawnet_trainer.get_layer(name).weights):
            np.testing.assert_array_equal(to_numpy(variable), value, err_msg=variable.path)
    # The same CNN, so the same frames (BN with the copied moving statistics).
    x = _waveforms(2, SHORT)
    np.testing.assert_allclose(
        to_numpy(rawnet_embedder.get_layer("rawnet_cnn")(x, training=False)),
        to_numpy(cnn_embedder.get_layer("rawnet_cnn")(x, training=False)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_transfer_pretrained_rejects_another_cnn():
    cnn_trainer, _ = build_rawnet_cnn(NUM_SPEAKERS, stackwise_filters=[128, 128, 256, 256, 256])
    rawnet_trainer, _ = build_rawnet(NUM_SPEAKERS, stackwise_filters=[128, 128, 128, 256, 256, 256])
    before = [np.copy(to_numpy(w)) for w in rawnet_trainer.weights]
    with pytest.raises(ValueError, match="res_block_3"):
        transfer_pretrained(cnn_trainer, rawnet_trainer)
    for value, variable in zip(before, rawnet_trainer.weights):
        np.testing.assert_array_equal(to_numpy(variable), value)  # nothing copied
    with pytest.raises(ValueError, match="no CNN sub-model"):
        transfer_pretrained(keras.Sequential([keras.layers.Dense(2)]), rawnet_trainer)


# --------------------------------------------------------------------------
# 4. Same weights, same embeddings under both backends.
# --------------------------------------------------------------------------


def _seed_batch_norms(model, seed):
    """Non-trivial BN parameters and statistics, so inference BN is not ~identity."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        name = v.path.split("/")[-1]
        if name in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif name in ("beta", "moving_mean"):
            v.assign(rng.normal(0.0, 0.1, v.shape).astype("float32"))


def _embed_with_weights(weights_path, input_path, output_path):
    """Builds a fresh embedder, loads the weights, embeds the input (used as a script)."""
    _, embedder = build_rawnet(NUM_SPEAKERS, recurrent_dropout=0.0)
    embedder.load_weights(weights_path)
    x = np.load(input_path)
    np.save(output_path, to_numpy(embedder.predict_on_batch(x)))


def test_same_embeddings_under_the_other_backend(tmp_path):
    keras.utils.set_random_seed(3)
    _, embedder = build_rawnet(NUM_SPEAKERS, recurrent_dropout=0.0)
    _seed_batch_norms(embedder, seed=4)
    weights, inputs, outputs = tmp_path / "w.weights.h5", tmp_path / "x.npy", tmp_path / "e.npy"
    embedder.save_weights(weights)
    x = _waveforms(2, 16000, seed=5)
    np.save(inputs, x)
    here = to_numpy(embedder.predict_on_batch(x))

    run_python(
        [__file__, weights, inputs, outputs], backend=OTHER_BACKEND[keras.backend.backend()]
    )
    there = np.load(outputs)
    assert there.shape == here.shape == (2, 128)
    assert np.std(here) > 0.1  # a non-degenerate embedding
    # float32 on both sides, but the convolutions and the GRU's matrix
    # products sum in different orders on each backend, and the GRU feeds
    # its rounding errors back over its 7 steps: 1e-4 rather than 1e-6.
    np.testing.assert_allclose(there, here, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# 5. Training: eq. 3 and one fit step.
# --------------------------------------------------------------------------


def test_added_losses_are_eq_3_plus_weight_decay():
    keras.utils.set_random_seed(6)
    trainer, embedder = build_rawnet(NUM_SPEAKERS)
    x = _waveforms(4, SHORT, seed=7)
    labels = np.array([0, 1, 2, 0])
    logits = to_numpy(trainer([x, labels], training=False))
    assert logits.shape == (4, NUM_SPEAKERS)
    added = float(sum(to_numpy(loss) for loss in trainer.losses))

    e = to_numpy(embedder(x, training=False)).astype("float64")
    w = to_numpy(trainer.get_layer("speaker_basis").kernel).astype("float64")
    c = to_numpy(trainer.get_layer("center_loss").centers).astype("float64")
    np.testing.assert_allclose(logits, e @ w, rtol=1e-4, atol=1e-5)  # no bias
    logits = e @ w
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    cross_entropy = -np.mean(log_softmax[np.arange(4), labels])
    # Eq. 1, summed over the mini-batch, weight lambda = 1e-3.
    center = 0.5 * np.sum((e - c[labels]) ** 2)
    # Eq. 2 as the authors' code scales it: 5 x mean cosine over the pairs.
    u = w / np.linalg.norm(w, axis=0, keepdims=True)
    cosines = u.T @ u
    basis = (cosines.sum() - np.trace(cosines)) / (NUM_SPEAKERS * (NUM_SPEAKERS - 1))
    # Weight decay 1e-4 on every kernel: convolutions, GRU (input and
    # recurrent), FC and output layer; not on biases, BN or centers.
    kernels = [v for v in trainer.trainable_weights if v.path.split("/")[-1].endswith("kernel")]
    assert len(kernels) == 1 + 6 * 2 + 1 + 2 + 1 + 1
    decay = 1e-4 * sum(np.sum(to_numpy(v).astype("float64") ** 2) for v in kernels)

    expected = cross_entropy + 1e-3 * center + 5.0 * basis + decay
    np.testing.assert_allclose(added, expected, rtol=1e-4)


def test_fit_steps_train_and_move_the_centers():
    keras.utils.set_random_seed(8)
    trainer, _ = build_rawnet(NUM_SPEAKERS)
    x = _waveforms(4, SHORT, seed=9)
    labels = np.array([0, 1, 2, 0])
    centers = trainer.get_layer("center_loss").centers
    before = np.copy(to_numpy(centers))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True), loss=None)
    history = trainer.fit([x, labels], epochs=3, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    after = to_numpy(centers)
    # Every speaker is in the batch, so every center moved (alpha rule).
    assert np.all(np.abs(after - before).sum(axis=1) > 0)


def test_pretraining_fit_step():
    keras.utils.set_random_seed(10)
    trainer, embedder = build_rawnet_cnn(NUM_SPEAKERS)
    x = _waveforms(4, SHORT, seed=11)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True), loss=None)
    history = trainer.fit([x, np.array([0, 1, 2, 0])], epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert to_numpy(embedder(x)).shape == (4, 256)


# --------------------------------------------------------------------------
# 6. The authors' GRU (Keras 2: reset_after=False, hard_sigmoid gates).
# --------------------------------------------------------------------------

AUTHORS_GRU = {"gru_reset_after": False, "gru_gate_activation": "hard_sigmoid_keras2"}
# A RawNet small enough to check its GRU and its loss terms by hand.
SMALL_GRU_MODEL = {
    "stackwise_filters": [8, 8, 16, 16, 16, 16],
    "strided_conv_filters": 8,
    "gru_units": 6,
    "embedding_dim": 4,
}


def test_authors_gru_embedder_has_the_authors_parameter_count():
    # Table 1's embedder, from the counts of section 1:
    #   CNN (strided conv + BN, six residual blocks):          1,719,040
    #   GRU(1024) on 256 features, reset_after=False: per gate an input
    #     kernel, a recurrent kernel and one bias,
    #     3 * (256 * 1024 + 1024 * 1024 + 1024) =              3,935,232
    #   FC(128): 1024 * 128 + 128 =                              131,200
    #   its BN: 4 * 128 =                                            512
    #   total                                                  5,785,984
    # Keras 3's default reset_after=True has a second (recurrent) bias per
    # gate: 3 gates * 1024 = 3,072 more.
    gru = 3 * (256 * 1024 + 1024 * 1024 + 1024)
    assert gru == 3_935_232
    assert 1_719_040 + gru + 131_200 + 512 == 5_785_984
    _, embedder = build_rawnet(1211, **AUTHORS_GRU)
    assert embedder.count_params() == 5_785_984
    _, default = build_rawnet(1211)
    assert default.count_params() == 5_785_984 + 3 * 1024
    gru_layer = embedder.get_layer("gru")
    assert gru_layer.cell.reset_after is False
    assert tuple(gru_layer.cell.bias.shape) == (3 * 1024,)


def test_authors_gru_config_builds_the_authors_embedder():
    # configs/rawnet_authors_gru.yaml through the recipe's own settings: the same count.
    import os

    from keras_spk.config import load_config
    from papers.rawnet import train

    config = load_config(
        os.path.join(train.HERE, "configs", "rawnet_authors_gru.yaml"), defaults=train.DEFAULT_CONFIG
    )
    _, embedder = build_rawnet(1211, **train.model_settings(config))
    assert embedder.count_params() == 5_785_984
    assert train.model_settings(config)["gru_gate_activation"] == "hard_sigmoid_keras2"


def _keras2_gru_last_state(x, kernel, recurrent, bias):
    """NumPy GRU of Keras 2 (reset_after=False, hard sigmoid gates), gates [z, r, h]."""
    units = recurrent.shape[0]

    def hard_sigmoid(v):
        return np.clip(0.2 * v + 0.5, 0.0, 1.0)

    w = np.split(kernel.astype("float64"), 3, axis=1)
    u = np.split(recurrent.astype("float64"), 3, axis=1)
    b = np.split(bias.astype("float64"), 3)
    h = np.zeros((x.shape[0], units))
    for t in range(x.shape[1]):
        xt = x[:, t].astype("float64")
        z = hard_sigmoid(xt @ w[0] + h @ u[0] + b[0])
        r = hard_sigmoid(xt @ w[1] + h @ u[1] + b[1])
        candidate = np.tanh(xt @ w[2] + (r * h) @ u[2] + b[2])
        h = z * h + (1.0 - z) * candidate
    return h


def test_authors_gru_computes_keras_2_gru():
    keras.utils.set_random_seed(12)
    trainer, _ = build_rawnet(
        NUM_SPEAKERS,
        **SMALL_GRU_MODEL,
        recurrent_dropout=0.0,
        **AUTHORS_GRU,
    )
    gru = trainer.get_layer("gru")
    # Large enough weights that many gate inputs fall outside [-2.5, 2.5].
    set_seeded_weights(gru, seed=13, scale=1.5)
    # 6 * 3**7 samples: 6 frames after the strided convolution and six poolings.
    frames = to_numpy(trainer.get_layer("rawnet_cnn")(_waveforms(2, 6 * 3**7, seed=14)))
    assert frames.shape == (2, 6, 16)
    frames = frames / np.std(frames)
    kernel, recurrent, bias = (to_numpy(w) for w in gru.weights)
    want = _keras2_gru_last_state(frames, kernel, recurrent, bias)
    np.testing.assert_allclose(to_numpy(gru(frames)), want, rtol=1e-5, atol=1e-5)


def test_authors_gru_model_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(15)
    _, embedder = build_rawnet(
        NUM_SPEAKERS,
        **SMALL_GRU_MODEL,
        **AUTHORS_GRU,
    )
    x = _waveforms(2, SHORT, seed=16)
    embedder.save(tmp_path / "embedder.keras")
    restored = keras.saving.load_model(tmp_path / "embedder.keras")
    cell = restored.get_layer("gru").cell
    assert cell.reset_after is False
    assert cell.recurrent_activation is hard_sigmoid_keras2
    np.testing.assert_allclose(
        to_numpy(restored(x, training=False)), to_numpy(embedder(x, training=False)), atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gru_reset_after": "false"},
        {"gru_reset_after": 0},
        {"gru_gate_activation": "hard_sigmoid"},
        {"gru_gate_activation": "tanh"},
    ],
)
def test_bad_gru_settings_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        build_rawnet(NUM_SPEAKERS, **kwargs)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="ONNX export needs PyTorch")
def test_onnx_export_refuses_the_authors_gru_unless_fixed_length(tmp_path):
    # export_onnx's one-node GRU is PyTorch's (reset applied after the
    # recurrent projection, sigmoid gates); the authors' GRU is not, so a
    # dynamic-length export is refused, naming the layer.
    pytest.importorskip("onnxscript")
    from keras_spk.export import export_onnx

    for kwargs in (AUTHORS_GRU, {"gru_reset_after": False}):
        _, embedder = build_rawnet(
            NUM_SPEAKERS,
            **SMALL_GRU_MODEL,
            **kwargs,
        )
        with pytest.raises(ValueError, match="gru"):
            export_onnx(embedder, tmp_path / "rawnet.onnx")


# --------------------------------------------------------------------------
# 7. Per-term logging of eq. 3.
# --------------------------------------------------------------------------


def test_fit_logs_each_term_of_eq_3():
    keras.utils.set_random_seed(17)
    trainer, _ = build_rawnet(
        NUM_SPEAKERS,
        **SMALL_GRU_MODEL,
        l2=0.0,
        recurrent_dropout=0.0,
    )
    x = _waveforms(4, SHORT, seed=18)
    labels = np.array([0, 1, 2, 0])
    # Learning rate 0: the epoch's single step sees the weights below.
    trainer.compile(optimizer=keras.optimizers.SGD(0.0), loss=None)
    trainer([x, labels], training=False)
    centers = np.copy(to_numpy(trainer.get_layer("center_loss").centers))
    history = trainer.fit([x, labels], epochs=1, batch_size=4, verbose=0).history
    terms = [
        "center_loss",
        "speaker_basis_softmax_loss",
        "speaker_basis_basis_loss",
        "speaker_basis_hard_negative_loss",
    ]
    assert sorted(history) == sorted(["loss", *terms])
    assert history["speaker_basis_hard_negative_loss"] == [0.0]
    # No weight decay (l2=0): the terms add up to the loss.
    np.testing.assert_allclose(sum(history[t][0] for t in terms), history["loss"][0], rtol=1e-5)
    # lambda L_C by hand, on the embeddings of the training pass (BN in
    # training mode: batch statistics), with the centers before the step.
    embedding = keras.Model(trainer.inputs[0], trainer.get_layer("embedding").output)
    e = to_numpy(embedding(x, training=True)).astype("float64")
    want = 1e-3 * 0.5 * np.sum((e - centers[labels]) ** 2)
    np.testing.assert_allclose(history["center_loss"][0], want, rtol=1e-4)


if __name__ == "__main__":
    _embed_with_weights(*sys.argv[1:4])
