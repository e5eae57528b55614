"""Tests for the tf.data pipelines: cropping, training, P x K and evaluation datasets."""

import collections
import math

import numpy as np
import pytest
import tensorflow as tf

from keras_spk.data import crop_or_repeat
from keras_spk.data import PKSampler
from keras_spk.data import evaluation_dataset
from keras_spk.data import pk_dataset
from keras_spk.data import training_dataset
from keras_spk.data import write_wav
from tests.helpers.audio import CROP
from tests.helpers.audio import LENGTHS
from tests.helpers.audio import SPEAKER_OF_FILE
from tests.helpers.audio import coded_waveform
from tests.helpers.audio import write_coded_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_coded_corpus(tmp_path_factory.mktemp("pipeline"))


def decode_crop(crop):
    """(file index, offset into the tiled file) of a crop; checks it is a tiled window."""
    values = np.round(np.asarray(crop, np.float64) * 32768).astype(np.int64)
    files = values // 1000 - 1
    assert np.all(files == files[0]), "a crop mixes files"
    index = int(files[0])
    positions = values % 1000
    n = LENGTHS[index]
    offset = int(positions[0])
    np.testing.assert_array_equal(positions, (offset + np.arange(len(values))) % n)
    return index, offset


def epoch(dataset):
    waves, labels = [], []
    for w, l in dataset:
        waves.append(w.numpy())
        labels.append(l.numpy())
    return waves, labels


# === crop_or_repeat ===
def crops_over_seeds(waveform, length, seeds):
    fn = tf.function(lambda s: crop_or_repeat(tf.constant(waveform, tf.float32), length, s))
    return np.stack([fn(tf.constant([s, 3], tf.int64)).numpy() for s in seeds])


def test_crop_or_repeat_short_waveform_is_a_window_of_the_repetition():
    tiled = np.array([1, 2, 3] * 4, np.float32)
    crops = crops_over_seeds([1.0, 2.0, 3.0], 7, range(300))
    offsets = []
    for crop in crops:
        assert crop.shape == (7,)
        matches = [o for o in range(3) if np.array_equal(crop, tiled[o : o + 7])]
        assert len(matches) == 1, crop
        offsets.append(matches[0])
    counts = collections.Counter(offsets)
    assert sorted(counts) == [0, 1, 2]
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 each if uniform


def test_crop_or_repeat_short_waveform_every_rotation_when_length_is_a_multiple():
    # n = 4, length 8: a window of the repetition may start at any of the 4 samples.
    tiled = np.array([1, 2, 3, 4] * 3, np.float32)
    crops = crops_over_seeds([1.0, 2.0, 3.0, 4.0], 8, range(400))
    offsets = [int(crop[0]) - 1 for crop in crops]
    for crop, o in zip(crops, offsets):
        np.testing.assert_array_equal(crop, tiled[o : o + 8])
    counts = collections.Counter(offsets)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 each if uniform


def test_crop_or_repeat_long_waveform_is_a_contiguous_slice():
    x = np.arange(20, dtype=np.float32) * 0.5
    crops = crops_over_seeds(x, 5, range(800))
    offsets = []
    for crop in crops:
        offset = int(crop[0] / 0.5)
        np.testing.assert_array_equal(crop, x[offset : offset + 5])
        offsets.append(offset)
    counts = collections.Counter(offsets)
    assert sorted(counts) == list(range(16))  # every legal offset 0 .. 15
    assert all(20 <= c <= 85 for c in counts.values()), counts  # 50 each if uniform


def test_crop_or_repeat_exact_length_and_seed_determinism():
    x = np.arange(1, 8, dtype=np.float32)
    seed = tf.constant([11, 12], tf.int64)
    np.testing.assert_array_equal(crop_or_repeat(tf.constant(x), 7, seed).numpy(), x)
    a = crop_or_repeat(tf.constant(x), 4, seed).numpy()
    b = crop_or_repeat(tf.constant(x), 4, seed).numpy()
    np.testing.assert_array_equal(a, b)
    # A one-sample utterance is repeated.
    np.testing.assert_array_equal(crop_or_repeat(tf.constant([0.25]), 5, seed).numpy(), [0.25] * 5)
    # Different seeds give different crops (of 16 offsets, 20 seeds cannot all agree by chance).
    y = np.arange(20, dtype=np.float32)
    assert len({tuple(c) for c in crops_over_seeds(y, 5, range(20))}) > 1


def check_training_epoch(waves, labels, batch_size):
    """Shapes, dtypes and labels of one epoch; returns the file index of each crop."""
    seen = []
    for w, l in zip(waves, labels):
        assert w.shape == (batch_size, CROP) and w.dtype == np.float32
        assert l.shape == (batch_size,) and l.dtype == np.int64
        for crop, label in zip(w, l):
            index, _ = decode_crop(crop)
            assert label == SPEAKER_OF_FILE[index]  # the crop is from a file of its speaker
            seen.append(index)
    return seen


def test_training_dataset_batches_determinism_and_epochs(corpus):
    def build(seed):
        return training_dataset(corpus, SPEAKER_OF_FILE, crop_samples=CROP, batch_size=4, seed=seed)

    first = build(5)
    waves_1, labels_1 = epoch(first)
    waves_2, labels_2 = epoch(first)
    assert len(waves_1) == len(waves_2) == 3
    for waves, labels in [(waves_1, labels_1), (waves_2, labels_2)]:
        seen = check_training_epoch(waves, labels, 4)
        assert sorted(seen) == list(range(len(corpus)))  # every file exactly once per epoch
        assert seen != list(range(len(corpus)))  # and shuffled
    a1, a2 = np.concatenate(waves_1), np.concatenate(waves_2)
    b1 = np.concatenate(epoch(build(5))[0])
    c1 = np.concatenate(epoch(build(6))[0])
    np.testing.assert_array_equal(a1, b1)  # same seed, same first epoch
    assert not np.array_equal(a1, c1)  # another seed differs
    assert not np.array_equal(a1, a2)  # the second epoch differs from the first
    # Crop offsets also change between epochs, not just the order.
    assert {decode_crop(c) for c in a1} != {decode_crop(c) for c in a2}


def test_training_dataset_epoch_stream_resumes_exactly(corpus):
    # 12 files, batch 5: every epoch is 2 full batches (10 distinct files).
    def stream(start, seed=3):
        return training_dataset(
            corpus, SPEAKER_OF_FILE, CROP, batch_size=5, seed=seed, start_epoch=start
        )

    from_zero = list(stream(0).take(6))  # epochs 0, 1, 2
    for e in range(3):
        waves = [from_zero[2 * e][0].numpy(), from_zero[2 * e + 1][0].numpy()]
        labels = [from_zero[2 * e][1].numpy(), from_zero[2 * e + 1][1].numpy()]
        seen = check_training_epoch(waves, labels, 5)
        assert len(set(seen)) == 10  # no file twice within an epoch
    epochs = [np.concatenate([from_zero[2 * e][0], from_zero[2 * e + 1][0]]) for e in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    # Resumed at epoch 2: the same batches, order and crops, as epoch 2 of the full stream.
    resumed = list(stream(2).take(2))
    for got, want in zip(resumed, from_zero[4:6]):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    other_seed = np.concatenate([w for w, _ in stream(2, seed=4).take(2)])
    assert not np.array_equal(other_seed, epochs[2])


def test_training_dataset_epoch_stream_bad_arguments(corpus):
    with pytest.raises(ValueError, match="start_epoch"):
        training_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=5, start_epoch=-1)
    with pytest.raises(ValueError, match="drop_remainder=True"):
        training_dataset(corpus, SPEAKER_OF_FILE, CROP, 5, drop_remainder=False, start_epoch=0)
    with pytest.raises(ValueError, match="at least one full batch"):
        training_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=13, start_epoch=0)


def test_training_dataset_remainder_and_no_shuffle(corpus):
    kept = training_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=5, seed=0)
    assert [w.shape[0] for w, _ in kept] == [5, 5]
    full = training_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=5, seed=0,
                            drop_remainder=False, shuffle=False)
    waves, labels = epoch(full)
    assert [w.shape[0] for w in waves] == [5, 5, 2]
    order = [decode_crop(c)[0] for c in np.concatenate(waves)]
    assert order == list(range(len(corpus)))
    np.testing.assert_array_equal(np.concatenate(labels), SPEAKER_OF_FILE)


def test_training_dataset_resamples_other_rates(tmp_path):
    path = tmp_path / "8k.wav"
    write_wav(path, np.full(100, 0.25), 8000)
    (w, l), = list(training_dataset([str(path)], [7], crop_samples=300, batch_size=1))
    assert w.shape == (1, 300) and l.numpy().tolist() == [7]
    # The 200 resampled samples (a constant away from the edges) are tiled to 300.
    assert np.sum(np.abs(w.numpy()[0] - 0.25) < 1e-3) > 200


def test_training_dataset_argument_checks(corpus):
    with pytest.raises(ValueError, match="empty"):
        training_dataset([], [], CROP, 2)
    with pytest.raises(ValueError, match="one speaker index per path"):
        training_dataset(corpus, [0, 1], CROP, 2)


# === pk_dataset ===
def pk_files(waves, batch_labels, labels, P, K):
    """The file of each row of P x K batches, after checking rows are grouped by speaker."""
    files = []
    for w, l in zip(waves, batch_labels):
        assert w.shape == (P * K, CROP) and w.dtype == np.float32
        assert l.shape == (P * K,) and l.dtype == np.int64
        groups = l.reshape(P, K)
        assert np.all(groups == groups[:, :1])  # grouped speaker by speaker
        assert len(set(groups[:, 0])) == P  # P distinct speakers
        rows = [decode_crop(crop)[0] for crop in w]
        assert [labels[i] for i in rows] == l.tolist()  # each crop is from its speaker's file
        files.append(rows)
    return files


def test_pk_dataset_batches_group_p_speakers_k_times(corpus):
    # 6 speakers: files 0..11 -> speaker i // 2 (two utterances each), and K = 3 > 2.
    labels = np.arange(12) // 2
    P, K = 2, 3
    dataset = pk_dataset(corpus, labels, crop_samples=CROP, num_speakers=P, num_utterances=K,
                         seed=1)
    epochs = [epoch(dataset) for _ in range(2)]
    for waves, batch_labels in epochs:
        assert len(waves) == 2  # 12 utterances // (P*K)
        files = pk_files(waves, batch_labels, labels, P, K)
        speakers = [labels[f[0]] for batch in files for f in np.reshape(batch, (P, K))]
        # Both batches come from one pass over the 6 speakers: none twice.
        assert len(set(speakers)) == 4
    first, second = (np.concatenate(e[0]) for e in epochs)
    assert not np.array_equal(first, second)
    again = np.concatenate(epoch(pk_dataset(corpus, labels, CROP, P, K, seed=1))[0])
    np.testing.assert_array_equal(first, again)


def test_pk_dataset_epoch_stream_follows_the_sampler_and_resumes_exactly(corpus):
    # 6 speakers x 2 utterances, P = 3, K = 2: an epoch is 2 batches covering the
    # 6 speakers once and, as K = 2 utterances are distinct, every file exactly once.
    labels = np.arange(12) // 2

    def stream(start, seed=3, **kwargs):
        return pk_dataset(corpus, labels, CROP, 3, 2, seed=seed, start_epoch=start, **kwargs)

    from_zero = list(stream(0).take(8))  # epochs 0 .. 3
    sampler = PKSampler(labels, 3, 2, seed=3)
    crops = []
    for e in range(4):
        waves = [from_zero[2 * e + j][0].numpy() for j in range(2)]
        batch_labels = [from_zero[2 * e + j][1].numpy() for j in range(2)]
        files = pk_files(waves, batch_labels, labels, 3, 2)
        assert sorted(f for batch in files for f in batch) == list(range(12))
        # The batches are the sampler's epoch e, row for row.
        assert files == [batch.tolist() for batch in sampler.epoch(e)]
        crops.append({decode_crop(c) for w in waves for c in w})
    assert len({frozenset(c) for c in crops}) == 4  # offsets change from epoch to epoch
    resumed = list(stream(2).take(4))
    for got, want in zip(resumed, from_zero[4:8]):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    other = np.concatenate([w for w, _ in stream(2, seed=4).take(2)])
    assert not np.array_equal(other, np.concatenate([w for w, _ in from_zero[4:6]]))
    # A longer epoch passes over the speakers again: 5 batches, still the sampler's.
    longer = list(stream(1, steps_per_epoch=5).take(5))
    long_sampler = PKSampler(labels, 3, 2, seed=3, steps_per_epoch=5)
    files = pk_files([w.numpy() for w, _ in longer], [l.numpy() for _, l in longer], labels, 3, 2)
    assert files == [batch.tolist() for batch in long_sampler.epoch(1)]


def test_pk_dataset_bad_arguments(corpus):
    labels = np.arange(12) // 2
    with pytest.raises(ValueError, match="Received: start_epoch=-2"):
        pk_dataset(corpus, labels, CROP, 2, 2, start_epoch=-2)
    with pytest.raises(ValueError, match="cannot exceed the 6 speakers"):
        pk_dataset(corpus, labels, CROP, 7, 1)
    with pytest.raises(ValueError, match="do not fill one batch of P\\*K = 16"):
        pk_dataset(corpus, labels, CROP, 4, 4, start_epoch=0)
    with pytest.raises(ValueError, match="one speaker index per path"):
        pk_dataset(corpus, labels[:5], CROP, 2, 2)


# === evaluation_dataset ===
def test_evaluation_dataset_one_at_a_time(corpus, tmp_path):
    slow = tmp_path / "slow.wav"
    write_wav(slow, np.sin(np.arange(77) * 0.1) * 0.5, 8000)
    paths = corpus[:5] + [str(slow)]
    items = list(evaluation_dataset(paths))
    assert len(items) == len(paths)
    for i, (index, w, n) in enumerate(items):
        assert index.numpy().tolist() == [i]
        assert index.dtype == tf.int64 and n.dtype == tf.int32
        length = LENGTHS[i] if i < 5 else math.ceil(77 * 16000 / 8000)
        assert w.shape == (1, length) and n.numpy().tolist() == [length]
        if i < 5:  # whole utterance, unchanged
            want = coded_waveform(i, length).astype(np.float32)
            np.testing.assert_array_equal(w.numpy()[0], want)
    # The 8 kHz file comes back resampled: the same slow sine at 16 kHz.
    resampled = items[5][1].numpy()[0]
    want = np.sin(np.arange(154) * 0.05) * 0.5
    np.testing.assert_allclose(resampled[30:-30], want[30:-30], atol=2e-3)


def test_evaluation_dataset_buckets_with_true_lengths(corpus):
    dataset = evaluation_dataset(corpus, batch_size=3, bucket_boundaries=[300, 600])
    seen = []
    for index, w, n in dataset:
        index, w, n = index.numpy(), w.numpy(), n.numpy()
        assert len(index) == len(n) == w.shape[0] <= 3
        assert w.shape[1] == n.max()
        for i, row, length in zip(index, w, n):
            assert length == LENGTHS[i]
            want = coded_waveform(i, length).astype(np.float32)
            np.testing.assert_array_equal(row[:length], want)
            assert np.all(row[length:] == 0)
        # One bucket per batch: all lengths on the same side of each boundary.
        assert len({int(np.searchsorted([300, 600], x, side="right")) for x in n}) == 1
        seen += index.tolist()
    assert sorted(seen) == list(range(len(corpus)))


def test_evaluation_dataset_needs_paths():
    with pytest.raises(ValueError, match="at least one path"):
        evaluation_dataset([])


def test_training_dataset_mixes_plain_and_other_wavs_in_one_batch(corpus, tmp_path):
    # A 24-bit copy and a stereo copy of two long files take the general decoder
    # inside a batch whose other rows take the batched 16-bit path.
    deep = tmp_path / "deep.wav"
    write_wav(deep, coded_waveform(1, LENGTHS[1]), 16000, subtype="PCM_24")
    stereo = tmp_path / "stereo.wav"
    x = coded_waveform(7, LENGTHS[7])
    write_wav(stereo, np.stack([x, x], axis=1), 16000)
    paths = [corpus[3], str(deep), corpus[10], str(stereo)]
    labels = [0, 1, 2, 3]
    dataset = training_dataset(paths, labels, CROP, batch_size=4, seed=5, shuffle=False)
    (waves,), (batch_labels,) = epoch(dataset)
    files = [decode_crop(w)[0] for w in waves]
    assert files == [3, 1, 10, 7]
    np.testing.assert_array_equal(batch_labels, labels)
