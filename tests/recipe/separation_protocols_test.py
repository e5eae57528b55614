"""The `separation` evaluation protocol: a tiny Keras separator scored, written, merged; errors."""

import json
import os

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

from keras_spk.recipe.data import RecipeData
from keras_spk.recipe.protocols import PROTOCOLS
from keras_spk.recipe.protocols import Evaluation
from keras_spk.recipe.protocols import merge_protocols
from keras_spk.recipe.protocols import run_protocols
from keras_spk.recipe.run import Run
from keras_spk.recipe.run import RunError
from keras_spk.recipe.separation_protocols import separator_function
from keras_spk.recipe.stages import StageContext
from tests.evaluation.separation_eval_test import WSJ0_NAMES
from tests.evaluation.separation_eval_test import make_wsj0_tree
from tests.evaluation.separation_eval_test import write_speakers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from keras_spk.data import read_audio
    from keras_spk.metrics.separation import sdr

    root = write_speakers(tmp_path_factory.mktemp("separation") / "test")
    # One-off costs of a process, paid here rather than by the first test: tracing the
    # audio reader and importing fast_bss_eval (which loads PyTorch).
    waveform = read_audio(os.path.join(root, "id000", "vid", "00000.wav"))
    sdr(waveform, waveform + 0.01)
    return root


def halves_model(conditioned=False):
    """mixture [B, L] -> [B, 2, L]: half the mixture twice (plus 0 x the enrolment's mean)."""
    mixture = keras.Input((None,), name="mixture")
    if not conditioned:
        out = layers.Lambda(lambda x: ops.stack([x * 0.5, x * 0.5], axis=1))(mixture)
        return keras.Model(mixture, out, name="halves")
    enrolment = keras.Input((2, None), name="enrolment")

    def separate(inputs):
        x, e = inputs
        level = ops.mean(e, axis=(1, 2))[:, None] * 0.0
        return ops.stack([x * 0.5 + level, x * 0.5 + level], axis=1)

    out = layers.Lambda(separate)([mixture, enrolment])
    return keras.Model([mixture, enrolment], out, name="conditioned_halves")


def make_evaluation(path, eval_dir, model=None, label=None, data=None, **settings):
    config = {
        "seed": 0,
        "data": {"layout": "voxceleb", "sample_rate": 16000, **(data or {})},
        "evaluation": {"protocols": ["separation"], "separation_mixtures": 1,
                       "separation_pesq": False, **settings},
    }
    os.makedirs(path, exist_ok=True)
    run = Run("test", str(path), config, {}, resumed=False, info={})
    recipe_data = RecipeData(train=None, speaker_map=None, trial_lists={}, train_dirs=[],
                             eval_dir=eval_dir, trials_paths=[])
    context = StageContext(config, recipe_data, stages={})
    if model is not None:
        context.shared["separator"] = model
    if label is not None:
        context.shared["separator_label"] = label
    return Evaluation(run, None, recipe_data, context=context)


def test_protocol_end_to_end_and_merged(corpus, tmp_path):
    assert not PROTOCOLS["separation"].needs_trials
    systems = []
    for name, conditioned in (("plain", False), ("enrolled", True)):
        evaluation = make_evaluation(
            tmp_path / name, corpus, halves_model(conditioned),
            label="VoiceFilter (clean enrolment)" if conditioned else None,
            separation_enrolment_seconds=0.5,
        )
        rows = run_protocols(evaluation)["separation"]
        assert [r["system"] for r in rows] == [
            "VoiceFilter (clean enrolment)" if conditioned else "halves",
            "mixture (no separation)",
            "ideal ratio mask (oracle)",
        ]
        # Half the mixture is the mixture up to a gain: no improvement at all.
        assert rows[0]["sdri"] == pytest.approx(0.0, abs=1e-9)
        assert rows[1]["sdri"] == 0.0 and rows[2]["sdri"] > 3.0
        assert all(r["n_mixtures"] == 1 and r["pesqi"] is None for r in rows)
        results = tmp_path / name / "results"
        table = (results / "separation_table.txt").read_text()
        assert rows[0]["system"] in table and "ideal ratio mask" in table
        saved = json.loads((results / "separation_results.json").read_text())
        assert saved["results"] == rows and saved["settings"]["num_mixtures"] == 1
        assert saved["mixtures"]["enrolment_samples"] == (8000 if conditioned else None)
        assert saved["keras_backend"] == keras.backend.backend()
        systems.append((name, evaluation.run, {"separation": rows}))
    # Recorded as finished: not run again (the separator is no longer needed).
    again = make_evaluation(tmp_path / "plain", corpus, None)
    assert run_protocols(again)["separation"] == systems[0][2]["separation"]

    top = Run("test", str(tmp_path), systems[0][1].config, {}, resumed=False, info={})
    merge_protocols(top, systems)
    merged = json.loads((tmp_path / "results" / "separation_results.json").read_text())["results"]
    assert [(r["recipe_system"], r["system"]) for r in merged] == [
        ("plain", "halves"),
        ("enrolled", "VoiceFilter (clean enrolment)"),
        ("(reference)", "mixture (no separation)"),
        ("(reference)", "ideal ratio mask (oracle)"),
    ]
    lines = (tmp_path / "results" / "separation_table.txt").read_text().splitlines()
    assert lines[0].split()[:3] == ["recipe", "system", "system"]
    assert sum("mixture (no separation)" in line for line in lines) == 1


def test_wsj0_2mix_source_feeds_the_enrolment(tmp_path):
    root = make_wsj0_tree(tmp_path / "min", names=WSJ0_NAMES[:3])
    evaluation = make_evaluation(
        tmp_path / "run", None, halves_model(conditioned=True), data={"wsj0_2mix": {"root": str(root)}},
        separation_source="wsj0_2mix", separation_mixtures=None, separation_enrolment_seconds=None,
    )
    rows = run_protocols(evaluation)["separation"]
    assert rows[0]["n_mixtures"] == 3 and rows[0]["sdri"] == pytest.approx(0.0, abs=1e-9)
    assert rows[0]["mixtures"] == "WSJ0-2mix tt, 3 of 3 mixtures"


def test_separator_function_feeds_enrolment_only_to_models_that_read_it():
    mixture = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 1000)).astype("float32")
    enrolment = np.ones((1, 2, 300), "float32")
    plain, conditioned = separator_function(halves_model())
    assert not conditioned
    np.testing.assert_allclose(plain(mixture, enrolment), np.stack([mixture * 0.5] * 2, axis=1))
    np.testing.assert_allclose(plain(mixture[:, :700], None)[0, 1], mixture[0, :700] * 0.5)
    enrolled, conditioned = separator_function(halves_model(conditioned=True))
    assert conditioned
    assert enrolled(mixture, enrolment).shape == (1, 2, 1000)
    assert enrolled(mixture[:, :500], enrolment[:, :, :100]).shape == (1, 2, 500)
    with pytest.raises(ValueError, match="reads an enrolment input"):
        enrolled(mixture, None)
    other = keras.Input((None,), name="waveform")
    with pytest.raises(RunError, match=r"inputs \['waveform'\].*named 'mixture'"):
        separator_function(keras.Model(other, layers.Lambda(lambda x: ops.stack([x, x], 1))(other)))


def test_errors_name_the_fix(corpus, tmp_path):
    with pytest.raises(RunError, match=r"no separator for the separation protocol.*remove separation "
                                       r"from evaluation.protocols"):
        run_protocols(make_evaluation(tmp_path / "none", corpus))
    for data, state in (({}, "missing"), ({"wsj0_2mix": {"root": None}}, "null")):
        evaluation = make_evaluation(tmp_path / state, corpus, halves_model(), data=data,
                                     separation_source="wsj0_2mix")
        with pytest.raises(RunError, match=rf"data.wsj0_2mix.root is {state}"):
            run_protocols(evaluation)
    with pytest.raises(RunError, match="no evaluation folder: give --eval-data"):
        run_protocols(make_evaluation(tmp_path / "noeval", None, halves_model()))
    assert not os.path.exists(tmp_path / "none" / "results" / "separation_table.txt")


def test_config_constraints_of_the_separation_keys():
    from keras_spk.config import ConfigError
    from keras_spk.config import check_config
    from keras_spk.recipe.evaluation import CONSTRAINTS

    rules = {k: v for k, v in CONSTRAINTS.items() if k.startswith("evaluation.separation_")}
    assert len(rules) == 6
    good = {"evaluation": {"separation_source": "wsj0_2mix", "separation_subset": "tt",
                           "separation_mixtures": None, "separation_seconds": 1.0,
                           "separation_enrolment_seconds": None, "separation_pesq": True}}
    check_config(good, rules)
    bad = {"separation_source": "librimix", "separation_subset": "test", "separation_mixtures": 0,
           "separation_seconds": 0.1, "separation_enrolment_seconds": 0, "separation_pesq": "yes"}
    for key, value in bad.items():
        config = {"evaluation": {**good["evaluation"], key: value}}
        with pytest.raises(ConfigError, match=rf"'evaluation.{key}' must be"):
            check_config(config, rules)
