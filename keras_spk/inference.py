"""Embedding whole utterances with a trained embedder, one at a time.

`embed_files(model, paths)` reads each file as a whole utterance (decoded,
mixed down to mono and resampled by `keras_spk.data`), runs the embedder on
it as a batch of one and returns the stacked embeddings. One utterance per
call means no padding ever reaches the front-end or the pooling, so each row
equals `model(waveform[None])` for that file alone. `embed_waveforms` does
the same for waveforms already in memory.

The embedder is a Keras model (called with `training=False`) or any callable
mapping float32 waveforms `[1, samples]` to embeddings `[1, dim]`, e.g. a
wrapped SavedModel signature (see `tools/extract.py`).
"""

import os

import keras
import numpy as np

from keras_spk.utils._checks import check_positive_int

__all__ = ["embed_files", "embed_waveforms", "embedding_function", "read_waveforms"]


def embed_waveforms(model_or_callable, waveforms, progress=False, names=None):
    """Embeds waveforms one at a time.

    Args:
        model_or_callable: a Keras model, or a callable mapping float32
            `[1, samples]` to `[1, dim]` (numpy or tensor output).
        waveforms: iterable of 1-D float arrays `[samples]`.
        progress: bool, show a `keras.utils.Progbar`.
        names: optional name of each waveform, used in error messages
            (default: `"waveform <index>"`).

    Returns:
        float32 numpy array `[len(waveforms), dim]`.

    Raises:
        ValueError: a waveform is not 1-D or is empty, or the model returns
            something other than one finite `[1, dim]` row, or embeddings of
            different sizes. The message names the waveform.
    """
    waveforms = list(waveforms)
    if not waveforms:
        raise ValueError("embed_waveforms needs at least one waveform. Received none.")
    if names is not None and len(names) != len(waveforms):
        raise ValueError(
            f"`names` must name each waveform. Received: {len(names)} names for {len(waveforms)} waveforms"
        )
    embed = embedding_function(model_or_callable)
    bar = keras.utils.Progbar(len(waveforms), unit_name="utterance") if progress else None
    rows = []
    for index, waveform in enumerate(waveforms):
        name = f"waveform {index}" if names is None else names[index]
        waveform = np.asarray(waveform, dtype="float32")
        if waveform.ndim != 1 or waveform.size == 0:
            raise ValueError(
                f"{name}: expected a non-empty 1-D waveform [samples]. Received shape {waveform.shape}."
            )
        rows.append(_check_row(embed(waveform[None]), name, rows))
        if bar is not None:
            bar.add(1)
    return np.stack(rows)


def embed_files(model_or_callable, paths, sample_rate=16000, progress=True, *, min_samples=1):
    """Embeds audio files, each as one whole utterance.

    Files are decoded in a background `tf.data` pipeline
    (`keras_spk.data.evaluation_dataset`) while the model runs, and embedded
    one at a time, in the order of `paths`.

    Args:
        model_or_callable: a Keras model mapping waveforms `[batch, samples]`
            to embeddings `[batch, dim]` (called with `training=False`), or a
            callable mapping a float32 numpy array `[1, samples]` to `[1, dim]`.
        paths: audio file paths (WAV, FLAC, Ogg Vorbis, MP3).
        sample_rate: int, the rate the model expects; files at another rate
            are resampled.
        progress: bool, show a `keras.utils.Progbar`.
        min_samples: int, the fewest samples (after resampling) an
            utterance may have.

    Returns:
        float32 numpy array `[len(paths), dim]`, row `i` the embedding of
        `paths[i]`.

    Raises:
        FileNotFoundError: files that do not exist (up to ten are named).
        keras_spk.data.AudioError: a file that cannot be decoded (empty,
            truncated, corrupt, NaN/Inf samples) or is shorter than
            `min_samples`; the message names the file.
        ValueError: the model gives something other than one finite
            `[1, dim]` row for a file (the message names it).

    Example:

    >>> embeddings = embed_files(embedder, trials.paths)  # doctest: +SKIP
    >>> embeddings.shape
    (4874, 512)
    """
    from keras_spk.data.audio import AudioError

    sample_rate = check_positive_int("sample_rate", sample_rate)
    min_samples = check_positive_int("min_samples", min_samples)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("embed_files needs at least one audio file. Received an empty list.")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} audio file(s) not found: "
            + ", ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + ". Check the paths and the audio folder they are relative to."
        )
    embed = embedding_function(model_or_callable)
    bar = keras.utils.Progbar(len(paths), unit_name="utterance") if progress else None
    rows = []
    for path, waveform in zip(paths, read_waveforms(paths, sample_rate)):
        if waveform.shape[0] < min_samples:
            raise AudioError(
                f"{path}: {waveform.shape[0]} samples ({waveform.shape[0] / sample_rate:.3f} s at "
                f"{sample_rate} Hz), fewer than the minimum of {min_samples}. Remove the file from "
                "the list, or lower the minimum if the model accepts such short input."
            )
        rows.append(_check_row(embed(waveform[None]), path, rows))
        if bar is not None:
            bar.add(1)
    return np.stack(rows)


def read_waveforms(paths, sample_rate):
    """Yields the waveform (float32 `[samples]`) of each path, in order.

    Files are decoded in a background `tf.data` pipeline; a file that cannot
    be decoded raises `keras_spk.data.AudioError` naming it.
    """
    from keras_spk.data.audio import AudioError
    from keras_spk.data.audio import find_bad_audio
    from keras_spk.data.audio import read_audio
    from keras_spk.data.pipeline import evaluation_dataset

    done = 0
    try:
        for _, waveform, _ in evaluation_dataset(paths, sample_rate).as_numpy_iterator():
            yield waveform[0]
            done += 1
    except Exception:  # the pipeline's decoding error (a tf.errors.OpError)
        # The pipeline keeps the order, so the failing file is the next one; it is
        # re-read alone for a message naming it, then the rest.
        problem = None
        if done < len(paths):
            try:
                read_audio(paths[done], sample_rate)
            except AudioError as error:
                problem = str(error)
        if problem is None:
            bad = find_bad_audio(paths[done:], sample_rate)
            problem = bad[0][1] if bad else None
        if problem is None:
            raise
        raise AudioError(problem) from None


def embedding_function(model_or_callable):
    """A function `waveform [1, samples] (numpy) -> output`, for a model or a callable.

    A Keras model is called with `training=False` through one traced function
    for any length (TensorFlow) or without autograd (PyTorch); build it once
    and reuse it for many utterances. Any other callable is returned as is.
    """
    if isinstance(model_or_callable, keras.Layer):
        return _compiled_call(model_or_callable)
    if callable(model_or_callable):
        return model_or_callable
    raise ValueError(
        "`model_or_callable` must be a Keras model or a callable mapping waveforms [1, samples] "
        f"to embeddings [1, dim]. Received: model_or_callable={model_or_callable!r}"
    )


def _compiled_call(model):
    """`model(x, training=False)` without per-call overhead, for any utterance length.

    TensorFlow: one `tf.function` traced for `[1, None]` waveforms (eager
    execution of every layer would dominate for small models, and a
    function traced per length would retrace for every utterance). PyTorch:
    the eager call without autograd bookkeeping.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([1, None], tf.float32)],
        )
        return lambda x: function(tf.constant(x)).numpy()
    if backend == "torch":
        import torch

        def call(x):
            with torch.no_grad():
                return keras.ops.convert_to_numpy(model(x, training=False))

        return call
    return lambda x: keras.ops.convert_to_numpy(model(x, training=False))


def _to_numpy(output):
    if keras.ops.is_tensor(output):
        return keras.ops.convert_to_numpy(output)
    return np.asarray(output)


def _check_row(output, name, rows):
    """The embedding of one utterance as a float32 [dim] row, or an error naming it."""
    try:
        row = _to_numpy(output)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}: the model output ({type(output).__name__}) is not an array of embeddings "
            f"[1, dim] ({error})."
        ) from None
    if row.ndim != 2 or row.shape[0] != 1 or row.dtype.kind not in "fiu":
        raise ValueError(
            f"{name}: the model must map a waveform [1, samples] to one embedding [1, dim]. "
            f"Received an output of shape {row.shape} and dtype {row.dtype}."
        )
    row = row[0].astype("float32")
    if rows and row.shape != rows[0].shape:
        raise ValueError(
            f"{name}: embedding of size {row.shape[0]}, but the earlier ones have size "
            f"{rows[0].shape[0]}; the model must give one embedding size."
        )
    if not np.isfinite(row).all():
        raise ValueError(
            f"{name}: the embedding holds NaN or Inf. Check the audio (silence or a very short "
            "utterance often causes this) and the model."
        )
    return row
