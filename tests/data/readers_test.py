"""Tests for dataset readers, manifests, speaker maps and overlap checks."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from keras_spk.data import READERS
from keras_spk.data import SpeakerMap
from keras_spk.data import UtteranceList
from keras_spk.data import check_speaker_overlap
from keras_spk.data import read_dataset
from keras_spk.data import read_librispeech
from keras_spk.data import read_manifest
from keras_spk.data import read_voxceleb
from keras_spk.data import write_wav
from keras_spk.data.formats import SUPPORTED_EXTENSIONS

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def make_wav(path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, np.zeros(16), 16000)
    return str(path)


# Deliberately created out of order, to check the sort.
VOX_FILES = [
    "id10002/vidB/00002.wav",
    "id10001/vidZ/00001.wav",
    "id10002/vidA/00001.wav",
    "id10001/vidA/00002.wav",
    "id10001/vidA/00001.wav",
    "id10003/x/00001.wav",
]


@pytest.fixture()
def vox_root(tmp_path):
    root = tmp_path / "vox"
    for name in VOX_FILES:
        make_wav(root / name)
    return root


def test_read_voxceleb_sorted_paths_and_speakers(vox_root):
    # Non-audio files and extension case are handled.
    (vox_root / "README.txt").write_text("about the corpus")
    (vox_root / "id10001" / "vidA" / "notes.txt").write_text("x")
    utts = read_voxceleb(vox_root)
    expected = sorted(VOX_FILES)
    assert utts.paths == [os.path.join(str(vox_root), *e.split("/")) for e in expected]
    assert all(os.path.isabs(p) for p in utts.paths)
    assert utts.speakers == [e.split("/")[0] for e in expected]
    assert utts.root == str(vox_root)
    assert utts.relative_paths() == [os.path.join(*e.split("/")) for e in expected]
    assert utts.speaker_ids == ["id10001", "id10002", "id10003"]
    assert len(utts) == 6 and utts.durations is None
    np.testing.assert_array_equal(utts.labels(), [0, 0, 0, 1, 1, 2])
    # Same result through read_dataset.
    assert read_dataset("voxceleb", vox_root) == utts


def test_read_voxceleb_relative_root(vox_root, monkeypatch):
    monkeypatch.chdir(vox_root.parent)
    utts = read_voxceleb("vox")
    assert utts.paths[0] == os.path.join(str(vox_root), "id10001", "vidA", "00001.wav")


def test_labels_with_a_given_speaker_map(vox_root):
    utts = read_voxceleb(vox_root)
    m = SpeakerMap(["id10003", "id10002", "id10001"])
    np.testing.assert_array_equal(utts.labels(m), [2, 2, 2, 1, 1, 0])
    with pytest.raises(ValueError, match="id10003"):
        utts.labels(SpeakerMap(["id10001", "id10002"]))


def test_read_librispeech_ignores_transcripts(tmp_path):
    root = tmp_path / "libri"
    names = ["19/198/19-198-0001.flac", "19/198/19-198-0000.flac", "103/1240/103-1240-0000.flac"]
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / "sine_16k_pcm16.flac", target)
    (root / "19" / "198" / "19-198.trans.txt").write_text("19-198-0000 HELLO\n")
    (root / "103" / "1240" / "103-1240.trans.txt").write_text("103-1240-0000 WORLD\n")
    utts = read_librispeech(root)
    assert utts.relative_paths() == [os.path.join(*n.split("/")) for n in sorted(names)]
    assert utts.speakers == ["103", "19", "19"]
    assert read_dataset("librispeech", root).paths == utts.paths
    # A WAV in the tree is collected by default, and left out when only FLAC is asked for.
    make_wav(root / "19" / "198" / "extra.wav")
    every = read_librispeech(root)
    assert len(every) == 4 and every.paths[-1].endswith(os.path.join("19", "198", "extra.wav"))
    assert read_librispeech(root, extensions=("FLAC",)).paths == utts.paths


@pytest.mark.parametrize("stray", ["id10001/top.wav", "loose.wav", "id10001/vidA/deep/x.wav"])
def test_audio_at_wrong_depth_raises_naming_it(vox_root, stray):
    make_wav(vox_root / stray)
    with pytest.raises(ValueError) as info:
        read_voxceleb(vox_root)
    message = str(info.value)
    assert os.path.join(*stray.split("/")) in message
    assert "<speaker>/<video>/<utterance>" in message


def test_missing_and_empty_root_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        read_voxceleb(tmp_path / "does_not_exist")
    empty = tmp_path / "empty"
    (empty / "spk" / "sess").mkdir(parents=True)
    (empty / "spk" / "sess" / "a.txt").write_text("not audio")
    # The message lists what was looked for.
    every = r"No \.wav/\.flac/\.ogg/\.mp3 files found under .*empty in the layout"
    with pytest.raises(ValueError, match=every + r" <speaker>/<video>/<utterance>\.$"):
        read_voxceleb(empty)
    with pytest.raises(ValueError, match=every + r" <speaker>/<chapter>/<utterance>\.$"):
        read_librispeech(empty)
    # Restricted: files of a left-out format are counted in the message.
    (empty / "spk" / "sess" / "a.flac").write_bytes(b"")
    (empty / "spk" / "sess" / "b.flac").write_bytes(b"")
    with pytest.raises(ValueError, match=r"No \.wav files found .* It holds 2 \.flac file\(s\), which"):
        read_voxceleb(empty, extensions=".wav")


def test_unsupported_extension_raises(vox_root):
    with pytest.raises(ValueError, match=r"\.aiff"):
        read_voxceleb(vox_root, extensions=(".aiff",))
    with pytest.raises(ValueError, match="names no format"):
        read_voxceleb(vox_root, extensions=())


@pytest.mark.parametrize("reader", [read_voxceleb, read_librispeech])
def test_every_supported_format_is_read_by_default_in_every_layout(tmp_path, reader):
    # The readers look at names only, so any content will do.
    root = tmp_path / "corpus"
    names = ["id1/v1/a.flac", "id1/v1/b.WAV", "id1/v2/c.ogg", "id2/v1/d.mp3", "id2/v1/e.Flac"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"audio")
    (root / "id2" / "v1" / "e.txt").write_text("transcript")
    assert {e.lower() for e in (os.path.splitext(n)[1] for n in names)} == set(SUPPORTED_EXTENSIONS)
    utts = reader(root)
    assert utts.relative_paths() == [os.path.join(*n.split("/")) for n in names]
    assert utts.speakers == ["id1", "id1", "id1", "id2", "id2"]
    # An explicit extensions= still restricts.
    assert reader(root, extensions=[".flac"]).relative_paths() == [
        os.path.join("id1", "v1", "a.flac"),
        os.path.join("id2", "v1", "e.Flac"),
    ]
    assert len(reader(root, extensions=("wav", "mp3"))) == 2


def test_a_voxceleb_tree_of_flac_files_is_read(tmp_path):
    root = tmp_path / "vox_flac"
    for name in VOX_FILES:
        target = root / name.replace(".wav", ".flac")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / "sine_16k_pcm16.flac", target)
    utts = read_voxceleb(root)
    expected = [os.path.join(*n.split("/")).replace(".wav", ".flac") for n in sorted(VOX_FILES)]
    assert utts.relative_paths() == expected
    assert utts.speakers == [n.split("/")[0] for n in sorted(VOX_FILES)]
    assert read_dataset("voxceleb", root).paths == utts.paths


def test_read_dataset_unknown_layout_lists_valid_ones(vox_root):
    with pytest.raises(ValueError) as info:
        read_dataset("timit", vox_root)
    message = str(info.value)
    assert "'timit'" in message
    for layout in ("librispeech", "manifest", "voxceleb"):
        assert layout in message
    assert sorted(READERS) == ["librispeech", "manifest", "shards", "voxceleb"]


# === Manifests ===
def test_manifest_with_header_comments_separators_and_durations(tmp_path):
    a = make_wav(tmp_path / "audio" / "a.wav")
    b = make_wav(tmp_path / "audio" / "b.wav")
    elsewhere = make_wav(tmp_path / "other" / "c.wav")
    manifest = tmp_path / "lists" / "train.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,speaker,duration\n"
        "# a comment\n"
        "\n"
        "../audio/a.wav, spk1 , 1.5\n"
        "  ../audio/b.wav\tspk2\t2  \n"
        f"{elsewhere},spk1,0.25\n"
        "   # indented comment\n"
    )
    utts = read_manifest(manifest)
    assert [os.path.normpath(p) for p in utts.paths] == [a, b, elsewhere]
    assert utts.speakers == ["spk1", "spk2", "spk1"]
    assert utts.durations == [1.5, 2.0, 0.25]
    assert utts.root == str(manifest.parent)
    assert read_dataset("manifest", manifest).paths == utts.paths


def test_manifest_relative_to_given_root_without_durations(tmp_path):
    make_wav(tmp_path / "data" / "x" / "1.wav")
    make_wav(tmp_path / "data" / "y" / "2.wav")
    manifest = tmp_path / "m.txt"
    manifest.write_text("x/1.wav alice\ny/2.wav bob\n")
    utts = read_manifest(manifest, root=tmp_path / "data")
    data = tmp_path / "data"
    assert utts.paths == [str(data / "x" / "1.wav"), str(data / "y" / "2.wav")]
    assert utts.speakers == ["alice", "bob"] and utts.durations is None
    # Without the root the paths resolve next to the manifest, where they do not exist.
    with pytest.raises(FileNotFoundError, match="2 listed file"):
        read_manifest(manifest)


def test_manifest_missing_files_name_their_lines(tmp_path):
    make_wav(tmp_path / "a.wav")
    manifest = tmp_path / "m.txt"
    manifest.write_text("path speaker\na.wav s1\n# c\nghost.wav s2\na.wav s3\nother.wav s4\n")
    with pytest.raises(FileNotFoundError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "2 listed file(s)" in message
    assert f"line 4: {tmp_path / 'ghost.wav'}" in message
    assert f"line 6: {tmp_path / 'other.wav'}" in message
    assert "line 2" not in message


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("a.wav", "expected 'path speaker [duration]'"),
        ("a.wav s1 1.0 extra", "expected 'path speaker [duration]'"),
        ("a.wav s1 long", "duration 'long' is not a number"),
    ],
)
def test_manifest_malformed_line_raises_naming_it(tmp_path, line, fragment):
    make_wav(tmp_path / "a.wav")
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"a.wav s0 1\n\n{line}\n")
    with pytest.raises(ValueError) as info:
        read_manifest(manifest)
    assert f"{manifest} line 3" in str(info.value)
    assert fragment in str(info.value)


def test_manifest_mixed_durations_empty_and_missing(tmp_path):
    make_wav(tmp_path / "a.wav")
    manifest = tmp_path / "m.txt"
    manifest.write_text("a.wav s0 1\na.wav s1\n")
    with pytest.raises(ValueError, match="every line or on none"):
        read_manifest(manifest)
    manifest.write_text("path speaker\n# nothing\n")
    with pytest.raises(ValueError, match="lists no utterances"):
        read_manifest(manifest)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_manifest(tmp_path / "nope.txt")


def test_utterance_list_checks_and_select(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        UtteranceList(paths=["a", "b"], speakers=["s"])
    with pytest.raises(ValueError, match="one entry per path"):
        UtteranceList(paths=["a"], speakers=["s"], durations=[1.0, 2.0])
    utts = UtteranceList(["a", "b", "c"], ["x", "y", "x"], root="/r", durations=[1.0, 2.0, 3.0])
    sub = utts.select([2, 0])
    assert (sub.paths, sub.speakers) == (["c", "a"], ["x", "x"])
    assert (sub.durations, sub.root) == ([3.0, 1.0], "/r")


# === Speaker maps ===
def test_speaker_map_round_trip(tmp_path):
    m = SpeakerMap(["id3", "id1", "id2"])
    np.testing.assert_array_equal(m.encode(["id1", "id3", "id2", "id1"]), [1, 0, 2, 1])
    assert m.encode(["id1"]).dtype == np.int64
    assert m.decode(np.array([2, 0, 1])) == ["id2", "id3", "id1"]
    assert m.index("id2") == 2 and len(m) == 3 and "id1" in m and "id9" not in m
    path = tmp_path / "maps" / "speakers.json"
    m.save(path)
    assert json.loads(path.read_text())["speakers"] == ["id3", "id1", "id2"]
    loaded = SpeakerMap.load(path)
    assert loaded == m and loaded.speakers == ["id3", "id1", "id2"]
    assert loaded != SpeakerMap(["id1", "id2", "id3"])
    # Numeric ids become strings.
    assert SpeakerMap([19, 103]).speakers == ["19", "103"]


def test_speaker_map_unknown_and_duplicate(tmp_path):
    m = SpeakerMap(["a", "b"])
    with pytest.raises(ValueError, match="'zed'"):
        m.encode(["a", "zed"])
    with pytest.raises(ValueError, match="distinct"):
        SpeakerMap(["a", "b", "a"])


@pytest.mark.parametrize(
    "content,fragment",
    [
        ('{"format": "keras_spk.speaker_map/2", "speakers": ["a"]}', "not a keras_spk speaker map"),
        ('["a", "b"]', "not a keras_spk speaker map"),
        ('{"speakers": ["a"]}', "not a keras_spk speaker map"),
        ('{"format": "keras_spk.speaker_map/1", "speakers": ["a"', "cannot read speaker map"),
        ("", "cannot read speaker map"),
        ('{"format": "keras_spk.speaker_map/1"}', "corrupt speaker map"),
        ('{"format": "keras_spk.speaker_map/1", "speakers": "abc"}', "corrupt speaker map"),
        ('{"format": "keras_spk.speaker_map/1", "speakers": null}', "corrupt speaker map"),
        ('{"format": "keras_spk.speaker_map/1", "speakers": ["a", ["b"]]}', "corrupt speaker map"),
    ],
)
def test_speaker_map_bad_file_raises(tmp_path, content, fragment):
    path = tmp_path / "speakers.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        SpeakerMap.load(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_speaker_map_tampered_file(tmp_path):
    path = tmp_path / "speakers.json"
    SpeakerMap(["a", "b"]).save(path)
    content = json.loads(path.read_text())
    content["speakers"] = ["a", "b", "a"]
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as info:
        SpeakerMap.load(path)
    assert str(path) in str(info.value) and "distinct" in str(info.value)
    with pytest.raises(ValueError, match="cannot read speaker map"):
        SpeakerMap.load(tmp_path / "missing.json")


# === Speaker overlap ===
def test_check_speaker_overlap():
    assert check_speaker_overlap(["a", "b"], ["c", "d"]) == []
    with pytest.raises(ValueError) as info:
        check_speaker_overlap(["a", "b", "c"], ["c", "d", "b"])
    assert "2 speaker(s)" in str(info.value) and "['b', 'c']" in str(info.value)
    assert check_speaker_overlap(["c", "a", "b"], ["c", "b", "d"], allow_overlap=True) == ["b", "c"]
