"""The runner end to end on a tiny test recipe: stages, loss terms, frozen models, systems, trial lists."""

import json
import os

import keras
import numpy as np
import pytest

from tests.helpers import toy_recipe
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus
from tests.helpers.recipes import read_log
from tests.helpers.recipes import read_state
from tests.helpers.recipes import run_recipe_test


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=11)


def second_trial_list(corpus, path):
    """Every other line of the corpus's trial list (both labels kept)."""
    with open(os.path.join(corpus, "trials.txt")) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(lines[::2]) + "\n")
    return str(path)


def test_two_stage_recipe_trains_resumes_and_logs_each_term(corpus, tmp_path):
    stages = {"softmax": 2, "metric": 2, "head": 0}
    out = str(tmp_path / "interrupted")
    run, rows = run_recipe_test(toy_recipe.main, data_args(corpus), out, stages, stop_after=3)
    # The reference row beside the trained system's.
    assert [r["backend"] for r in rows] == ["cosine", "reference"]

    # The metric stage logs each term of its objective, as added (weighted).
    metric = read_log(out, "metric")
    for row in metric:
        softmax, triplet, total = (float(row[k]) for k in ("softmax_loss", "triplet_loss", "loss"))
        assert softmax > 0 and triplet >= 0
        assert total == pytest.approx(softmax + triplet, rel=1e-5)
    assert "triplet_loss" not in read_log(out, "softmax")[0]

    # The interrupted and resumed run repeats the uninterrupted one exactly.
    straight = str(tmp_path / "straight")
    toy_recipe.main(data_args(corpus) + ["--output", straight])
    for stage in ("softmax", "metric"):
        assert read_log(straight, stage) == read_log(out, stage)


def test_stages_use_their_own_optimizer_and_sampler(corpus, tmp_path):
    # P x K batches of 4 x 2 over 16 utterances: 2 steps per epoch; random crops of 8: 2 as well,
    # so the steps alone do not tell; the learning rate does.
    from keras_spk.recipe import stage_plan

    config = keras_spk_config()
    plan = stage_plan(config)
    assert plan["metric"]["optimizer"] == {"name": "adam", "learning_rate": 3.0e-3}
    assert plan["softmax"]["optimizer"] == {"name": "adam", "learning_rate": 1.0e-2}
    assert plan["metric"]["data"]["sampler"] == "pk" and plan["softmax"]["data"]["sampler"] == "random"
    assert plan["head"]["frozen"] == ["metric"]


def keras_spk_config(*overrides):
    from keras_spk.config import load_config

    return load_config(toy_recipe.CONFIG, overrides)


class FrozenCheck(keras.callbacks.Callback):
    """Records the embedder's weights before and after the `head` stage trains on it."""

    def on_train_begin(self, logs=None):
        if self.model.name == "toy_head":
            self.before = [w.copy() for w in self.model.get_layer("toy_embedder").get_weights()]
            self.head_before = [w.copy() for w in self.model.get_layer("new_softmax").get_weights()]

    def on_train_end(self, logs=None):
        if self.model.name == "toy_head":
            self.after = self.model.get_layer("toy_embedder").get_weights()
            self.head_after = self.model.get_layer("new_softmax").get_weights()


def test_a_frozen_earlier_model_keeps_its_weights_bit_for_bit(corpus, tmp_path):
    check = FrozenCheck()
    toy_recipe.main(
        data_args(corpus) + ["--output", str(tmp_path / "run"), "--stages.head.epochs=2"], callbacks=[check]
    )
    assert len(check.before) == 4  # conv and embedding kernels and biases
    for before, after in zip(check.before, check.after):
        np.testing.assert_array_equal(before, after)
    # ... while the new head on top of it trained.
    assert not np.array_equal(check.head_before[0], check.head_after[0])


def test_systems_and_two_trial_lists_make_one_table(corpus, tmp_path):
    extra = second_trial_list(corpus, tmp_path / "half.txt")
    out = str(tmp_path / "run")
    argv = data_args(corpus) + [extra, "--output", out, "--stages.metric.epochs=1",
        "--systems=[{name: wide, model: {filters: 8}}, {name: narrow, model: {filters: 4}}]"]
    run = toy_recipe.main(argv)
    assert run.finished
    for system in ("wide", "narrow"):
        assert read_state(os.path.join(out, system))["finished"]
        with open(os.path.join(out, system, "config.yaml")) as f:
            assert f"filters: {8 if system == 'wide' else 4}" in f.read()
    with open(os.path.join(out, "results", "results.json")) as f:
        rows = json.load(f)["results"]
    cells = {(r["recipe_system"], r["backend"], r["trial_list"]) for r in rows}
    assert cells == {
        (s, b, t) for s in ("wide", "narrow") for b in ("cosine", "reference") for t in ("trials", "half")
    }
    with open(os.path.join(out, "results", "table.txt")) as f:
        table = f.read()
    for word in ("wide", "narrow", "trials", "half", "reference"):
        assert word in table
    # One embedding pass over the union of the lists: the half list's utterances are a subset.
    from keras_spk.scoring import load_embeddings

    names, _ = load_embeddings(os.path.join(out, "wide", "embeddings", "trials.npz"))
    assert len(names) == len(set(names)) == 9
    # A system trains as a run of its own would: the same losses, epoch by epoch.
    alone = str(tmp_path / "alone")
    toy_recipe.main(data_args(corpus) + ["--output", alone, "--stages.metric.epochs=1", "--model.filters=4"])
    for stage in ("softmax", "metric"):
        assert read_log(os.path.join(out, "narrow"), stage) == read_log(alone, stage)
    # The reference row scores the same trials whatever the system (it learns nothing from them).
    reference = {(r["recipe_system"], r["trial_list"]): r["eer"] for r in rows if r["backend"] == "reference"}
    assert reference[("wide", "half")] == reference[("narrow", "half")]


def test_trial_lists_are_optional_when_no_protocol_reads_them(corpus, tmp_path):
    out = str(tmp_path / "run")
    argv = ["--data", f"{corpus}/train", "--eval-data", f"{corpus}/test", "--output", out,
            "--evaluation.protocols=[]", "--stages.metric.epochs=0"]
    run = toy_recipe.main(argv)
    assert run.finished and not os.path.exists(os.path.join(out, "results", "results.json"))
    from keras_spk.recipe import RunError

    with pytest.raises(RunError, match="give --trials"):
        toy_recipe.main(argv[:4] + ["--output", str(tmp_path / "other")])


def test_a_bad_system_is_refused_before_any_folder(corpus, tmp_path):
    from keras_spk.config import ConfigError

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"system 'b': unknown config key 'model.filter'"):
        toy_recipe.main(data_args(corpus) + ["--output", str(out),
            "--systems=[{name: a, model: {filters: 4}}, {name: b, model: {filter: 4}}]"])
    with pytest.raises(ConfigError, match=r"system name\(s\) a appear more than once"):
        toy_recipe.main(data_args(corpus) + ["--output", str(out),
            "--systems=[{name: a, model: {filters: 4}}, {name: a, model: {filters: 8}}]"])
    assert not out.exists()


def test_protocols_come_from_a_registry_and_resume_one_by_one(corpus, tmp_path, monkeypatch):
    from keras_spk.recipe import PROTOCOLS
    from keras_spk.recipe import register_protocol

    calls = []

    @register_protocol("count_trials", needs_trials=True)
    def count_trials(evaluation):
        calls.append(len(calls))
        if len(calls) == 1:
            raise KeyboardInterrupt("stopped during the second protocol")
        return [{"trial_list": name, "trials": len(t)} for name, t in evaluation.data.trial_lists.items()]

    monkeypatch.setitem(PROTOCOLS, "count_trials", PROTOCOLS["count_trials"])
    out = str(tmp_path / "run")
    argv = data_args(corpus) + ["--output", out, "--evaluation.protocols=[utterance, count_trials]",
                                "--stages.metric.epochs=0"]
    with pytest.raises(KeyboardInterrupt):
        toy_recipe.main(argv)
    assert read_state(out)["stages"]["evaluation/utterance"] == "done"
    written = os.path.getmtime(os.path.join(out, "results", "protocols", "utterance.json"))
    run = toy_recipe.main(["--resume", out])
    assert run.finished and calls == [0, 1]
    # The finished protocol was read back, not computed again.
    assert os.path.getmtime(os.path.join(out, "results", "protocols", "utterance.json")) == written
    with open(os.path.join(out, "results", "protocols", "count_trials.json")) as f:
        assert json.load(f)["rows"] == [{"trial_list": "trials", "trials": 18}]
