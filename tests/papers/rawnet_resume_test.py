"""Exact resumption of RawNet's training stage (recurrent dropout on) with `fit_stage`.

A tiny RawNet with the paper's recurrent dropout is trained for three epochs
on a tiny corpus through the recipe's data stream, once straight through and
once interrupted after the first epoch and resumed from its checkpoint in a
fresh model. The dropout masks are drawn from random state (the GRU cell's
`SeedGenerator` under TensorFlow, torch's global generator under PyTorch)
that the checkpoint must carry: the resumed run must give the same loss for
every epoch and the same final weights as the uninterrupted one.
"""

import csv
import os

import keras
import numpy as np
import pytest

from keras_spk.data import read_voxceleb
from keras_spk.data import training_dataset
from keras_spk.recipe import Run
from keras_spk.recipe import fit_stage
from papers.rawnet.model import build_rawnet
from tests.helpers.corpus import make_tiny_corpus

EPOCHS = 3
BATCH = 4
CROP = 3**8  # 3 frames after the CNN: the recurrent dropout masks a real state
# RawNet's optimizer (AMSGrad, Keras 2 decay) from the registry, as the recipe compiles it.
OPTIMIZER = ({"name": "adam", "learning_rate": 1e-2, "amsgrad": True}, {"name": "inverse_time", "decay": 1e-4})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = make_tiny_corpus(tmp_path_factory, seed=5)
    return read_voxceleb(os.path.join(root, "train"))


def build(num_speakers):
    # What a fresh process does before the stage: seed everything, build (fit_stage compiles).
    keras.utils.set_random_seed(0)
    trainer, embedder = build_rawnet(
        num_speakers,
        strided_conv_filters=4,
        stackwise_filters=(4, 4, 8, 8, 8, 8),
        gru_units=8,
        recurrent_dropout=0.3,
        embedding_dim=8,
    )
    return trainer, embedder


def new_run(path):
    os.makedirs(path, exist_ok=True)
    return Run("rawnet", str(path), config={}, data={}, resumed=False, info={})


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("interrupted after epoch 1")


def train(corpus, run, callbacks=()):
    speaker_map = corpus.speaker_map()
    labels = corpus.labels(speaker_map)

    def make_dataset(start_epoch):
        dataset = training_dataset(corpus.paths, labels, CROP, BATCH, seed=0, start_epoch=start_epoch)
        return dataset.map(lambda waveforms, labels: ((waveforms, labels),))

    trainer, embedder = build(len(speaker_map))
    steps = len(corpus) // BATCH
    fit_stage(
        run, "train", trainer, make_dataset, EPOCHS, steps, callbacks=callbacks, verbose=0,
        optimizer=OPTIMIZER,
    )
    return trainer, embedder


def losses(run):
    with open(run.join("logs", "train.csv"), newline="") as f:
        return [(int(row["epoch"]), float(row["loss"])) for row in csv.DictReader(f)]


def test_resumed_training_stage_repeats_the_uninterrupted_one(corpus, tmp_path):
    whole_run = new_run(tmp_path / "whole")
    whole, whole_embedder = train(corpus, whole_run)

    cut_run = new_run(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        train(corpus, cut_run, callbacks=[Interrupt()])
    assert len(losses(cut_run)) == 1
    # Random numbers drawn in between (another stage, another model) must not matter.
    keras.random.uniform((5,))
    np.random.random(3)
    resumed, resumed_embedder = train(corpus, cut_run)

    want = losses(whole_run)
    assert [e for e, _ in want] == [0, 1, 2]
    assert losses(cut_run) == want  # bit-identical, the resumed epochs included
    for got, expected in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(got, expected)
    x = np.random.default_rng(0).normal(size=(2, CROP)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(resumed_embedder(x)),
        keras.ops.convert_to_numpy(whole_embedder(x)),
    )
