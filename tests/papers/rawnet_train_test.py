"""End-to-end test of the RawNet recipe (papers/rawnet/train.py) at a tiny size.

The recipe runs on a small synthetic corpus passed as the user's data; the
run is interrupted during the second stage and resumed with `--resume`,
then must finish every step: back-end table, saved embedder, SavedModel.
"""

import json
import os

import keras
import numpy as np
import pytest

from papers.rawnet import train
from tests.helpers.corpus import RAWNET_TINY_MODEL
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus
from tests.helpers.recipes import run_recipe_test

TINY = RAWNET_TINY_MODEL + [
    "--stages.pretrain.epochs=1",
    "--stages.train.epochs=3",
    "--train.verbose=0",
    "--evaluation.backends=[cosine, plda, concat_mul, dcae]",
    "--evaluation.lda_dim=3",
    "--evaluation.pair_classifier=logistic",
    "--evaluation.n_pairs=200",
    "--evaluation.dcae_epochs=2",
    "--evaluation.test_durations=[1, null]",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=3)


def test_interrupted_run_resumes_and_finishes(corpus, tmp_path):
    out = str(tmp_path / "run")
    # Stopped after the pre-training epoch and the first two RawNet epochs.
    run, rows = run_recipe_test(train.main, data_args(corpus) + TINY, out, {"pretrain": 1, "train": 3}, 3)

    with open(os.path.join(out, "results", "results.json")) as f:
        assert json.load(f)["keras_backend"] == keras.backend.backend()
    # The paper's back-ends, then the reference row (log-mel statistics, LDA, cosine).
    assert [r["backend"] for r in rows] == ["cosine", "plda", "concat_mul", "dcae", "reference"]
    with open(os.path.join(out, "results", "duration.json")) as f:
        durations = json.load(f)
    conditions = [(r["enroll"], r["test"]) for r in durations["results"]]
    assert conditions == [("full", "1 s"), ("full", "full")]
    # The full-length condition is the back-end table's cosine row.
    assert durations["results"][1]["eer"] == pytest.approx(rows[0]["eer"], abs=1e-9)
    for name in ("table.txt", "results.csv", "det.png", "backend_plda.npz", "duration_table.txt"):
        assert os.path.getsize(os.path.join(out, "results", name)) > 0
    assert os.path.exists(os.path.join(out, "export", "1", "saved_model.pb"))

    # The saved embedder gives the stored trial embeddings again.
    from keras_spk.inference import embed_files
    from keras_spk.scoring import load_embeddings

    embedder = keras.saving.load_model(os.path.join(out, "embedder.keras"), compile=False)
    names, stored = load_embeddings(os.path.join(out, "embeddings", "trials.npz"))
    again = embed_files(
        embedder, [os.path.join(corpus, "test", n) for n in names[:3]], progress=False
    )
    np.testing.assert_allclose(again, stored[:3], rtol=1e-4, atol=1e-5)

    with pytest.raises(Exception, match="finished run"):
        train.main(["--resume", out])
