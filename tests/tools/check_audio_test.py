"""Tests of tools/check_audio.py: every unusable file of a corpus listed in one pass."""

import importlib.util
import os

import numpy as np

from keras_spk.data import write_wav

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "check_audio.py")
_spec = importlib.util.spec_from_file_location("check_audio_tool", SCRIPT)
check_audio = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_audio)


def make_corpus(root, bad=True):
    for speaker in ("id00001", "id00002"):
        for i in range(2):
            write_wav(root / speaker / "v1" / f"{i}.wav", 0.1 * np.sin(np.arange(3200) * 0.05), 16000)
    broken = []
    if bad:
        (root / "id00001" / "v1" / "cut.flac").write_bytes(b"fLaC" + bytes(100))
        (root / "id00002" / "v1" / "loud.wav").write_bytes(b"")
        broken = [root / "id00001" / "v1" / "cut.flac", root / "id00002" / "v1" / "loud.wav"]
    return broken


def test_lists_each_bad_file_and_exits_1(tmp_path, capsys):
    broken = make_corpus(tmp_path)
    assert check_audio.main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert sorted(line.split(": ", 1)[0] for line in lines) == sorted(str(p) for p in broken)
    assert "file is empty" in out and "cannot decode audio" in out
    assert "4 of 6 files are usable; 2 are not." in err


def test_a_clean_corpus_exits_0(tmp_path, capsys):
    make_corpus(tmp_path, bad=False)
    assert check_audio.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""
