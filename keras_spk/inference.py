"""Embedding whole utterances with a trained embedder, one at a time.

`embed_files(model, paths)` reads each file as a whole utterance (decoded,
mixed down to mono and resampled by `keras_spk.data`), runs the embedder on
it as a batch of one and returns the stacked embeddings. One utterance per
call means no padding ever reaches the front-end or the pooling, so each row
equals `model(waveform[None])` for that file alone. `embed_waveforms` does
the same for waveforms already in memory.

`embed_crops(model, paths, num_crops=10, crop_samples=...)` embeds fixed-length
crops of each file instead, spread evenly over the utterance (`crop_offsets`;
a short utterance is first repeated end to end), the crops of one file as one
batch: the multi-crop test protocol scored by
`keras_spk.scoring.multi_crop_scores`.

The embedder is a Keras model (called with `training=False`) or any callable
mapping float32 waveforms `[1, samples]` to embeddings `[1, dim]`, e.g. a
wrapped SavedModel signature (see `tools/extract.py`). A multi-identity
embedder (e.g. one embedding per speaker of a mixture) maps them to
`[1, K, dim]` instead; the stacked result is then `[n, K, dim]`.

An embedding is never returned silently broken: NaN/Inf or all-zero output
(of any identity) is an error naming the utterance. An utterance shorter
than the model's frame (or pooling window) gives no embedding at all, only
a value that does not depend on the audio; `find_min_samples(model)` finds the shortest
length the model does embed, and `embed_files(..., min_samples="auto")`
refuses shorter files. A Keras model whose front-end declares its sample
rate (e.g. `LogMelFilterbank(sample_rate=...)`, see `model_sample_rate`)
refuses to embed audio at another rate.
"""

import os

import keras
import numpy as np

from keras_spk.utils._checks import check_positive_int

__all__ = [
    "crop_offsets",
    "embed_crops",
    "embed_files",
    "embed_waveforms",
    "embedding_function",
    "find_min_samples",
    "model_sample_rate",
    "read_waveforms",
    "utterance_crops",
]

# Longest input `find_min_samples` tries (65.5 s at 16 kHz).
MAX_PROBE_SAMPLES = 2**20


def embed_waveforms(model_or_callable, waveforms, progress=False, names=None):
    """Embeds waveforms one at a time.

    Args:
        model_or_callable: a Keras model, or a callable mapping float32
            `[1, samples]` to `[1, dim]`, or to `[1, K, dim]` for a
            multi-identity embedder (numpy or tensor output).
        waveforms: iterable of 1-D float arrays `[samples]`.
        progress: bool, show a `keras.utils.Progbar`.
        names: optional name of each waveform, used in error messages
            (default: `"waveform <index>"`).

    Returns:
        float32 numpy array `[len(waveforms), dim]`, or
        `[len(waveforms), K, dim]` for a multi-identity embedder.

    Raises:
        ValueError: a waveform is not 1-D or is empty, or the model returns
            something other than a finite `[1, dim]` or `[1, K, dim]` array
            with no all-zero embedding, or a shape other than the earlier
            waveforms'. The message names the waveform (and the identity).
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
            to embeddings `[batch, dim]`, or `[batch, K, dim]` for a
            multi-identity embedder (called with `training=False`), or a
            callable mapping a float32 numpy array `[1, samples]` to
            `[1, dim]` or `[1, K, dim]`.
        paths: audio file paths (WAV, FLAC, Ogg Vorbis, MP3).
        sample_rate: int, the rate the model expects; files at another rate
            are resampled. A Keras model whose front-end declares another
            rate (`model_sample_rate`) is an error.
        progress: bool, show a `keras.utils.Progbar`.
        min_samples: int, the fewest samples (after resampling) an
            utterance may have, or `"auto"`: the model's own minimum,
            found by `find_min_samples` (a few calls on short inputs).

    Returns:
        float32 numpy array `[len(paths), dim]`, row `i` the embedding of
        `paths[i]`; `[len(paths), K, dim]` for a multi-identity embedder
        (every file must give the same `K` and `dim`).

    Raises:
        FileNotFoundError: files that do not exist (up to ten are named).
        keras_spk.data.AudioError: a file that cannot be decoded (empty,
            truncated, corrupt, NaN/Inf samples) or is shorter than
            `min_samples`; the message names the file.
        ValueError: the model gives something other than a finite
            `[1, dim]` or `[1, K, dim]` array with no all-zero embedding for
            a file, or a shape other than the earlier files' (the message
            names the file and the identity), or its front-end's sample rate
            is not `sample_rate`.

    Example:

    >>> embeddings = embed_files(embedder, trials.paths)  # doctest: +SKIP
    >>> embeddings.shape
    (4874, 512)
    """
    sample_rate, min_samples, paths = _check_file_arguments(
        "embed_files", model_or_callable, paths, sample_rate, min_samples
    )
    embed = embedding_function(model_or_callable)
    if min_samples == "auto":
        min_samples = find_min_samples(embed)
    bar = keras.utils.Progbar(len(paths), unit_name="utterance") if progress else None
    rows = []
    for path, waveform in zip(paths, read_waveforms(paths, sample_rate)):
        _check_length(path, waveform, min_samples, sample_rate)
        rows.append(_check_row(embed(waveform[None]), path, rows))
        if bar is not None:
            bar.add(1)
    return np.stack(rows)


def _check_file_arguments(caller, model_or_callable, paths, sample_rate, min_samples):
    """`(sample_rate, min_samples, paths)` checked; every file exists; the model's rate matches."""
    sample_rate = check_positive_int("sample_rate", sample_rate)
    if min_samples != "auto":
        min_samples = check_positive_int("min_samples", min_samples)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError(f"{caller} needs at least one audio file. Received an empty list.")
    from keras_spk.utils.file_checks import check_files_exist

    check_files_exist(paths, "audio file", fix="Check the paths and the audio folder they are relative to.")
    _check_sample_rate(model_or_callable, sample_rate)
    return sample_rate, min_samples, paths


def _check_length(path, waveform, min_samples, sample_rate):
    """Raises `AudioError` naming `path` when its waveform is shorter than `min_samples`."""
    from keras_spk.data.audio import AudioError

    if waveform.shape[0] < min_samples:
        raise AudioError(
            f"{path}: {waveform.shape[0]} samples ({waveform.shape[0] / sample_rate:.3f} s at "
            f"{sample_rate} Hz), fewer than the minimum of {min_samples} samples "
            f"({min_samples / sample_rate:.3f} s) that the embedder needs. Remove the file "
            "from the list, or use a longer recording."
        )


# Crop length when none is given: 3 s, as in the multi-crop tests of Chung et al.
# (2018) and Xu et al. (2020, section 4.6).
DEFAULT_CROP_SECONDS = 3.0


def crop_offsets(num_samples, crop_samples, num_crops=10):
    """Where each crop of an utterance starts: `num_crops` offsets spread evenly over it.

    For an utterance of `n` samples and crops of `L`, crop `i` starts at
    `floor(i * (n - L) / (num_crops - 1))`: the integers of
    `numpy.linspace(0, n - L, num_crops)` rounded down (computed in integer
    arithmetic, so a whole value is never rounded down to the integer
    below), the first crop at the start and the last one ending at the
    last sample. An utterance of at most `L` samples (repeated up to `L`
    by `utterance_crops`) gives `num_crops` zeros; one crop starts at 0.

    Args:
        num_samples: int, the utterance's length `n`.
        crop_samples: int, the crop length `L`.
        num_crops: int.

    Returns:
        int64 numpy array `[num_crops]`, non-decreasing.

    Example:

    >>> crop_offsets(160000, 48000, 10)  # 10 s at 16 kHz, 3-s crops
    array([     0,  12444,  24888,  37333,  49777,  62222,  74666,  87111,
            99555, 112000])
    """
    num_samples = check_positive_int("num_samples", num_samples)
    crop_samples = check_positive_int("crop_samples", crop_samples)
    num_crops = check_positive_int("num_crops", num_crops)
    span = max(num_samples - crop_samples, 0)
    if num_crops == 1:
        return np.zeros(1, dtype=np.int64)
    return np.arange(num_crops, dtype=np.int64) * span // (num_crops - 1)


def utterance_crops(waveform, crop_samples, num_crops=10):
    """The `num_crops` crops of `crop_samples` samples of one waveform, at `crop_offsets`.

    A waveform shorter than `crop_samples` is first repeated end to end up
    to `crop_samples` samples, as the training crops are
    (`keras_spk.data.crop_or_repeat`, here from the utterance's start), so
    every crop is then that one repeated utterance.

    Args:
        waveform: 1-D float array `[samples]`, not empty.
        crop_samples: int, the crop length.
        num_crops: int.

    Returns:
        float32 numpy array `[num_crops, crop_samples]`.

    Example:

    >>> utterance_crops(np.arange(5.0), 3, 3)
    array([[0., 1., 2.],
           [1., 2., 3.],
           [2., 3., 4.]], dtype=float32)
    >>> utterance_crops(np.arange(2.0), 5, 2)
    array([[0., 1., 0., 1., 0.],
           [0., 1., 0., 1., 0.]], dtype=float32)
    """
    crop_samples = check_positive_int("crop_samples", crop_samples)
    waveform = np.asarray(waveform, dtype="float32")
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(
            f"`waveform` must be a non-empty 1-D array [samples]. Received: waveform with shape {waveform.shape}"
        )
    if waveform.shape[0] < crop_samples:
        waveform = np.tile(waveform, -(-crop_samples // waveform.shape[0]))[:crop_samples]
    offsets = crop_offsets(waveform.shape[0], crop_samples, num_crops)
    return np.stack([waveform[offset : offset + crop_samples] for offset in offsets])


def embed_crops(
    model_or_callable, paths, num_crops=10, crop_samples=None, sample_rate=16000, progress=True,
    *, min_samples=1,
):
    """Embeds `num_crops` fixed-length crops of each audio file (the multi-crop test protocol).

    Each file is read as `embed_files` reads it (decoded, mixed down to
    mono, resampled, in a background `tf.data` pipeline) and cut by
    `utterance_crops`: crop `i` of an utterance of `n` samples starts at
    sample `floor(i * (n - L) / (num_crops - 1))` (`crop_offsets`, the
    integers of `numpy.linspace(0, n - L, num_crops)` rounded down), and an
    utterance shorter than the crop length `L` is first repeated end to end
    up to `L` samples (its crops are then all the same). The crops of one
    file are embedded as one batch `[num_crops, L]`; under TensorFlow a
    Keras model is traced once for that shape.

    Args:
        model_or_callable: a Keras model mapping waveforms `[batch, samples]`
            to embeddings `[batch, dim]` (or `[batch, K, dim]` for a
            multi-identity embedder), called with `training=False`, or a
            callable mapping a float32 numpy array `[num_crops, L]` to
            `[num_crops, dim]` (or `[num_crops, K, dim]`).
        paths: audio file paths (WAV, FLAC, Ogg Vorbis, MP3).
        num_crops: int, crops per utterance. Defaults to `10`.
        crop_samples: int, the crop length `L` in samples (after
            resampling). Defaults to 3 s at `sample_rate`.
        sample_rate: int, the rate the model expects (see `embed_files`).
        progress: bool, show a `keras.utils.Progbar`.
        min_samples: int, the fewest samples a file may have (before any
            repetition), or `"auto"` (see `embed_files`); the crops must be
            at least that long too.

    Returns:
        float32 numpy array `[len(paths), num_crops, dim]`, row `i` the crop
        embeddings of `paths[i]` in the order of their offsets;
        `[len(paths), num_crops, K, dim]` for a multi-identity embedder.

    Raises:
        FileNotFoundError: files that do not exist (up to ten are named).
        keras_spk.data.AudioError: a file that cannot be decoded or is
            shorter than `min_samples`; the message names the file.
        ValueError: bad arguments (e.g. crops shorter than `min_samples`),
            or the model gives something other than a finite
            `[num_crops, dim]` (or `[num_crops, K, dim]`) array with no
            all-zero embedding for a file's crops, or a shape other than
            the earlier files' (the message names the file and the crop).

    Example:

    >>> crops = embed_crops(embedder, trials.paths, num_crops=10, crop_samples=48000)  # doctest: +SKIP
    >>> crops.shape
    (4874, 10, 512)
    >>> scores = multi_crop_scores(crops, crops, index=trials.indices())  # doctest: +SKIP
    """
    sample_rate, min_samples, paths = _check_file_arguments(
        "embed_crops", model_or_callable, paths, sample_rate, min_samples
    )
    num_crops = check_positive_int("num_crops", num_crops)
    if crop_samples is None:
        crop_samples = int(round(DEFAULT_CROP_SECONDS * sample_rate))
    crop_samples = check_positive_int("crop_samples", crop_samples)
    if min_samples == "auto":
        min_samples = find_min_samples(embedding_function(model_or_callable))
    if crop_samples < min_samples:
        raise ValueError(
            f"`crop_samples` must be at least the {min_samples} samples ({min_samples / sample_rate:.3f} s "
            f"at {sample_rate} Hz) the embedder needs (`min_samples`). Received: crop_samples={crop_samples}"
        )
    embed = embedding_function(model_or_callable, batch_shape=(num_crops, crop_samples))
    bar = keras.utils.Progbar(len(paths), unit_name="utterance") if progress else None
    rows = []
    for path, waveform in zip(paths, read_waveforms(paths, sample_rate)):
        _check_length(path, waveform, min_samples, sample_rate)
        crops = utterance_crops(waveform, crop_samples, num_crops)
        rows.append(_check_crop_rows(embed(crops), path, num_crops, rows))
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


def model_sample_rate(model):
    """The sample rate a Keras model's layers declare, or `None` when none does.

    Front-end layers that compute features in Hz or seconds (e.g.
    `LogMelFilterbank`, `LogSpectrogram`, `EnergyVAD`) store their
    `sample_rate`; raw-waveform models (e.g. RawNet, whose front-end is
    `PreEmphasis` and convolutions) declare none. Any other callable (e.g.
    a SavedModel signature) gives `None`.

    Raises:
        ValueError: two layers declare different rates (the model is
            inconsistent; the message names them).
    """
    if not isinstance(model, keras.Layer):
        return None
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=True, recursive=True)) if flatten else [model]
    rates = {}
    for layer in layers:
        rate = getattr(layer, "sample_rate", None)
        if isinstance(rate, (int, np.integer)) and not isinstance(rate, bool):
            rates.setdefault(int(rate), []).append(layer.name)
    if len(rates) > 1:
        found = "; ".join(f"{rate} Hz in {', '.join(names)}" for rate, names in sorted(rates.items()))
        raise ValueError(f"The model's layers declare different sample rates: {found}.")
    return next(iter(rates), None)


def _check_sample_rate(model_or_callable, sample_rate):
    """Raises when a Keras model's front-end declares a rate other than `sample_rate`."""
    declared = model_sample_rate(model_or_callable)
    if declared is not None and declared != sample_rate:
        raise ValueError(
            f"The model's front-end works at {declared} Hz, but sample_rate={sample_rate} was "
            f"given. Embed at the model's rate (sample_rate={declared}); files at other rates "
            "are resampled to it."
        )


def find_min_samples(model_or_callable, max_samples=MAX_PROBE_SAMPLES, seed=0):
    """The shortest input, in samples, the embedder gives a real embedding for.

    Shorter than one analysis frame (or than the product of a CNN's
    pooling factors), a model has nothing to pool: depending on its layers
    it gives NaN, all zeros, a constant (e.g. only a bias), or an error.
    This probes the model on two unrelated signals (noise, a sine plus
    noise) of lengths 1, 2, 4, ... and then bisects: a length is usable
    when both outputs are finite, not all zero, and differ from each other
    (by more than float rounding: the output depends on the audio); for a
    multi-identity embedder (`[1, K, dim]`), every identity's must. About `2 * log2(min_samples)` calls,
    on inputs shorter than twice the answer.

    Args:
        model_or_callable: as for `embed_waveforms`.
        max_samples: int, the longest length tried.
        seed: int, of the probe signals.

    Returns:
        int, the minimum length; every length from it up to `max_samples`
        is assumed usable too (true of framing and pooling, which only get
        more frames from longer input).

    Raises:
        ValueError: no length up to `max_samples` is usable; the message
            says what the model gave (or raised) at the longest one.

    Example:

    >>> find_min_samples(fpm_embedder)  # 25-ms frames at 16 kHz  # doctest: +SKIP
    400
    """
    max_samples = check_positive_int("max_samples", max_samples)
    embed = embedding_function(model_or_callable)
    rng = np.random.default_rng(seed)
    t = np.arange(max_samples)
    probes = np.stack(
        [
            0.3 * rng.standard_normal(max_samples),
            0.8 * np.sin(2 * np.pi * t / 37.0) + 0.05 * rng.standard_normal(max_samples),
        ]
    ).astype("float32")
    problems = {}

    def usable(n):
        try:
            a, b = (_to_numpy(embed(probe[None, :n])).astype("float64") for probe in probes)
        except Exception as error:  # too short for the model: any backend's error type
            problems[n] = f"raised {type(error).__name__}: {str(error).strip()[:300]}"
            return False
        if a.shape != b.shape or a.ndim not in (2, 3) or a.shape[0] != 1 or a.size == 0:
            problems[n] = f"gave an output of shape {a.shape} (expected [1, dim] or [1, K, dim])"
            return False
        # One row per identity ([1, dim] is one identity).
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            problems[n] = "gave NaN or Inf"
        elif not (a.any(axis=1).all() and b.any(axis=1).all()):
            problems[n] = "gave an all-zero embedding"
        elif not all(_differ(x, y) for x, y in zip(a, b)):
            problems[n] = "gave the same embedding for different audio"
        else:
            return True
        return False

    low, n = 0, 1  # lengths <= low are unusable; n is the next to try
    while not usable(n):
        low = n
        if n == max_samples:
            raise ValueError(
                f"The embedder gives no usable embedding for any input of up to {max_samples} "
                f"samples: at {max_samples} samples it {problems[max_samples]}. Check the model "
                "(an untrained or broken model, or one that does not map [1, samples] waveforms "
                "to [1, dim] or [1, K, dim] embeddings)."
            )
        n = min(2 * n, max_samples)
    high = n  # usable
    while high - low > 1:
        middle = (low + high) // 2
        if usable(middle):
            high = middle
        else:
            low = middle
    return high


def _differ(a, b):
    """Whether two embeddings differ by more than float32 rounding, in some coordinate.

    A coordinate differs when the gap exceeds 1e-5 of its own size plus
    1e-6 of the largest coordinate: a constant (e.g. a bias alone) plus
    rounding noise does not.
    """
    local = np.maximum(np.abs(a), np.abs(b))
    return bool((np.abs(a - b) > 1e-5 * local + 1e-6 * local.max()).any())


def embedding_function(model_or_callable, batch_shape=(1, None)):
    """A function `waveforms [batch, samples] (numpy) -> output`, for a model or a callable.

    A Keras model is called with `training=False` through one traced function
    for inputs of `batch_shape` (TensorFlow; `None` is any size, so the
    default `(1, None)` is one utterance of any length) or without autograd
    (PyTorch); build it once and reuse it for many utterances. Any other
    callable is returned as is.
    """
    if isinstance(model_or_callable, keras.Layer):
        return _compiled_call(model_or_callable, batch_shape)
    if callable(model_or_callable):
        return model_or_callable
    raise ValueError(
        "`model_or_callable` must be a Keras model or a callable mapping waveforms [1, samples] "
        f"to embeddings [1, dim] or [1, K, dim]. Received: model_or_callable={model_or_callable!r}"
    )


def _compiled_call(model, batch_shape=(1, None)):
    """`model(x, training=False)` without per-call overhead, for inputs of `batch_shape`.

    TensorFlow: one `tf.function` traced for `batch_shape` waveforms
    (default `[1, None]`: eager execution of every layer would dominate for
    small models, and a function traced per length would retrace for every
    utterance). PyTorch: the eager call without autograd bookkeeping.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(list(batch_shape), tf.float32)],
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
    """The embedding(s) of one utterance, float32 `[dim]` or `[K, dim]`, or an error naming it.

    `rows` holds the earlier utterances' results, whose shape this one must
    have.
    """
    expected = "one embedding [1, dim] (or one per identity, [1, K, dim])"
    try:
        row = _to_numpy(output)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}: the model output ({type(output).__name__}) is not an array of {expected} "
            f"({error})."
        ) from None
    if row.ndim not in (2, 3) or row.shape[0] != 1 or row.size == 0 or row.dtype.kind not in "fiu":
        raise ValueError(
            f"{name}: the model must map a waveform [1, samples] to {expected}. "
            f"Received an output of shape {row.shape} and dtype {row.dtype}."
        )
    row = row[0].astype("float32")
    if rows and row.shape != rows[0].shape:
        if row.ndim == rows[0].ndim == 1:
            raise ValueError(
                f"{name}: embedding of size {row.shape[0]}, but the earlier ones have size "
                f"{rows[0].shape[0]}; the model must give one embedding size."
            )
        raise ValueError(
            f"{name}: embeddings of shape {_describe(row.shape)}, but the earlier ones have shape "
            f"{_describe(rows[0].shape)}; the model must give the same number of identities and "
            "embedding size for every utterance."
        )
    identities = row.reshape(-1, row.shape[-1])  # [dim] is one identity

    def which(k):
        return "the embedding" if row.ndim == 1 else f"the embedding of identity {k} (of {len(identities)})"

    bad = np.flatnonzero(~np.isfinite(identities).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{name}: {which(bad[0])} holds NaN or Inf. Check the audio (silence or a very short "
            "utterance often causes this) and the model."
        )
    zero = np.flatnonzero(~identities.any(axis=1))
    if zero.size:
        raise ValueError(
            f"{name}: {which(zero[0])} is all zeros, which no score can use. Check the audio "
            "(silence or an utterance shorter than the model's frame often causes this; "
            "keras_spk.inference.find_min_samples tells the model's minimum) and the model."
        )
    return row


def _check_crop_rows(output, name, num_crops, rows):
    """The embeddings of one utterance's crops, float32 `[num_crops, dim]` or `[num_crops, K, dim]`.

    Each crop is checked as `_check_row` checks an utterance (finite, no
    all-zero embedding, the shape of the earlier utterances' crops in
    `rows`); the message names the utterance and the crop.
    """
    expected = f"[{num_crops}, dim] (or [{num_crops}, K, dim])"
    try:
        output = _to_numpy(output)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}: the model output ({type(output).__name__}) for its {num_crops} crops is not an "
            f"array of shape {expected} ({error})."
        ) from None
    if output.ndim not in (2, 3) or output.shape[0] != num_crops:
        raise ValueError(
            f"{name}: the model must map the {num_crops} crops [{num_crops}, samples] to one embedding "
            f"each, {expected}. Received an output of shape {output.shape}."
        )
    # Each crop's shape must be the earlier utterances' crops' (or this one's first crop's).
    earlier = [rows[0][0]] if rows else []
    crops = []
    for index in range(num_crops):
        crop_name = f"{name} (crop {index + 1} of {num_crops})"
        crops.append(_check_row(output[index : index + 1], crop_name, earlier or crops))
    return np.stack(crops)


def _describe(shape):
    """`[dim]` or `[K, dim]` in words, for messages."""
    if len(shape) == 1:
        return f"[{shape[0]}] (one embedding)"
    return f"[{shape[0]}, {shape[1]}] ({shape[0]} identities of size {shape[1]})"
