"""Small embedders and serving checks shared by the export tests.

Used by tests/export/{savedmodel,onnx}_test.py and, through
tests/export/savedmodel_test.py, tests/papers/{fpm_model,rawnet_export}_test.py. The SavedModel is served in a subprocess where `keras` and
`keras_spk` cannot be imported, as a serving process would.
`keras_embed(model, x)` here embeds a `[batch, samples]` batch
(tests/helpers/embedders.py has the one-waveform one).
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import PreEmphasis

DIM = 16
IDENTITIES = 2


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
