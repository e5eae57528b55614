"""End-to-end tests of the MIRNet recipe (papers/mirnet/train.py) at a tiny size.

MIRNet on on-the-fly mixtures, the separator conditioned on the frozen
MIRNet, the mixture-verification and separation protocols and the export,
interrupted during the separator stage and resumed; Table 2's baselines
(a) and (c) as the systems of one run; and the config errors a user meets.
"""

import json
import os

import numpy as np
import pytest

from keras_spk.data import make_demo_corpus
from keras_spk.recipe import RunError
from papers.mirnet import train
from tests.helpers.recipes import StopAfterEpochs
from tests.helpers.recipes import read_log
from tests.helpers.recipes import read_state

TINY = [
    "--data.crop_samples=8000",  # 0.5-s mixtures
    "--data.batch_size=4",
    "--data.mixture={mixtures_per_epoch: 8}",
    "--data.holdout_per_speaker=2",
    "--model.encoder_filters=[8, 8, 8, 8, 8]",
    "--model.attention_units=4",
    "--model.resnet_filters=[4, 4, 8, 8]",
    "--separator.conv_filters=4",
    "--separator.lstm_units=8",
    "--separator.fc_units=8",
    "--separator.dilations=[1, 2]",
    "--stages.mirnet.epochs=2",
    "--stages.speaker.data={crop_samples: 8000, batch_size: 4}",
    "--stages.separator.epochs=2",
    "--stages.separator.data={sampler: mixture, crop_samples: 4000, batch_size: 4, "
    "mixture: {mixtures_per_epoch: 8, return_sources: true}}",
    "--train.verbose=0",
    "--evaluation.mixture_trials=20",
    "--evaluation.mixture_seconds=0.5",
    "--evaluation.separation_source=eval_speakers",
    "--evaluation.separation_mixtures=4",
    "--evaluation.separation_seconds=0.5",
    "--evaluation.separation_enrolment_seconds=0.5",
    "--evaluation.separation_pesq=false",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 training speakers x 5 utterances, 5 test speakers x 3: enough for triples of 4 speakers."""
    root = str(tmp_path_factory.mktemp("corpus") / "demo")
    make_demo_corpus(
        root, seed=4, num_train_speakers=6, num_train_utterances=5, num_test_speakers=5,
        num_test_utterances=3, videos_per_speaker=2, min_duration=1.0, max_duration=1.5,
    )
    return root


def data_args(corpus):
    return ["--data", f"{corpus}/train", "--eval-data", f"{corpus}/test", "--data.layout=voxceleb"]


def _rows(out, protocol):
    with open(os.path.join(out, "results", "protocols", f"{protocol}.json")) as f:
        return json.load(f)["rows"]


def test_mirnet_recipe_runs_end_to_end_and_resumes(corpus, tmp_path):
    out = str(tmp_path / "run")
    argv = data_args(corpus) + TINY
    # Stopped after the separator's first epoch, then resumed.
    with pytest.raises(KeyboardInterrupt):
        train.main(argv + ["--output", out], callbacks=[StopAfterEpochs(3)])
    state = read_state(out)
    assert [s for s, v in state["stages"].items() if v == "done"] == ["mirnet", "speaker"]
    assert sorted(os.listdir(os.path.join(out, "checkpoints", "separator")))[-1] == "epoch-001.weights.h5"

    run = train.main(["--resume", out])
    assert run.finished
    assert [int(r["epoch"]) for r in read_log(out, "mirnet")] == [0, 1]
    assert [int(r["epoch"]) for r in read_log(out, "separator")] == [0, 1]
    assert all(np.isfinite(float(r["pit_loss"])) for r in read_log(out, "mirnet"))
    assert all(np.isfinite(float(r["separation_loss"])) for r in read_log(out, "separator"))

    rows = _rows(out, "mixture_verification")
    conditions = {(r["condition"], r["input"]) for r in rows}
    assert conditions == {("seen", "mixture"), ("seen", "clean"), ("unseen", "mixture"), ("unseen", "clean")}
    for row in rows:
        assert 0.0 <= row["eer"] <= 1.0
        assert row["n_positive"] == row["n_negative"] == 20
    separation = {r["system"]: r for r in _rows(out, "separation")}
    assert separation["mixture (no separation)"]["sdri"] == pytest.approx(0.0, abs=1e-6)
    assert separation["ideal ratio mask (oracle)"]["sdri"] > 3.0
    system = separation[train.SEPARATOR_LABELS["mirnet"]]
    assert np.isfinite(system["sdri"]) and system["n_mixtures"] == 4
    assert system["pesqi"] is None  # evaluation.separation_pesq=false
    assert os.path.exists(os.path.join(out, train.SEPARATOR_WEIGHTS))
    assert os.path.exists(os.path.join(out, "export", "1", "saved_model.pb"))


def test_table_2_baselines_run_as_systems(corpus, tmp_path):
    """(a) enrolment on a clean embedder trained in the run, (c) uPIT: one merged separation table."""
    out = str(tmp_path / "run")
    systems = (
        "--systems=[{name: a, separator: {condition: enrolment}, stages: {mirnet: {epochs: 0}, "
        "speaker: {epochs: 1}, separator: {epochs: 1, frozen: [speaker], data: {mixture: "
        "{return_enrolments: true}}}}, evaluation: {protocols: [separation]}, export: {enabled: false}}, "
        "{name: c, separator: {condition: none}, stages: {mirnet: {epochs: 0}, separator: "
        "{epochs: 1, frozen: []}}, evaluation: {protocols: [separation]}, export: {enabled: false}}]"
    )
    run = train.main(data_args(corpus) + TINY + [systems, "--output", out])
    assert run.finished
    for name, label in (("a", "enrolment"), ("c", "none")):
        rows = {r["system"]: r for r in _rows(os.path.join(out, name), "separation")}
        assert np.isfinite(rows[train.SEPARATOR_LABELS[label]]["sdri"])
    assert [int(r["epoch"]) for r in read_log(os.path.join(out, "a"), "speaker")] == [0]
    assert not os.path.exists(os.path.join(out, "a", "logs", "mirnet.csv"))  # (a) trains no MIRNet
    with open(os.path.join(out, "results", "separation_table.txt")) as f:
        table = f.read()
    for label in ("enrolment", "none"):
        assert train.SEPARATOR_LABELS[label] in table


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--separator.condition=enrolment", "--stages.speaker.epochs=1",
          "--stages.separator.frozen=[speaker]"], "return_enrolments: true"),
        (["--stages.separator.epochs=0"], "stages.separator.epochs is 0"),
        (["--stages.mirnet.data={sampler: random}"], "stages.mirnet.data.sampler: mixture"),
        (["--stages.separator.data={sampler: wsj0_2mix}"], "data.wsj0_2mix.root"),
        (["--separator.condition=enrolment", "--stages.separator.frozen=[speaker]",
          "--stages.separator.data={mixture: {return_enrolments: true}}"], "stages.speaker.epochs > 0"),
        (["--stages.separator.frozen=[]"], r"frozen: \[mirnet\]"),
        (["--data.mixture={num_speakers: 3}"], "num_identities=2"),
        (["--model.encoder_kernels=[5, 3, 3]"], "one kernel per convolution"),
    ],
    ids=["no-enrolments", "no-separator", "not-mixtures", "no-wsj0-root", "no-clean-embedder",
         "mirnet-not-frozen", "identities", "kernels"],
)
def test_config_errors_name_the_key(corpus, tmp_path, extra, message):
    from keras_spk.config import ConfigError

    with pytest.raises((RunError, ConfigError), match=message):
        train.main(data_args(corpus) + TINY + extra + ["--output", str(tmp_path / "r")])
    assert not os.path.exists(os.path.join(tmp_path, "r", "checkpoints"))
