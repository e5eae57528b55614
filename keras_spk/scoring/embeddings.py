"""Embedding files: utterance names, their embeddings and (optionally) speakers.

One `.npz` archive, read without pickle:

* `names`: 1-D unicode array, one distinct utterance name per row (the
  names trial lists use, e.g. `id10270/x6uYqmx31kE/00001.wav`);
* `embeddings`: 2-D float array `(n_utterances, dim)`, all finite; or 3-D,
  `(n_utterances, K, dim)`, from a multi-identity embedder (one embedding
  per speaker of a mixture, say), which `load_embeddings` returns only when
  asked (`multi_identity=True`): scoring compares one embedding per
  utterance;
* `speakers` (optional): 1-D unicode array, the speaker of each row, which
  back-ends that learn (LDA, PLDA, ...) need for their training set;
* `format`: 0-d unicode array, `"keras_spk.embeddings"`, and
  `format_version`: 0-d int array, 1.

`tools/extract.py` writes these files and `tools/score.py` reads them.
"""

import io
import os
import zipfile

import numpy as np

from keras_spk.utils.files import atomic_open

__all__ = ["save_embeddings", "load_embeddings", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "keras_spk.embeddings"
FORMAT_VERSION = 1


def _check_names(names, what, where):
    """`names` as a 1-D unicode array of non-empty strings."""
    array = np.asarray(names)
    if array.ndim != 1:
        raise ValueError(f"{where}: `{what}` must be a 1-D list of strings. Received shape {array.shape}.")
    if array.size and array.dtype.kind != "U":
        if array.dtype == object and all(isinstance(n, str) for n in array):
            array = array.astype(str)
        else:
            raise ValueError(f"{where}: `{what}` must be strings. Received dtype {array.dtype}.")
    array = array.astype(str)
    empty = np.flatnonzero(np.char.str_len(array) == 0) if array.size else []
    if len(empty):
        raise ValueError(f"{where}: `{what}` holds {len(empty)} empty name(s), e.g. at row {empty[0]}.")
    return array


def _check(names, embeddings, speakers, where):
    names = _check_names(names, "names", where)
    embeddings = np.asarray(embeddings)
    if embeddings.ndim not in (2, 3):
        raise ValueError(
            f"{where}: `embeddings` must be a 2-D array (one row per name), or 3-D "
            f"(one [K, dim] row of K identities per name). Received shape {embeddings.shape}."
        )
    if embeddings.dtype.kind not in "fiu":
        raise ValueError(f"{where}: `embeddings` must be real numbers. Received dtype {embeddings.dtype}.")
    if embeddings.shape[0] != names.shape[0]:
        raise ValueError(
            f"{where}: {names.shape[0]} names but {embeddings.shape[0]} embedding rows; "
            "there must be one name per row."
        )
    if names.size == 0:
        raise ValueError(f"{where}: no embeddings (0 names).")
    unique, counts = np.unique(names, return_counts=True)
    if (counts > 1).any():
        duplicated = unique[counts > 1]
        raise ValueError(
            f"{where}: {duplicated.size} duplicate name(s), e.g. {duplicated[:3].tolist()}; "
            "every utterance name must appear once."
        )
    if embeddings.dtype.kind == "f":
        bad_rows = np.flatnonzero(~np.isfinite(embeddings.reshape(len(embeddings), -1)).all(axis=1))
        if bad_rows.size:
            raise ValueError(
                f"{where}: {bad_rows.size} embedding(s) hold NaN or Inf, e.g. row {bad_rows[0]} "
                f"({names[bad_rows[0]]!r}); re-extract those utterances (an empty or silent "
                "input often causes this)."
            )
    if speakers is not None:
        speakers = _check_names(speakers, "speakers", where)
        if speakers.shape[0] != names.shape[0]:
            raise ValueError(
                f"{where}: {speakers.shape[0]} speakers for {names.shape[0]} names; "
                "give one speaker per name."
            )
    return names, embeddings, speakers


def save_embeddings(path, names, embeddings, speakers=None):
    """Writes embeddings to an `.npz` file atomically (temporary name + rename).

    Args:
        path: destination file (conventionally `*.npz`).
        names: distinct utterance names, one per row of `embeddings`.
        embeddings: 2-D real array `(len(names), dim)`, or 3-D
            `(len(names), K, dim)` for a multi-identity embedder, without
            NaN / Inf; stored in its own float dtype and shape.
        speakers: optional speaker label (string) of each name; needed for
            files used to train a back-end.

    Returns:
        The path written, as a str.

    Raises:
        ValueError: names and rows differ in number, duplicate or empty
            names, NaN / Inf embeddings, an array neither 2-D nor 3-D.
    """
    path = os.fspath(path)
    names, embeddings, speakers = _check(names, embeddings, speakers, f"Embeddings for {path}")
    entries = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION),
        "names": names,
        "embeddings": embeddings,
    }
    if speakers is not None:
        entries["speakers"] = speakers
    with atomic_open(path, "wb") as f:
        np.savez(f, **entries)
    return path


def load_embeddings(path, with_speakers=False, *, multi_identity=False):
    """Reads a file written by `save_embeddings` (never unpickling anything).

    Args:
        path: the `.npz` file.
        with_speakers: also return the `speakers` array (None when the file
            has none).
        multi_identity: bool, also accept a file of `(n, K, dim)`
            embeddings (K identities per utterance), returned as they are.
            If `False` (default), such a file is an error: a reader that
            compares one embedding per utterance (scoring) cannot use it.

    Returns:
        `(names, embeddings)`: a list of str and the 2-D array (3-D for a
        multi-identity file), row `i` the embedding(s) of `names[i]`; or
        `(names, embeddings, speakers)` with `with_speakers=True`, speakers
        a list of str or None.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: not an `.npz`, truncated, a missing `names` or
            `embeddings` entry, another format version, or content that
            `save_embeddings` would refuse (duplicates, NaN, ...), or 3-D
            embeddings without `multi_identity=True`. The message names the
            file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Embedding file {path} does not exist.")
    with open(path, "rb") as f:
        data = f.read()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise _Bad("it is a single .npy array, not an .npz archive")
            entries = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        if isinstance(error, _Bad):
            raise ValueError(f"Cannot read embeddings {path}: {error}.") from None
        raise ValueError(
            f"Cannot read embeddings {path}: truncated, not an .npz archive, or holding "
            f"pickled objects ({type(error).__name__}: {error})."
        ) from error
    missing = [key for key in ("names", "embeddings") if key not in entries]
    if missing:
        raise ValueError(
            f"Cannot read embeddings {path}: no {' or '.join(repr(m) for m in missing)} entry "
            f"(entries: {sorted(entries)}). Write the file with keras_spk.scoring.embeddings.save_embeddings."
        )
    if "format_version" in entries and int(entries["format_version"]) != FORMAT_VERSION:
        raise ValueError(
            f"Cannot read embeddings {path}: format version {int(entries['format_version'])} "
            f"is not supported (this keras_spk reads version {FORMAT_VERSION})."
        )
    names, embeddings, speakers = _check(
        entries["names"], entries["embeddings"], entries.get("speakers"), f"Embedding file {path}"
    )
    if embeddings.ndim == 3 and not multi_identity:
        raise ValueError(
            f"Embedding file {path} holds {embeddings.shape[1]} embeddings per utterance (shape "
            f"{embeddings.shape}: a multi-identity embedder's), where one per utterance "
            "(n, dim) is expected. Read it with load_embeddings(path, multi_identity=True) and "
            "write the identity to score (embeddings[:, k]) to a file of its own."
        )
    names = names.tolist()
    if with_speakers:
        return names, embeddings, None if speakers is None else speakers.tolist()
    return names, embeddings


class _Bad(ValueError):
    pass
