"""Stages from config (`stage_plan`) and weights carried between stages' models (`transfer_weights`)."""

import keras
import numpy as np
import pytest

from keras_spk.config import ConfigError
from keras_spk.recipe import pk_batches_problem
from keras_spk.recipe import stage_plan
from keras_spk.recipe import transfer_weights


def config(**stages):
    return {
        "data": {"sampler": "random", "batch_size": 8, "pk": {"num_speakers": 4, "num_utterances": 2}},
        "optimizer": {"name": "adam", "learning_rate": 1e-3, "amsgrad": True},
        "schedule": {"name": "inverse_time", "decay": 1e-4},
        "stages": stages,
    }


def test_a_stage_changes_the_shared_sections_and_keeps_its_own_keys():
    plan = stage_plan(
        config(
            pretrain={"epochs": 2, "loss": "softmax"},
            train={
                "epochs": 5,
                "optimizer": {"learning_rate": 1e-4},
                "data": {"sampler": "pk", "pk": {"num_speakers": 8}},
            },
            finetune={"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.01}, "frozen": ["pretrain"]},
        )
    )
    assert list(plan) == ["pretrain", "train", "finetune"]
    assert plan["pretrain"]["loss"] == "softmax" and plan["pretrain"]["frozen"] == []
    # Merged onto the shared optimizer; the shared section itself is untouched.
    assert plan["train"]["optimizer"] == {"name": "adam", "learning_rate": 1e-4, "amsgrad": True}
    assert plan["pretrain"]["optimizer"]["learning_rate"] == 1e-3
    assert plan["train"]["data"]["pk"] == {"num_speakers": 8, "num_utterances": 2}
    assert plan["train"]["schedule"] == {"name": "inverse_time", "decay": 1e-4}
    # Another optimizer replaces the section (Adam's amsgrad means nothing to SGD).
    assert plan["finetune"]["optimizer"] == {"name": "sgd", "learning_rate": 0.01}
    assert plan["finetune"]["frozen"] == ["pretrain"]


@pytest.mark.parametrize(
    "stages, message",
    [
        ({"a": {"epochs": 1, "data": {"batch": 4}}}, r"unknown config key 'stages\.a\.data\.batch'"),
        ({"a": {"epochs": 1, "frozen": ["b"]}, "b": {"epochs": 1}}, r"'stages\.a\.frozen' names 'b', not an earlier stage"),
        ({"a": {"optimizer": {}}}, r"'stages\.a' must be a mapping with the stage's epochs"),
        ({}, "must map each training stage's name"),
    ],
)
def test_bad_stages_name_the_key(stages, message):
    with pytest.raises(ConfigError, match=message):
        stage_plan(config(**stages))


def test_pk_batches_are_read_from_the_stage_s_resolved_data():
    cfg = config(pre={"epochs": 1}, metric={"epochs": 1, "data": {"sampler": "pk"}})
    assert pk_batches_problem(cfg, "metric", "the triplet loss") is None
    problem = pk_batches_problem(cfg, "pre", "the triplet loss")
    assert problem.startswith("the triplet loss compares") and "stages.pre.data.sampler: pk" in problem
    # One utterance per speaker is not enough, whichever section sets it.
    cfg = config(metric={"epochs": 1, "data": {"sampler": "pk", "pk": {"num_utterances": 1}}})
    assert "num_utterances >= 2" in pk_batches_problem(cfg, "metric", "GE2E")


def small(name, units=3):
    inputs = keras.Input((4,))
    inner = keras.Sequential([keras.layers.Dense(5, name="shared_dense")], name="trunk")
    x = inner(inputs)
    outputs = keras.layers.Dense(units, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def test_transfer_weights_copies_layers_by_name_into_sub_models():
    source, target = small("source"), small("target", units=3)
    copied = transfer_weights(source, target)
    assert copied == ["shared_dense", "head"]
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A head of another size: only the named layers, and a clear error for the rest.
    other = small("other", units=7)
    assert transfer_weights(source, other, layers=["shared_dense"]) == ["shared_dense"]
    np.testing.assert_array_equal(
        other.get_layer("trunk").get_layer("shared_dense").get_weights()[0],
        source.get_layer("trunk").get_layer("shared_dense").get_weights()[0],
    )
    with pytest.raises(ValueError, match=r"layer 'head' has weights of shapes"):
        transfer_weights(source, other)
    with pytest.raises(ValueError, match=r"no layer 'gru' in model 'source'"):
        transfer_weights(source, other, layers=["gru"])
