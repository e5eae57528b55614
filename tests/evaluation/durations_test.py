"""Tests of keras_spk.evaluation.durations: VAD cuts, the duration table, its files."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from keras_spk.data import Trials
from keras_spk.data import read_audio
from keras_spk.data import read_trials
from keras_spk.data import write_wav
from keras_spk.layers import EnergyVAD
from keras_spk.metrics import verification_metrics
from keras_spk.evaluation.durations import cut_to_speech
from keras_spk.evaluation.durations import duration_conditions
from keras_spk.evaluation.durations import evaluate_durations
from keras_spk.evaluation.durations import format_duration_table
from keras_spk.evaluation.durations import write_duration_results

SR = 16000
# EnergyVAD defaults at 16 kHz: 400-sample frames every 160 samples. For a
# burst [a, b) in digital silence, with a and b multiples of 160, the frames
# overlapping it are t = a/160 - 2 .. b/160 - 1 (the first covers 80 burst
# samples, the last 160, both far within 40 dB of a full frame), so the speech
# samples are their union [a - 320, b + 240): the burst plus 560 samples.
BEFORE, AFTER = 320, 240


def tone(samples, frequency, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(samples) / SR)).astype("float32")


def build(segments):
    """A waveform from `(frequency or None for silence, samples, amplitude)` segments.

    Returns the waveform and the hand-derived speech spans of its bursts.
    """
    parts, spans, start = [], [], 0
    for frequency, samples, amplitude in segments:
        if frequency is None:
            parts.append(np.zeros(samples, "float32"))
        else:
            parts.append(tone(samples, frequency, amplitude))
            spans.append((start - BEFORE, start + samples + AFTER))
        start += samples
    return np.concatenate(parts), spans


def expected_cut(waveform, spans, seconds):
    """The first `seconds` of the spans' samples, or the whole waveform when they are fewer."""
    if seconds is None:
        return waveform
    speech = np.concatenate([waveform[a:b] for a, b in spans])
    n = int(round(seconds * SR))
    return waveform if speech.shape[0] < n else speech[:n]


# --------------------------------------------------------------------------
# cut_to_speech
# --------------------------------------------------------------------------

# 0.5 s silence, 1 s tone, 1 s silence, 0.5 s tone, 0.5 s silence (3.5 s).
TWO_BURSTS = [(None, 8000, 0), (440, 16000, 0.5), (None, 16000, 0), (440, 8000, 0.5), (None, 8000, 0)]


def test_cut_keeps_exactly_the_first_seconds_of_speech():
    x, spans = build(TWO_BURSTS)
    # By hand: bursts [8000, 24000) and [40000, 48000) give speech
    # [7680, 24240) (16560 samples) and [39680, 48240) (8560): 25120 in all.
    assert spans == [(7680, 24240), (39680, 48240)]
    one = cut_to_speech(x, 1)
    assert one.dtype == np.float32 and one.shape == (16000,)
    np.testing.assert_array_equal(one, x[7680:23680])
    # 1.5 s = 24000 samples: all of the first span and 7440 of the second,
    # with the second of silence between them removed.
    np.testing.assert_array_equal(cut_to_speech(x, 1.5), np.concatenate([x[7680:24240], x[39680:47120]]))
    # Exactly all the speech (25120 samples = 1.57 s) is still a cut ...
    np.testing.assert_array_equal(cut_to_speech(x, 1.57), np.concatenate([x[7680:24240], x[39680:48240]]))
    # ... one sample step more (1.6 s = 25600) is more than there is: the whole utterance.
    np.testing.assert_array_equal(cut_to_speech(x, 1.6), x)
    np.testing.assert_array_equal(cut_to_speech(x, None), x)
    np.testing.assert_array_equal(cut_to_speech(x, "full"), x)
    # The same as the layer's own truncation.
    speech, lengths = EnergyVAD(max_speech_seconds=1.5)(x[None])
    np.testing.assert_array_equal(cut_to_speech(x, 1.5), keras.ops.convert_to_numpy(speech)[0])
    assert int(keras.ops.convert_to_numpy(lengths)[0]) == 24000


def test_cut_follows_the_energy_threshold_frame_by_frame():
    # A loud burst (0.5), a quiet one 37 dB below it and a faint one 50 dB
    # below, in digital silence. Relative to a full frame of its burst, a
    # frame overlapping a burst's start by 80 / 240 samples has -7.0 / -2.2 dB,
    # one overlapping its end by 320 / 160 samples -1.0 / -4.0 dB. So with the
    # 40-dB threshold: the loud burst [a, b) gives [a - 320, b + 240) as above;
    # of the quiet one only the frames within 40 dB count, the 240- and
    # 320-sample ones at -39.2 and -38.0 dB, not the -44.0 and -41.0 dB ones,
    # giving [a - 160, b + 80); the faint one gives nothing.
    quiet, faint = 0.5 * 10 ** (-37 / 20), 0.5 * 10 ** (-50 / 20)
    x = np.concatenate(
        [
            np.zeros(1600), tone(8000, 440), np.zeros(3200), tone(4800, 440, quiet),
            np.zeros(3200), tone(4800, 440, faint), np.zeros(1600),
        ]
    ).astype("float32")  # fmt: skip
    mask = np.zeros(x.shape[0], bool)
    mask[1280:9840] = mask[12640:17680] = True
    got = keras.ops.convert_to_numpy(EnergyVAD().speech_mask(x[None]))
    np.testing.assert_array_equal(got, mask[None])
    # 8560 + 5040 = 13600 speech samples (0.85 s).
    np.testing.assert_array_equal(cut_to_speech(x, 0.8), np.concatenate([x[1280:9840], x[12640:16880]]))
    np.testing.assert_array_equal(cut_to_speech(x, 0.85), x[mask])
    np.testing.assert_array_equal(cut_to_speech(x, 0.9), x)
    # At 45 dB the quiet burst's edge frames (-44.0, -41.0 dB) count too:
    # [a - 320, b + 240) like the loud one; the faint burst (-50 dB) still not.
    wider = EnergyVAD(threshold_db=45.0)
    np.testing.assert_array_equal(
        cut_to_speech(x, 0.85, vad=wider), np.concatenate([x[1280:9840], x[12480:17520]])
    )
    # 8560 + 5360 = 13920 speech samples (0.87 s) now.
    np.testing.assert_array_equal(
        cut_to_speech(x, 0.87, vad=wider), np.concatenate([x[1280:9840], x[12480:17840]])
    )
    # Another sample rate: the layer's frames are in milliseconds.
    x8k = np.concatenate([np.zeros(4000), tone(8000, 300), np.zeros(4000)]).astype("float32")
    vad8k = EnergyVAD(sample_rate=8000)
    speech, _ = EnergyVAD(sample_rate=8000, max_speech_seconds=0.5)(x8k[None])
    np.testing.assert_array_equal(
        cut_to_speech(x8k, 0.5, sample_rate=8000, vad=vad8k), keras.ops.convert_to_numpy(speech)[0]
    )


def test_utterances_without_enough_speech_are_used_whole():
    silent = np.zeros(32000, "float32")
    np.testing.assert_array_equal(cut_to_speech(silent, 1), silent)
    shorter_than_a_frame = tone(300, 440)
    np.testing.assert_array_equal(cut_to_speech(shorter_than_a_frame, 1), shorter_than_a_frame)
    short_tone = tone(4000, 440)  # all speech, 0.25 s
    np.testing.assert_array_equal(cut_to_speech(short_tone, 0.25), short_tone)
    np.testing.assert_array_equal(cut_to_speech(short_tone, 0.3), short_tone)


def test_cut_bad_input_names_the_problem():
    x = tone(16000, 440)
    with pytest.raises(ValueError, match="non-empty 1-D waveform"):
        cut_to_speech(np.zeros(0, "float32"), 1)
    with pytest.raises(ValueError, match="non-empty 1-D waveform"):
        cut_to_speech(x[None], 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        cut_to_speech(np.where(np.arange(16000) == 5, np.nan, x), 1)
    for bad in (0, -1, float("nan"), "5s", True, [1]):
        with pytest.raises(ValueError, match="`seconds` must be a positive number"):
            cut_to_speech(x, bad)
    with pytest.raises(ValueError, match="less than one sample"):
        cut_to_speech(x, 1e-6)
    with pytest.raises(ValueError, match="8000 Hz but the audio is at sample_rate=16000"):
        cut_to_speech(x, 1, vad=EnergyVAD(sample_rate=8000))
    with pytest.raises(ValueError, match="must not truncate"):
        cut_to_speech(x, 1, vad=EnergyVAD(max_speech_seconds=2))
    with pytest.raises(ValueError, match="`vad` must be a keras_spk.layers.EnergyVAD"):
        cut_to_speech(x, 1, vad="energy")
    with pytest.raises(ValueError, match="sample_rate"):
        cut_to_speech(x, 1, sample_rate=0)


# --------------------------------------------------------------------------
# duration_conditions
# --------------------------------------------------------------------------


def test_duration_conditions_order_and_errors():
    assert duration_conditions() == [
        (5.0, 1.0), (5.0, 2.0), (5.0, 3.0), (5.0, 5.0), (5.0, None),
        (None, 1.0), (None, 2.0), (None, 3.0), (None, 5.0), (None, None),
    ]  # fmt: skip
    assert duration_conditions(["full", 0.5], (2, "FULL")) == [
        (None, 2.0), (None, None), (0.5, 2.0), (0.5, None)
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"`test_durations` holds '5s', which is not a duration"):
        duration_conditions((5, None), (1, "5s"))
    with pytest.raises(ValueError, match=r"`enroll_durations` holds -5"):
        duration_conditions((-5,), (1,))
    with pytest.raises(ValueError, match=r"`test_durations` repeats 5 s"):
        duration_conditions((5,), (5, 5.0))
    with pytest.raises(ValueError, match=r"`test_durations` repeats full"):
        duration_conditions((5,), (None, "full"))
    with pytest.raises(ValueError, match="`enroll_durations` must hold at least one duration"):
        duration_conditions((), (1,))
    with pytest.raises(ValueError, match="`test_durations` must be a list of durations"):
        duration_conditions((5,), 3)


# --------------------------------------------------------------------------
# evaluate_durations on a synthetic set with a hand-computable embedder
# --------------------------------------------------------------------------


class BandEnergies(keras.layers.Layer):
    """Embedding [mean((x[n] - x[n-1])^2), mean((x[n] + x[n-1])^2)]: high- and low-band energy."""

    def call(self, x):
        high = keras.ops.mean(keras.ops.square(x[:, 1:] - x[:, :-1]), axis=1)
        low = keras.ops.mean(keras.ops.square(x[:, 1:] + x[:, :-1]), axis=1)
        return keras.ops.stack([high, low], axis=1)


def band_energies(x):
    x = np.asarray(x, np.float64)
    return np.array([np.mean((x[1:] - x[:-1]) ** 2), np.mean((x[1:] + x[:-1]) ** 2)])


def band_embedder():
    waveforms = keras.Input((None,))
    return keras.Model(waveforms, BandEnergies()(waveforms))


SPEAKER_TONES = (500, 1300, 2600, 4200)


def synthetic_set(seed=0, utterances_per_speaker=3):
    """Utterances: the speaker's tone (1 s), a random other tone (1.5 s), the speaker's tone again.

    Every third utterance stops after the first tone, so it holds 1.035 s of
    speech (16000 + 560 samples) and is used whole in the 2-s conditions.
    Returns `(Trials over all pairs, waveforms, spans)` in `utterances` order.
    """
    rng = np.random.default_rng(seed)
    gap = lambda: (None, 160 * int(rng.integers(6, 20)), 0)  # noqa: E731  (>= 960 samples of silence)
    names, waveforms, spans = [], [], []
    for s, frequency in enumerate(SPEAKER_TONES):
        for u in range(utterances_per_speaker):
            segments = [gap(), (frequency, 16000, rng.uniform(0.2, 0.8)), gap()]
            if u % 3 != 2:
                distractor = float(rng.uniform(300, 6000))
                segments += [(distractor, 24000, rng.uniform(0.2, 0.8)), gap()]
                segments += [(frequency, 8000, rng.uniform(0.2, 0.8)), gap()]
            x, utterance_spans = build(segments)
            names.append(f"spk{s}/utt{u}.wav")
            waveforms.append(x)
            spans.append(utterance_spans)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    trials = Trials(
        enroll=[names[i] for i, _ in pairs],
        test=[names[j] for _, j in pairs],
        labels=np.array([int(names[i][:4] == names[j][:4]) for i, j in pairs], np.int64),
        root="/nonexistent",
        files={n: os.path.join("/nonexistent", n) for n in names},
    )
    assert trials.utterances == names  # sorted already, so the lists line up
    return trials, waveforms, spans


def expected_rows(trials, waveforms, spans, enroll_durations, test_durations):
    """The table computed directly: hand cuts, NumPy embeddings and cosines, keras_spk.metrics."""
    enroll_index, test_index = trials.indices()
    rows = {}
    for e in enroll_durations:
        for t in test_durations:
            cut = lambda i, d: expected_cut(waveforms[i], spans[i], d)  # noqa: E731
            a = np.stack([band_energies(cut(i, e)) for i in enroll_index])
            b = np.stack([band_energies(cut(j, t)) for j in test_index])
            scores = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            rows[(e, t)] = verification_metrics(scores, trials.labels)
            enroll_side, test_side = sorted(set(enroll_index)), sorted(set(test_index))
            speech = [sum(q - p for p, q in spans[i]) for i in range(len(waveforms))]
            rows[(e, t)]["enroll_short"] = sum(e is not None and speech[i] < e * SR for i in enroll_side)
            rows[(e, t)]["test_short"] = sum(t is not None and speech[i] < t * SR for i in test_side)
            rows[(e, t)]["test_mean_seconds"] = np.mean([cut(i, t).shape[0] / SR for i in test_side])
    return rows


def test_duration_table_matches_a_direct_computation():
    trials, waveforms, spans = synthetic_set()
    enroll_durations, test_durations = (1, None), (0.5, 1, 2, None)
    rows = evaluate_durations(
        band_embedder(), trials, enroll_durations, test_durations, waveforms=waveforms
    )
    want = expected_rows(trials, waveforms, spans, (1.0, None), (0.5, 1.0, 2.0, None))
    assert [(r["enroll"], r["test"]) for r in rows] == [
        ("1 s", "0.5 s"), ("1 s", "1 s"), ("1 s", "2 s"), ("1 s", "full"),
        ("full", "0.5 s"), ("full", "1 s"), ("full", "2 s"), ("full", "full"),
    ]  # fmt: skip
    # The conditions really differ here, so a swapped cell would show.
    assert len({round(w["eer"], 9) for w in want.values()}) >= 4
    for row in rows:
        w = want[(row["enroll_seconds"], row["test_seconds"])]
        assert row["trials"] == 66
        for key in ("eer", "min_dcf_0.01", "min_dcf_0.05", "test_mean_seconds"):
            np.testing.assert_allclose(row[key], w[key], rtol=0, atol=1e-9, err_msg=f"{key} of {row}")
        assert (row["enroll_short"], row["test_short"]) == (w["enroll_short"], w["test_short"])
    # Every third utterance holds 1.035 s of speech: short for 2 s, not for 1 s;
    # the test side holds utterances 1..11, of which 2, 5, 8 and 11 are short.
    by = {(r["enroll"], r["test"]): r for r in rows}
    assert by[("full", "2 s")]["test_short"] == 4 and by[("full", "1 s")]["test_short"] == 0
    assert by[("1 s", "full")]["enroll_short"] == 0 and by[("1 s", "full")]["test_short"] == 0
    assert by[("full", "1 s")]["test_mean_seconds"] == 1.0
    assert by[("full", "full")]["enroll_mean_seconds"] == np.mean([w.shape[0] / SR for w in waveforms[:-1]])


def test_paper_default_conditions_and_a_callable_embedder():
    trials, waveforms, spans = synthetic_set(seed=1, utterances_per_speaker=2)
    by_name = dict(zip(trials.utterances, waveforms))
    embedder = lambda x: band_energies(x[0])[None]  # noqa: E731  (a callable, not a model)
    rows = evaluate_durations(embedder, trials, waveforms=by_name, p_targets=(0.05,))
    assert [(r["enroll"], r["test"]) for r in rows] == [
        (e, t) for e in ("5 s", "full") for t in ("1 s", "2 s", "3 s", "5 s", "full")
    ]
    want = expected_rows(trials, waveforms, spans, (5.0, None), (1.0, 2.0, 3.0, 5.0, None))
    for row in rows:
        w = want[(row["enroll_seconds"], row["test_seconds"])]
        got = [row["eer"], row["min_dcf_0.05"]]
        np.testing.assert_allclose(got, [w["eer"], w["min_dcf_0.05"]], rtol=0, atol=1e-9)
        assert "min_dcf_0.01" not in row
    # No utterance holds 5 s of speech (at most 2.5 s + 3 * 560 samples), so
    # "5 s" is the whole utterance everywhere and equals "full".
    by = {(r["enroll"], r["test"]): r for r in rows}
    assert by[("5 s", "5 s")]["eer"] == by[("full", "full")]["eer"]
    assert by[("5 s", "1 s")]["enroll_short"] == 7  # utterances 0..6 enrol


def test_full_embeddings_already_computed_are_not_computed_again():
    from keras_spk.inference import embed_waveforms
    from keras_spk.inference import embedding_function

    trials, waveforms, _ = synthetic_set()
    embed = embedding_function(band_embedder())
    lengths_seen = []

    def counting(x):
        lengths_seen.append(x.shape[1])
        return embed(x)

    conditions = ((1, None), (0.5, 1, 2, None))
    without = evaluate_durations(counting, trials, *conditions, waveforms=waveforms)
    # Utterances 0..10 enrol, 1..11 are tested (all pairs i < j): utterance 0
    # needs 1 s and full, the others 0.5, 1, 2 s and full.
    assert len(lengths_seen) == 1 * 2 + 11 * 4
    full = embed_waveforms(embed, waveforms)  # in trials.utterances order
    for given in (full, dict(zip(trials.utterances, full))):
        lengths_seen.clear()
        rows = evaluate_durations(counting, trials, *conditions, waveforms=waveforms, full_embeddings=given)
        assert len(lengths_seen) == 1 + 11 * 3  # the cuts only
        assert rows == without
    # Only what the full-length conditions use is needed: utterance 11 is
    # only ever tested, and here only at 0.5 s.
    partial = dict(zip(trials.utterances[:11], full[:11]))
    rows = evaluate_durations(counting, trials, (1, None), (0.5,), waveforms=waveforms, full_embeddings=partial)
    assert rows == [r for r in without if r["test"] == "0.5 s"]

    def bad(given, match, **kwargs):
        with pytest.raises(ValueError, match=match):
            evaluate_durations(counting, trials, *conditions, waveforms=waveforms, full_embeddings=given)

    bad(full[1:], r"one row per trial utterance, in `trials.utterances` order \(12 rows\)")
    bad(partial, r"no embedding for 1 trial utterance\(s\) scored at full length: 'spk3/utt2.wav'")
    bad(np.concatenate([full, full], axis=1), r"spk0/utt0.wav: the model gives embeddings of size 2, but "
        r"`full_embeddings` are of size 4")  # fmt: skip
    broken = full.copy()
    broken[5] = np.nan
    bad(broken, r"spk1/utt2.wav: its full-length embedding in `full_embeddings` holds NaN")


def test_files_are_read_when_no_waveforms_are_given(tmp_path):
    trials, waveforms, _ = synthetic_set(seed=2, utterances_per_speaker=1)
    lines = []
    for name, x in zip(trials.utterances, waveforms):
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        write_wav(str(tmp_path / name), x, SR)
    for e, t, label in zip(trials.enroll, trials.test, trials.labels):
        lines.append(f"{label} {e} {t}")
    # One utterance per speaker gives no target trial: add two same-file trials.
    lines += [f"1 {n} {n}" for n in trials.utterances[:2]]
    (tmp_path / "trials.txt").write_text("\n".join(lines) + "\n")
    on_disk = read_trials(tmp_path / "trials.txt", tmp_path)
    model = band_embedder()
    from_files = evaluate_durations(model, on_disk, (1, None), (0.5, None))
    in_memory = evaluate_durations(
        model, on_disk, (1, None), (0.5, None), waveforms=[read_audio(p) for p in on_disk.paths]
    )
    assert from_files == in_memory
    os.remove(on_disk.paths[1])
    with pytest.raises(FileNotFoundError, match="spk1/utt0.wav"):
        evaluate_durations(model, on_disk, (1, None), (0.5, None))


def test_evaluate_durations_bad_input_names_the_problem():
    trials, waveforms, _ = synthetic_set(seed=3, utterances_per_speaker=2)
    model = band_embedder()
    with pytest.raises(ValueError, match="`test_durations` holds 'short'"):
        evaluate_durations(model, trials, test_durations=(1, "short"), waveforms=waveforms)
    with pytest.raises(ValueError, match="`enroll_durations` asks for 1e-05 s, less than one sample"):
        evaluate_durations(model, trials, enroll_durations=(1e-5,), waveforms=waveforms)
    empty = list(waveforms)
    empty[3] = np.zeros(0, "float32")
    with pytest.raises(ValueError, match=r"spk1/utt1.wav: expected a non-empty 1-D waveform"):
        evaluate_durations(model, trials, waveforms=empty)
    with pytest.raises(ValueError, match="one waveform per trial utterance"):
        evaluate_durations(model, trials, waveforms=waveforms[:-1])
    with pytest.raises(ValueError, match="no waveform for 1 trial utterance"):
        evaluate_durations(model, trials, waveforms=dict(list(zip(trials.utterances, waveforms))[1:]))
    with pytest.raises(ValueError, match=r"spk0/utt1.wav \(0.5 s\): 8000 samples .* minimum of 10000"):
        evaluate_durations(model, trials, (1,), (0.5,), waveforms=waveforms, min_samples=10000)
    zeros = np.zeros(len(trials), np.int64)
    no_targets = Trials(trials.enroll, trials.test, zeros, trials.root, trials.files)
    with pytest.raises(ValueError, match=r"target \(1\) and non-target \(0\) trials"):
        evaluate_durations(model, no_targets, waveforms=waveforms)
    with pytest.raises(ValueError, match="p_targets"):
        evaluate_durations(model, trials, waveforms=waveforms, p_targets=(0.0,))


# --------------------------------------------------------------------------
# format_duration_table and write_duration_results
# --------------------------------------------------------------------------

ROWS = [
    {"enroll": "5 s", "test": "1 s", "eer": 0.0625, "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.25},
    {"enroll": "5 s", "test": "full", "eer": 0.0235, "min_dcf_0.01": 0.1234567, "min_dcf_0.05": 0.05},
    {"enroll": "full", "test": "1 s", "eer": 0.1, "min_dcf_0.01": 1.0, "min_dcf_0.05": 0.75},
]


def test_format_duration_table_is_the_papers_layout():
    assert format_duration_table(ROWS, metric="eer") == "\n".join(
        [
            "EER (%)",
            "enrolment \\ test    1 s  full",
            "-" * 29,  # 16 + 2 + 5 + 2 + 4: the corner, then columns as wide as "10.00" and "full"
            "5 s                6.25  2.35",
            "full              10.00     -",
        ]
    )
    assert format_duration_table(ROWS, metric="min_dcf_0.01").splitlines() == [
        "minDCF (p_target=0.01)",
        "enrolment \\ test     1 s    full",
        "-" * 32,  # 16 + 2 + 6 + 2 + 6
        "5 s               0.5000  0.1235",
        "full              1.0000       -",
    ]
    everything = format_duration_table(ROWS)
    assert everything.split("\n\n") == [
        format_duration_table(ROWS, metric=m) for m in ("eer", "min_dcf_0.01", "min_dcf_0.05")
    ]
    available = r"`metric` must be one of \['eer', 'min_dcf_0.01', 'min_dcf_0.05'\]"
    with pytest.raises(ValueError, match=available):
        format_duration_table(ROWS, metric="min_dcf_0.1")
    with pytest.raises(ValueError, match="at least one result row"):
        format_duration_table([])
    with pytest.raises(ValueError, match="'enroll' and 'test' labels"):
        format_duration_table([{"eer": 0.1}])


def test_write_duration_results(tmp_path):
    rows = [dict(r, enroll_seconds=5.0 if r["enroll"] == "5 s" else None) for r in ROWS]
    folder = tmp_path / "results"
    written = write_duration_results(rows, folder, metadata={"system": "toy"})
    assert sorted(os.listdir(folder)) == ["duration.csv", "duration.json", "duration_table.txt"]
    assert sorted(written) == sorted(str(folder / n) for n in os.listdir(folder))
    assert (folder / "duration_table.txt").read_text() == format_duration_table(rows) + "\n"
    document = json.loads((folder / "duration.json").read_text())
    assert document == {"system": "toy", "results": rows}
    with open(folder / "duration.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["enroll"], r["test"], r["enroll_seconds"]) for r in table] == [
        ("5 s", "1 s", "5.0"), ("5 s", "full", "5.0"), ("full", "1 s", "")
    ]  # fmt: skip
    assert float(table[1]["min_dcf_0.01"]) == 0.1234567
    with pytest.raises(ValueError, match="without a 'results' key"):
        write_duration_results(rows, folder, metadata={"results": 1})
    with pytest.raises(ValueError, match="at least one result row"):
        write_duration_results([], tmp_path / "other")
    assert not (tmp_path / "other").exists() or not os.listdir(tmp_path / "other")
