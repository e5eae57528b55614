"""Tests of keras_spk.recipe.run: run folders, config resolution, resumption rules."""

import json
import os

import pytest
import yaml

from keras_spk.config import ConfigError
from keras_spk.recipe import RunError
from keras_spk.recipe import open_run

DEFAULTS = {"seed": 0, "data": {"batch_size": 8}, "train": {"epochs": 3}}
DEMO = {"_base_": "defaults.yaml", "train": {"epochs": 1}}


@pytest.fixture
def configs(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "defaults.yaml").write_text(yaml.safe_dump(DEFAULTS))
    (folder / "demo.yaml").write_text(yaml.safe_dump(DEMO))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default run folders go under ./runs
    return str(folder / "defaults.yaml"), str(folder / "demo.yaml")


def start(configs, *argv):
    return open_run("toy", list(argv), *configs)[0]


def test_new_run_writes_its_config_and_info(configs, tmp_path):
    run = start(configs, "--output", str(tmp_path / "r"), "--data.batch_size=4")
    assert not run.resumed
    assert run.config == {"seed": 0, "data": {"batch_size": 4}, "train": {"epochs": 1}}  # demo config
    with open(run.join("config.yaml")) as f:
        assert yaml.safe_load(f) == run.config
    with open(run.join("run.json")) as f:
        info = json.load(f)
    assert info["name"] == "toy" and info["data"] == {} and info["backend"] in ("tensorflow", "torch")
    assert run.data == {}


def test_default_folder_and_automatic_resume(configs):
    first = start(configs)
    assert os.path.dirname(first.path) == "runs" and os.path.basename(first.path).startswith("toy-")
    first.mark_stage_done("pretrain")
    # The same command again continues the unfinished run ...
    again = start(configs)
    assert again.path == first.path and again.resumed and again.stage_done("pretrain")
    # ... another config starts a new one, as does --new-run ...
    other = start(configs, "--train.epochs=2")
    assert other.path != first.path and not other.resumed
    fresh = start(configs, "--new-run")
    assert fresh.path not in (first.path, other.path)
    # ... and a finished run is never resumed automatically.
    for run in (first, other, fresh):
        run.mark_finished()
    assert start(configs).path not in (first.path, other.path, fresh.path)


def test_resume_rules(configs, tmp_path):
    out = str(tmp_path / "r")
    run = start(configs, "--output", out, "--train.epochs=5")
    # --resume DIR alone takes the run's own config.
    resumed = start(configs, "--resume", out)
    assert resumed.resumed and resumed.config["train"]["epochs"] == 5
    # --output of an unfinished run resumes it when the config agrees ...
    assert start(configs, "--output", out, "--train.epochs=5").resumed
    # ... and refuses, naming the key, when it does not.
    with pytest.raises(RunError, match="train.epochs"):
        start(configs, "--output", out, "--train.epochs=6")
    with pytest.raises(RunError, match="train.epochs"):
        start(configs, "--resume", out, "--train.epochs=6")
    run.mark_finished()
    with pytest.raises(RunError, match="finished run"):
        start(configs, "--resume", out)
    with pytest.raises(RunError, match="no unfinished toy run"):
        start(configs, "--resume")
    with pytest.raises(RunError, match="not a run folder"):
        start(configs, "--resume", str(tmp_path))
    with pytest.raises(RunError, match="contradict"):
        start(configs, "--resume", out, "--new-run")


def test_bad_arguments(configs, tmp_path):
    with pytest.raises(RunError, match="--eval-data, --trials"):
        start(configs, "--data", str(tmp_path))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an empty run folder"):
        start(configs, "--output", str(busy))
    with pytest.raises(ConfigError, match="train.epoch"):
        start(configs, "--train.epoch=3")
    # The user's data: the full config is the default, the locations are recorded.
    run = start(configs, "--data", "a", "--eval-data", "b", "--trials", "c", "--output", str(tmp_path / "u"))
    assert run.config["train"]["epochs"] == 3
    assert run.data == {"train": os.path.abspath("a"), "eval": os.path.abspath("b"), "trials": os.path.abspath("c")}
    with pytest.raises(RunError, match="other data"):
        start(configs, "--data", "x", "--eval-data", "b", "--trials", "c", "--resume", str(tmp_path / "u"))
