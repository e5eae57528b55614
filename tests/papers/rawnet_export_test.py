"""Exporting the RawNet embedder (papers/rawnet/model.py) for serving.

A small RawNet (narrow blocks, 16-unit GRU, 8-d embeddings, seeded weights)
goes through each export path of `keras_spk.export`:

- TensorFlow backend: `export_saved_model`, served in a subprocess where
  neither `keras` nor `keras_spk` can be imported, on two lengths with
  different frame counts (the GRU runs a dynamic number of steps);
- PyTorch backend: `export_onnx`, run with onnxruntime (on lengths of the
  example's number of frames: see `test_onnx_on_another_frame_count`);
- PyTorch backend: `export_from_weights` from the `.weights.h5` of a
  torch-built model (re-built under TensorFlow in a subprocess).

RawNet embeds `samples // 3 ** 7` frames, so lengths are chosen by frames.
"""

import os

import keras
import numpy as np
import pytest

from keras_spk import export
from papers.rawnet.model import build_rawnet
from tests.helpers.export import (
    check_serving_matches_keras,
    keras_embed,
    saved_model_cli_show,
    serve_in_clean_process,
    signature_tensors,
    waveforms,
)

FRAME = 3**7  # samples per RawNet frame (stride 3, then six poolings of 3)
# 3 and 5 frames, neither length a whole multiple of FRAME.
LENGTHS = (3 * FRAME + 11, 5 * FRAME + 1234)
EMBEDDING_DIM = 8

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export_saved_model runs under the TensorFlow backend only",
)
TORCH_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="checks exports of a model built under the PyTorch backend",
)


def build_small_rawnet(seed=0):
    """A small RawNet embedder with seeded weights (the `export_from_weights` builder).

    Kernels are drawn with a 1 / sqrt(fan-in) scale and BN statistics near
    (0, 1), so the embeddings vary with the input (weights of one fixed
    scale saturate the network into a near-constant output, which would
    make the 1e-4 comparisons below weak).
    """
    _, embedder = build_rawnet(
        4,
        stackwise_filters=(8, 8, 16, 16, 16, 16),
        gru_units=16,
        recurrent_dropout=0.0,
        embedding_dim=EMBEDDING_DIM,
    )
    rng = np.random.default_rng(seed)
    values = []
    for weight in embedder.weights:
        shape = tuple(weight.shape)
        if weight.path.endswith(("gamma", "moving_variance")):
            value = rng.uniform(0.5, 1.5, shape)
        elif weight.path.endswith("kernel"):  # convolutions, GRU, FC
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:  # biases, BN beta and moving mean
            value = rng.normal(0.0, 0.1, shape)
        values.append(value.astype("float32"))
    embedder.set_weights(values)
    return embedder


def test_lengths_have_different_frame_counts():
    assert [n // FRAME for n in LENGTHS] == [3, 5]
    assert all(n % FRAME for n in LENGTHS)


# --------------------------------------------------------------------------
# 1. SavedModel (TensorFlow backend).
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export_saved_model runs under the TensorFlow backend only")
    model = build_small_rawnet(seed=5)
    path = tmp_path_factory.mktemp("serving") / "rawnet" / "1"
    return model, export.export_saved_model(model, path)


@TF_ONLY
def test_saved_model_matches_keras_without_keras(exported, tmp_path):
    model, path = exported
    singles, _, _ = check_serving_matches_keras(
        tmp_path, model, path, LENGTHS, batch=2, dim=EMBEDDING_DIM
    )
    # The lengths give different embeddings (the GRU ran 3 and 5 steps).
    assert np.abs(keras_embed(model, singles[1][:, : LENGTHS[0]]) - keras_embed(model, singles[0])).max() > 1e-3


@TF_ONLY
def test_saved_model_cli_shows_the_signatures(exported):
    _, path = exported
    signatures = signature_tensors(saved_model_cli_show(path))
    embeddings = ("DT_FLOAT", f"(-1, {EMBEDDING_DIM})")
    assert signatures["serving_default"] == {
        ("input", "waveforms"): ("DT_FLOAT", "(-1, -1)"),
        ("output", "embeddings"): embeddings,
    }
    assert signatures["embed_padded"] == {
        ("input", "waveforms"): ("DT_FLOAT", "(-1, -1)"),
        ("input", "lengths"): ("DT_INT32", "(-1)"),
        ("output", "embeddings"): embeddings,
    }


# --------------------------------------------------------------------------
# 2. PyTorch backend: ONNX, and a SavedModel from torch-built weights.
# --------------------------------------------------------------------------

# Keras's PyTorch GRU on CPU is a Python loop over the time steps, which
# torch.export would unroll to the example's frame count; export_onnx exports
# it as one ONNX GRU node instead. The example has 3 frames; the checks use
# 3, 5 and 9 (and batches of 2, 3 and 1).
ONNX_LENGTHS = (LENGTHS[0], LENGTHS[1], 9 * FRAME + 17)


@pytest.fixture(scope="module")
def onnx_session(tmp_path_factory):
    if keras.backend.backend() != "torch":
        pytest.skip("ONNX export runs under the PyTorch backend only")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = build_small_rawnet(seed=5)
    path = export.export_onnx(
        model, tmp_path_factory.mktemp("onnx") / "rawnet.onnx", example_samples=LENGTHS[0]
    )
    return model, ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@TORCH_ONLY
def test_onnx_matches_keras_on_other_lengths(onnx_session):
    model, session = onnx_session
    assert [n // FRAME for n in ONNX_LENGTHS] == [3, 5, 9]
    for length, rows in zip(ONNX_LENGTHS, (2, 3, 1)):  # the batch size varies too
        x = waveforms(length, batch=rows)
        (got,) = session.run(["embeddings"], {"waveforms": x})
        expected = keras_embed(model, x)
        assert got.shape == expected.shape == (rows, EMBEDDING_DIM)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@TORCH_ONLY
def test_lstm_needs_a_fixed_length_onnx_graph(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    waveform = keras.Input((None,))
    frames = keras.layers.Reshape((-1, 100))(waveform)
    model = keras.Model(waveform, keras.layers.LSTM(4, name="lstm")(frames))
    with pytest.raises(ValueError, match=r"recurrent layers \['lstm'\].*fixed_length=True"):
        export.export_onnx(model, tmp_path / "dynamic.onnx", example_samples=500)
    assert os.listdir(tmp_path) == []
    path = export.export_onnx(model, tmp_path / "fixed.onnx", example_samples=500, fixed_length=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = waveforms(500, batch=2)
    (got,) = session.run(["embeddings"], {"waveforms": x})
    np.testing.assert_allclose(got, keras_embed(model, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(["embeddings"], {"waveforms": waveforms(700, batch=1)})


@TORCH_ONLY
@pytest.mark.slow  # two TensorFlow subprocesses (export, then serving): 15 to 30 s
def test_torch_weights_export_to_saved_model(tmp_path):
    model = build_small_rawnet(seed=11)
    weights = tmp_path / "embedder.weights.h5"
    model.save_weights(weights)
    target = tmp_path / "rawnet" / "1"

    # The builder's own seed differs: the numbers below come from the file.
    written = export.export_from_weights(
        build_small_rawnet, weights, target, builder_kwargs={"seed": 0}, lengths_signature=False, timeout=300
    )

    assert written == str(target)
    singles = [waveforms(n, batch=2) for n in LENGTHS]
    out = serve_in_clean_process(tmp_path, written, singles)
    assert out["signatures"] == ["serving_default"]
    for x, got in zip(singles, out["single"]):
        np.testing.assert_allclose(got, keras_embed(model, x), rtol=1e-4, atol=1e-4)
