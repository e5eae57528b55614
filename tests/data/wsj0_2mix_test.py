"""Tests for the WSJ0-2mix reader on a tiny generated tree."""

import os
import pathlib

import numpy as np
import pytest

from keras_spk.data import SeparationMixture
from keras_spk.data import read_audio
from keras_spk.data import read_wsj0_2mix
from keras_spk.data import write_wav

# Created out of order, to check the sort; the first is the brief's example.
NAMES = [
    "401c020r_1.2_011a0101_-1.2.wav",
    "011a0101_0.061105_401c020r_-0.061105.wav",
    "22go010x_0.8_050a050b_-0.8.wav",
]


def make_tree(root, subsets=("tr", "cv", "tt"), names=NAMES, parts=("mix", "s1", "s2")):
    rng = np.random.default_rng(0)
    for subset in subsets:
        for part in parts:
            for name in names:
                path = pathlib.Path(root, subset, part, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, 0.1 * rng.uniform(-1, 1, 160), 16000)
    return pathlib.Path(root)


def test_reads_mixtures_sources_and_speakers(tmp_path):
    root = make_tree(tmp_path / "wav16k" / "min")
    mixtures = read_wsj0_2mix(root, "tt")
    assert [m.name for m in mixtures] == sorted(n[:-4] for n in NAMES)
    first = mixtures[0]
    assert isinstance(first, SeparationMixture)
    name = "011a0101_0.061105_401c020r_-0.061105.wav"
    assert first.mixture == str(root / "tt" / "mix" / name)
    assert first.sources == (str(root / "tt" / "s1" / name), str(root / "tt" / "s2" / name))
    # The speaker is the first 3 characters of each utterance id, in s1, s2 order.
    assert first.speakers == ("011", "401")
    assert mixtures[1].speakers == ("22g", "050")
    assert mixtures[2].speakers == ("401", "011")
    assert all(os.path.isabs(p) for m in mixtures for p in (m.mixture, *m.sources))
    # The files are the package's own WAVs and read back.
    assert read_audio(first.sources[1]).shape == (160,)


def test_relative_root_and_each_subset(tmp_path, monkeypatch):
    make_tree(tmp_path / "min", subsets=("tr", "cv"))
    monkeypatch.chdir(tmp_path)
    for subset in ("tr", "cv"):
        mixtures = read_wsj0_2mix("min", subset)
        assert len(mixtures) == 3
        assert mixtures[0].mixture == str(tmp_path / "min" / subset / "mix" / sorted(NAMES)[0])
    with pytest.raises(FileNotFoundError, match=r"subset folder .*min/tt does not exist"):
        read_wsj0_2mix("min", "tt")


def test_unknown_subset_lists_the_valid_ones(tmp_path):
    root = make_tree(tmp_path)
    for subset in ("test", "TT", None):
        with pytest.raises(ValueError, match=r"Unknown WSJ0-2mix subset .*\['tr', 'cv', 'tt'\]"):
            read_wsj0_2mix(root, subset)


def test_missing_root_and_part_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_wsj0_2mix(tmp_path / "nowhere", "tr")
    root = make_tree(tmp_path, subsets=("tr",), parts=("mix", "s1"))
    with pytest.raises(FileNotFoundError, match="has no s2 folder"):
        read_wsj0_2mix(root, "tr")


def test_mixture_without_its_sources_names_them(tmp_path):
    root = make_tree(tmp_path)
    os.remove(root / "cv" / "s2" / NAMES[0])
    os.remove(root / "cv" / "s1" / NAMES[2])
    with pytest.raises(FileNotFoundError, match="2 source file") as info:
        read_wsj0_2mix(root, "cv")
    message = str(info.value)
    assert str(root / "cv" / "s2" / NAMES[0]) in message
    assert str(root / "cv" / "s1" / NAMES[2]) in message
    # The other subsets are unaffected.
    assert len(read_wsj0_2mix(root, "tt")) == 3


def test_empty_mix_folder_and_unparsable_names(tmp_path):
    root = make_tree(tmp_path, subsets=("tr",), names=())
    for part in ("mix", "s1", "s2"):
        (root / "tr" / part).mkdir(parents=True, exist_ok=True)
    with pytest.raises(ValueError, match="No .wav mixtures found"):
        read_wsj0_2mix(root, "tr")
    make_tree(tmp_path, subsets=("tr",), names=("mixture_one.wav",))
    with pytest.raises(ValueError, match="mixture_one.wav: not a WSJ0-2mix mixture name"):
        read_wsj0_2mix(root, "tr")
