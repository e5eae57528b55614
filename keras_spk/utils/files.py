"""Writing files so that a failure never leaves a half-written one behind."""

import contextlib
import csv
import io
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", fsync=True, **kwargs):
    """Opens a temporary file beside `path` and renames it over `path` on success.

    If the block raises, the temporary file is removed and `path` is untouched.
    With `fsync` the data reaches the disk before the rename, so a crash
    cannot leave an empty file under the final name either.

    Example:
    >>> with atomic_open("results.json") as f:
    ...     f.write("{}")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data, fsync=True):
    """Writes `data` to `path` atomically."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_result_metadata(metadata):
    """`metadata` if it can be stored beside result rows: `None` or a dict without a 'results' key.

    Raises:
        ValueError: `metadata` is not a dict, or it has a 'results' key (the
            rows go there).
    """
    if metadata is not None and (not isinstance(metadata, dict) or "results" in metadata):
        raise ValueError(
            "`metadata` must be a dict without a 'results' key (the rows go there). "
            f"Received: {metadata!r:.80}"
        )
    return metadata


def _check_stem(name, stem):
    if not isinstance(stem, str) or not stem or os.sep in stem or (os.altsep and os.altsep in stem):
        raise ValueError(
            f"`{name}` must be a non-empty file name without extension or folder, e.g. 'results'. "
            f"Received: {name}={stem!r}"
        )


def write_result_files(directory, table, rows, *, table_stem="table", results_stem="results", metadata=None):
    """Writes a result table and its rows into `directory`, every file atomically.

    Files:

    * `<table_stem>.txt`: `table` and a newline;
    * `<results_stem>.json`: `{**metadata, "results": rows}`, indented by 2;
    * `<results_stem>.csv`: a header line, then one line per row, a column
      per row key in the order the keys are first seen; a key a row lacks,
      or a `None` value, is an empty cell.

    The three contents are made before anything is written, so rows that
    cannot be serialised (e.g. a value JSON cannot hold) raise with no file
    written.

    Args:
        directory: output folder (created if missing).
        table: str, the rows formatted for reading (e.g. an aligned table).
        rows: non-empty list of dicts, one per result, JSON-serialisable.
        table_stem: str, the name of the table file without `.txt`.
        results_stem: str, the name of the JSON and CSV files without their
            extension.
        metadata: optional JSON-serialisable dict stored beside the rows in
            the JSON file (e.g. the settings); it must not have a
            `"results"` key.

    Returns:
        The list of paths written: the table, the JSON, the CSV.

    Raises:
        ValueError: bad `metadata` (see `check_result_metadata`), no rows or
            a row that is not a dict, or a stem that is not a plain file name.
        TypeError: a `table` that is not a string, or a value in `rows` or
            `metadata` that JSON cannot hold.

    Example:

    >>> rows = [{"system": "cosine", "eer": 0.05}]
    >>> write_result_files("results", "cosine  5.00 %", rows)  # doctest: +SKIP
    ['results/table.txt', 'results/results.json', 'results/results.csv']
    """
    check_result_metadata(metadata)
    _check_stem("table_stem", table_stem)
    _check_stem("results_stem", results_stem)
    if not isinstance(table, str):
        raise TypeError(f"`table` must be a string. Received: table of type {type(table).__name__}")
    rows = list(rows)
    bad = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
    if not rows or bad:
        raise ValueError(
            "`rows` must be a non-empty list of dicts, one per result. "
            + (f"Received: non-dict rows at positions {bad[:10]}" if bad else "Received: rows=[]")
        )

    document = json.dumps({**(metadata or {}), "results": rows}, indent=2) + "\n"
    fieldnames = []
    for row in rows:
        fieldnames.extend(key for key in row if key not in fieldnames)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, text in (
        (f"{table_stem}.txt", table + "\n"),
        (f"{results_stem}.json", document),
        (f"{results_stem}.csv", buffer.getvalue()),
    ):
        path = os.path.join(directory, name)
        atomic_write_text(path, text)
        written.append(path)
    return written
