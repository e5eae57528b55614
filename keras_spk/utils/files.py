"""Writing files so that a failure never leaves a half-written one behind."""

import contextlib
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
