"""Exporting a waveform -> embedding model as a TensorFlow SavedModel.

The SavedModel is what TF Serving loads (`<model>/<version>/`), and it runs
in any process with TensorFlow alone: neither Keras nor `keras_spk` is
needed to load or call it. Exporting needs the TensorFlow backend;
`export_from_weights` and `export_from_model_file` do it from any backend by
re-building the model under TensorFlow in a subprocess.
"""

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import keras

from keras_spk.utils.loading import check_model_file
from keras_spk.utils.loading import load_model

SERVING_SIGNATURE = "serving_default"
PADDED_SIGNATURE = "embed_padded"
OUTPUT_KEY = "embeddings"


def export_saved_model(embedder, path, *, lengths_signature=True, overwrite=False):
    """Writes `embedder` as a SavedModel with variable-length signatures.

    Signatures (inputs and outputs are named as below, which is what TF
    Serving's REST and gRPC APIs use):

    - `serving_default`: `waveforms` float32 `[batch, samples]` ->
      `{"embeddings": float32 [batch, dim]}`; every row of the batch has the
      same length (one utterance per request, or equal-length crops). A
      multi-identity embedder (one embedding per speaker of a mixture)
      gives `[batch, K, dim]` instead, here and in `embed_padded`.
    - `embed_padded` (with `lengths_signature`): `waveforms` float32
      `[batch, samples]`, zero-padded on the right, and `lengths` int32
      `[batch]` -> `{"embeddings": [batch, dim]}`, each row embedded on its
      first `lengths[i]` samples only, so the padding never reaches the
      front-end or the pooling. Rows are run one at a time (a `tf.map_fn`
      over the batch calling the model on `[1, lengths[i]]`): the result
      equals embedding each utterance alone, at the cost of giving up batch
      parallelism inside the model, so it takes about as long as `batch`
      separate calls. A length outside `[0, samples]` is an error.

    The SavedModel is written into a hidden temporary folder beside `path`
    and renamed to `path` once complete, so a reader (TF Serving watching
    `<model>/`) never sees a half-written version, and a failed export
    leaves nothing at `path`.

    Args:
        embedder: Keras model mapping float32 waveforms `[batch, samples]`
            (any `samples`) to embeddings `[batch, dim]`, or
            `[batch, K, dim]` (K identities, e.g. the speakers of a
            mixture). The front-end (e.g. `PreEmphasis`,
            `LogMelFilterbank`) is part of the model.
        path: folder to create, e.g. `exports/speaker/1` for TF Serving.
        lengths_signature: bool, also write the `embed_padded` signature.
        overwrite: bool, replace an existing `path`. If `False` (default),
            an existing `path` is an error: TF Serving versions are meant to
            be immutable, so export a new version number instead.

    Returns:
        The absolute path written.

    Raises:
        RuntimeError: if the Keras backend is not TensorFlow (re-load the
            weights under TensorFlow, e.g. with `export_from_weights`).
        FileExistsError: if `path` exists and `overwrite` is `False`.
        ValueError: if the embeddings are neither `[batch, dim]` nor
            `[batch, K, dim]`.

    Example:

    >>> export_saved_model(embedder, "exports/speaker/1")  # doctest: +SKIP
    '/.../exports/speaker/1'
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "export_saved_model() needs the TensorFlow backend; the current "
            f"backend is {backend!r}. Save the weights (model.save_weights("
            "'embedder.weights.h5')) and export with keras_spk.export."
            "export_from_weights('my_module:build_embedder', 'embedder.weights.h5', "
            f"{os.fspath(path)!r}), which re-builds the model under TensorFlow in a "
            "subprocess (or run tools/export.py)."
        )
    import tensorflow as tf

    def embed(waveforms):
        return keras.ops.cast(embedder(waveforms, training=False), "float32")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveforms")])
    def serving_default(waveforms):
        return {OUTPUT_KEY: embed(waveforms)}

    # Tracing here also tells the embedding shape for the padded signature.
    traced = serving_default.get_concrete_function()
    embedding_shape = traced.structured_outputs[OUTPUT_KEY].shape
    if embedding_shape.rank not in (2, 3):
        raise ValueError(
            "The embedder must map [batch, samples] waveforms to [batch, dim] embeddings, "
            "or to [batch, K, dim] (K identities, e.g. the speakers of a mixture). "
            f"Received: output shape {embedding_shape} (rank {embedding_shape.rank})"
        )
    row_shape = embedding_shape[1:]  # [dim] or [K, dim]

    archive = keras.export.ExportArchive()
    archive.track(embedder)
    archive.add_endpoint(SERVING_SIGNATURE, serving_default)

    if lengths_signature:

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="waveforms"),
                tf.TensorSpec([None], tf.int32, name="lengths"),
            ]
        )
        def embed_padded(waveforms, lengths):
            checks = [
                tf.debugging.assert_equal(
                    tf.shape(lengths)[0],
                    tf.shape(waveforms)[0],
                    message="embed_padded: `lengths` needs one entry per waveform row",
                ),
                tf.debugging.assert_non_negative(
                    lengths, message="embed_padded: `lengths` must be >= 0"
                ),
                tf.debugging.assert_less_equal(
                    lengths,
                    tf.shape(waveforms)[1],
                    message="embed_padded: `lengths` must be <= the padded length",
                ),
            ]
            with tf.control_dependencies(checks):
                lengths = tf.identity(lengths)

            def embed_row(row_and_length):
                row, length = row_and_length
                return embed(row[tf.newaxis, :length])[0]

            embeddings = tf.map_fn(
                embed_row,
                (waveforms, lengths),
                fn_output_signature=tf.TensorSpec(row_shape, tf.float32),
            )
            return {OUTPUT_KEY: embeddings}

        embed_padded.get_concrete_function()
        archive.add_endpoint(PADDED_SIGNATURE, embed_padded)

    with atomic_directory(path, overwrite=overwrite) as tmp:
        archive.write_out(tmp, verbose=False)
    return os.path.abspath(os.fspath(path))


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yields a temporary folder that becomes `path` when the block succeeds.

    The folder is a hidden sibling of `path` (same file system, so the final
    `os.rename` is atomic, and a name that TF Serving, which only loads
    numeric version folders, ignores). If the block raises, it is removed
    and `path` is untouched. With `overwrite`, an existing `path` is moved
    aside just before the rename and deleted after it.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists. Export to a new version folder (TF Serving "
            "versions are immutable) or pass overwrite=True."
        )
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.partial-")
    try:
        target = os.path.join(staging, name)
        yield target
        if not os.path.isdir(target):
            raise RuntimeError(f"Nothing was written to the temporary folder {target}")
        if os.path.lexists(path):
            # Moved into the staging folder, so the cleanup below deletes it.
            os.rename(path, os.path.join(staging, f"{name}.old"))
        os.rename(target, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------
# Export from another backend: re-build under TensorFlow in a subprocess.
# --------------------------------------------------------------------------


def _builder_name(build_fn):
    """`"module:function"` for a string or an importable top-level function."""
    if isinstance(build_fn, str):
        module, sep, function = build_fn.partition(":")
        if not (module and sep and function):
            raise ValueError(
                "`build_fn` must be a 'module:function' string, e.g. "
                f"'papers.demo.model:build_embedder'. Received: build_fn={build_fn!r}"
            )
        return build_fn
    module = getattr(build_fn, "__module__", None)
    qualname = getattr(build_fn, "__qualname__", "")
    if callable(build_fn) and module and module != "__main__" and "<" not in qualname:
        return f"{module}:{qualname}"
    raise ValueError(
        "`build_fn` must be a 'module:function' string or a function importable "
        "from another process (defined at the top level of an importable module, "
        f"not in __main__ or inside another function). Received: build_fn={build_fn!r}"
    )


def _resolve(name):
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _load_embedder(spec):
    """Builds or loads the model described by `spec` (in the current backend)."""
    if spec.get("model"):
        return load_model(spec["model"])
    embedder = _resolve(spec["builder"])(**spec.get("builder_kwargs", {}))
    embedder.load_weights(spec["weights"])
    return embedder


def _export_spec(spec):
    """Subprocess entry point: build/load under TensorFlow, then export."""
    embedder = _load_embedder(spec)
    written = export_saved_model(
        embedder,
        spec["path"],
        lengths_signature=spec["lengths_signature"],
        overwrite=spec["overwrite"],
    )
    print(written)


def _run_under_tensorflow(spec, timeout):
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The subprocess must import the builder's module the way this process
    # does, so it gets this process's sys.path (e.g. a script's folder).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    code = (
        "import json, sys\n"
        "from keras_spk.export import savedmodel\n"
        "savedmodel._export_spec(json.loads(sys.argv[1]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            "Exporting under the TensorFlow backend failed (subprocess exit code "
            f"{result.returncode}). Its error output ends with:\n{result.stderr[-4000:]}"
        )
    return os.path.abspath(spec["path"])


def export_from_weights(
    build_fn,
    weights_path,
    path,
    *,
    builder_kwargs=None,
    lengths_signature=True,
    overwrite=False,
    timeout=None,
):
    """Re-builds an embedder under TensorFlow from saved weights and exports it.

    For models trained under another backend (PyTorch): `export_saved_model`
    needs TensorFlow, and a Keras process has one backend, so this starts
    `python` with `KERAS_BACKEND=tensorflow`, calls
    `build_fn(**builder_kwargs)`, loads `weights_path` into it and runs
    `export_saved_model(model, path)` there. Weights saved by
    `model.save_weights()` are backend-independent.

    Args:
        build_fn: `"module:function"` string, or a top-level function of an
            importable module (it runs in another process), returning the
            un-trained embedder.
        weights_path: a `.weights.h5` file written by `model.save_weights()`.
        path: SavedModel folder to create (see `export_saved_model`).
        builder_kwargs: dict of JSON-serialisable keyword arguments for
            `build_fn`.
        lengths_signature: bool, also write the `embed_padded` signature.
        overwrite: bool, replace an existing `path`.
        timeout: seconds to wait for the subprocess, or `None`.

    Returns:
        The absolute path written.

    Raises:
        FileNotFoundError: if `weights_path` does not exist.
        RuntimeError: if the export fails in the subprocess; the message
            carries the end of its error output.
    """
    builder = _builder_name(build_fn)
    weights_path = os.path.abspath(os.fspath(weights_path))
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"Weights file not found: {weights_path}. Write it with "
            "model.save_weights('embedder.weights.h5')."
        )
    try:
        kwargs_json = json.dumps(builder_kwargs or {})
    except TypeError as error:
        raise ValueError(
            "`builder_kwargs` must be JSON-serialisable (it is passed to another "
            f"process). Received: builder_kwargs={builder_kwargs!r}"
        ) from error
    spec = {
        "builder": builder,
        "builder_kwargs": json.loads(kwargs_json),
        "weights": weights_path,
        "path": os.path.abspath(os.fspath(path)),
        "lengths_signature": bool(lengths_signature),
        "overwrite": bool(overwrite),
    }
    return _run_under_tensorflow(spec, timeout)


def export_from_model_file(model_path, path, *, lengths_signature=True, overwrite=False, timeout=None):
    """Loads a `.keras` file under TensorFlow (in a subprocess) and exports it.

    The `.keras` equivalent of `export_from_weights`: works from any
    backend. Custom layers other than `keras_spk`'s must be registered
    (`keras.saving.register_keras_serializable`) by a module that the file's
    config names.

    Args:
        model_path: a `.keras` file written by `model.save()`.
        path: SavedModel folder to create (see `export_saved_model`).
        lengths_signature: bool, also write the `embed_padded` signature.
        overwrite: bool, replace an existing `path`.
        timeout: seconds to wait for the subprocess, or `None`.

    Returns:
        The absolute path written.

    Raises:
        FileNotFoundError: if `model_path` does not exist.
        ValueError: if `model_path` is not a `.keras` file.
        RuntimeError: if the export fails in the subprocess; the message
            carries the end of its error output.
    """
    model_path = check_model_file(os.path.abspath(os.fspath(model_path)))
    spec = {
        "model": model_path,
        "path": os.path.abspath(os.fspath(path)),
        "lengths_signature": bool(lengths_signature),
        "overwrite": bool(overwrite),
    }
    return _run_under_tensorflow(spec, timeout)
