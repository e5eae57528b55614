"""The `multi_crop` evaluation protocol on the toy recipe: rows, files, settings, resume."""

import dataclasses
import json
import os
import types

import keras
import numpy as np
import pytest

from keras_spk.config import ConfigError
from tests.helpers import toy_recipe
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus
from tests.helpers.recipes import read_state


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=11)


def read_rows(run_path, protocol):
    with open(os.path.join(run_path, "results", "protocols", f"{protocol}.json")) as f:
        return json.load(f)["rows"]


def trial_list(corpus):
    from keras_spk.data import read_trials

    return read_trials(os.path.join(corpus, "trials.txt"), os.path.join(corpus, "test"))


def recompute(run_path, trials, metric, reduce):
    """EER and minDCF of the saved crop embeddings, scored here."""
    from keras_spk.metrics import verification_metrics
    from keras_spk.recipe.evaluation import trial_indices
    from keras_spk.scoring import multi_crop_scores

    with np.load(os.path.join(run_path, "embeddings", "crops.npz")) as saved:
        names, crops = saved["names"].tolist(), saved["crops"]
    scores = multi_crop_scores(crops, crops, metric, reduce, index=trial_indices(trials, names))
    return verification_metrics(scores, trials.labels)


def test_multi_crop_beside_utterance_with_the_default_settings(corpus, tmp_path):
    # The toy config has no multi_crop_* keys: ten 3-s crops, euclidean, both reductions.
    out = str(tmp_path / "run")
    argv = data_args(corpus) + ["--output", out, "--evaluation.protocols=[utterance, multi_crop]",
                                "--stages.metric.epochs=0"]
    run = toy_recipe.main(argv)
    assert run.finished
    rows = read_rows(out, "multi_crop")
    assert [r["backend"] for r in rows] == ["mean_distance", "mean_embedding"]
    assert rows[0]["system"] == "10 x 3 s crops, mean euclidean distance of 100 crop pairs"
    assert rows[1]["system"] == "10 x 3 s crops, euclidean distance of the mean crops"
    for row in rows:
        assert row["trial_list"] == "trials" and row["n_trials"] == 18
        assert (row["metric"], row["num_crops"], row["crop_seconds"]) == ("euclidean", 10, 3.0)
        assert 0.0 <= row["eer"] <= 1.0 and 0.0 <= row["min_dcf_0.01"] <= 1.0 and "min_dcf_0.05" in row

    # Its own files, beside the utterance protocol's table (not over it).
    results = os.path.join(out, "results")
    with open(os.path.join(results, "multi_crop_table.txt")) as f:
        table = f.read()
    assert "mean_distance" in table and "mean_embedding" in table and "EER %" in table
    with open(os.path.join(results, "multi_crop_results.json")) as f:
        assert json.load(f)["results"] == rows
    assert os.path.exists(os.path.join(results, "multi_crop_results.csv"))
    with open(os.path.join(results, "table.txt")) as f:
        assert "cosine" in f.read()
    with open(os.path.join(results, "results.json")) as f:
        assert {r["backend"] for r in json.load(f)["results"]} == {"cosine", "reference"}

    # The crops of every trial utterance, once: 9 utterances of 1 to 1.5 s, each shorter than
    # 3 s, so its ten crops are one repetition of it and both reductions score alike.
    trials = trial_list(corpus)
    with np.load(os.path.join(out, "embeddings", "crops.npz")) as saved:
        names, crops = saved["names"].tolist(), saved["crops"]
        assert (int(saved["num_crops"]), int(saved["crop_samples"])) == (10, 48000)
    assert names == trials.utterances and crops.shape == (9, 10, 8)
    np.testing.assert_allclose(crops, np.repeat(crops[:, :1], 10, axis=1), rtol=1e-5, atol=1e-6)
    assert rows[0]["eer"] == rows[1]["eer"]
    # The saved crops are the trained embedder's, and the rows score them.
    from keras_spk.inference import embed_crops

    embedder = keras.saving.load_model(os.path.join(out, "embedder.keras"))
    again = embed_crops(embedder, [trials.files[names[0]]], num_crops=10, crop_samples=48000, progress=False)
    np.testing.assert_allclose(again[0], crops[0], rtol=1e-4, atol=1e-5)
    for row in rows:
        expected = recompute(out, trials, "euclidean", row["backend"])
        assert row["eer"] == pytest.approx(expected["eer"], abs=1e-12)
        assert row["min_dcf_0.01"] == pytest.approx(expected["min_dcf_0.01"], abs=1e-12)


def multi_crop_recipe(tmp_path, **settings):
    """The toy recipe with `evaluation.multi_crop_*` keys in its config (so they are checked)."""
    path = tmp_path / "toy_multi_crop.yaml"
    lines = [f"_base_: {toy_recipe.CONFIG}", "evaluation:"]
    lines += [f"  multi_crop_{key}: {json.dumps(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return dataclasses.replace(toy_recipe.recipe(), default_config=str(path), demo_config=str(path))


def test_configured_settings_are_checked_and_a_resumed_run_reads_the_crops_back(
    corpus, tmp_path, monkeypatch
):
    from keras_spk import inference
    from keras_spk.recipe import run_recipe
    from keras_spk.scoring import multi_crop

    recipe = multi_crop_recipe(tmp_path, num_crops=4, seconds=0.5, metric="cosine", reduce=["mean_distance"])
    argv = data_args(corpus) + ["--evaluation.protocols=[multi_crop]", "--stages.metric.epochs=0"]
    bad = {
        "--evaluation.multi_crop_num_crops=0": r"multi_crop_num_crops' must be an int >= 1, got 0",
        "--evaluation.multi_crop_seconds=0.00001": r"multi_crop_seconds' must be a crop length in seconds",
        "--evaluation.multi_crop_metric=l2": r"multi_crop_metric' must be one of euclidean, cosine",
        "--evaluation.multi_crop_reduce=[max]": r"multi_crop_reduce' must be a non-empty list of distinct",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            run_recipe(recipe, argv + ["--output", str(tmp_path / "bad"), override])
    assert not (tmp_path / "bad").exists()

    # Stopped while scoring, after the crops were saved.
    out = str(tmp_path / "run")
    real_scores = multi_crop.multi_crop_scores

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("stopped while scoring")

    monkeypatch.setattr(multi_crop, "multi_crop_scores", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, argv + ["--output", out])
    crops_path = os.path.join(out, "embeddings", "crops.npz")
    written = os.path.getmtime(crops_path)
    assert "evaluation/multi_crop" not in read_state(out)["stages"]

    # Resumed: the crops are read back, not embedded again.
    monkeypatch.setattr(multi_crop, "multi_crop_scores", real_scores)

    def no_embedding(*args, **kwargs):
        raise AssertionError("the crops were embedded again")

    monkeypatch.setattr(inference, "embed_crops", no_embedding)
    run = run_recipe(recipe, ["--resume", out])
    assert run.finished and os.path.getmtime(crops_path) == written
    rows = read_rows(out, "multi_crop")
    assert len(rows) == 1
    row = rows[0]
    assert row["system"] == "4 x 0.5 s crops, mean cosine distance of 16 crop pairs"
    assert (row["backend"], row["metric"], row["num_crops"], row["crop_seconds"]) == (
        "mean_distance", "cosine", 4, 0.5
    )
    with np.load(crops_path) as saved:
        assert saved["crops"].shape == (9, 4, 8) and int(saved["crop_samples"]) == 8000
        # 1 to 1.5 s utterances, 0.5-s crops: the crops of an utterance differ.
        assert np.abs(saved["crops"][:, 0] - saved["crops"][:, -1]).max() > 1e-4
    expected = recompute(out, trial_list(corpus), "cosine", "mean_distance")
    assert row["eer"] == pytest.approx(expected["eer"], abs=1e-12)
    with open(os.path.join(out, "results", "multi_crop_table.txt")) as f:
        assert "4 x 0.5 s crops" in f.read()


def evaluation_of(settings, min_samples=64, sample_rate=16000):
    return types.SimpleNamespace(
        settings=settings, config={"data": {"sample_rate": sample_rate}}, min_samples=min_samples
    )


def test_settings_default_when_absent_and_crops_must_hold_the_models_minimum():
    from keras_spk.recipe.protocols import multi_crop_settings
    from keras_spk.recipe.run import RunError

    assert multi_crop_settings(evaluation_of({})) == {
        "num_crops": 10, "crop_seconds": 3.0, "crop_samples": 48000, "metric": "euclidean",
        "reduce": ["mean_distance", "mean_embedding"],
    }
    settings = multi_crop_settings(evaluation_of({"multi_crop_seconds": 1.5}, sample_rate=8000))
    assert settings["crop_samples"] == 12000
    # 3 ms at 16 kHz is 48 samples, fewer than the 64 the toy embedder needs.
    message = (
        r"evaluation.multi_crop_seconds=0.003 gives crops of 48 samples at 16000 Hz, shorter than the "
        r"64 samples \(0.004 s\) the embedder needs; .* --evaluation.multi_crop_seconds=3"
    )
    with pytest.raises(RunError, match=message):
        multi_crop_settings(evaluation_of({"multi_crop_seconds": 0.003}))


def test_crop_seconds_constraint_knows_the_recipes_minimum():
    from keras_spk.config import check_config
    from keras_spk.recipe.evaluation import crop_seconds

    config = {"data": {"sample_rate": 16000}, "evaluation": {"multi_crop_seconds": 0.02}}
    check_config(config, {"evaluation.multi_crop_seconds": crop_seconds(320)})
    message = (
        r"must be a crop length in seconds of at least 0.025 \(400 samples at 16000 Hz\), got 0.02. "
        r"0.02 s is 320 samples at 16000 Hz, fewer than the 400 the embedder needs."
    )
    with pytest.raises(ConfigError, match=message):
        check_config(config, {"evaluation.multi_crop_seconds": crop_seconds(lambda config: 400)})


def test_systems_are_merged_into_one_multi_crop_table(tmp_path):
    from keras_spk.recipe.protocols import merge_multi_crop
    from keras_spk.recipe.run import Run

    def row(eer, reduce):
        return {"backend": reduce, "system": f"10 x 3 s crops, {reduce}", "eer": eer,
                "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.4, "n_trials": 18, "trial_list": "trials"}

    run = Run("toy", str(tmp_path), {}, {}, resumed=False, info={})
    systems = [
        ("wide", None, [row(0.1, "mean_distance"), row(0.2, "mean_embedding")]),
        ("narrow", None, [row(0.3, "mean_distance")]),
    ]
    merge_multi_crop(run, systems)
    with open(tmp_path / "results" / "multi_crop_results.json") as f:
        rows = json.load(f)["results"]
    assert [(r["recipe_system"], r["backend"], r["eer"]) for r in rows] == [
        ("wide", "mean_distance", 0.1), ("wide", "mean_embedding", 0.2), ("narrow", "mean_distance", 0.3)
    ]
    table = (tmp_path / "results" / "multi_crop_table.txt").read_text()
    assert "recipe system" in table and "narrow" in table and "30.00" in table
    assert not (tmp_path / "results" / "table.txt").exists()
