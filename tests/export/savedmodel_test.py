"""SavedModel export: signatures, numbers in a keras-free process, atomicity.

The SavedModel is loaded and run in a subprocess where `keras` and
`keras_spk` cannot be imported, as a serving process would. The TF-only tests
are skipped under PyTorch and the cross-backend one under TensorFlow.
"""

import os

import keras
import numpy as np
import pytest

from keras_spk import export
from tests.helpers.export import DIM
from tests.helpers.export import IDENTITIES
from tests.helpers.export import build_multi_identity_embedder
from tests.helpers.export import build_pooled_embedder
from tests.helpers.export import build_small_embedder
from tests.helpers.export import check_serving_matches_keras
from tests.helpers.export import keras_embed
from tests.helpers.export import saved_model_cli_show
from tests.helpers.export import serve_in_clean_process
from tests.helpers.export import signature_tensors
from tests.helpers.export import waveforms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = "tests.helpers.export:build_small_embedder"
MULTI_BUILDER = "tests.helpers.export:build_multi_identity_embedder"
LENGTHS = (16000, 23456)

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export_saved_model runs under the TensorFlow backend only",
)
TORCH_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="checks the export of a model built under the PyTorch backend",
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small embedder exported once for the module (TensorFlow backend)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export_saved_model runs under the TensorFlow backend only")
    model = build_small_embedder()
    path = tmp_path_factory.mktemp("serving") / "speaker" / "1"
    written = export.export_saved_model(model, path)
    return model, written


@TF_ONLY
def test_saved_model_matches_keras_without_keras(exported, tmp_path):
    model, path = exported
    _, padded, expected = check_serving_matches_keras(tmp_path, model, path, LENGTHS, dim=DIM)
    # Each padded row equals its unpadded embedding, not that of the padded row.
    assert np.abs(keras_embed(model, padded[:1]) - expected[:1]).max() > 1e-3


@TF_ONLY
def test_saved_model_cli_lists_both_signatures(exported):
    _, path = exported
    text = saved_model_cli_show(path)
    blocks = {}
    for block in text.split("signature_def['")[1:]:
        blocks[block.split("'")[0]] = block
    assert {"serving_default", "embed_padded"} <= set(blocks)

    def tensor(block, kind, name):
        part = block.split(f"The given SavedModel SignatureDef contains the following {kind}")[1]
        entry = part.split(f"['{name}'] tensor_info:")[1]
        return entry.split("dtype: ")[1].split()[0], entry.split("shape: ")[1].split("\n")[0].strip()

    assert tensor(blocks["serving_default"], "input", "waveforms") == ("DT_FLOAT", "(-1, -1)")
    assert tensor(blocks["serving_default"], "output", "embeddings") == ("DT_FLOAT", f"(-1, {DIM})")
    assert tensor(blocks["embed_padded"], "input", "waveforms") == ("DT_FLOAT", "(-1, -1)")
    assert tensor(blocks["embed_padded"], "input", "lengths") == ("DT_INT32", "(-1)")
    assert tensor(blocks["embed_padded"], "output", "embeddings") == ("DT_FLOAT", f"(-1, {DIM})")


@TF_ONLY
def test_existing_version_is_not_overwritten(exported):
    model, path = exported
    with pytest.raises(FileExistsError, match="new version"):
        export.export_saved_model(model, path)


class BrokenModel(keras.Model):
    def call(self, inputs):
        raise RuntimeError("broken model")


@TF_ONLY
def test_failed_export_leaves_no_folder(tmp_path):
    target = tmp_path / "speaker" / "1"
    with pytest.raises(Exception, match="broken model"):
        export.export_saved_model(BrokenModel(name="broken"), target)
    assert not target.exists()
    assert not target.parent.exists() or os.listdir(target.parent) == []


@TF_ONLY
def test_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    # A failure while files are being written (e.g. a full disk).
    def write_out(self, filepath, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"))
        raise OSError("disk full")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", write_out)
    target = tmp_path / "speaker" / "1"
    with pytest.raises(OSError, match="disk full"):
        export.export_saved_model(build_small_embedder(), target)
    assert not target.exists()
    assert os.listdir(target.parent) == []


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="tests the error on other backends")
def test_other_backend_raises_with_the_fix(tmp_path):
    with pytest.raises(RuntimeError, match="export_from_weights"):
        export.export_saved_model(build_small_embedder(), tmp_path / "1")
    assert not (tmp_path / "1").exists()


def test_builder_must_be_importable():
    with pytest.raises(ValueError, match="module:function"):
        export.export_from_weights("no_colon", "w.weights.h5", "out")
    with pytest.raises(ValueError, match="importable"):
        export.export_from_weights(lambda: None, "w.weights.h5", "out")


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "missing.weights.h5"
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        export.export_from_weights(BUILDER, missing, tmp_path / "1")


@TORCH_ONLY
def test_torch_trained_model_exports_under_tensorflow(tmp_path):
    model = build_small_embedder(seed=11)
    weights = tmp_path / "embedder.weights.h5"
    model.save_weights(weights)
    target = tmp_path / "speaker" / "3"

    written = export.export_from_weights(
        build_small_embedder, weights, target, builder_kwargs={"seed": 0}, timeout=300
    )

    assert written == str(target)
    singles = [waveforms(n) for n in LENGTHS]
    out = serve_in_clean_process(tmp_path, written, singles)
    for x, got in zip(singles, out["single"]):
        np.testing.assert_allclose(np.asarray(got), keras_embed(model, x), rtol=1e-4, atol=1e-4)


# === Multi-identity embedders: [batch, K, dim] ===


@pytest.fixture(scope="module")
def exported_multi(tmp_path_factory):
    """The K=2 embedder exported once for the module (TensorFlow backend)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export_saved_model runs under the TensorFlow backend only")
    model = build_multi_identity_embedder()
    path = tmp_path_factory.mktemp("serving_multi") / "mixture" / "1"
    return model, export.export_saved_model(model, path)


@TF_ONLY
def test_multi_identity_saved_model_matches_keras_without_keras(exported_multi, tmp_path):
    model, path = exported_multi
    _, padded, expected = check_serving_matches_keras(
        tmp_path, model, path, LENGTHS, batch=2, dim=DIM, identities=IDENTITIES
    )
    # The two identities differ, and padding would have changed the first row.
    assert np.abs(expected[:, 0] - expected[:, 1]).max() > 1e-2
    assert np.abs(keras_embed(model, padded[:1]) - expected[:1]).max() > 1e-3


@TF_ONLY
def test_multi_identity_signatures_declare_their_shape(exported_multi):
    _, path = exported_multi
    signatures = signature_tensors(saved_model_cli_show(path))
    for name in ("serving_default", "embed_padded"):
        assert signatures[name][("input", "waveforms")] == ("DT_FLOAT", "(-1, -1)")
        assert signatures[name][("output", "embeddings")] == ("DT_FLOAT", f"(-1, {IDENTITIES}, {DIM})")
    assert signatures["embed_padded"][("input", "lengths")] == ("DT_INT32", "(-1)")


@TF_ONLY
@pytest.mark.parametrize(
    "build, rank",
    [(build_pooled_embedder, 1), (lambda: build_multi_identity_embedder(extra_axes=(2,)), 4)],
    ids=["rank1", "rank4"],
)
def test_embeddings_of_another_rank_are_refused(tmp_path, build, rank):
    target = tmp_path / "speaker" / "1"
    with pytest.raises(ValueError, match=rf"\[batch, K, dim\].* \(rank {rank}\)"):
        export.export_saved_model(build(), target)
    assert not target.exists()


@TORCH_ONLY
def test_torch_multi_identity_model_exports_under_tensorflow(tmp_path):
    model = build_multi_identity_embedder(seed=13)
    weights = tmp_path / "mixture.weights.h5"
    model.save_weights(weights)
    written = export.export_from_weights(
        MULTI_BUILDER, weights, tmp_path / "mixture" / "1", builder_kwargs={"seed": 0}, timeout=300
    )
    check_serving_matches_keras(tmp_path, model, written, LENGTHS, dim=DIM, identities=IDENTITIES)

    model_file = tmp_path / "mixture.keras"
    model.save(model_file)
    written = export.export_from_model_file(
        model_file, tmp_path / "mixture" / "2", lengths_signature=False, timeout=300
    )
    singles = [waveforms(n, batch=2) for n in LENGTHS]
    (tmp_path / "file").mkdir()
    out = serve_in_clean_process(tmp_path / "file", written, singles)
    assert out["signatures"] == ["serving_default"]
    for x, got in zip(singles, out["single"]):
        assert np.asarray(got).shape == (2, IDENTITIES, DIM)
        np.testing.assert_allclose(np.asarray(got), keras_embed(model, x), rtol=1e-4, atol=1e-4)


@TORCH_ONLY
def test_torch_export_of_a_rank_4_output_says_why(tmp_path):
    weights = tmp_path / "rank4.weights.h5"
    build_multi_identity_embedder(extra_axes=(2,)).save_weights(weights)
    target = tmp_path / "mixture" / "1"
    with pytest.raises(RuntimeError, match=r"(?s)TensorFlow backend failed.*\[batch, K, dim\].*rank 4"):
        export.export_from_weights(
            MULTI_BUILDER, weights, target, builder_kwargs={"extra_axes": [2]}, timeout=300
        )
    assert not target.exists()
