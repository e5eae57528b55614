"""Tests of keras_spk.recipe.training: checkpoints every epoch, exact resumption (random state included)."""

import csv
import os
import random

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spk.recipe import EpochCheckpoint
from keras_spk.recipe import Run
from keras_spk.recipe import fit_stage
from keras_spk.recipe import get_random_state
from keras_spk.recipe import list_checkpoints
from keras_spk.recipe import restore_checkpoint
from keras_spk.recipe import set_random_state
from keras_spk.recipe.training import RANDOM_STATE_GROUP
from keras_spk.recipe.training import checkpoint_path

STEPS = 3
EPOCHS = 4


def make_dataset(start_epoch):
    # Batch i of the stream is a function of i alone, like training_dataset(start_epoch=...).
    def batch(i):
        x = tf.random.stateless_normal([8, 5], seed=tf.stack([i, tf.constant(7, tf.int64)]))
        y = tf.cast(tf.reduce_sum(x[:, :2], axis=1) > 0, tf.int32)
        return x, y

    return tf.data.Dataset.range(start_epoch * STEPS, 10**6).map(batch)


def build_model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(2)])
    # Momentum: the optimizer has state that a resumed run must restore too.
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def new_run(path):
    os.makedirs(path, exist_ok=True)
    return Run("test", str(path), config={}, data={}, resumed=False, info={})


class Interrupt(keras.callbacks.Callback):
    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch + 1}")


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def test_interrupted_stage_resumes_to_the_uninterrupted_result(tmp_path):
    whole = build_model(seed=1)
    fit_stage(new_run(tmp_path / "whole"), "stage", whole, make_dataset, EPOCHS, STEPS, verbose=0)

    run = new_run(tmp_path / "cut")
    first = build_model(seed=1)
    with pytest.raises(KeyboardInterrupt):
        fit_stage(run, "stage", first, make_dataset, EPOCHS, STEPS, callbacks=[Interrupt(2)], verbose=0)
    directory = run.join("checkpoints", "stage")
    assert [e for e, _ in list_checkpoints(directory)] == [1, 2]
    assert not run.stage_done("stage")

    # A new process: the model starts from other weights, the checkpoint brings it back.
    resumed = build_model(seed=99)
    history = fit_stage(run, "stage", resumed, make_dataset, EPOCHS, STEPS, verbose=0)
    assert history.epoch == [2, 3]  # only the epochs that were missing
    assert int(resumed.optimizer.iterations) == EPOCHS * STEPS
    assert run.stage_done("stage")
    for got, want in zip(weights_of(resumed), weights_of(whole)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with open(run.join("logs", "stage.csv"), newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]
    assert os.listdir(run.join("logs", "tensorboard", "stage"))
    assert not [n for n in os.listdir(directory) if n.startswith(".tmp")]

    # Once done, the stage only loads its last checkpoint.
    again = build_model(seed=5)
    assert fit_stage(run, "stage", again, make_dataset, EPOCHS, STEPS, verbose=0) is None
    for got, want in zip(weights_of(again), weights_of(whole)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_epoch_checkpoint_keeps_the_newest(tmp_path):
    model = build_model(seed=0)
    directory = str(tmp_path / "ck")
    model.fit(make_dataset(0), epochs=5, steps_per_epoch=1, verbose=0,
              callbacks=[EpochCheckpoint(directory, keep=2)])
    assert [e for e, _ in list_checkpoints(directory)] == [4, 5]
    assert sorted(os.listdir(directory)) == ["epoch-004.weights.h5", "epoch-005.weights.h5"]
    other = build_model(seed=3)
    assert restore_checkpoint(other, directory) == 5
    for got, want in zip(weights_of(other), weights_of(model)):
        np.testing.assert_array_equal(got, want)
    assert restore_checkpoint(build_model(seed=3), str(tmp_path / "none")) == 0
    with pytest.raises(ValueError, match="keep"):
        EpochCheckpoint(directory, keep=0)


def build_dropout_model(seed):
    # An unseeded Dropout (torch's global generator under PyTorch, its own
    # SeedGenerator under TensorFlow) and a seeded one (its SeedGenerator).
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dropout(0.3, seed=11),
            keras.layers.Dense(2),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def csv_losses(path):
    with open(path, newline="") as f:
        return [(int(row["epoch"]), float(row["loss"])) for row in csv.DictReader(f)]


def test_resumed_stage_draws_the_dropout_masks_of_the_uninterrupted_one(tmp_path):
    whole_run = new_run(tmp_path / "whole")
    whole = build_dropout_model(seed=1)
    fit_stage(whole_run, "stage", whole, make_dataset, EPOCHS, STEPS, verbose=0)

    run = new_run(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        fit_stage(run, "stage", build_dropout_model(seed=1), make_dataset, EPOCHS, STEPS,
                  callbacks=[Interrupt(2)], verbose=0)
    # A new process seeds everything again and builds the model again.
    resumed = build_dropout_model(seed=1)
    fit_stage(run, "stage", resumed, make_dataset, EPOCHS, STEPS, verbose=0)

    want = csv_losses(whole_run.join("logs", "stage.csv"))
    assert len(set(want)) == EPOCHS
    assert csv_losses(run.join("logs", "stage.csv")) == want  # bit-identical
    for got, expected in zip(weights_of(resumed), weights_of(whole)):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(get_random_state(resumed).items(), get_random_state(whole).items()):
        assert got[0] == expected[0]


class DrawAfterCheckpoint(keras.callbacks.Callback):
    """Draws from every generator right after the checkpoint of each epoch."""

    def on_epoch_end(self, epoch, logs=None):
        self.draws = draw_random(self.model)


def draw_random(model):
    seed_generators = [layer.seed_generator for layer in model.layers if hasattr(layer, "seed_generator")]
    draws = {
        "python": random.random(),
        "numpy": np.random.random(),
        "keras": [float(keras.random.uniform((), seed=g)) for g in seed_generators],
        "keras_global": float(keras.random.uniform(())),
        "tf_global": float(tf.random.get_global_generator().uniform(())),
    }
    if keras.backend.backend() == "torch":
        import torch

        draws["torch"] = torch.rand(3).tolist()
    return draws


def test_checkpoint_carries_the_random_state(tmp_path):
    model = build_dropout_model(seed=0)
    keras.random.uniform(())  # Keras's global SeedGenerator now exists
    tf.random.get_global_generator()  # and TensorFlow's
    directory = str(tmp_path / "ck")
    draws = DrawAfterCheckpoint()
    model.fit(make_dataset(0), epochs=2, steps_per_epoch=2, verbose=0,
              callbacks=[EpochCheckpoint(directory), draws])
    with h5py.File(list_checkpoints(directory)[-1][1], "r") as f:
        assert len([n for n in f[RANDOM_STATE_GROUP] if n.startswith("model_seed_generator_")]) == 2

    other = build_dropout_model(seed=7)
    for _ in range(3):
        draw_random(other)  # elsewhere in every generator
    assert restore_checkpoint(other, directory) == 2
    assert draw_random(other) == draws.draws


def test_random_state_of_another_model_is_refused():
    state = get_random_state(build_dropout_model(seed=0))
    plain = build_model(seed=0)
    with pytest.raises(ValueError, match="2 random seed generator.*has 0.*another model"):
        set_random_state(plain, state, source="epoch-001.weights.h5")
    set_random_state(build_dropout_model(seed=3), state)


def test_checkpoint_without_random_state_loads_with_a_warning(tmp_path):
    model = build_model(seed=0)
    model.optimizer.build(model.trainable_variables)
    directory = str(tmp_path / "old")
    os.makedirs(directory)
    model.save_weights(checkpoint_path(directory, 4))  # as older versions wrote them
    other = build_model(seed=1)
    with pytest.warns(UserWarning, match="no random state"):
        assert restore_checkpoint(other, directory) == 4
    for got, want in zip(weights_of(other), weights_of(model)):
        np.testing.assert_array_equal(got, want)


def test_a_file_that_fails_to_decode_in_training_is_named_without_a_trace(tmp_path):
    from keras_spk.data import AudioError
    from keras_spk.data import training_dataset
    from keras_spk.data import write_wav

    paths = []
    for i in range(3):
        path = str(tmp_path / f"good{i}.wav")
        write_wav(path, 0.1 * np.sin(np.arange(1600) * (0.1 + i)), 16000)
        paths.append(path)
    bad = tmp_path / "corrupt one.flac"
    bad.write_bytes(b"fLaC" + bytes(300))
    paths.append(str(bad))
    model = keras.Sequential([keras.Input((800,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def make(start_epoch):
        return training_dataset(paths, [0, 1, 0, 1], 800, 4, seed=0, start_epoch=start_epoch)

    with pytest.raises(AudioError) as info:
        fit_stage(new_run(tmp_path / "run"), "stage", model, make, 1, 1, verbose=0)
    message = str(info.value)
    assert message.startswith(f"[stage] training stopped at a file that cannot be used: {bad}: ")
    assert "cannot decode audio" in message and "tools/check_audio.py" in message
    assert "{{node" not in message and "[[" not in message
    # A failure that is not about audio is left as it is.
    with pytest.raises(tf.errors.InvalidArgumentError):
        fit_stage(
            new_run(tmp_path / "other"), "stage", model,
            lambda e: tf.data.Dataset.range(4).map(
                lambda i: (tf.debugging.check_numerics(tf.fill([4, 800], np.nan), "x"),
                           tf.zeros([4], tf.int32))
            ),
            1, 1, verbose=0,
        )
