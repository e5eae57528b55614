"""Separation scoring (keras_spk.evaluation.separation): mixture sets, SDRi / SI-SDRi / PESQi rows."""

import os
import pathlib

import numpy as np
import pytest

from keras_spk.data import read_audio
from keras_spk.data import read_dataset
from keras_spk.data import write_wav
from keras_spk.data.speech_synthesis import synthesize_utterance
from keras_spk.evaluation import separation
from keras_spk.metrics import separation as separation_metrics

RATE = 16000


def write_speakers(root, speakers=3, utterances=3, seconds=1.2, seed=0):
    """Demo-corpus-like synthetic speech in VoxCeleb layout: `<spk>/<video>/<utt>.wav`."""
    for s in range(speakers):
        for u in range(utterances):
            path = pathlib.Path(root, f"id{s:03d}", "vid", f"{u:05d}.wav")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, synthesize_utterance(seed, s, 0, u, seconds + 0.1 * u), RATE)
    return str(root)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_speakers(tmp_path_factory.mktemp("speakers") / "test")


@pytest.fixture(scope="module")
def utterances(corpus):
    return read_dataset("voxceleb", corpus)


def identity(mixture, enrolment):
    return np.stack([mixture, mixture], axis=1)


def find_in(waveform, segment):
    """Whether `segment` appears, sample for sample, in `waveform`."""
    for offset in np.flatnonzero(waveform[: waveform.shape[0] - segment.shape[0] + 1] == segment[0]):
        if np.array_equal(waveform[offset : offset + segment.shape[0]], segment):
            return True
    return False


def test_identity_estimate_gives_exactly_zero(utterances):
    mixtures = separation.speaker_mixtures(utterances, 3, 12000, enrolment=False)
    rows = separation.evaluate_separation(identity, mixtures, pesq=False, label="identity")
    assert [r["system"] for r in rows] == [
        "identity", separation.MIXTURE_LABEL, separation.IDEAL_RATIO_MASK_LABEL
    ]
    for row in rows[:2]:
        assert row["sdri"] == 0.0 and row["si_sdri"] == 0.0
        assert row["n_mixtures"] == 3 and row["pesqi"] is None
    assert [r["reference"] for r in rows] == [False, True, True]
    assert rows[0]["mixtures"] == mixtures.description


def test_ideal_ratio_mask_and_a_perfect_separator(utterances):
    mixtures = separation.speaker_mixtures(utterances, 4, 16000, seed=0, enrolment=False)
    items = list(mixtures)
    rng = np.random.default_rng(0)
    # The true sources of each mixture, found by its samples, in the other order, with a little noise.
    truth = {m.mixture.tobytes(): m.sources + rng.normal(scale=1e-4, size=m.sources.shape)
             for m in items}

    def perfect(mixture, enrolment):
        assert mixture.shape == (1, 16000) and enrolment is None
        return truth[mixture[0].tobytes()][::-1][None]

    rows = separation.evaluate_separation(perfect, mixtures, pesq=False, label="perfect")
    perfect_row, mixture_row, irm_row = rows
    assert perfect_row["sdri"] > 40.0 and perfect_row["si_sdri"] > 40.0
    assert mixture_row["sdri"] == 0.0 and perfect_row["n_mixtures"] == 4
    # The oracle mask on mixtures of two synthetic speakers: over 10 dB on average, below
    # the perfect estimate.
    assert 10.0 < irm_row["sdri"] < perfect_row["sdri"] and irm_row["si_sdri"] > 8.0
    # Exactly the sources: BSS-eval's SDR is infinite.
    item = items[0]
    exact = separation.evaluate_separation(lambda m, e: item.sources[None], [item], pesq=False,
                                           references=False)
    assert exact[0]["sdri"] == np.inf and len(exact) == 1
    # The oracle directly: [K, samples], the row's mean of each mixture's improvement.
    improvements = []
    for item in items:
        estimates = separation.ideal_ratio_mask(item.sources, item.mixture)
        assert estimates.shape == item.sources.shape and estimates.dtype == np.float32
        improvements.append(
            separation_metrics.sdr_improvement(item.sources, estimates, item.mixture)
        )
    assert np.mean(improvements) == pytest.approx(irm_row["sdri"], abs=1e-9)


def test_pesq_rows_are_none_with_a_note_without_the_package(utterances, monkeypatch):
    mixtures = separation.speaker_mixtures(utterances, 1, 16000, enrolment=False)
    monkeypatch.setattr(separation_metrics, "pesq_available", lambda: False)
    rows = separation.evaluate_separation(identity, mixtures, pesq=True)
    for row in rows:
        assert row["pesqi"] is None and "`pesq` package is not installed" in row["note"]
    table = separation.format_separation_table(rows)
    assert "not installed" in table and "-" in table.splitlines()[2].split()
    # Asked not to, or not at 16 kHz: also a note.
    monkeypatch.undo()
    assert "pesq=False" in separation.evaluate_separation(identity, mixtures, pesq=False)[0]["note"]


@pytest.mark.skipif(not separation_metrics.pesq_available(), reason="needs the optional pesq package")
def test_pesq_improvements_when_installed(utterances):
    mixtures = separation.speaker_mixtures(utterances, 1, 16000, seed=5, enrolment=False)
    rows = separation.evaluate_separation(identity, mixtures, pesq=True, label="identity")
    assert rows[0]["pesqi"] == 0.0 and rows[1]["pesqi"] == 0.0 and "note" not in rows[0]
    assert rows[2]["pesqi"] > 0.5  # the oracle mask is heard to help


def test_speaker_mixtures_are_deterministic_equal_rms_with_other_utterances_as_enrolment(utterances):
    files = {path: read_audio(path) for path in utterances.paths}
    speaker_of = dict(zip(utterances.paths, utterances.speakers))
    mixtures = separation.speaker_mixtures(utterances, 4, 8000, seed=1, enrolment_samples=24000)
    assert len(mixtures) == 4
    first, again = list(mixtures), list(separation.speaker_mixtures(
        utterances, 4, 8000, seed=1, enrolment_samples=24000))
    # The same with enrolment=False, and the same when iterated again.
    plain = list(separation.speaker_mixtures(utterances, 4, 8000, seed=1, enrolment=False))
    assert [m.name for m in first] == [m.name for m in list(mixtures)]
    for a, b, c in zip(first, again, plain):
        np.testing.assert_array_equal(a.mixture, b.mixture)
        np.testing.assert_array_equal(a.enrolment, b.enrolment)
        np.testing.assert_array_equal(a.sources, c.sources)
        assert c.enrolment is None
    for item in first:
        assert item.mixture.shape == (8000,) and item.sources.shape == (2, 8000)
        assert item.enrolment.shape == (2, 24000) and item.enrolment.dtype == np.float32
        assert item.speakers[0] != item.speakers[1]
        np.testing.assert_allclose(item.mixture, item.sources.sum(axis=0), atol=1e-7)
        rms = np.sqrt(np.mean(item.sources.astype(np.float64) ** 2, axis=1))
        assert rms[1] == pytest.approx(rms[0], rel=1e-5)
        # The first source is a crop of a file of its speaker (its level unchanged)...
        assert any(find_in(w, item.sources[0]) and speaker_of[p] == item.speakers[0]
                   for p, w in files.items())
        for k in range(2):
            # ... and each enrolment (24000 samples: longer than any file, so repeated from
            # its start) is another utterance of the source's speaker.
            holders = [p for p, w in files.items() if find_in(item.enrolment[k], w[:8000])]
            assert len(holders) == 1 and speaker_of[holders[0]] == item.speakers[k]
            if k == 0:
                assert not find_in(files[holders[0]], item.sources[0])
    other = separation.speaker_mixtures(utterances, 4, 8000, seed=2, enrolment=False)
    assert not all(np.array_equal(a.mixture, b.mixture) for a, b in zip(plain, other))


def test_speaker_mixtures_levels_and_single_utterance_speakers(utterances, tmp_path):
    (item,) = separation.speaker_mixtures(utterances, 1, 8000, sir_db=(6, 6), enrolment=False)
    rms = np.sqrt(np.mean(item.sources.astype(np.float64) ** 2, axis=1))
    assert 20 * np.log10(rms[0] / rms[1]) == pytest.approx(6.0, abs=1e-4)
    # Two speakers with one utterance each: no enrolment possible, left out, then an error.
    root = write_speakers(tmp_path / "single", speakers=2, utterances=1, seconds=0.5)
    single = read_dataset("voxceleb", root)
    with pytest.raises(ValueError, match=r"need at least 2 speakers.*2 speaker\(s\) with a single utterance"):
        separation.speaker_mixtures(single, 2, 4000)
    assert len(list(separation.speaker_mixtures(single, 2, 4000, enrolment=False))) == 2
    for kwargs, message in [
        ({"num_mixtures": 0}, "num_mixtures"),
        ({"sir_db": (5, 0)}, "sir_db"),
        ({"segment_samples": 0.5}, "segment_samples"),
    ]:
        arguments = {"num_mixtures": 1, "segment_samples": 4000, **kwargs}
        with pytest.raises(ValueError, match=message):
            separation.speaker_mixtures(utterances, **arguments)


# WSJ0-2mix: speaker 011 has utterances a0101 / a0102 / a0103, speaker 401 c020r / c020s,
# speaker 22g a single one (in the last mixture only).
WSJ0_NAMES = [
    "011a0101_0.5_401c020r_-0.5.wav",
    "401c020s_0.3_011a0102_-0.3.wav",
    "011a0103_0.1_401c020r_-0.1.wav",
    "22go010x_0.8_011a0101_-0.8.wav",
]


def make_wsj0_tree(root, names=WSJ0_NAMES, samples=4000):
    """A fake `<root>/tt/{mix,s1,s2}` tree: distinct noise per source file, mix = s1 + s2."""
    rng = np.random.default_rng(0)
    for name in names:
        sources = 0.2 * rng.uniform(-1, 1, (2, samples))
        for part, waveform in (("s1", sources[0]), ("s2", sources[1]), ("mix", sources.sum(0))):
            path = pathlib.Path(root, "tt", part, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, waveform, RATE)
    return pathlib.Path(root)


def test_wsj0_2mix_mixtures_with_another_utterance_as_enrolment(tmp_path):
    root = make_wsj0_tree(tmp_path / "min")
    mixtures = separation.wsj0_2mix_mixtures(root, "tt", num_mixtures=3, enrolment=False)
    # Three of four, spread over the sorted names.
    assert [m.name for m in mixtures] == [n[:-4] for n in sorted(WSJ0_NAMES)[:3]]
    assert len(mixtures) == 3 and mixtures.settings["subset"] == "tt"
    # The subset's 22g speaker has one utterance: asked for enrolment, its mixture is an error.
    with pytest.raises(ValueError, match=r"22go010x.*speaker '22g' has no utterance other than"):
        separation.wsj0_2mix_mixtures(root, "tt")

    root = make_wsj0_tree(tmp_path / "three", names=WSJ0_NAMES[:3])
    mixtures = separation.wsj0_2mix_mixtures(root, "tt")
    items = list(mixtures)
    assert [m.name for m in items] == sorted(n[:-4] for n in WSJ0_NAMES[:3])
    # Whole files: the mixture file, s1 and s2.
    first = items[0]
    name = "011a0101_0.5_401c020r_-0.5.wav"
    assert first.name == name[:-4] and first.speakers == ("011", "401")
    np.testing.assert_array_equal(first.mixture, read_audio(root / "tt" / "mix" / name))
    np.testing.assert_array_equal(first.sources[1], read_audio(root / "tt" / "s2" / name))
    # Enrolment: another utterance of the same speaker, read from the file that holds it.
    utterance_files = {
        "011a0102": root / "tt" / "s2" / WSJ0_NAMES[1], "011a0103": root / "tt" / "s1" / WSJ0_NAMES[2],
        "401c020s": root / "tt" / "s1" / WSJ0_NAMES[1],
    }
    assert first.enrolment.shape == (2, 4000)
    own = [u for u, p in utterance_files.items()
           if np.array_equal(first.enrolment[0], read_audio(p))]
    assert own in (["011a0102"], ["011a0103"])
    np.testing.assert_array_equal(first.enrolment[1], read_audio(utterance_files["401c020s"]))
    # Deterministic, and cut to enrolment_samples when asked.
    cut = list(separation.wsj0_2mix_mixtures(root, "tt", enrolment_samples=1000))
    assert cut[0].enrolment.shape == (2, 1000)
    assert find_in(first.enrolment[1], cut[0].enrolment[1])
    again = list(separation.wsj0_2mix_mixtures(root, "tt", enrolment_samples=1000))
    np.testing.assert_array_equal(cut[2].enrolment, again[2].enrolment)
    # Scored end to end: the identity estimate gives 0, the oracle mask more.
    rows = separation.evaluate_separation(identity, mixtures, pesq=False)
    assert rows[0]["sdri"] == 0.0 and rows[2]["sdri"] > 3.0 and rows[0]["n_mixtures"] == 3


def test_wsj0_2mix_sources_must_have_the_mixture_length(tmp_path):
    root = make_wsj0_tree(tmp_path / "max", names=WSJ0_NAMES[:1])
    write_wav(root / "tt" / "s1" / WSJ0_NAMES[0], np.zeros(3000), RATE)
    with pytest.raises(ValueError, match="'min' mode"):
        list(separation.wsj0_2mix_mixtures(root, "tt", enrolment=False))


def test_bad_separator_output_names_the_mixture_and_results_are_written(utterances, tmp_path):
    mixtures = separation.speaker_mixtures(utterances, 1, 8000, enrolment=False)
    with pytest.raises(ValueError, match=r"Mixture 00000_.*returned shape \(1, 2, 7999\)"):
        separation.evaluate_separation(lambda m, e: identity(m, e)[..., 1:], mixtures, pesq=False)
    with pytest.raises(ValueError, match="holds no mixtures"):
        separation.evaluate_separation(identity, [], pesq=False)
    rows = separation.evaluate_separation(None, mixtures, pesq=False)
    assert [r["system"] for r in rows] == [separation.MIXTURE_LABEL, separation.IDEAL_RATIO_MASK_LABEL]
    paths = separation.write_separation_results(rows, tmp_path / "results", metadata={"seed": 0})
    assert [os.path.basename(p) for p in paths] == [
        "separation_table.txt", "separation_results.json", "separation_results.csv"
    ]
    table = (tmp_path / "results" / "separation_table.txt").read_text()
    assert table.splitlines()[0].split()[:3] == ["system", "SDRi", "dB"]
    assert separation.MIXTURE_LABEL in table and "0.000" in table
