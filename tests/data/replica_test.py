"""Data-parallel reading: each worker's share of a batch is exactly its rows of the whole batch."""

import numpy as np
import pytest

from keras_spk.data import sampler_dataset
from keras_spk.data import write_wav

CROP = 240
LENGTHS = [120 + 60 * i for i in range(18)]  # some shorter than the crop (repeated), some longer
SPEAKERS = [i % 6 for i in range(18)]

CASES = {
    "random": ({}, 6),
    "pk": ({"num_speakers": 2, "num_utterances": 3}, 6),
    "mixture": ({"num_speakers": 2, "sir_db": (-5.0, 5.0), "mixtures_per_epoch": 12,
                 "return_sources": True, "return_enrolments": True}, 6),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("replica")
    rng = np.random.default_rng(3)
    paths = []
    for i, n in enumerate(LENGTHS):
        path = root / f"s{SPEAKERS[i]}" / f"u{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        write_wav(path, 0.1 * rng.standard_normal(n).clip(-3, 3), 16000)
        paths.append(str(path))
    return paths


def batches(corpus, name, replica, count=3, start_epoch=1):
    settings, batch = CASES[name]
    dataset, steps = sampler_dataset(
        name, corpus, SPEAKERS, crop_samples=CROP, batch_size=batch, seed=11,
        start_epoch=start_epoch, replica=replica, **settings,
    )
    out = [tuple(np.asarray(t) for t in inputs) for (inputs,) in dataset.take(count)]
    return out, steps


@pytest.mark.parametrize("name, workers", [("random", 2), ("random", 3), ("pk", 2), ("mixture", 2)])
def test_worker_shares_concatenate_to_the_whole_batch(corpus, name, workers):
    whole, steps = batches(corpus, name, None)
    shares = [batches(corpus, name, (i, workers)) for i in range(workers)]
    assert all(s == steps for _, s in shares)  # every worker runs the same number of steps
    for b, batch in enumerate(whole):
        for t, tensor in enumerate(batch):
            joined = np.concatenate([share[b][t] for share, _ in shares], axis=0)
            np.testing.assert_array_equal(joined, tensor)
            assert shares[0][0][b][t].shape[0] == tensor.shape[0] // workers


def test_replica_errors(corpus):
    with pytest.raises(ValueError, match="multiple of 4"):
        batches(corpus, "random", (0, 4))
    with pytest.raises(ValueError, match=r"0 <= index < count"):
        batches(corpus, "random", (2, 2))
    with pytest.raises(ValueError, match="start_epoch"):
        batches(corpus, "random", (0, 2), start_epoch=None)


def test_pk_batches_give_each_worker_whole_speakers(corpus):
    with pytest.raises(ValueError, match=r"num_speakers \(P\) a multiple of 3"):
        sampler_dataset(
            "pk", corpus, SPEAKERS, crop_samples=CROP, batch_size=6, seed=1, start_epoch=0,
            replica=(0, 3), num_speakers=2, num_utterances=3,
        )
