"""Augmentation and precision from a recipe's config: samplers, classifier size, float32 outputs, errors."""

import os

import numpy as np
import pytest

from keras_spk.data import ensure_demo_augmentation
from keras_spk.recipe.run import RunError
from tests.helpers import toy_recipe
from tests.helpers.corpus import data_args
from tests.helpers.corpus import make_tiny_corpus
from tests.helpers.recipes import read_log


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory, seed=13)


@pytest.fixture(scope="module")
def noise_sets(tmp_path_factory):
    return ensure_demo_augmentation(str(tmp_path_factory.mktemp("augment_sets")))


def test_speeds_as_new_speakers_triple_the_classes_and_augmented_runs_resume(corpus, noise_sets, tmp_path):
    augment = [
        "--data.augment.probability=1.0",
        f"--data.augment.noise.root={os.path.join(noise_sets, 'musan')}",
        f"--data.augment.reverb.root={os.path.join(noise_sets, 'rirs')}",
        "--data.augment.speed.speeds=[0.9, 1.0, 1.1]",
        "--stages.softmax.epochs=2", "--stages.metric.epochs=0",
    ]
    out = str(tmp_path / "augmented")
    run = toy_recipe.main(data_args(corpus) + augment + ["--output", out])
    # 4 training speakers at 3 speeds: 12 classes in the head.
    weights = load_checkpoint_weights(out, "softmax")
    assert weights["layers/softmax_head/vars/0"].shape == (8, 12)
    assert run.config["data"]["augment"]["speed"]["speeds"] == [0.9, 1.0, 1.1]
    rows = read_log(out, "softmax")
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)
    # The same command with the same augmentation gives the same losses (augmentation is seeded).
    again = str(tmp_path / "again")
    toy_recipe.main(data_args(corpus) + augment + ["--output", again])
    assert read_log(again, "softmax") == rows


def load_checkpoint_weights(out, stage):
    """`{path: array}` of the last checkpoint of `stage`."""
    import h5py

    folder = os.path.join(out, "checkpoints", stage)
    path = os.path.join(folder, sorted(os.listdir(folder))[-1])
    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, item):
            if isinstance(item, h5py.Dataset) and name.startswith("layers/"):
                found[name] = np.array(item)
        f.visititems(visit)
    return found


def test_a_null_noise_root_on_user_data_names_the_key(corpus, tmp_path):
    with pytest.raises(RunError, match=r"data\.augment\.noise\.root"):
        toy_recipe.main(
            data_args(corpus)
            + ["--data.augment.probability=1.0", "--data.augment.reverb.probability=0.0",
               "--output", str(tmp_path / "run")]
        )


def test_a_stage_with_other_speeds_is_refused():
    from keras_spk.config import load_config
    from keras_spk.recipe.runner import check_data

    class Data:
        speaker_map = [0, 1, 2, 3]

        def training_dataset(self, *args, **kwargs):
            return None, 1

    config = load_config(toy_recipe.CONFIG)
    config["stages"]["metric"]["data"]["augment"] = {"speed": {"speeds": [0.9, 1.0]}}
    with pytest.raises(RunError, match=r"stages\.metric\.data\.augment\.speed .*\(2 label blocks\).*\(1\)"):
        check_data(config, Data())


def test_a_mixed_precision_run_trains_and_gives_float32_embeddings(corpus, tmp_path):
    import keras

    out = str(tmp_path / "mixed")
    toy_recipe.main(
        data_args(corpus)
        + ["--train.precision=mixed_bfloat16", "--stages.metric.epochs=1", "--output", out]
    )
    assert keras.mixed_precision.dtype_policy().name == "float32"  # put back after the run
    for stage in ("softmax", "metric"):
        assert all(np.isfinite(float(r["loss"])) for r in read_log(out, stage))
    embedder = keras.saving.load_model(os.path.join(out, "embedder.keras"))
    assert embedder.outputs[0].dtype == "float32"
    with np.load(os.path.join(out, "embeddings", "trials.npz")) as f:
        assert f["embeddings"].dtype == np.float32


def test_a_recipe_trains_on_shards_exactly_as_on_the_files(corpus, tmp_path):
    from tools import make_shards

    packed = str(tmp_path / "shards")
    assert make_shards.main([os.path.join(corpus, "train"), packed, "--shard-size", "5"]) == 0
    args = data_args(corpus)
    on_shards = ["--data", packed] + args[2:] + ["--data.layout=shards"]
    assert args[0] == "--data"
    files, shards = str(tmp_path / "files"), str(tmp_path / "from_shards")
    toy_recipe.main(args + ["--stages.metric.epochs=1", "--output", files])
    toy_recipe.main(on_shards + ["--stages.metric.epochs=1", "--output", shards])
    for stage in ("softmax", "metric"):
        assert read_log(shards, stage) == read_log(files, stage)
