"""Tests of keras_spk.recipe.run: run folders, config resolution, resumption rules."""

import json
import os

import pytest
import yaml

from keras_spk.config import ConfigError
from keras_spk.config import int_range
from keras_spk.recipe import RunError
from keras_spk.recipe import open_run
from keras_spk.recipe.run import has_trained

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
    with pytest.raises(RunError, match="missing --eval-data"):
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
    assert run.data == {"train": [os.path.abspath("a")], "eval": os.path.abspath("b"), "trials": [os.path.abspath("c")]}
    # Several training folders and trial lists; no trial list at all.
    run = start(configs, "--data", "a", "a2", "--eval-data", "b", "--trials", "c", "d", "--output", str(tmp_path / "v"))
    assert run.data["train"] == [os.path.abspath("a"), os.path.abspath("a2")]
    assert run.data["trials"] == [os.path.abspath("c"), os.path.abspath("d")]
    run = start(configs, "--data", "a", "--eval-data", "b", "--output", str(tmp_path / "w"))
    assert run.data["trials"] == []
    with pytest.raises(RunError, match="other data"):
        start(configs, "--data", "x", "--eval-data", "b", "--trials", "c", "--resume", str(tmp_path / "u"))


# --- folders that never trained, constraints, temporary files ---


def start_provisional(configs, *argv, **kwargs):
    """`open_run` as the recipes call it (through `start_run`)."""
    return open_run("toy", list(argv), *configs, provisional=True, **kwargs)[0]


def add_checkpoint(run, stage="train", epoch=1):
    path = run.makedirs("checkpoints", stage)
    with open(os.path.join(path, f"epoch-{epoch:03d}.weights.h5"), "wb") as f:
        f.write(b"\0")


def test_config_constraint_fails_before_any_folder_exists(configs, tmp_path):
    out = tmp_path / "r"
    rules = {"data.batch_size": int_range(min=1), "train.epochs": int_range(min=1)}
    with pytest.raises(ConfigError, match=r"override --data.batch_size: config key 'data.batch_size' must be an int >= 1, got 0"):
        start_provisional(configs, "--output", str(out), "--data.batch_size=0", constraints=rules)
    assert not out.exists()
    with pytest.raises(ConfigError, match="'train.epochs' must be an int >= 1, got -2"):
        start_provisional(configs, "--train.epochs=-2", constraints=rules)
    assert not os.path.exists("runs")
    # --resume DIR checks the run's config with the command's overrides.
    start_provisional(configs, "--output", str(out), constraints=rules)
    with pytest.raises(ConfigError, match="'data.batch_size' must be an int >= 1, got 0"):
        start_provisional(configs, "--resume", str(out), "--data.batch_size=0", constraints=rules)


def test_folder_that_never_trained_takes_the_next_commands_arguments(configs, tmp_path):
    out = str(tmp_path / "r")
    first = start_provisional(configs, "--output", out, "--train.epochs=5")
    first.mark_stage_done("pretrain")  # a stage of 0 epochs: no checkpoint
    assert not has_trained(out)
    # Another config, then other data: the folder is started afresh (not refused).
    second = start_provisional(configs, "--output", out, "--train.epochs=6")
    assert second.path == out and not second.resumed
    assert second.config["train"]["epochs"] == 6 and not second.stage_done("pretrain")
    with open(second.join("config.yaml")) as f:
        assert yaml.safe_load(f)["train"]["epochs"] == 6
    third = start_provisional(configs, "--output", out, "--data", "a", "--eval-data", "b", "--trials", "c")
    assert third.data["train"] == [os.path.abspath("a")] and third.config["train"]["epochs"] == 3
    with open(third.join("run.json")) as f:
        assert json.load(f)["data"] == third.data
    # --resume DIR with an override: the run's config and data with that change.
    fourth = start_provisional(configs, "--resume", out, "--train.epochs=7")
    assert fourth.config == {**third.config, "train": {"epochs": 7}} and fourth.data == third.data
    # Once a checkpoint exists the folder holds its config, as before.
    add_checkpoint(fourth)
    assert has_trained(out)
    with pytest.raises(RunError, match="these keys differ: train.epochs"):
        start_provisional(configs, "--resume", out, "--train.epochs=8")
    with pytest.raises(RunError, match="other data"):
        start_provisional(configs, "--resume", out, "--data", "x", "--eval-data", "b", "--trials", "c")
    again = start_provisional(configs, "--resume", out)
    assert again.resumed and again.config["train"]["epochs"] == 7


def test_same_command_reuses_a_folder_that_never_trained(configs):
    first = start_provisional(configs)
    first.mark_stage_done("pretrain")
    again = start_provisional(configs)
    assert again.path == first.path and not again.resumed and not again.stage_done("pretrain")
    other = start_provisional(configs, "--train.epochs=2")  # another config: its own folder
    assert other.path != first.path
    add_checkpoint(again)
    resumed = start_provisional(configs)
    assert resumed.path == first.path and resumed.resumed


def test_resume_alone_skips_folders_that_never_trained(configs):
    trained = start_provisional(configs)
    add_checkpoint(trained)
    untrained = start_provisional(configs, "--train.epochs=2")
    assert untrained.path > trained.path  # the newer one
    assert start_provisional(configs, "--resume").path == trained.path
    trained.mark_finished()
    with pytest.raises(RunError, match="no unfinished toy run"):
        start_provisional(configs, "--resume")


def test_folder_another_live_process_is_starting_is_not_taken(configs, tmp_path):
    out = str(tmp_path / "r")
    run = start_provisional(configs, "--output", out)
    info = dict(run.info, pid=os.getppid())  # alive, and not this process
    with open(run.join("run.json"), "w") as f:
        json.dump(info, f)
    with pytest.raises(RunError, match=f"another process \\(pid {os.getppid()}\\)"):
        start_provisional(configs, "--output", out, "--train.epochs=4")


def test_temporary_files_of_interrupted_writes_are_removed_on_reopening(configs, tmp_path):
    out = tmp_path / "r"
    run = start(configs, "--output", str(out))
    stale = [
        out / "checkpoints" / "train" / ".tmp-999999999-epoch-002.weights.h5",  # EpochCheckpoint
        out / ".tmp-999999999-embedder.keras",  # save_embedder
        out / ".state.json.k2j3h4l5.tmp",  # atomic_open
        out / "results" / ".results.json.abcdefgh.tmp",
    ]
    kept = [
        out / "checkpoints" / "train" / "epoch-001.weights.h5",
        out / "checkpoints" / "train" / f".tmp-{os.getppid()}-epoch-003.weights.h5",  # a live writer's
        out / "notes.tmp",
        out / ".tmpfile",
        out / "results" / "table.txt",
        tmp_path / ".outside.abcdefgh.tmp",  # not in the run folder
    ]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    target = tmp_path / "target.txt"
    target.write_text("mine")
    (out / ".link.abc.tmp").symlink_to(target)
    resumed = start(configs, "--resume", str(out))
    assert resumed.resumed
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert (out / ".link.abc.tmp").is_symlink() and target.read_text() == "mine"
    # A folder that never trained and is started afresh is cleaned too.
    fresh = tmp_path / "f"
    start_provisional(configs, "--output", str(fresh))
    (fresh / ".config.yaml.zzzzzzzz.tmp").write_text("half")
    start_provisional(configs, "--output", str(fresh), "--train.epochs=9")
    assert not (fresh / ".config.yaml.zzzzzzzz.tmp").exists()


def test_resumed_run_may_change_what_only_the_steps_after_training_read(configs):
    folder = os.path.dirname(configs[0])
    defaults = dict(DEFAULTS, evaluation={"backends": ["cosine"], "train_utterances_per_speaker": None})
    with open(os.path.join(folder, "defaults.yaml"), "w") as f:
        yaml.safe_dump(defaults, f)
    run = start(configs, "--output", "r")
    add_checkpoint(run)
    resumed = start(configs, "--resume", "r", "--evaluation.backends=[cosine, plda]")
    assert resumed.resumed and resumed.config["evaluation"]["backends"] == ["cosine", "plda"]
    with open(resumed.join("config.yaml")) as f:
        assert yaml.safe_load(f)["evaluation"]["backends"] == ["cosine", "plda"]  # recorded
    # The same command without --output continues the trained run too.
    auto = start(configs, "--train.epochs=1", "--evaluation.backends=[plda]")
    assert auto.path != resumed.path  # runs/: r is elsewhere
    add_checkpoint(auto)
    again = start(configs, "--evaluation.backends=[cosine]")
    assert again.path == auto.path and again.resumed
    # Training keys still may not change, nor what the saved embeddings were made with.
    with pytest.raises(RunError, match=r"these keys differ: train.epochs\. .*only evaluation"):
        start(configs, "--resume", "r", "--train.epochs=4", "--evaluation.backends=[plda]")
    run.mark_stage_done("embeddings")
    with pytest.raises(RunError, match="these keys differ: evaluation.train_utterances_per_speaker"):
        start(configs, "--resume", "r", "--evaluation.train_utterances_per_speaker=2")
