"""Tests for verification trial lists."""

import os
import pathlib

import numpy as np
import pytest

from keras_spk.data import Trials
from keras_spk.data import read_trials
from keras_spk.data import write_trials

NAMES = [
    "id1/v1/00001.wav",
    "id1/v2/00002.wav",
    "id2/v1/00001.wav",
    "id3/v9/00003.wav",
]


@pytest.fixture()
def eval_root(tmp_path):
    root = tmp_path / "eval"
    for name in NAMES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")  # trial reading never decodes
    return root


VOX_LINES = [
    (1, "id1/v2/00002.wav", "id1/v1/00001.wav"),
    (0, "id3/v9/00003.wav", "id2/v1/00001.wav"),
    (0, "id1/v1/00001.wav", "id3/v9/00003.wav"),
    (1, "id1/v1/00001.wav", "id1/v2/00002.wav"),
]


def write_lines(path, lines):
    path = pathlib.Path(path)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_voxceleb_format(tmp_path, eval_root):
    path = write_lines(tmp_path / "vox.txt", [f"{l} {e} {t}" for l, e, t in VOX_LINES])
    trials = read_trials(path, eval_root)
    assert isinstance(trials, Trials) and len(trials) == 4
    assert trials.enroll == [e for _, e, _ in VOX_LINES]
    assert trials.test == [t for _, _, t in VOX_LINES]
    np.testing.assert_array_equal(trials.labels, [1, 0, 0, 1])
    assert trials.labels.dtype == np.int64
    assert trials.utterances == sorted(NAMES)
    assert trials.root == str(eval_root)
    assert trials.paths == [str(eval_root / n) for n in sorted(NAMES)]
    enroll, test = trials.indices()
    assert enroll.dtype == np.int64 and test.dtype == np.int64
    assert [trials.utterances[i] for i in enroll] == trials.enroll
    assert [trials.utterances[i] for i in test] == trials.test
    np.testing.assert_array_equal(enroll, [1, 3, 0, 0])
    np.testing.assert_array_equal(test, [0, 2, 3, 1])
    assert trials.speakers() == {n: n.split("/")[0] for n in NAMES}
    # Same result when the format is named explicitly.
    explicit = read_trials(path, eval_root, file_format="voxceleb")
    assert explicit.enroll == trials.enroll and explicit.files == trials.files


def test_kaldi_format_resolves_ids_without_extension(tmp_path, eval_root):
    (eval_root / "id2" / "v1" / "00002.flac").write_bytes(b"fLaC")
    lines = [
        "id1/v1/00001 id2/v1/00001 nontarget",
        "  id1/v1/00001   id1/v2/00002.wav\ttarget  ",
        "# a comment",
        "",
        "id2/v1/00002 id2/v1/00001 target",
    ]
    path = write_lines(tmp_path / "kaldi.trl", lines)
    trials = read_trials(path, eval_root)
    np.testing.assert_array_equal(trials.labels, [0, 1, 1])
    assert trials.enroll == ["id1/v1/00001", "id1/v1/00001", "id2/v1/00002"]
    assert trials.test == ["id2/v1/00001", "id1/v2/00002.wav", "id2/v1/00001"]
    assert trials.files == {
        "id1/v1/00001": str(eval_root / "id1/v1/00001.wav"),
        "id2/v1/00001": str(eval_root / "id2/v1/00001.wav"),
        "id1/v2/00002.wav": str(eval_root / "id1/v2/00002.wav"),
        "id2/v1/00002": str(eval_root / "id2/v1/00002.flac"),
    }
    assert trials.utterances == sorted(trials.files)
    enroll, test = trials.indices()
    assert [trials.utterances[i] for i in enroll] == trials.enroll
    assert [trials.utterances[i] for i in test] == trials.test
    assert trials.paths == [trials.files[n] for n in sorted(trials.files)]


def test_auto_detect_skips_leading_comments(tmp_path, eval_root):
    path = write_lines(tmp_path / "t.txt", ["# header", f"0 {NAMES[0]} {NAMES[2]}"])
    assert read_trials(path, eval_root).labels.tolist() == [0]
    path = write_lines(tmp_path / "k.txt", ["", f"{NAMES[0]} {NAMES[2]} target"])
    assert read_trials(path, eval_root).labels.tolist() == [1]


def test_missing_file_reported_with_line_number(tmp_path, eval_root):
    lines = [
        f"1 {NAMES[0]} {NAMES[1]}",
        "# comment",
        f"0 {NAMES[0]} id9/v1/ghost.wav",
    ]
    path = write_lines(tmp_path / "t.txt", lines)
    with pytest.raises(FileNotFoundError) as info:
        read_trials(path, eval_root)
    message = str(info.value)
    assert "1 trial file(s)" in message
    assert "line 3: test file 'id9/v1/ghost.wav'" in message
    assert str(eval_root) in message and str(path) in message


def test_several_missing_files_are_counted(tmp_path, eval_root):
    lines = [f"1 {NAMES[0]} {NAMES[1]}"]
    lines += [f"0 missing/e{i}.wav {NAMES[1]}" for i in range(12)]
    lines += [f"0 missing/e0.wav {NAMES[2]}"]  # a repeated missing name counts once
    lines += [f"1 {NAMES[3]} missing/t.wav"]
    path = write_lines(tmp_path / "t.txt", lines)
    with pytest.raises(FileNotFoundError) as info:
        read_trials(path, eval_root)
    message = str(info.value)
    assert "13 trial file(s)" in message
    assert "line 2: enrolment file 'missing/e0.wav'" in message
    assert "line 11: enrolment file 'missing/e9.wav'" in message
    assert "e10.wav" not in message  # only the first ten are listed
    assert message.count("line ") == 10 and " ..." in message


@pytest.mark.parametrize(
    "bad,fragment",
    [
        ("1 a.wav", "expected 3 fields"),
        ("1 a.wav b.wav c.wav", "expected 3 fields"),
        ("2 a.wav b.wav", "'<0|1> enroll test' (VoxCeleb)"),
        ("a.wav b.wav target", "'<0|1> enroll test' (VoxCeleb)"),
    ],
)
def test_malformed_voxceleb_lines_name_their_number(tmp_path, eval_root, bad, fragment):
    path = write_lines(tmp_path / "t.txt", [f"1 {NAMES[0]} {NAMES[1]}", "", bad])
    with pytest.raises(ValueError) as info:
        read_trials(path, eval_root)
    assert f"{path} line 3" in str(info.value) and fragment in str(info.value)
    assert bad in str(info.value)


@pytest.mark.parametrize("bad", ["a b yes", "1 a b"])
def test_malformed_kaldi_lines_name_their_number(tmp_path, eval_root, bad):
    path = write_lines(tmp_path / "t.txt", [f"{NAMES[0]} {NAMES[1]} target", bad])
    with pytest.raises(ValueError) as info:
        read_trials(path, eval_root)
    assert f"{path} line 2" in str(info.value)
    assert "'enroll test <target|nontarget>' (Kaldi)" in str(info.value)


def test_undetectable_format_and_bad_format_argument(tmp_path, eval_root):
    path = write_lines(tmp_path / "t.txt", ["a b c"])
    with pytest.raises(ValueError, match="line 1: expected VoxCeleb"):
        read_trials(path, eval_root)
    with pytest.raises(ValueError, match="file_format"):
        read_trials(path, eval_root, file_format="nist")


def test_empty_list_and_missing_inputs(tmp_path, eval_root):
    path = write_lines(tmp_path / "t.txt", ["# only a comment", ""])
    with pytest.raises(ValueError, match="holds no trials"):
        read_trials(path, eval_root)
    with pytest.raises(FileNotFoundError, match="Trial list .*nope.txt"):
        read_trials(tmp_path / "nope.txt", eval_root)
    good = write_lines(tmp_path / "g.txt", [f"1 {NAMES[0]} {NAMES[1]}"])
    with pytest.raises(FileNotFoundError, match="Evaluation data folder .*no_root"):
        read_trials(good, tmp_path / "no_root")
    # Without the file check, names map to paths under the root as written.
    trials = read_trials(good, tmp_path / "no_root", check_files=False)
    assert trials.files == {n: str(tmp_path / "no_root" / n) for n in NAMES[:2]}


@pytest.mark.parametrize("file_format", ["voxceleb", "kaldi"])
def test_write_trials_round_trip(tmp_path, eval_root, file_format):
    enroll = [NAMES[0], NAMES[3], NAMES[2]]
    test = [NAMES[1], NAMES[0], NAMES[2]]
    labels = np.array([1, 0, 1])
    path = tmp_path / "out" / f"{file_format}.txt"
    path.parent.mkdir()
    write_trials(path, enroll, test, labels, file_format=file_format)
    first = path.read_text().splitlines()[0]
    assert first == (f"1 {NAMES[0]} {NAMES[1]}" if file_format == "voxceleb"
                     else f"{NAMES[0]} {NAMES[1]} target")
    trials = read_trials(path, eval_root)
    assert trials.enroll == enroll and trials.test == test
    np.testing.assert_array_equal(trials.labels, labels)
    with pytest.raises(ValueError, match="file_format"):
        write_trials(path, enroll, test, labels, file_format="csv")
    assert os.path.exists(path)
