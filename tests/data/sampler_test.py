"""Tests for the P x K batch sampler."""

import collections
import itertools

import numpy as np
import pytest

from keras_spk.data import PKSampler

# 7 speakers with labels that are not 0..6 and utterance counts 1 .. 9, interleaved.
COUNTS = {10: 5, 11: 1, 13: 9, 17: 2, 20: 3, 21: 4, 30: 6}
LABELS = np.array(
    [s for s in itertools.chain.from_iterable(
        itertools.zip_longest(*[[s] * n for s, n in COUNTS.items()])) if s is not None]
)


def check_batch(batch, labels, P, K):
    assert batch.shape == (P * K,) and batch.dtype == np.int64
    assert np.all((batch >= 0) & (batch < len(labels)))
    rows = labels[batch].reshape(P, K)
    assert np.all(rows == rows[:, :1]), rows  # grouped speaker by speaker
    speakers = rows[:, 0].tolist()
    assert len(set(speakers)) == P
    for p, speaker in enumerate(speakers):
        picked = batch[p * K : (p + 1) * K]
        if COUNTS[speaker] >= K:
            assert len(set(picked.tolist())) == K  # distinct utterances when there are enough
    return speakers


def test_labels_fixture_is_interleaved():
    assert collections.Counter(LABELS.tolist()) == COUNTS
    assert LABELS[:3].tolist() == [10, 11, 13]


@pytest.mark.parametrize("P,K", [(2, 3), (3, 2), (7, 1), (1, 4), (3, 5)])
def test_epoch_composition(P, K):
    sampler = PKSampler(LABELS, num_speakers=P, num_utterances=K, seed=4)
    assert len(sampler) == len(COUNTS) // P
    assert sampler.batch_size == P * K
    for e in range(5):
        batches = sampler.epoch(e)
        assert len(batches) == len(COUNTS) // P
        seen = [s for b in batches for s in check_batch(b, LABELS, P, K)]
        # Each speaker at most once per epoch; all but the remainder appear.
        assert len(seen) == len(set(seen)) == len(COUNTS) - len(COUNTS) % P


def test_small_speakers_drawn_with_replacement_from_their_own_utterances():
    sampler = PKSampler(LABELS, num_speakers=7, num_utterances=4, seed=0)
    own = {s: set(np.flatnonzero(LABELS == s).tolist()) for s in COUNTS}
    for e in range(30):
        (batch,) = sampler.epoch(e)
        for p in range(7):
            picked = batch[p * 4 : (p + 1) * 4].tolist()
            speaker = LABELS[picked[0]]
            assert set(picked) <= own[speaker]
            if COUNTS[speaker] == 1:
                assert len(set(picked)) == 1
            if COUNTS[speaker] >= 4:
                assert len(set(picked)) == 4
    # Over many epochs, every utterance of a small speaker gets used.
    used = collections.defaultdict(set)
    for e in range(30):
        (batch,) = sampler.epoch(e)
        for i in batch.tolist():
            used[LABELS[i]].add(i)
    assert used[17] == own[17] and used[20] == own[20]


def test_all_speakers_appear_over_epochs_and_order_varies():
    sampler = PKSampler(LABELS, num_speakers=3, num_utterances=2, seed=1)
    dropped = set()
    orders = set()
    for e in range(40):
        seen = [s for b in sampler.epoch(e) for s in check_batch(b, LABELS, 3, 2)]
        dropped |= set(COUNTS) - set(seen)
        orders.add(tuple(seen))
    assert dropped == set(COUNTS)  # the remainder speaker changes from epoch to epoch
    assert len(orders) > 30


def test_determinism_from_seed_and_epoch():
    a = PKSampler(LABELS, 2, 3, seed=9)
    b = PKSampler(LABELS.copy(), 2, 3, seed=9)
    c = PKSampler(LABELS, 2, 3, seed=10)
    for e in (0, 1, 7):
        for x, y in zip(a.epoch(e), b.epoch(e)):
            np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(0), a.epoch(1)))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(0), c.epoch(0)))
    # Repeated calls do not depend on call history.
    a.epoch(3)
    for x, y in zip(a.epoch(0), b.epoch(0)):
        np.testing.assert_array_equal(x, y)
    # The endless iterator walks epoch 0, 1, ... in order.
    stream = list(itertools.islice(iter(a), 3 * len(a)))
    expected = a.epoch(0) + a.epoch(1) + a.epoch(2)
    for x, y in zip(stream, expected):
        np.testing.assert_array_equal(x, y)


def test_len_and_batch_size():
    labels = np.repeat(np.arange(10), 3)
    assert len(PKSampler(labels, 3, 2)) == 3
    assert len(PKSampler(labels, 5, 2)) == 2
    assert len(PKSampler(labels, 10, 1)) == 1
    assert PKSampler(labels, 4, 3).batch_size == 12


@pytest.mark.parametrize(
    "labels,P,K,fragment",
    [
        (LABELS, 8, 2, "cannot exceed the 7 speakers"),
        (LABELS, 0, 2, "must be >= 1"),
        (LABELS, 2, 0, "must be >= 1"),
        (LABELS, -1, 2, "must be >= 1"),
        ([], 1, 1, "non-empty"),
        (np.zeros((2, 3)), 1, 1, "1-D"),
    ],
)
def test_bad_arguments(labels, P, K, fragment):
    with pytest.raises(ValueError, match=fragment):
        PKSampler(labels, P, K)
