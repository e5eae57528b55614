"""End-to-end test of the FPM recipe (papers/fpm/train.py) at a tiny size.

Training, cosine scoring, the duration-limited table and export all run on a
small synthetic corpus passed as the user's data.
"""

import json
import os

import keras
import numpy as np
import pytest

from papers.fpm import train
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus
from tests.helpers.recipes import run_recipe_test

TINY = [
    "--data.crop_samples=8240",  # 0.5 s: 50 frames
    "--data.batch_size=8",
    "--model.system=msea_fpm_tc",
    "--model.pooling=gap",
    "--model.stage_filters=[4, 4, 8, 8]",
    "--model.stem_filters=4",
    "--model.embedding_dim=8",
    "--model.num_mel_bins=16",
    "--model.fpm_channels=4",
    "--optimizer.learning_rate=0.01",
    "--stages.train.epochs=2",
    "--train.verbose=0",
    "--evaluation.enroll_durations=[1, null]",
    "--evaluation.test_durations=[0.5, null]",
    "--evaluation.lda_dim=3",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=5)


def test_fpm_recipe_runs_end_to_end(corpus, tmp_path):
    out = str(tmp_path / "run")
    # Stopped after the first of the two epochs, then resumed.
    run, rows = run_recipe_test(train.main, data_args(corpus) + TINY, out, {"train": 2}, 1)
    assert run.config["model"]["stage_filters"] == [4, 4, 8, 8]
    # Cosine (the paper's), PLDA and LDA/PLDA, and the reference row.
    assert [r["backend"] for r in rows] == ["cosine", "plda", "lda_plda", "reference"]
    with open(os.path.join(out, "results", "duration.json")) as f:
        durations = json.load(f)["results"]
    assert [(r["enroll"], r["test"]) for r in durations] == [
        ("1 s", "0.5 s"),
        ("1 s", "full"),
        ("full", "0.5 s"),
        ("full", "full"),
    ]
    # Full enrolment against full test utterances is the plain cosine evaluation.
    assert durations[3]["eer"] == pytest.approx(rows[0]["eer"], abs=1e-9)
    assert os.path.exists(os.path.join(out, "export", "1", "saved_model.pb"))

    # The saved embedder gives the stored trial embeddings again.
    embedder = keras.saving.load_model(os.path.join(out, "embedder.keras"), compile=False)
    # The recipe's configs batch-normalise the embedding (fpm.yaml).
    assert run.config["model"]["embedding_batch_norm"] is True
    assert embedder.layers[-1].name == "embedding_bn"
    from keras_spk.scoring import load_embeddings

    names, stored = load_embeddings(os.path.join(out, "embeddings", "trials.npz"))
    from keras_spk.inference import embed_files

    again = embed_files(
        embedder, [os.path.join(corpus, "test", n) for n in names[:2]], progress=False
    )
    np.testing.assert_allclose(again, stored[:2], rtol=1e-4, atol=1e-5)
