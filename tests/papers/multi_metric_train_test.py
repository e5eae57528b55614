"""End-to-end test of the multi-metric recipe (papers/multi_metric/train.py) at a tiny size.

Softmax pre-training, then eq. 14's losses on P x K batches around the same
embedder, whole-utterance and ten-crop scoring and export, interrupted and
resumed, on a small synthetic corpus.
"""

import json
import os

import numpy as np
import pytest

from papers.multi_metric import train
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus
from tests.helpers.recipes import read_log
from tests.helpers.recipes import run_recipe_test

TINY = [
    "--data.crop_samples=8160",  # 0.5 s: 50 frames
    "--data.batch_size=8",
    "--data.pk={num_speakers: 4, num_utterances: 2}",
    "--model.stage_filters=[4, 4, 8, 8]",
    "--model.stem_filters=4",
    "--model.embedding_dim=8",
    "--stages.pretrain.epochs=1",
    "--stages.train.epochs=2",
    "--train.verbose=0",
    "--evaluation.lda_dim=3",
    "--evaluation.multi_crop_num_crops=3",
    "--evaluation.multi_crop_seconds=0.5",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=9)


def test_multi_metric_recipe_runs_end_to_end(corpus, tmp_path):
    out = str(tmp_path / "run")
    # Stopped after the first epoch of the second stage, then resumed.
    run, rows = run_recipe_test(train.main, data_args(corpus) + TINY, out, {"pretrain": 1, "train": 2}, 2)
    # Pre-training logs the classifier only; training logs every term of eq. 14.
    assert "classifier_loss" in read_log(out, "pretrain")[0]
    log = read_log(out, "train")
    for term in ("triplet_loss", "npair_loss", "angular_loss", "classifier_loss"):
        assert all(np.isfinite(float(row[term])) for row in log), term
    assert [r["backend"] for r in rows] == ["cosine", "reference"]
    with open(os.path.join(out, "results", "protocols", "multi_crop.json")) as f:
        crop_rows = json.load(f)["rows"]
    assert len(crop_rows) == 2  # mean distance and mean embedding
    for row in crop_rows:
        assert 0.0 <= row["eer"] <= 1.0
    assert os.path.exists(os.path.join(out, "export", "1", "saved_model.pb"))


def test_metric_losses_need_pk_batches(corpus, tmp_path):
    from keras_spk.recipe import RunError

    with pytest.raises(RunError, match="stages.train.data.sampler: pk"):
        train.main(data_args(corpus) + TINY + ["--stages.train.data={sampler: random}", "--output", str(tmp_path / "r")])


def test_missing_imagenet_weights_are_named(corpus, tmp_path):
    from keras_spk.recipe import RunError

    missing = str(tmp_path / "resnet50.pth")
    with pytest.raises(RunError, match=f"model.imagenet_weights={missing}: no such file"):
        train.main(data_args(corpus) + TINY + [f"--model.imagenet_weights={missing}", "--output", str(tmp_path / "r")])
