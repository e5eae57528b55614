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

TINY = RAWNET_TINY_MODEL + [
    "--pretrain.epochs=1",
    "--train.epochs=3",
    "--train.verbose=0",
    "--evaluation.backends=[cosine, plda, concat_mul, dcae]",
    "--evaluation.lda_dim=4",
    "--evaluation.pair_classifier=logistic",
    "--evaluation.n_pairs=200",
    "--evaluation.dcae_epochs=2",
    "--evaluation.test_durations=[1, null]",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=3)


class StopAfter(keras.callbacks.Callback):
    """Raises in the `train` stage after `epochs` epochs (its checkpoint is already written)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if self.model.name == "rawnet" and epoch + 1 == self.epochs:
            raise KeyboardInterrupt("stopped for the test")


def test_interrupted_run_resumes_and_finishes(corpus, tmp_path):
    out = str(tmp_path / "run")
    data = data_args(corpus)
    with pytest.raises(KeyboardInterrupt):
        train.main(data + ["--output", out] + TINY, callbacks=[StopAfter(2)])
    assert sorted(os.listdir(os.path.join(out, "checkpoints", "train"))) == [
        "epoch-001.weights.h5",
        "epoch-002.weights.h5",
    ]
    with open(os.path.join(out, "state.json")) as f:
        assert json.load(f) == {"stages": {"pretrain": "done"}, "finished": False}

    run = train.main(["--resume", out])
    assert run.resumed and run.finished
    with open(os.path.join(out, "logs", "train.csv")) as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1", "2"]

    with open(os.path.join(out, "results", "results.json")) as f:
        results = json.load(f)
    rows = results["results"]
    assert results["keras_backend"] == keras.backend.backend()
    assert [r["backend"] for r in rows] == ["cosine", "plda", "concat_mul", "dcae"]
    for r in rows:
        assert 0.0 <= r["eer"] <= 1.0 and 0.0 <= r["min_dcf_0.01"] <= 1.0
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
