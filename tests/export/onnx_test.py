"""ONNX export (PyTorch backend): dynamic batch and time, numbers via onnxruntime."""

import os

import keras
import numpy as np
import pytest

from keras_spk import export
from keras_spk.layers import PreEmphasis
from tests.helpers.export import IDENTITIES
from tests.helpers.export import build_multi_identity_embedder
from tests.helpers.export import build_pooled_embedder
from tests.helpers.export import build_small_embedder
from tests.helpers.export import waveforms

TORCH_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="ONNX export runs under the PyTorch backend only"
)
LENGTHS = (16000, 23456)


def build_waveform_cnn(dim=16, seed=3):
    """PreEmphasis -> strided Conv1D on raw samples -> GAP -> Dense, seeded weights."""
    inputs = keras.Input((None,), name="waveforms")
    x = PreEmphasis(0.97)(inputs)
    x = keras.layers.Reshape((-1, 1))(x)
    x = keras.layers.Conv1D(8, 400, strides=160, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(dim)(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def check_onnx_matches_keras(model, path, batch=2, row_shape=(16,)):
    """onnxruntime gives the Keras embeddings (`[rows, *row_shape]`) for two lengths and batch sizes."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waveforms"]
    assert [o.name for o in session.get_outputs()] == ["embeddings"]
    # Batch and time are symbolic; the other axes are the model's.
    declared = session.get_outputs()[0].shape
    assert len(declared) == 1 + len(row_shape) and not isinstance(declared[0], int)
    assert list(declared[1:]) == list(row_shape)
    for length, rows in zip(LENGTHS, (batch, batch + 1)):  # batch size varies too
        x = waveforms(length, batch=rows)
        (got,) = session.run(["embeddings"], {"waveforms": x})
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        assert got.shape == expected.shape == (rows, *row_shape)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@TORCH_ONLY
def test_onnx_matches_keras_on_two_lengths(tmp_path):
    pytest.importorskip("onnxscript")
    model = build_waveform_cnn()
    path = export.export_onnx(model, tmp_path / "speaker.onnx")
    assert path == str(tmp_path / "speaker.onnx")
    check_onnx_matches_keras(model, path)
    assert os.listdir(tmp_path) == ["speaker.onnx"]  # no temporary file left


@TORCH_ONLY
def test_onnx_log_mel_embedder_has_dynamic_time(tmp_path):
    pytest.importorskip("onnxscript")
    model = build_small_embedder()
    path = export.export_onnx(model, tmp_path / "speaker.onnx")
    check_onnx_matches_keras(model, path)


@TORCH_ONLY
def test_onnx_multi_identity_embedder_matches_keras(tmp_path):
    pytest.importorskip("onnxscript")
    model = build_multi_identity_embedder()
    path = export.export_onnx(model, tmp_path / "mixture.onnx")
    check_onnx_matches_keras(model, path, row_shape=(IDENTITIES, 16))
    x = waveforms(LENGTHS[0])
    embeddings = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.abs(embeddings[0, 0] - embeddings[0, 1]).max() > 1e-2  # two distinct identities


@TORCH_ONLY
@pytest.mark.parametrize(
    "build, shape",
    [
        (build_pooled_embedder, r"\(2,\)"),
        (lambda: build_multi_identity_embedder(extra_axes=(2,)), r"\(2, 2, 2, 8\)"),
    ],
    ids=["rank1", "rank4"],
)
def test_onnx_embeddings_of_another_rank_are_refused(tmp_path, build, shape):
    pytest.importorskip("onnxscript")
    with pytest.raises(ValueError, match=rf"\[batch, K, dim\].*Received: output shape {shape}"):
        export.export_onnx(build(), tmp_path / "speaker.onnx")
    assert os.listdir(tmp_path) == []


@TORCH_ONLY
def test_failed_onnx_export_leaves_no_file(tmp_path):
    pytest.importorskip("onnxscript")

    class BrokenModel(keras.Model):
        def call(self, inputs):
            raise RuntimeError("broken model")

    with pytest.raises(Exception, match="broken model"):
        export.export_onnx(BrokenModel(name="broken"), tmp_path / "speaker.onnx")
    assert os.listdir(tmp_path) == []


@TORCH_ONLY
def test_existing_file_needs_overwrite(tmp_path):
    path = tmp_path / "speaker.onnx"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_onnx(build_waveform_cnn(), path)
    assert path.read_bytes() == b"old"


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="tests the error on other backends")
def test_other_backend_raises(tmp_path):
    with pytest.raises(RuntimeError, match="PyTorch backend"):
        export.export_onnx(build_waveform_cnn(), tmp_path / "speaker.onnx")
    assert not (tmp_path / "speaker.onnx").exists()
