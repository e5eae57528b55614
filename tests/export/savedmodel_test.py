"""SavedModel export: signatures, numbers in a keras-free process, atomicity.

The SavedModel is loaded and run in a subprocess where `keras` and
`keras_spk` cannot be imported, as a serving process would. The TF-only tests
are skipped under PyTorch and the cross-backend one under TensorFlow.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_spk import export
from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import PreEmphasis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = "tests.export.savedmodel_test:build_small_embedder"
MULTI_BUILDER = "tests.export.savedmodel_test:build_multi_identity_embedder"
LENGTHS = (16000, 23456)
DIM = 16
IDENTITIES = 2

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export_saved_model runs under the TensorFlow backend only",
)
TORCH_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="checks the export of a model built under the PyTorch backend",
)


def build_small_embedder(num_mel_bins=24, dim=DIM, seed=7):
    """PreEmphasis -> LogMelFilterbank -> Conv1D -> GAP -> Dense, seeded weights."""
    waveforms = keras.Input((None,), name="waveforms")
    x = PreEmphasis(0.97)(waveforms)
    x = LogMelFilterbank(num_mel_bins=num_mel_bins)(x)
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    embeddings = keras.layers.Dense(dim)(x)
    model = keras.Model(waveforms, embeddings)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def build_multi_identity_embedder(identities=IDENTITIES, dim=DIM, seed=5, extra_axes=()):
    """A mixture -> one embedding per speaker model: `[batch, samples] -> [batch, K, dim]`.

    PreEmphasis -> LogMelFilterbank -> Conv1D -> GAP over time ->
    Dense(K * dim) -> Reshape((K, dim)), seeded weights. `extra_axes` splits
    `dim` further (e.g. `(2,)`: `[batch, K, 2, dim // 2]`, a rank-4 output).
    """
    waveforms = keras.Input((None,), name="waveforms")
    x = PreEmphasis(0.97)(waveforms)
    x = LogMelFilterbank(num_mel_bins=24)(x)
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(identities * dim)(x)
    split = int(np.prod(extra_axes, dtype=int))
    embeddings = keras.layers.Reshape((identities, *extra_axes, dim // split))(x)
    model = keras.Model(waveforms, embeddings)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def build_pooled_embedder():
    """An embedder with a rank-1 output `[batch]`: no embedding axis at all."""
    waveforms = keras.Input((None,), name="waveforms")
    x = LogMelFilterbank(num_mel_bins=8)(waveforms)
    return keras.Model(waveforms, keras.ops.mean(x, axis=(1, 2)))


def waveforms(length, batch=1, seed=0):
    rng = np.random.default_rng(seed + length)
    return rng.uniform(-0.5, 0.5, (batch, length)).astype("float32")


def keras_embed(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# Runs in a process that cannot import keras or keras_spk: a `None` entry in
# sys.modules makes `import` fail and `importlib.util.find_spec` return None,
# i.e. the package looks uninstalled (TensorFlow probes for keras that way).
SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    import importlib.util

    for blocked in ("keras_spk", "keras"):
        sys.modules[blocked] = None
        if importlib.util.find_spec(blocked) is not None:
            raise SystemExit(f"{blocked} should look uninstalled here")
        try:
            __import__(blocked)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{blocked} should not be importable here")

    import tensorflow as tf

    request = json.load(open(sys.argv[1]))
    loaded = tf.saved_model.load(request["path"])
    # Loading and serving imported neither (nor did TensorFlow behind our back).
    leaked = [m for m in sys.modules if m.split(".")[0] in ("keras", "keras_spk") and sys.modules[m]]
    if leaked:
        raise SystemExit(f"imported despite the block: {leaked}")
    result = {"signatures": sorted(loaded.signatures)}
    serve = loaded.signatures["serving_default"]
    result["single"] = [
        serve(waveforms=tf.constant(np.load(f), tf.float32))["embeddings"].numpy().tolist()
        for f in request["single"]
    ]
    if "padded" in request:
        padded = loaded.signatures["embed_padded"]
        out = padded(
            waveforms=tf.constant(np.load(request["padded"]), tf.float32),
            lengths=tf.constant(request["lengths"], tf.int32),
        )
        result["padded"] = out["embeddings"].numpy().tolist()
    json.dump(result, open(sys.argv[2], "w"))
    """
)


def serve_in_clean_process(tmp_path, saved_model, singles, padded=None, lengths=None):
    """Runs the signatures in a keras-free subprocess; returns its JSON answer."""
    request = {"path": str(saved_model), "single": []}
    for i, x in enumerate(singles):
        request["single"].append(str(tmp_path / f"single{i}.npy"))
        np.save(request["single"][-1], x)
    if padded is not None:
        request["padded"] = str(tmp_path / "padded.npy")
        request["lengths"] = [int(n) for n in lengths]
        np.save(request["padded"], padded)
    (tmp_path / "request.json").write_text(json.dumps(request))
    (tmp_path / "serve.py").write_text(SERVE_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-s", str(tmp_path / "serve.py"), str(tmp_path / "request.json"), str(tmp_path / "out.json")],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((tmp_path / "out.json").read_text())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small embedder exported once for the module (TensorFlow backend)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export_saved_model runs under the TensorFlow backend only")
    model = build_small_embedder()
    path = tmp_path_factory.mktemp("serving") / "speaker" / "1"
    written = export.export_saved_model(model, path)
    return model, written


def check_serving_matches_keras(tmp_path, model, saved_model, lengths, batch=1, dim=None, identities=None):
    """Serves `saved_model` in a clean process and checks it against the Keras `model`.

    `serving_default` on `batch` waveforms of each of `lengths` samples must
    give the Keras embeddings (`(batch, dim)` each, or
    `(batch, identities, dim)` for a multi-identity embedder), and
    `embed_padded` on two waveforms of the first two lengths, zero-padded to
    the longest length, must give each row's unpadded embedding.

    Returns:
        `(singles, padded, expected_padded)`: the waveforms served and the
        Keras embeddings of the two padded rows' unpadded waveforms.
    """
    singles = [waveforms(n, batch=batch) for n in lengths]
    a, b = waveforms(lengths[0], seed=1)[0], waveforms(lengths[1], seed=2)[0]
    padded = np.zeros((2, max(lengths)), "float32")
    padded[0, : a.size] = a
    padded[1, : b.size] = b

    out = serve_in_clean_process(tmp_path, saved_model, singles, padded, [a.size, b.size])

    row_shape = (dim,) if identities is None else (identities, dim)
    assert out["signatures"] == ["embed_padded", "serving_default"]
    for x, got in zip(singles, out["single"]):
        expected = keras_embed(model, x)
        got = np.asarray(got)
        assert got.shape == expected.shape == (batch, *row_shape)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    expected = np.concatenate([keras_embed(model, a[None]), keras_embed(model, b[None])])
    got = np.asarray(out["padded"])
    assert got.shape == (2, *row_shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    return singles, padded, expected


@TF_ONLY
def test_saved_model_matches_keras_without_keras(exported, tmp_path):
    model, path = exported
    _, padded, expected = check_serving_matches_keras(tmp_path, model, path, LENGTHS, dim=DIM)
    # Each padded row equals its unpadded embedding, not that of the padded row.
    assert np.abs(keras_embed(model, padded[:1]) - expected[:1]).max() > 1e-3


def saved_model_cli_show(path):
    """The output of `saved_model_cli show --dir PATH --all` (which must succeed)."""
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", str(path), "--all"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def signature_tensors(cli_output):
    """`{signature: {("input"|"output", name): (dtype, shape)}}` from `saved_model_cli show --all`."""
    signatures = {}
    for block in cli_output.split("signature_def['")[1:]:
        name = block.split("'")[0]
        tensors = {}
        for kind in ("input", "output"):
            part = block.split(f"SignatureDef contains the following {kind}(s):")[1]
            part = part.split("SignatureDef contains the following")[0].split("Method name")[0]
            for entry in part.split("['")[1:]:
                key = entry.split("'")[0]
                dtype = entry.split("dtype: ")[1].split()[0]
                shape = entry.split("shape: ")[1].split("\n")[0].strip()
                tensors[(kind, key)] = (dtype, shape)
        signatures[name] = tensors
    return signatures


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
