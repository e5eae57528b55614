"""Start-up checks of the recipes: every config value before any training, and run folders.

The RawNet and FPM recipes (papers/*/train.py) are started on a tiny
corpus with `keras_spk.recipe.fit_stage` replaced, so a test fails (rather
than trains) if a bad value is let through to training.
"""

import glob
import json
import os

import pytest

from keras_spk.recipe import training
from keras_spk.config import ConfigError
from keras_spk.config import load_config
from keras_spk.recipe import RunError
from keras_spk.recipe import recipe_constraints
from papers.fpm import train as fpm_train
from papers.rawnet import train as rawnet_train
from tests.helpers.corpus import RAWNET_TINY_MODEL
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus

RAWNET_TINY = RAWNET_TINY_MODEL + [
    "--stages.pretrain.epochs=1",
    "--stages.train.epochs=2",
    "--train.verbose=0",
    "--evaluation.backends=[cosine, plda]",
    "--evaluation.lda_dim=2",
]


class Trained(Exception):
    """Raised by the stand-in `fit_stage`: the recipe got as far as training."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=11)


@pytest.fixture
def no_training(monkeypatch):
    calls = []

    def fit_stage(run, stage, *args, **kwargs):
        calls.append(stage)
        raise Trained(stage)

    monkeypatch.setattr(training, "fit_stage", fit_stage)
    return calls


@pytest.mark.parametrize(
    "override, message",
    [
        # Finding: an unknown back-end was found only after every epoch had trained.
        ("--evaluation.backends=[cosine, plad]", r"'evaluation.backends' .* Did you mean 'plda'\?"),
        ("--data.batch_size=0", r"'data.batch_size' must be an int >= 1, got 0"),
        ("--data.sample_rate=0", r"'data.sample_rate' must be an int from 8000 to 192000, got 0"),
        ("--stages.train.epochs=-1", r"'stages.train.epochs' must be an int >= 1, got -1"),
        ("--stages.train.epochs=0", r"'stages.train.epochs' must be an int >= 1, got 0"),
        ("--stages.pretrain.epochs=-1", r"'stages.pretrain.epochs' must be an int >= 0, got -1"),
        ("--data.crop_samples=2000", r"'data.crop_samples' must be an int >= 2187"),
        ("--model.recurrent_dropout=1.0", r"'model.recurrent_dropout' must be a number in \[0, 1\)"),
        ("--optimizer.learning_rate=0", r"'optimizer.learning_rate' must be a number > 0"),
        ("--stages.pretrain.loss=sofmax", r"'stages.pretrain.loss' must be one of same, softmax.*Did you mean 'softmax'"),
        ("--evaluation.test_durations=[0.1, null]", r"'evaluation.test_durations' .* 0.1 s is 1600 samples at 16000 Hz, fewer than 2187"),
        ("--evaluation.lda_dim=16", r"'evaluation.lda_dim' must be null or an int from 1 to 8"),
    ],
)
def test_rawnet_refuses_bad_values_before_any_folder_or_training(corpus, tmp_path, no_training, override, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"override --{override[2:].split('=')[0]}: config key {message}"):
        rawnet_train.main(data_args(corpus) + ["--output", str(out)] + RAWNET_TINY + [override])
    assert no_training == [] and not out.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("--evaluation.backends=[cosin]", r"'evaluation.backends' .* Did you mean 'cosine'\?"),
        ("--data.batch_size=0", r"'data.batch_size' must be an int >= 1"),
        ("--data.sample_rate=0", r"'data.sample_rate' must be an int from 8000 to 192000"),
        ("--stages.train.epochs=-3", r"'stages.train.epochs' must be an int >= 1"),
        ("--model.system=msea_fpm", r"'model.system' must be one of .*Did you mean"),
        ("--model.pooling=max", r"'model.pooling' must be null or one of gap, sap, lde"),
        ("--model.levels=[3, 6]", r"'model.levels' must be null or a non-empty list of distinct pyramid levels, each an int from 2 to 5"),
        ("--data.crop_samples=399", r"'data.crop_samples' must be an int >= 400"),
        ("--optimizer.momentum=1", r"'optimizer.momentum' must be a number in \[0, 1\)"),
        ("--schedule.drop_at=[0.5, 1.5]", r"'schedule.drop_at' must be a list of fractions"),
        ("--evaluation.lda_dim=null", None),  # valid: LDA keeps speakers - 1 directions
        # FPM's table has PLDA and LDA/PLDA beside cosine: they need training embeddings.
        (
            "--evaluation.train_utterances_per_speaker=0",
            r"'evaluation.train_utterances_per_speaker' .*plda, lda_plda learn from training",
        ),
    ],
)
def test_fpm_refuses_bad_values_before_any_folder_or_training(corpus, tmp_path, no_training, override, message):
    out = tmp_path / "run"
    argv = data_args(corpus) + ["--output", str(out), "--data.batch_size=8", "--train.verbose=0", override]
    if message is None:
        with pytest.raises(Trained):
            fpm_train.main(argv)
        return
    with pytest.raises(ConfigError, match=f"config key {message}"):
        fpm_train.main(argv)
    assert no_training == [] and not out.exists()


def test_shared_rules_cover_every_recipe_and_their_configs_pass():
    from papers.multi_metric import train as multi_metric_train
    from papers.speaker_basis import train as speaker_basis_train

    for module in (rawnet_train, fpm_train, speaker_basis_train, multi_metric_train):
        rules = recipe_constraints(module.DEFAULT_CONFIG, module.config_constraints())
        for key in ("seed", "data.sample_rate", "data.batch_size", "data.crop_samples", "stages",
                    "evaluation.backends", "evaluation.test_durations", "export.version"):
            assert key in rules, (module.__name__, key)
        for path in sorted(glob.glob(os.path.join(module.HERE, "configs", "*.yaml"))):
            load_config(path, defaults=module.DEFAULT_CONFIG, constraints=rules)


def test_learning_back_ends_need_training_embeddings(corpus, tmp_path, no_training):
    with pytest.raises(ConfigError, match=r"Back-end\(s\) plda learn from training embeddings"):
        rawnet_train.main(
            data_args(corpus) + ["--output", str(tmp_path / "r")] + RAWNET_TINY
            + ["--evaluation.train_utterances_per_speaker=0"]
        )


def test_failed_start_does_not_lock_the_folder(corpus, tmp_path, no_training):
    """Finding: a run that failed before training held its folder; the fixed command was refused."""
    out = str(tmp_path / "run")
    # The data cannot fill one batch: an error before training, after the folder was made.
    with pytest.raises(RunError, match="do not fill one batch of data.batch_size=64"):
        rawnet_train.main(data_args(corpus) + ["--output", out] + RAWNET_TINY + ["--data.batch_size=64"])
    assert no_training == []
    # The corrected command uses the folder and gets to training.
    with pytest.raises(Trained):
        rawnet_train.main(data_args(corpus) + ["--output", out] + RAWNET_TINY)
    assert no_training == ["pretrain"]
    with open(os.path.join(out, "config.yaml")) as f:
        assert "batch_size: 8" in f.read()
    # Bad data locations: the same, for --trials.
    other = str(tmp_path / "other")
    bad = data_args(corpus)
    bad[bad.index("--trials") + 1] = str(tmp_path / "missing.txt")
    with pytest.raises(RunError, match="missing.txt: no such file"):
        rawnet_train.main(bad + ["--output", other] + RAWNET_TINY)
    with pytest.raises(Trained):
        rawnet_train.main(data_args(corpus) + ["--output", other] + RAWNET_TINY)
    with open(os.path.join(other, "run.json")) as f:
        assert json.load(f)["data"]["trials"] == [os.path.join(corpus, "trials.txt")]


def test_lda_dim_above_the_training_speakers_is_refused_at_start(corpus, tmp_path, no_training):
    # 4 training speakers: LDA gives at most 3 directions.
    with pytest.raises(RunError, match=r"evaluation.lda_dim=4 is more than LDA can give with 4 training speakers"):
        rawnet_train.main(
            data_args(corpus) + ["--output", str(tmp_path / "r")] + RAWNET_TINY
            + ["--evaluation.backends=[cosine, lda]", "--evaluation.lda_dim=4"]
        )
    assert no_training == []
