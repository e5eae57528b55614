"""Tests for on-the-fly mixtures of distinct speakers."""

import collections

import numpy as np
import pytest

from keras_spk.data import MixtureSampler
from keras_spk.data import mixture_dataset
from keras_spk.data import write_wav
from tests.helpers.audio import CROP
from tests.helpers.audio import LENGTHS
from tests.helpers.audio import SPEAKER_OF_FILE
from tests.helpers.audio import coded_waveform
from tests.helpers.audio import write_coded_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # The coded files of pipeline_test: every sample names its file and position.
    return write_coded_corpus(tmp_path_factory.mktemp("mixture"))


def windows(index):
    """Every CROP-long window of file `index` repeated end to end: [n, CROP], row = offset."""
    n = LENGTHS[index]
    tiled = np.tile(coded_waveform(index, n).astype(np.float32), CROP // n + 2)
    return np.stack([tiled[o : o + CROP] for o in range(n)]).astype(np.float64)


WINDOWS = {i: windows(i) for i in range(len(LENGTHS))}


def find_source(source):
    """(file, offset, gain) of the one file window that `source` is a scaled copy of."""
    source = np.asarray(source, np.float64)
    found = []
    for index, rows in WINDOWS.items():
        gains = rows @ source / np.sum(rows * rows, axis=1)
        errors = np.max(np.abs(rows * gains[:, None] - source), axis=1)
        for offset in np.flatnonzero(errors <= 1e-6 * np.max(np.abs(source))):
            found.append((index, int(offset), float(gains[offset])))
    assert len(found) == 1, found
    return found[0]


def rms(x):
    return np.sqrt(np.mean(np.square(np.asarray(x, np.float64)), axis=-1))


def sequential_sum(sources):
    mixture = sources[:, 0]
    for k in range(1, sources.shape[1]):
        mixture = mixture + sources[:, k]
    return mixture


def arrays(batches):
    return [[np.asarray(t) for t in batch] for batch in batches]


@pytest.mark.parametrize("K", [2, 3])
def test_mixtures_of_distinct_speakers_at_equal_levels(corpus, K):
    B = 4
    dataset = mixture_dataset(
        corpus, SPEAKER_OF_FILE, CROP, batch_size=B, num_speakers=K, seed=2, start_epoch=0,
        return_sources=True,
    )
    sampler = MixtureSampler(SPEAKER_OF_FILE, K, mixtures=12, seed=2)
    for e, start in enumerate([0, 3]):  # 12 files // 4: 3 batches per epoch
        files = []
        for mixture, labels, sources in arrays(dataset.skip(start).take(3)):
            assert mixture.shape == (B, CROP) and mixture.dtype == np.float32
            assert labels.shape == (B, K) and labels.dtype == np.int64
            assert sources.shape == (B, K, CROP) and sources.dtype == np.float32
            np.testing.assert_array_equal(mixture, sequential_sum(sources))  # exactly the sum
            for row_labels, row_sources in zip(labels, sources):
                assert len(set(row_labels.tolist())) == K  # distinct speakers
                found = [find_source(s) for s in row_sources]
                assert [SPEAKER_OF_FILE[f] for f, _, _ in found] == row_labels.tolist()
                assert found[0][2] == pytest.approx(1.0, abs=1e-6)  # the first source unscaled
                # Equal RMS: each other source scaled to the first one's level.
                np.testing.assert_allclose(rms(row_sources), rms(row_sources[0]), rtol=1e-5)
                files.append([f for f, _, _ in found])
        # The mixtures are the sampler's epoch e; the first sources cover every file once.
        assert files == sampler.epoch_indices(e).tolist()
        assert sorted(f[0] for f in files) == list(range(12))


def test_level_ratio_follows_the_sir_range(corpus):
    def ratios_db(sir_db, batches=12, K=2):
        dataset = mixture_dataset(
            corpus, SPEAKER_OF_FILE, CROP, batch_size=6, num_speakers=K, sir_db=sir_db,
            seed=5, start_epoch=0, return_sources=True,
        )
        sources = np.concatenate([s for _, _, s in arrays(dataset.take(batches))])
        levels = rms(sources)
        return 20 * np.log10(levels[:, :1] / levels[:, 1:]).ravel()

    exact = ratios_db([6, 6], batches=4, K=3)
    np.testing.assert_allclose(exact, 6.0, atol=1e-4)  # 20 log10(rms_0 / rms_k) = 6 dB
    spread = ratios_db((-5.0, 10.0))
    assert len(spread) == 72
    assert np.all(spread >= -5 - 1e-4) and np.all(spread <= 10 + 1e-4)
    # Uniform in [-5, 10]: mean 2.5 (sd of a mean of 72: 0.51), both ends reached.
    assert abs(np.mean(spread) - 2.5) < 1.6
    assert np.min(spread) < -3 and np.max(spread) > 8
    assert np.histogram(spread, bins=3, range=(-5, 10))[0].min() >= 12  # 24 each if uniform


def test_silent_crops_keep_their_level(tmp_path):
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(500), 16000)
    paths, labels = [str(silent)], [0]
    for i in range(3):
        path = tmp_path / f"loud{i}.wav"
        write_wav(path, 0.1 * (i + 1) * np.sin(np.arange(700) * 0.3), 16000)
        paths.append(str(path))
        labels.append(1)
    dataset = mixture_dataset(paths, labels, 300, batch_size=4, sir_db=(3, 3), seed=0,
                              start_epoch=0, return_sources=True)
    seen_first = set()
    for mixture, row_labels, sources in arrays(dataset.take(4)):
        assert np.all(np.isfinite(mixture)) and np.all(np.isfinite(sources))
        np.testing.assert_array_equal(mixture, sequential_sum(sources))
        for labels_row, sources_row in zip(row_labels, sources):
            silent_row = sources_row[labels_row.tolist().index(0)]
            assert np.all(silent_row == 0)
            # Silent first source or not, the loud one keeps its own level: the RMS of
            # a sine of amplitude 0.1, 0.2 or 0.3 (about 0.0707 times 1, 2 or 3).
            level = rms(sources_row[labels_row.tolist().index(1)]) / (0.1 / np.sqrt(2))
            assert min(abs(level - a) for a in (1, 2, 3)) < 0.05, level
            seen_first.add(int(labels_row[0]))
    assert seen_first == {0, 1}


def test_stream_resumes_exactly_and_repairs_every_epoch(corpus):
    def stream(start, seed=7):
        return mixture_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=5, num_speakers=2,
                               mixtures_per_epoch=11, sir_db=(-3, 3), seed=seed,
                               start_epoch=start, return_sources=True)

    from_zero = arrays(stream(0).take(8))  # 11 // 5 = 2 batches per epoch: epochs 0 .. 3
    resumed = arrays(stream(2).take(4))
    for got, want in zip(resumed, from_zero[4:]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    pairings = {tuple(map(tuple, np.concatenate([from_zero[2 * e][1], from_zero[2 * e + 1][1]])))
                for e in range(4)}
    assert len(pairings) == 4  # re-paired every epoch
    other = arrays(stream(2, seed=8).take(1))[0][0]
    assert not np.array_equal(other, from_zero[4][0])


def test_one_pass_per_iteration_by_default(corpus):
    dataset = mixture_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=4, seed=1)
    first, second = arrays(dataset), arrays(dataset)
    assert len(first) == len(second) == 3  # 12 mixtures (one per file) // 4
    assert all(len(batch) == 2 for batch in first)  # (mixture, labels)
    assert not np.array_equal(first[0][0], second[0][0])
    again = arrays(mixture_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=4, seed=1))
    for got, want in zip(again, first):
        np.testing.assert_array_equal(got[0], want[0])


def test_mixture_sampler_draws_distinct_speakers_uniformly():
    labels = np.repeat([3, 5, 8, 9], [1, 2, 3, 6])  # 4 speakers, 12 utterances
    sampler = MixtureSampler(labels, num_speakers=3, mixtures=30, seed=0)
    partners = collections.Counter()
    for e in range(200):
        indices = sampler.epoch_indices(e)
        assert indices.shape == (30, 3) and indices.dtype == np.int64
        speakers = labels[indices]
        assert all(len(set(row)) == 3 for row in speakers.tolist())
        # First sources: two and a half passes over the 12 files.
        assert sorted(indices[:24, 0]) == sorted(list(range(12)) * 2)
        for row in speakers.tolist():
            partners.update((row[0], s) for s in row[1:])
    # Given the first speaker, each of the 3 others is a partner in 2/3 of its mixtures.
    for first in (3, 5, 8, 9):
        total = sum(c for (f, _), c in partners.items() if f == first) / 2
        for other in {3, 5, 8, 9} - {first}:
            assert abs(partners[first, other] / total - 2 / 3) < 0.05
    np.testing.assert_array_equal(sampler.epoch_indices(4), sampler.epoch_indices(4))
    assert not np.array_equal(sampler.epoch_indices(4), sampler.epoch_indices(5))


@pytest.mark.parametrize("K", [2, 3])
def test_enrolments_are_other_utterances_of_the_source_speakers(corpus, K):
    B = 4
    dataset = mixture_dataset(
        corpus, SPEAKER_OF_FILE, CROP, batch_size=B, num_speakers=K, sir_db=(-4, 4), seed=2,
        start_epoch=0, return_sources=True, return_enrolments=True,
    )
    sampler = MixtureSampler(SPEAKER_OF_FILE, K, mixtures=12, seed=2, enrolments=True)
    plain = MixtureSampler(SPEAKER_OF_FILE, K, mixtures=12, seed=2)
    for e in [1]:
        files = []
        for mixture, labels, sources, enrolments in arrays(dataset.skip(3 * e).take(3)):
            assert enrolments.shape == (B, K, CROP) and enrolments.dtype == np.float32
            np.testing.assert_array_equal(mixture, sequential_sum(sources))
            for row_labels, row_sources, row_enrolments in zip(labels, sources, enrolments):
                found = [find_source(s) for s in row_sources]
                enrolled = [find_source(s) for s in row_enrolments]
                for (source, _, _), (enrolment, _, gain), label in zip(found, enrolled, row_labels):
                    assert SPEAKER_OF_FILE[enrolment] == label  # the source's speaker
                    assert enrolment != source  # another utterance (each speaker has 4)
                    assert gain == pytest.approx(1.0, abs=1e-6)  # at the file's own level
                files.append([f for f, _, _ in found + enrolled])
        indices = sampler.epoch_indices(e)
        assert files == indices.tolist()
        # The sources are those drawn without enrolments.
        np.testing.assert_array_equal(indices[:, :K], plain.epoch_indices(e))


def test_enrolments_only_and_resumption(corpus):
    def stream(start, seed=7):
        return mixture_dataset(corpus, SPEAKER_OF_FILE, CROP, batch_size=5, mixtures_per_epoch=11,
                               seed=seed, start_epoch=start, return_enrolments=True)

    from_zero = arrays(stream(0).take(6))  # 2 batches per epoch: epochs 0 .. 2
    resumed = arrays(stream(2).take(2))
    assert [len(batch) for batch in from_zero] == [3] * 6  # (mixture, labels, enrolments)
    assert from_zero[0][2].shape == (5, 2, CROP)
    for got, want in zip(resumed, from_zero[4:]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    enrolments = [np.concatenate([from_zero[2 * e][2], from_zero[2 * e + 1][2]]) for e in range(3)]
    assert not np.array_equal(enrolments[0], enrolments[1])  # drawn afresh every epoch


def test_mixtures_are_unchanged_by_the_enrolment_flag_being_off(corpus):
    common = dict(batch_size=4, sir_db=(-5, 5), seed=3, start_epoch=1, return_sources=True)
    default = arrays(mixture_dataset(corpus, SPEAKER_OF_FILE, CROP, **common).take(2))
    off = arrays(mixture_dataset(corpus, SPEAKER_OF_FILE, CROP, return_enrolments=False,
                                 **common).take(2))
    for got, want in zip(off, default):
        assert len(got) == 3
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_enrolments_draw_uniformly_among_the_other_utterances():
    labels = np.repeat([3, 5, 8], [2, 3, 5])  # 3 speakers, 10 utterances
    sampler = MixtureSampler(labels, num_speakers=2, mixtures=20, seed=0, enrolments=True)
    pairs = collections.Counter()
    for e in range(100):
        indices = sampler.epoch_indices(e)
        assert indices.shape == (20, 4) and indices.dtype == np.int64
        sources, enrolments = indices[:, :2], indices[:, 2:]
        assert np.all(labels[sources] == labels[enrolments])
        assert np.all(sources != enrolments)
        pairs.update(zip(sources.ravel().tolist(), enrolments.ravel().tolist()))
    # Each utterance's enrolments spread evenly over its speaker's other utterances.
    for source in range(10):
        others = [i for i in range(10) if labels[i] == labels[source] and i != source]
        counts = np.array([pairs[source, o] for o in others])
        assert counts.sum() > 100
        assert np.all(np.abs(counts / counts.sum() - 1 / len(others)) < 0.1), counts
    np.testing.assert_array_equal(sampler.epoch_indices(4), sampler.epoch_indices(4))
    with pytest.raises(ValueError, match="e.g. speaker 9. Remove them or draw no enrolments"):
        MixtureSampler([0, 0, 9, 1, 1], 2, 4, enrolments=True)


def test_a_speaker_with_a_single_utterance_cannot_enrol(corpus):
    labels = list(SPEAKER_OF_FILE)
    labels[7] = 5  # file 7 alone
    with pytest.raises(ValueError, match=r"1 speaker\(s\) have a single one, e.g. speaker 5 "
                                         r"with only .*utt07.wav.*data.mixture.return_enrolments"):
        mixture_dataset(corpus, labels, CROP, batch_size=4, return_enrolments=True)
    mixture_dataset(corpus, labels, CROP, batch_size=4)  # fine without enrolments


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"num_speakers": 1}, "num_speakers must be an int >= 2.*Received: num_speakers=1"),
        ({"num_speakers": 4}, "cannot exceed the 3 speakers.*Received: num_speakers=4"),
        ({"sir_db": (5, -5)}, r"lo <= hi.*Received: sir_db=\(5, -5\)"),
        ({"sir_db": [3]}, r"Received: sir_db=\[3\]"),
        ({"sir_db": (0, float("nan"))}, "two finite numbers"),
        ({"sir_db": "0"}, "Received: sir_db='0'"),
        ({"batch_size": 13}, "12 mixtures.*does not fill one batch of 13.*batch_size=13"),
        ({"mixtures_per_epoch": 3}, "3 mixtures.*one batch of 4"),
        ({"mixtures_per_epoch": 0}, "Received: mixtures_per_epoch=0"),
        ({"start_epoch": -1}, "Received: start_epoch=-1"),
        ({"return_sources": "yes"}, "Received: return_sources='yes'"),
        ({"return_enrolments": 1}, "return_enrolments must be True or False.*Received: "
                                   "return_enrolments=1"),
        ({"segment_samples": 0}, "Received: segment_samples=0"),
    ],
)
def test_bad_arguments(corpus, kwargs, fragment):
    arguments = {"segment_samples": CROP, "batch_size": 4}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        mixture_dataset(corpus, SPEAKER_OF_FILE, **arguments)
