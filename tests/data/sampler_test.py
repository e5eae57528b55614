"""Tests for the P x K batch sampler."""

import collections
import itertools

import numpy as np
import pytest

from keras_spk.data import PKSampler
from keras_spk.data.sampler import draw_positions

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
    # An epoch covers the 30 utterances: 30 // (P*K) batches.
    assert len(sampler) == len(LABELS) // (P * K)
    assert sampler.batch_size == P * K
    per_pass = len(COUNTS) // P  # batches in one pass over the shuffled speakers
    for e in range(5):
        batches = sampler.epoch(e)
        assert len(batches) == len(LABELS) // (P * K)
        speakers = [check_batch(b, LABELS, P, K) for b in batches]
        # Each pass over the speakers: every speaker at most once; a full pass
        # leaves out only the remainder of len(COUNTS) % P speakers.
        for start in range(0, len(batches), per_pass):
            seen = [s for group in speakers[start : start + per_pass] for s in group]
            assert len(seen) == len(set(seen))
            if start + per_pass <= len(batches):
                assert len(seen) == len(COUNTS) - len(COUNTS) % P


def test_epoch_passes_over_the_speakers_several_times():
    # 30 utterances, P*K = 2: 15 batches; a pass is 3 batches of the 7 speakers
    # (one left out), so 5 passes, each a fresh shuffle.
    sampler = PKSampler(LABELS, num_speakers=2, num_utterances=1, seed=3)
    counts = collections.Counter()
    passes = set()
    for e in range(200):
        speakers = [check_batch(b, LABELS, 2, 1) for b in sampler.epoch(e)]
        assert len(speakers) == 15
        for start in range(0, 15, 3):
            group = [s for pair in speakers[start : start + 3] for s in pair]
            assert len(set(group)) == 6
            passes.add(tuple(group))
            counts.update(group)
    # Speakers, not utterances, are visited uniformly: each 6/7 of the 1000 passes.
    assert set(counts) == set(COUNTS)
    assert all(abs(c - 1000 * 6 / 7) < 60 for c in counts.values()), counts
    assert len(passes) > 900  # the order within a pass varies (7! / 1 = 5040 of them)


def test_k_distinct_utterances_uniform_over_each_speakers_utterances():
    sampler = PKSampler(LABELS, num_speakers=7, num_utterances=3, seed=2, steps_per_epoch=20)
    own13 = np.flatnonzero(LABELS == 13)  # 9 utterances
    used = collections.Counter()
    pairs = collections.Counter()
    draws = 0
    for e in range(150):
        for batch in sampler.epoch(e):
            rows = batch.reshape(7, 3)
            for row in rows[LABELS[rows[:, 0]] == 13]:
                assert len(set(row.tolist())) == 3 and set(row.tolist()) <= set(own13.tolist())
                used.update(row.tolist())
                pairs[tuple(sorted(row[:2].tolist()))] += 1
                draws += 1
    # Each of the 9 utterances is in 3/9 of the draws; each of the 36 pairs of the
    # first two picks in 1/36.
    assert set(used) == set(own13.tolist())
    assert all(abs(c / draws - 1 / 3) < 0.05 for c in used.values()), (used, draws)
    assert len(pairs) == 36
    assert all(abs(c / draws - 1 / 36) < 0.015 for c in pairs.values())


def test_draw_positions_is_uniform_over_ordered_distinct_tuples():
    rng = np.random.default_rng(0)
    sizes = np.array([5] * 60000 + [2] * 30000)
    positions = draw_positions(rng, sizes, 3)
    assert positions.shape == (90000, 3) and positions.dtype == np.int64
    distinct, small = positions[:60000], positions[60000:]
    assert np.all((distinct >= 0) & (distinct < 5)) and np.all((small >= 0) & (small < 2))
    tuples = collections.Counter(map(tuple, distinct.tolist()))
    # 5 * 4 * 3 = 60 ordered triples of distinct positions, 1000 draws each if uniform.
    assert all(len(set(t)) == 3 for t in tuples)
    assert len(tuples) == 60
    assert all(850 < c < 1150 for c in tuples.values()), tuples
    # Fewer positions than draws: with replacement, all 2**3 triples, 3750 each.
    small_tuples = collections.Counter(map(tuple, small.tolist()))
    assert len(small_tuples) == 8
    assert all(3450 < c < 4050 for c in small_tuples.values()), small_tuples


def test_small_speakers_drawn_with_replacement_from_their_own_utterances():
    sampler = PKSampler(LABELS, num_speakers=7, num_utterances=4, seed=0, steps_per_epoch=1)
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
    sampler = PKSampler(LABELS, num_speakers=3, num_utterances=2, seed=1, steps_per_epoch=2)
    dropped = set()
    orders = set()
    for e in range(40):
        seen = [s for b in sampler.epoch(e) for s in check_batch(b, LABELS, 3, 2)]
        assert len(seen) == len(set(seen)) == 6  # one pass: the 7th speaker waits
        dropped |= set(COUNTS) - set(seen)
        orders.add(tuple(seen))
    assert dropped == set(COUNTS)  # the left-out speaker changes from epoch to epoch
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
    labels = np.repeat(np.arange(10), 3)  # 30 utterances
    assert len(PKSampler(labels, 3, 2)) == 5
    assert len(PKSampler(labels, 5, 2)) == 3
    assert len(PKSampler(labels, 10, 1)) == 3
    assert len(PKSampler(labels, 1, 1)) == 30
    assert len(PKSampler(labels, 10, 3)) == 1
    assert len(PKSampler(labels, 3, 2, steps_per_epoch=11)) == 11
    assert len(PKSampler(labels, 3, 2, steps_per_epoch=11).epoch(4)) == 11
    assert PKSampler(labels, 4, 3).batch_size == 12
    indices = PKSampler(labels, 4, 3, seed=5).epoch_indices(2)
    assert indices.shape == (2, 12) and indices.dtype == np.int64
    np.testing.assert_array_equal(indices[1], PKSampler(labels, 4, 3, seed=5).epoch(2)[1])


@pytest.mark.parametrize(
    "labels,P,K,kwargs,fragment",
    [
        (LABELS, 8, 2, {}, "cannot exceed the 7 speakers.*Received: num_speakers=8"),
        (LABELS, 0, 2, {}, "ints >= 1. Received: num_speakers=0"),
        (LABELS, 2, 0, {}, "ints >= 1. Received: num_utterances=0"),
        (LABELS, -1, 2, {}, "Received: num_speakers=-1"),
        (LABELS, 2.0, 2, {}, "Received: num_speakers=2.0"),
        (LABELS, 7, 5, {}, "30 utterances do not fill one batch of P\\*K = 35.*steps_per_epoch"),
        (LABELS, 2, 2, {"steps_per_epoch": 0}, "Received: steps_per_epoch=0"),
        (LABELS, 2, 2, {"steps_per_epoch": 1.5}, "Received: steps_per_epoch=1.5"),
        ([], 1, 1, {}, "non-empty"),
        (np.zeros((2, 3)), 1, 1, {}, "1-D"),
    ],
)
def test_bad_arguments(labels, P, K, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        PKSampler(labels, P, K, **kwargs)


def test_too_few_utterances_for_a_batch_with_steps_per_epoch():
    # 7 speakers x 5 needs 35 rows from 30 utterances: fine once the epoch length is given.
    sampler = PKSampler(LABELS, 7, 5, steps_per_epoch=3)
    assert len(sampler.epoch(0)) == 3
    for batch in sampler.epoch(0):
        check_batch(batch, LABELS, 7, 5)
