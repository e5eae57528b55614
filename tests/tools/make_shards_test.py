"""Tests of tools/make_shards.py: packing, resuming after a kill, verifying, clear errors."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_spk.data import AudioError
from keras_spk.data import read_dataset
from keras_spk.data import write_wav
from keras_spk.data.shards import read_record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "make_shards.py")
_spec = importlib.util.spec_from_file_location("make_shards_tool", SCRIPT)
make_shards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_shards)


def make_corpus(root, speakers=3, utterances=3):
    rng = np.random.default_rng(1)
    for s in range(speakers):
        for u in range(utterances):
            write_wav(root / f"id{s:05d}" / "v1" / f"{u}.wav", 0.1 * rng.standard_normal(800), 16000)
    return root


def test_packs_resumes_and_verifies(tmp_path, capsys):
    data = make_corpus(tmp_path / "data")
    out = tmp_path / "shards"
    args = [str(data), str(out), "--shard-size", "2", "--workers", "2"]
    assert make_shards.main(args) == 0
    printed = capsys.readouterr().out
    assert f"{out}: 9 utterances of 3 speakers in 5 shards (5 written)" in printed
    listed = read_dataset("shards", out)
    files = read_dataset("voxceleb", data)
    assert [read_record(p) for p in listed.paths] == [open(p, "rb").read() for p in files.paths]

    # As after a kill: no index, a shard missing; the rerun writes just that one.
    (out / "index.json").unlink()
    (out / "shard-00003-of-00005.tfrecord").unlink()
    assert make_shards.main(args + ["--verify"]) == 0
    printed = capsys.readouterr().out
    assert "in 5 shards (1 written, 4 kept from an earlier run)" in printed
    assert "verified: 9 records in 5 shards are sound" in printed


def test_verify_names_a_damaged_shard_and_key(tmp_path, capsys):
    data = make_corpus(tmp_path / "data")
    out = tmp_path / "shards"
    assert make_shards.main([str(data), str(out), "--shard-size", "4"]) == 0
    index = json.loads((out / "index.json").read_text())
    columns = index["utterances"]
    shard = out / index["shards"][columns["shard"][5]]["file"]
    damaged = bytearray(shard.read_bytes())
    damaged[columns["offset"][5] + 300] ^= 1
    shard.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert make_shards.main([str(data), str(out), "--shard-size", "4", "--verify"]) == 1
    printed = capsys.readouterr().out
    assert f"{shard} (record {columns['key'][5]!r} at byte" in printed and "checksum mismatch" in printed


def test_bad_audio_is_named_and_nothing_is_written(tmp_path):
    data = make_corpus(tmp_path / "data")
    bad = data / "id00001" / "v1" / "cut.wav"
    bad.write_bytes(b"RIFF" + bytes(30))
    out = tmp_path / "shards"
    with pytest.raises(AudioError, match=f"1 audio file.* cannot be decoded.*{bad}"):
        make_shards.main([str(data), str(out)])
    assert not list(out.glob("*.tfrecord")) and not (out / "index.json").exists()


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_shards.main([str(tmp_path / "missing"), str(tmp_path / "out")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No .* files found"):
        make_shards.main([str(tmp_path / "empty"), str(tmp_path / "out")])
    data = make_corpus(tmp_path / "data")
    other = make_corpus(tmp_path / "other", speakers=2)
    out = tmp_path / "out"
    assert make_shards.main([str(data), str(out), "--no-audio-check"]) == 0
    with pytest.raises(ValueError, match=f"{out} holds the shards of another corpus"):
        make_shards.main([str(other), str(out), "--no-audio-check"])


def test_the_script_reports_errors_with_exit_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, SCRIPT, str(tmp_path / "missing"), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Data folder") and "does not exist" in result.stderr
