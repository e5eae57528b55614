"""A run's data: layouts, several training folders, the held-out split, the speaker map."""

import json
import os
import shutil

import pytest

from keras_spk.recipe import RunError
from keras_spk.recipe import read_training_data
from keras_spk.recipe import split_holdout
from tests.helpers import toy_recipe
from tests.helpers.corpus import make_tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=13)


@pytest.fixture(scope="module")
def two_folders(corpus, tmp_path_factory):
    """The corpus's 4 training speakers split into two LibriSpeech-layout folders of 2."""
    root = tmp_path_factory.mktemp("libri")
    speakers = sorted(os.listdir(os.path.join(corpus, "train")))
    folders = [root / "train-a", root / "train-b"]
    for i, speaker in enumerate(speakers):
        shutil.copytree(os.path.join(corpus, "train", speaker), folders[i % 2] / speaker)
    return [str(f) for f in folders], speakers


def test_several_folders_read_as_one_list(two_folders):
    folders, speakers = two_folders
    data = read_training_data("librispeech", folders)
    assert len(data) == 16 and data.speaker_ids == speakers
    # Names stay distinct: relative to the folders' common parent.
    assert all(name.split(os.sep)[0] in ("train-a", "train-b") for name in data.relative_paths())
    with pytest.raises(RunError, match="names a location twice"):
        read_training_data("librispeech", [folders[0], folders[0]])


def test_holdout_is_seeded_per_speaker_and_leaves_training_utterances(two_folders):
    data = read_training_data("librispeech", two_folders[0])
    train, held = split_holdout(data, 1, seed=0)
    assert len(held) == 4 and sorted(held.speakers) == data.speaker_ids  # one of each speaker
    assert len(train) == 12 and not set(train.paths) & set(held.paths)
    again_train, again_held = split_holdout(data, 1, seed=0)
    assert again_held.paths == held.paths
    assert split_holdout(data, 1, seed=1)[1].paths != held.paths  # 4 utterances each: differs
    assert split_holdout(data, 0, seed=0) == (data, None)
    with pytest.raises(RunError, match=r"holdout_per_speaker=4 leaves no training utterance to 4 speaker"):
        split_holdout(data, 4, seed=0)


def test_a_run_reads_its_layout_and_records_its_holdout(corpus, two_folders, tmp_path):
    folders, _ = two_folders
    out = str(tmp_path / "run")
    argv = ["--data", *folders, "--eval-data", f"{corpus}/test", "--trials", f"{corpus}/trials.txt",
            "--output", out, "--data.layout=librispeech", "--data.holdout_per_speaker=1",
            "--stages.softmax.epochs=1", "--stages.metric.epochs=0", "--data.batch_size=4"]
    run = toy_recipe.main(argv)
    assert run.finished
    with open(os.path.join(out, "holdout.json")) as f:
        holdout = json.load(f)
    assert holdout["per_speaker"] == 1 and len(holdout["utterances"]) == 4
    # The back-end training data are the 12 utterances left for training.
    from keras_spk.scoring import load_embeddings

    names, _, _ = load_embeddings(os.path.join(out, "embeddings", "train.npz"), with_speakers=True)
    assert len(names) == 12 and not set(names) & set(holdout["utterances"])
