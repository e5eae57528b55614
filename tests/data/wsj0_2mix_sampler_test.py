"""Tests for the wsj0_2mix sampler: WSJ0-2mix mixtures and their sources, cropped together."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_spk.data import read_wsj0_2mix
from keras_spk.data import sampler_dataset
from keras_spk.data import write_wav
from keras_spk.data.mixture import wsj0_2mix_dataset

CROP = 400
# 8 mixtures of 4 speakers (3 characters each), every speaker with 3 or 4 utterances,
# some used in two mixtures (as in WSJ0-2mix). Lengths 300 .. 1000: some shorter than CROP.
MIXTURES = [
    ("aaa0101a", "bbb0201a", 300),
    ("ccc0301a", "ddd0401a", 1000),
    ("bbb0202b", "aaa0102b", 650),
    ("ddd0402b", "ccc0302b", 410),
    ("aaa0103c", "ccc0301a", 520),
    ("bbb0201a", "ddd0403c", 880),
    ("ccc0303c", "aaa0101a", 390),
    ("ddd0404d", "bbb0203c", 760),
]
SPEAKER_IDS = ["aaa", "bbb", "ccc", "ddd"]  # labels: sorted


def mixture_name(first, second):
    return f"{first}_1.5_{second}_-1.5.wav"


def make_tree(root, mixtures=MIXTURES, rate=16000, subsets=("tr",), seed=0):
    """A WSJ0-2mix tree whose mixtures are exactly s1 + s2 (16-bit integers that add up)."""
    rng = np.random.default_rng(seed)
    for subset in subsets:
        for first, second, n in mixtures:
            s1 = rng.integers(-8000, 8000, n)
            s2 = rng.integers(-8000, 8000, n)
            for part, samples in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
                path = pathlib.Path(root, subset, part, mixture_name(first, second))
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, samples / 32768.0, rate)
    return pathlib.Path(root)


def read_int16(path):
    from keras_spk.data import read_audio

    return np.round(np.asarray(read_audio(path), np.float64) * 32768).astype(np.int64)


def offsets_in(crop, waveform):
    """Every offset at which `crop` is the window of `waveform` repeated end to end."""
    crop = np.round(np.asarray(crop, np.float64) * 32768).astype(np.int64)
    n = len(waveform)
    tiled = np.tile(waveform, CROP // n + 2)
    starts = np.flatnonzero(tiled[:n] == crop[0])
    return [int(o) for o in starts if np.array_equal(tiled[o : o + CROP], crop)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = make_tree(tmp_path_factory.mktemp("wsj0_2mix") / "min")
    mixtures = read_wsj0_2mix(root, "tr")
    files = [{part: read_int16(p) for part, p in zip(("mix", "s1", "s2"), (m.mixture, *m.sources))}
             for m in mixtures]
    return root, mixtures, files


def locate(mixture, sources, files):
    """(index, offset) of the one mixture whose mix, s1 and s2 give these crops at one offset."""
    found = []
    for i, parts in enumerate(files):
        for offset in offsets_in(sources[0], parts["s1"]):
            if offset in offsets_in(sources[1], parts["s2"]) and offset in offsets_in(
                mixture, parts["mix"]
            ):
                found.append((i, offset))
    assert len(found) == 1, found
    return found[0]


def stream(root, start_epoch=0, seed=3, **kwargs):
    dataset, steps = sampler_dataset(
        "wsj0_2mix", [], [], crop_samples=CROP, batch_size=4, seed=seed, start_epoch=start_epoch,
        root=str(root), **kwargs
    )
    return dataset, steps


def numpy_batches(dataset, count):
    return [tuple(np.asarray(t) for t in inputs) for (inputs,) in dataset.take(count)]


def test_crops_of_the_mixture_and_its_sources_at_one_offset(tree):
    root, mixtures, files = tree
    dataset, steps = stream(root)
    assert steps == 2  # 8 mixtures // 4
    batches = numpy_batches(dataset, 4)  # epochs 0 and 1
    epochs = [[], []]
    for b, (mixture, labels, sources) in enumerate(batches):
        assert mixture.shape == (4, CROP) and mixture.dtype == np.float32
        assert labels.shape == (4, 2) and labels.dtype == np.int64
        assert sources.shape == (4, 2, CROP) and sources.dtype == np.float32
        # The fake mixtures are exactly s1 + s2, and so are their crops.
        np.testing.assert_array_equal(mixture, sources[:, 0] + sources[:, 1])
        for row in range(4):
            index, _ = locate(mixture[row], sources[row], files)
            want = [SPEAKER_IDS.index(s) for s in mixtures[index].speakers]
            assert labels[row].tolist() == want
            epochs[b // 2].append(index)
    # Every epoch is a shuffled pass over the 8 mixtures, a different order each time.
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(8))
    assert epochs[0] != epochs[1]


def test_short_mixtures_repeat_and_offsets_vary(tree):
    root, mixtures, files = tree
    dataset, _ = stream(root, seed=5)
    offsets = {}
    for mixture, _, sources in numpy_batches(dataset, 12):
        for row in range(4):
            index, offset = locate(mixture[row], sources[row], files)
            offsets.setdefault(index, set()).add(offset)
    # 300 samples < CROP: the crop repeats the mixture, its sources alike.
    assert len(files[0]["mix"]) < CROP and 0 in offsets
    assert all(len(seen) >= 2 for seen in offsets.values())  # 6 crops each, random offsets


def test_stream_resumes_exactly_and_depends_on_the_seed(tree):
    root, _, _ = tree
    from_zero = numpy_batches(stream(root, return_enrolments=True)[0], 4)  # epochs 0 and 1
    resumed = numpy_batches(stream(root, start_epoch=1, return_enrolments=True)[0], 2)
    for got, want in zip(resumed, from_zero[2:]):
        assert len(got) == 4
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    other = numpy_batches(stream(root, seed=4, return_enrolments=True)[0], 1)[0]
    assert not np.array_equal(other[0], from_zero[0][0])


def test_enrolments_are_another_utterance_of_each_speaker(tree):
    root, mixtures, files = tree
    utterances = [m.name.split("_")[0:3:2] for m in mixtures]
    dataset, _ = stream(root, seed=1, return_enrolments=True)
    chosen = {}
    for mixture, labels, sources, enrolments in numpy_batches(dataset, 8):
        assert enrolments.shape == (4, 2, CROP) and enrolments.dtype == np.float32
        np.testing.assert_array_equal(mixture, sources[:, 0] + sources[:, 1])
        for row in range(4):
            index, _ = locate(mixture[row], sources[row], files)
            for k in range(2):
                # The enrolment is an unscaled crop of one s1 or s2 file ...
                found = [(j, part) for j, parts in enumerate(files) for part in ("s1", "s2")
                         if offsets_in(enrolments[row, k], parts[part])]
                assert len(found) == 1, found
                j, part = found[0]
                utterance = utterances[j][int(part[1]) - 1]
                # ... of the source's speaker, and another of its utterances (another file).
                assert utterance[:3] == SPEAKER_IDS[labels[row, k]]
                assert utterance != utterances[index][k] and j != index
                chosen.setdefault(utterances[index][k], set()).add(utterance)
    # Drawn afresh: some sources get different enrolment utterances over the epochs.
    assert any(len(seen) >= 2 for seen in chosen.values())


def test_root_null_names_the_config_key(tree):
    with pytest.raises(ValueError, match=r"Set data\.wsj0_2mix\.root to the folder holding tr/, "
                                         r"cv/ and tt/.*Received: root=None"):
        sampler_dataset("wsj0_2mix", [], [], crop_samples=CROP, batch_size=4)
    root, _, _ = tree
    with pytest.raises(ValueError, match="Unknown WSJ0-2mix subset 'dev'"):
        stream(root, subset="dev")
    with pytest.raises(FileNotFoundError, match="subset folder .*cv does not exist"):
        stream(root, subset="cv")
    with pytest.raises(ValueError, match="epoch of 3 mixtures .*the 8 of WSJ0-2mix 'tr'.*"
                                         "does not fill one batch of 4"):
        wsj0_2mix_dataset(root, "tr", CROP, 4, mixtures_per_epoch=3)
    with pytest.raises(ValueError, match="Received: mixtures_per_epoch=0"):
        wsj0_2mix_dataset(root, "tr", CROP, 4, mixtures_per_epoch=0)


def test_more_mixtures_per_epoch_than_the_subset(tree):
    root, _, files = tree
    dataset, steps = stream(root, mixtures_per_epoch=12)
    assert steps == 3
    seen = []
    for mixture, _, sources in numpy_batches(dataset, 3):
        seen += [locate(mixture[r], sources[r], files)[0] for r in range(4)]
    # Two shuffled passes, cut at 12: every mixture at least once, none three times.
    assert set(seen) == set(range(8)) and max(seen.count(i) for i in range(8)) <= 2


def test_a_speaker_with_a_single_utterance_cannot_enrol(tmp_path):
    root = make_tree(tmp_path, mixtures=MIXTURES[:4] + [("eee0501a", "aaa0101a", 500)])
    with pytest.raises(ValueError, match=r"speaker eee \(utterance eee0501a\).*"
                                         r"data\.wsj0_2mix\.return_enrolments"):
        wsj0_2mix_dataset(root, "tr", CROP, 4, return_enrolments=True)
    # Without enrolments the subset is fine.
    wsj0_2mix_dataset(root, "tr", CROP, 4)


def test_other_rates_are_resampled(tmp_path):
    root = make_tree(tmp_path, mixtures=MIXTURES[:4], rate=8000)
    dataset = wsj0_2mix_dataset(root, "tr", CROP, 2, sample_rate=16000, start_epoch=0)
    mixture, labels, sources = (np.asarray(t) for t in next(iter(dataset)))
    assert mixture.shape == (2, CROP) and sources.shape == (2, 2, CROP)
    # Resampling is linear: the resampled mixture is still the sum of the resampled sources.
    np.testing.assert_allclose(mixture, sources[:, 0] + sources[:, 1], atol=1e-5)
    assert np.max(np.abs(mixture)) > 0.05


def test_files_of_different_lengths_are_an_error_naming_the_mixture(tmp_path):
    root = make_tree(tmp_path, mixtures=MIXTURES[:2])
    name = mixture_name(*MIXTURES[0][:2])
    write_wav(root / "tr" / "s2" / name, np.zeros(299), 16000)
    dataset = wsj0_2mix_dataset(root, "tr", CROP, 2, start_epoch=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"differ in length.*{name}"):
        next(iter(dataset))


def test_enrolment_files_are_drawn_uniformly_among_the_other_utterances():
    from keras_spk.data.mixture import _PremixedEpochs

    utterances = np.array([[u[0], u[1]] for u in MIXTURES])
    speakers = np.array([[SPEAKER_IDS.index(u[:3]) for u in row] for row in utterances])
    sampler = _PremixedEpochs(speakers, utterances, mixtures=8, seed=0, enrolments=True)
    slot_utterances = utterances.reshape(-1)
    picks = {}
    for e in range(300):
        rows = sampler.epoch_indices(e)
        assert rows.shape == (8, 5) and sorted(rows[:, 0] // 3) == list(range(8))
        np.testing.assert_array_equal(rows[:, 1:3], rows[:, :1] + [1, 2])
        for k in range(2):
            source = 2 * (rows[:, 0] // 3) + k
            enrolment = 2 * (rows[:, 3 + k] // 3) + rows[:, 3 + k] % 3 - 1
            for s, f in zip(source.tolist(), enrolment.tolist()):
                picks.setdefault(s, []).append(f)
    for s, files in picks.items():
        candidates = [f for f in range(16) if slot_utterances[f][:3] == slot_utterances[s][:3]
                      and slot_utterances[f] != slot_utterances[s]]
        assert set(files) == set(candidates)  # any file of another utterance, no other file
        counts = np.array([files.count(f) for f in candidates])
        assert np.all(np.abs(counts / len(files) - 1 / len(candidates)) < 0.1), counts
