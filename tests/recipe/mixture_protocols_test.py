"""The `mixture_verification` evaluation protocol: conditions, rows, files, checks, merge."""

import json
import os

import numpy as np
import pytest

from keras_spk.recipe.run import RunError
from tests.evaluation.mixtures_test import RATE
from tests.evaluation.mixtures_test import tone_embedder
from tests.evaluation.mixtures_test import write_tone_corpus


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Training speakers spk0-spk5 (4 utterances each) and evaluation speakers ev2-ev7 (3 each)."""
    root = tmp_path_factory.mktemp("mixture_protocol")
    train_dir, eval_dir = str(root / "train"), str(root / "test")
    write_tone_corpus(train_dir, range(6), 4, seed=1)
    write_tone_corpus(eval_dir, range(2, 8), 3, seed=2, prefix="ev")
    return train_dir, eval_dir


def make_config(**evaluation):
    return {
        "seed": 0,
        "data": {
            "sample_rate": RATE,
            "layout": "voxceleb",
            "allow_speaker_overlap": False,
            "mixture": {"num_speakers": 2, "sir_db": [0.0, 0.0]},
        },
        "evaluation": {
            "protocols": ["mixture_verification"],
            "reference": True,
            "reference_mel_bins": 16,
            "mixture_trials": 10,
            "mixture_seconds": 0.2,
            **evaluation,
        },
    }


def make_evaluation(tmp_path, folders, config, holdout_per_speaker=2, eval_dir=None, embedder=tone_embedder):
    from keras_spk.data import read_dataset
    from keras_spk.recipe.data import RecipeData
    from keras_spk.recipe.data import split_holdout
    from keras_spk.recipe.protocols import Evaluation
    from keras_spk.recipe.run import Run

    train_dir, default_eval = folders
    train, holdout = split_holdout(read_dataset("voxceleb", train_dir), holdout_per_speaker, seed=0)
    data = RecipeData(
        train, train.speaker_map(), {}, [train_dir], eval_dir or default_eval, [], holdout
    )
    run = Run("toy", str(tmp_path / "run"), config, {}, resumed=False, info={})
    return Evaluation(run, embedder, data, min_samples=64)


def test_registered_without_trials_and_with_a_merge():
    from keras_spk.recipe import protocols

    spec = protocols.PROTOCOLS["mixture_verification"]
    assert spec.needs_trials is False and spec.merge is not None
    assert not protocols.needs_trials({"evaluation": {"protocols": ["mixture_verification"]}})


def test_seen_and_unseen_rows_files_and_scores(tmp_path, folders):
    from keras_spk.recipe.protocols import run_protocols

    evaluation = make_evaluation(tmp_path, folders, make_config())
    rows = run_protocols(evaluation)["mixture_verification"]
    keys = [(r["condition"], r["input"], r["system"]) for r in rows]
    reference = "log-mel mean+std, min distance (no training)"
    assert keys == [
        (condition, input_, system)
        for condition in ("seen", "unseen")
        for system in ("trained embedder", reference)
        for input_ in ("mixture", "clean")
    ]
    for row in rows:
        assert (row["n_positive"], row["n_negative"], row["segment_seconds"]) == (10, 10, 0.2)
        assert row["segment_samples"] == 1600 and row["sir_db"] == [0.0, 0.0]
        if row["system"] == "trained embedder":
            assert row["eer"] == 0.0  # the oracle
        else:
            assert 0.0 <= row["eer"] <= 1.0

    results = os.path.join(evaluation.run.path, "results")
    with open(os.path.join(results, "mixture_verification_table.txt")) as f:
        table = f.read()
    assert "condition" in table and "unseen" in table and "EER %" in table and "10 + 10" in table
    with open(os.path.join(results, "mixture_verification_results.json")) as f:
        saved = json.load(f)
    assert saved["results"] == rows and saved["sir_db"] == [0.0, 0.0]
    assert os.path.exists(os.path.join(results, "mixture_verification_results.csv"))
    with np.load(os.path.join(results, "mixture_verification_scores.npz")) as scores:
        for condition in ("seen", "unseen"):
            assert scores[f"{condition}_labels"].tolist() == [1] * 10 + [0] * 10
            assert scores[f"{condition}_triples"].shape == (10, 6)
            for key in ("trained_mixture", "trained_clean", "reference_mixture", "reference_clean"):
                assert scores[f"{condition}_{key}"].shape == (20,)
        # Seen triples are of held-out utterances of training speakers; unseen ones of ev*.
        seen = scores["seen_utterances"][scores["seen_triples"]]
        assert all(name.startswith("spk") for name in seen.ravel())
        assert set(seen.ravel()) <= set(evaluation.data.holdout.relative_paths())
        unseen = scores["unseen_utterances"][scores["unseen_triples"]]
        assert all(name.startswith("ev") for name in unseen.ravel())
    # Recorded as finished: not run again.
    assert evaluation.run.stage_done("evaluation/mixture_verification")


def test_missing_conditions_are_notes_and_defaults_apply(tmp_path, folders, capsys):
    from keras_spk.recipe.mixture_protocols import mixture_settings
    from keras_spk.recipe.mixture_protocols import mixture_verification_protocol

    config = make_config(reference=False)
    del config["evaluation"]["mixture_trials"]
    del config["data"]["mixture"]
    evaluation = make_evaluation(tmp_path, folders, config, holdout_per_speaker=0)
    assert mixture_settings(evaluation) == {
        "num_trials": 200, "seconds": 0.2, "segment_samples": 1600, "sir_db": [0.0, 0.0]
    }
    del config["evaluation"]["mixture_seconds"]
    config["evaluation"]["mixture_trials"] = 6
    rows = mixture_verification_protocol(evaluation)
    out = capsys.readouterr().out
    assert "no seen condition" in out and "data.holdout_per_speaker >= 2" in out
    assert [(r["condition"], r["input"]) for r in rows] == [("unseen", "mixture"), ("unseen", "clean")]
    assert rows[0]["segment_samples"] == 3 * RATE and rows[0]["n_positive"] == 6

    # One held-out utterance per speaker gives no A' for seen; an evaluation folder of 3 speakers
    # no unseen triple: notes, no rows, no files.
    evaluation = make_evaluation(tmp_path / "b", folders, make_config(reference=False), holdout_per_speaker=1)
    few = tmp_path / "few"
    write_tone_corpus(str(few), range(3), 2, prefix="ev")
    evaluation.data.eval_dir = str(few)
    assert mixture_verification_protocol(evaluation) == []
    out = capsys.readouterr().out
    assert "data.holdout_per_speaker >= 2" in out and "at least 4 speakers" in out
    assert "no condition to score" in out
    assert not os.path.exists(os.path.join(evaluation.run.path, "results", "mixture_verification_table.txt"))


def test_level_comes_from_the_mixture_config(tmp_path, folders):
    from keras_spk.recipe.mixture_protocols import mixture_verification_protocol

    config = make_config(reference=False)
    config["data"]["mixture"]["sir_db"] = [-5, 5]
    rows = mixture_verification_protocol(make_evaluation(tmp_path, folders, config))
    assert {tuple(row["sir_db"]) for row in rows} == {(-5.0, 5.0)}


def test_overlap_and_short_segments_are_errors(tmp_path, folders):
    from keras_spk.recipe.mixture_protocols import mixture_verification_protocol

    # The training folder as the evaluation folder: every speaker is shared.
    train_dir, _ = folders
    config = make_config(reference=False)
    evaluation = make_evaluation(tmp_path, folders, config, eval_dir=train_dir)
    with pytest.raises(RunError, match=r"unseen speakers.*6 speaker\(s\) appear in both.*allow_speaker_overlap"):
        mixture_verification_protocol(evaluation)
    evaluation.data.allow_speaker_overlap = True  # --allow-speaker-overlap or data.allow_speaker_overlap
    rows = mixture_verification_protocol(evaluation)
    assert {row["condition"] for row in rows} == {"seen", "unseen"}

    config = make_config(mixture_seconds=0.005)  # 40 samples at 8 kHz, the embedder needs 64
    message = (
        r"evaluation.mixture_seconds=0.005 gives segments of 40 samples at 8000 Hz, shorter than the "
        r"64 samples \(0.008 s\) the embedder needs; .*--evaluation.mixture_seconds=3"
    )
    with pytest.raises(RunError, match=message):
        mixture_verification_protocol(make_evaluation(tmp_path, folders, config))


def test_embedder_problems_name_the_condition(tmp_path, folders):
    from keras_spk.recipe.mixture_protocols import mixture_verification_protocol

    evaluation = make_evaluation(
        tmp_path, folders, make_config(reference=False), embedder=lambda x: np.zeros((len(x), 2, 4))
    )
    with pytest.raises(RunError, match=r"mixture_verification, seen speakers: the mixture of .* is all zeros"):
        mixture_verification_protocol(evaluation)


def test_merge_writes_every_systems_rows(tmp_path):
    from keras_spk.recipe import protocols
    from keras_spk.recipe.run import Run

    row = {
        "condition": "unseen", "input": "mixture", "system": "trained embedder", "eer": 0.05,
        "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.3, "n_positive": 200, "n_negative": 200,
    }
    run = Run("toy", str(tmp_path / "run"), make_config(), {}, resumed=False, info={})
    systems = [("a", None, [row]), ("b", None, [{**row, "eer": 0.1}]), ("c", None, [])]
    protocols.PROTOCOLS["mixture_verification"].merge(run, systems)
    with open(os.path.join(run.path, "results", "mixture_verification_table.txt")) as f:
        lines = f.read().splitlines()
    assert lines[0].split()[:3] == ["recipe", "system", "condition"]
    assert lines[2].split()[0] == "a" and "5.00" in lines[2] and "200 + 200" in lines[2]
    assert lines[3].split()[0] == "b" and "10.00" in lines[3] and len(lines) == 4
    with open(os.path.join(run.path, "results", "mixture_verification_results.json")) as f:
        assert [r["recipe_system"] for r in json.load(f)["results"]] == ["a", "b"]


def test_config_constraints():
    from keras_spk.config import ConfigError
    from keras_spk.config import check_config
    from keras_spk.recipe.evaluation import CONSTRAINTS

    constraints = {key: CONSTRAINTS[key] for key in ("evaluation.mixture_trials", "evaluation.mixture_seconds")}
    check_config(make_config(), constraints)
    with pytest.raises(ConfigError, match=r"'evaluation.mixture_trials' must be an int >= 1, got 0"):
        check_config(make_config(mixture_trials=0), constraints)
    with pytest.raises(ConfigError, match=r"'evaluation.mixture_seconds' must be a crop length in seconds"):
        check_config(make_config(mixture_seconds=-1.0), constraints)
