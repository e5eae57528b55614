"""One message for files that are not there: how many, which ones, and the fix.

`check_files_exist(paths)` checks a list of paths at once;
`files_not_found_error(missing, ...)` builds the same error from missing
entries a caller found itself (e.g. with the line number of a list file).
The message reads, e.g.:

    trials.txt: 2 trial file(s) not found under /data/vox1: line 3: test file
    'id1/a.wav'; line 9: enrolment file 'id2/b.wav'. Trial paths are relative
    to the evaluation data folder (--eval-data).
"""

import os

__all__ = ["MAX_LISTED", "check_files_exist", "files_not_found_error"]

# The most missing entries a message names; the rest are counted.
MAX_LISTED = 10

_DEFAULT_FIX = "Check the paths and the folder they are relative to."


def files_not_found_error(missing, what="file", total=None, root=None, source=None, fix=None):
    """The `FileNotFoundError` for the `missing` entries (returned, for the caller to raise).

    Args:
        missing: non-empty list of str, each naming one missing file (a
            path, or e.g. `"line 3: test file 'a.wav'"`).
        what: str, what one file is, e.g. `"audio file"`; the message says
            `"<n> <what>(s) not found"`.
        total: int or None: how many files were checked (`"<n> of <total>"`).
        root: the folder the paths are relative to, or None.
        source: where the paths come from (e.g. a list file), or None; the
            message starts with it.
        fix: str, the sentence telling how to fix it (default: check the
            paths and the folder they are relative to).

    Returns:
        A `FileNotFoundError` whose message gives the count, the first
        `MAX_LISTED` entries (`; ... (<k> more)` for the others), and `fix`.
    """
    missing = [str(entry) for entry in missing]
    if not missing:
        raise ValueError("files_not_found_error needs at least one missing file. Received: missing=[]")
    count = f"{len(missing)} of {total}" if total is not None else f"{len(missing)}"
    listed = "; ".join(missing[:MAX_LISTED])
    if len(missing) > MAX_LISTED:
        listed += f"; ... ({len(missing) - MAX_LISTED} more)"
    message = (
        (f"{os.fspath(source)}: " if source is not None else "")
        + f"{count} {what}(s) not found"
        + (f" under {os.fspath(root)}" if root is not None else "")
        + f": {listed}. {fix or _DEFAULT_FIX}"
    )
    return FileNotFoundError(message)


# A shard reference (`keras_spk.data.shards`): `shard://<shard file>?offset=...#<key>`.
_SHARD_SCHEME = "shard://"


def _is_file(path):
    """Whether `path` is a file, or a shard reference whose shard is one."""
    if path.startswith(_SHARD_SCHEME):
        return os.path.isfile(path[len(_SHARD_SCHEME):].split("?", 1)[0])
    return os.path.isfile(path)


def check_files_exist(paths, what="audio file", root=None, source=None, fix=None):
    """The paths of `paths` (joined to `root` when given), after checking that every one is a file.

    Args:
        paths: iterable of paths (str or path-like), absolute or relative to
            `root` (or to the working folder when `root` is None).
        what, root, source, fix: as for `files_not_found_error`.

    Returns:
        The list of paths, each joined to `root` when it is given.

    Raises:
        FileNotFoundError: some paths are not files; the message counts them
            (`"<n> of <total> <what>(s) not found"`), names the first
            `MAX_LISTED` as given, and ends with `fix`.

    Example:

    >>> check_files_exist(["a.wav", "b.wav"], root="/data")  # doctest: +SKIP
    FileNotFoundError: 1 of 2 audio file(s) not found under /data: b.wav. Check ...
    """
    names = [os.fspath(p) for p in paths]
    full = names if root is None else [
        name if name.startswith(_SHARD_SCHEME) else os.path.join(root, name) for name in names
    ]
    missing = [name for name, path in zip(names, full) if not _is_file(path)]
    if missing:
        raise files_not_found_error(missing, what=what, total=len(names), root=root, source=source, fix=fix)
    return full
