"""Verification trial lists.

Two formats are read, one trial a line:

* VoxCeleb: `1 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav`
  (label first: 1 = same speaker, 0 = different; then enrolment and test).
* Kaldi: `enroll_id test_id target|nontarget`.

Names are paths relative to the evaluation data folder (`--eval-data`);
a Kaldi id without an extension may name `<id>.wav`/`.flac`/... there.
Every named file is checked before any work starts, and missing ones are
reported with their line numbers.
"""

import dataclasses
import os

import numpy as np

from keras_spk.data.formats import SUPPORTED_EXTENSIONS
from keras_spk.utils.file_checks import files_not_found_error

_KALDI_LABELS = {"target": 1, "nontarget": 0}
_VOXCELEB_LABELS = {"1": 1, "0": 0}


@dataclasses.dataclass
class Trials:
    """A parsed trial list.

    Attributes:
        enroll: enrolment name of each trial, as written in the list.
        test: test name of each trial.
        labels: int array, 1 = target (same speaker), 0 = non-target.
        root: evaluation data folder the names are relative to.
        files: name -> absolute file path, for every name used.
    """

    enroll: list
    test: list
    labels: np.ndarray
    root: str
    files: dict

    def __len__(self):
        return len(self.labels)

    @property
    def utterances(self):
        """Sorted distinct names over both sides: the files to embed once each."""
        return sorted(set(self.enroll) | set(self.test))

    @property
    def paths(self):
        """Absolute paths of `utterances`, in the same order."""
        return [self.files[name] for name in self.utterances]

    def indices(self):
        """(enroll_index, test_index): positions of each trial's files in `utterances`."""
        position = {name: i for i, name in enumerate(self.utterances)}
        enroll = np.array([position[n] for n in self.enroll], dtype=np.int64)
        test = np.array([position[n] for n in self.test], dtype=np.int64)
        return enroll, test

    def speakers(self):
        """Speaker of each utterance, read as the first path component (VoxCeleb layout)."""
        return {name: name.replace("\\", "/").split("/")[0] for name in self.utterances}


def _parse_line(fields, fmt):
    if fmt == "voxceleb":
        if fields[0] not in _VOXCELEB_LABELS:
            return None
        return fields[1], fields[2], _VOXCELEB_LABELS[fields[0]]
    if fields[2] not in _KALDI_LABELS:
        return None
    return fields[0], fields[1], _KALDI_LABELS[fields[2]]


def _detect_format(fields):
    if fields[0] in _VOXCELEB_LABELS:
        return "voxceleb"
    if fields[2] in _KALDI_LABELS:
        return "kaldi"
    return None


def _resolve(root, name):
    """Absolute path of a trial name, or None when no such file exists."""
    candidate = os.path.join(root, name)
    if os.path.isfile(candidate):
        return candidate
    if not os.path.splitext(name)[1]:
        for ext in SUPPORTED_EXTENSIONS:
            if os.path.isfile(candidate + ext):
                return candidate + ext
    return None


def read_trials(path, root, file_format="auto", check_files=True):
    """Reads and checks a trial list.

    Args:
        path: trial list file.
        root: evaluation data folder the names are relative to.
        file_format: "voxceleb", "kaldi" or "auto" (from the first line).
        check_files: resolve every name to a file and fail on missing ones.

    Returns:
        A `Trials`.

    Raises:
        FileNotFoundError: the list or the root is missing, or trials name
            files that do not exist (each reported with its line number).
        ValueError: a malformed line (with its number) or an unknown format.
    """
    path = os.fspath(path)
    root = os.path.abspath(os.fspath(root))
    if file_format not in ("auto", "voxceleb", "kaldi"):
        raise ValueError(
            "file_format must be 'auto', 'voxceleb' or 'kaldi'. "
            f"Received: file_format={file_format!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Trial list {path} does not exist. Check --trials.")
    if check_files and not os.path.isdir(root):
        raise FileNotFoundError(
            f"Evaluation data folder {root} does not exist; trial paths are relative to it. "
            "Check --eval-data."
        )
    enroll, test, labels, line_numbers = [], [], [], []
    fmt = None if file_format == "auto" else file_format
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 3:
                raise ValueError(
                    f"{path} line {number}: expected 3 fields "
                    f"('1 enroll test' or 'enroll test target'), got {line.strip()!r}."
                )
            fmt = fmt or _detect_format(fields)
            parsed = _parse_line(fields, fmt) if fmt else None
            if parsed is None:
                expected = (
                    "'<0|1> enroll test' (VoxCeleb)"
                    if fmt == "voxceleb"
                    else "'enroll test <target|nontarget>' (Kaldi)"
                    if fmt == "kaldi"
                    else "VoxCeleb '<0|1> enroll test' or Kaldi 'enroll test <target|nontarget>'"
                )
                raise ValueError(f"{path} line {number}: expected {expected}, got {line.strip()!r}.")
            enroll.append(parsed[0])
            test.append(parsed[1])
            labels.append(parsed[2])
            line_numbers.append(number)
    if not labels:
        raise ValueError(f"Trial list {path} holds no trials.")
    files, missing = {}, []
    if check_files:
        for number, names in zip(line_numbers, zip(enroll, test)):
            for side, name in zip(("enrolment", "test"), names):
                if name in files:
                    continue
                resolved = _resolve(root, name)
                if resolved is None:
                    missing.append(f"line {number}: {side} file {name!r}")
                    files[name] = None
                else:
                    files[name] = resolved
        if missing:
            raise files_not_found_error(
                missing,
                "trial file",
                root=root,
                source=path,
                fix="Trial paths are relative to the evaluation data folder (--eval-data).",
            )
    else:
        files = {n: os.path.join(root, n) for n in set(enroll) | set(test)}
    return Trials(enroll=enroll, test=test, labels=np.array(labels, np.int64), root=root, files=files)


def write_trials(path, enroll, test, labels, file_format="voxceleb"):
    """Writes a trial list (atomically) in VoxCeleb or Kaldi format."""
    from keras_spk.utils.files import atomic_write_text

    if file_format == "voxceleb":
        lines = [f"{int(l)} {e} {t}" for e, t, l in zip(enroll, test, labels)]
    elif file_format == "kaldi":
        lines = [f"{e} {t} {'target' if l else 'nontarget'}" for e, t, l in zip(enroll, test, labels)]
    else:
        raise ValueError(f"file_format must be 'voxceleb' or 'kaldi'. Received: file_format={file_format!r}")
    atomic_write_text(path, "\n".join(lines) + "\n")
