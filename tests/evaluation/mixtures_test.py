"""Mixture verification (Han et al. 2020, section 4.1.2): triples, min-distance scores, EER."""

import os

import numpy as np
import pytest

from keras_spk.evaluation import mixtures

RATE = 8000
SEGMENT = 1600  # 0.2 s: 5-Hz FFT bins
# Speaker k is a tone of TONES[k] Hz (a whole number of cycles in any SEGMENT window).
TONES = [250.0 * (k + 1) for k in range(8)]


def tone(speaker, length, rng):
    t = np.arange(length) / RATE
    gain = rng.uniform(0.05, 0.4)
    return gain * np.sin(2 * np.pi * TONES[speaker] * t + rng.uniform(0, 2 * np.pi)) + 0.002 * rng.normal(
        size=length
    )


def write_tone_corpus(root, speakers, utterances, seed=0, prefix="spk", lengths=(2000, 3000)):
    """`<root>/<prefix><k>/v0/<u>.wav`: `utterances` tones of speaker k for each k in `speakers`.

    Returns:
        `keras_spk.data.UtteranceList` of the folder (voxceleb layout).
    """
    from keras_spk.data import read_dataset
    from keras_spk.data import write_wav

    rng = np.random.default_rng(seed)
    for k in speakers:
        folder = os.path.join(root, f"{prefix}{k}", "v0")
        os.makedirs(folder, exist_ok=True)
        for u in range(utterances):
            length = int(rng.integers(lengths[0], lengths[1] + 1))
            write_wav(os.path.join(folder, f"{u:02d}.wav"), tone(k, length, rng), RATE)
    return read_dataset("voxceleb", root)


def tone_embedder(x):
    """Oracle: identity k of an input is the one-hot of its k-th strongest speaker tone.

    `[batch, samples] -> [batch, 2, len(TONES)]`; a single-speaker input gives
    its speaker twice (the second tone is far below the first).
    """
    x = np.asarray(x, dtype="float64")
    spectrum = np.abs(np.fft.rfft(x, axis=-1))
    bins = [int(round(f * x.shape[1] / RATE)) for f in TONES]
    power = spectrum[:, bins]
    order = np.argsort(-power, axis=1)
    first, second = order[:, 0], order[:, 1]
    rows = np.arange(len(x))
    second = np.where(power[rows, second] > 0.1 * power[rows, first], second, first)
    out = np.zeros((len(x), 2, len(TONES)), "float32")
    out[rows, 0, first] = 1.0
    out[rows, 1, second] = 1.0
    return out


def constant_embedder():
    """A Keras model giving the same two identities for every input."""
    import keras

    waveforms = keras.Input((SEGMENT,))
    x = keras.layers.Dense(6, kernel_initializer="zeros", bias_initializer="ones")(waveforms)
    return keras.Model(waveforms, keras.layers.Reshape((2, 3))(x))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tone_corpus(str(tmp_path_factory.mktemp("tones")), range(6), 3)


# === min_distance_scores ===


def test_min_distance_is_the_closest_identity_pair_on_unit_vectors():
    anchors = np.array(
        [
            [[1.0, 0.0], [0.0, 1.0]],
            [[2.0, 0.0], [0.0, -5.0]],
        ]
    )
    others = np.array(
        [
            [[0.0, 3.0], [-1.0, 0.0]],  # the second identity shares a direction: distance 0
            [[0.0, 1.0], [-1.0, 0.0]],  # closest pairs at 90 degrees: sqrt(2)
        ]
    )
    np.testing.assert_allclose(mixtures.min_distance_scores(anchors, others), [0.0, -np.sqrt(2)], atol=1e-12)
    # 2-D inputs are one identity: (1, 0) against (1, 1) / sqrt(2) is sqrt(2 - sqrt(2)) apart.
    score = mixtures.min_distance_scores(np.array([[3.0, 0.0]]), np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(score, [-np.sqrt(2 - np.sqrt(2))], atol=1e-12)
    # K1 = 2 against K2 = 1, and symmetric.
    a, o = anchors[:1], np.array([[[1.0, 1.0]]])
    np.testing.assert_allclose(
        mixtures.min_distance_scores(a, o), mixtures.min_distance_scores(o, a), atol=1e-12
    )
    np.testing.assert_allclose(mixtures.min_distance_scores(a, o), [-np.sqrt(2 - np.sqrt(2))], atol=1e-12)


def test_min_distance_checks_its_inputs():
    with pytest.raises(ValueError, match=r"`anchors` must be embeddings \[N, K, dim\]"):
        mixtures.min_distance_scores(np.zeros(3), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="as many rows and embeddings of one size"):
        mixtures.min_distance_scores(np.ones((2, 2, 4)), np.ones((3, 2, 4)))
    with pytest.raises(ValueError, match="as many rows and embeddings of one size"):
        mixtures.min_distance_scores(np.ones((2, 2, 4)), np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match="`others` holds NaN or Inf"):
        mixtures.min_distance_scores(np.ones((1, 4)), np.full((1, 4), np.nan))


# === mixture_triples ===


def check_triples(triples, speakers):
    speakers = np.asarray(speakers)
    for a, b, a2, c, c2, d in triples:
        assert len({speakers[a], speakers[b], speakers[c], speakers[d]}) == 4
        assert a != a2 and speakers[a2] == speakers[a]
        assert c != c2 and speakers[c2] == speakers[c]


def test_triples_follow_the_speaker_constraints_and_the_seed():
    # 7 speakers; s5 and s6 have one utterance each, so they are only ever B or D.
    speakers = [f"s{k}" for k in range(5) for _ in range(3)] + ["s5", "s6"]
    triples = mixtures.mixture_triples(speakers, 300, seed=3)
    assert triples.shape == (300, 6) and triples.dtype == np.int64
    check_triples(triples, speakers)
    single = {15, 16}
    assert not single & set(triples[:, [0, 2, 3, 4]].ravel())
    assert single & set(triples[:, [1, 5]].ravel())
    assert len({tuple(t) for t in triples}) == 300  # enough distinct triples exist
    np.testing.assert_array_equal(triples, mixtures.mixture_triples(speakers, 300, seed=3))
    assert not np.array_equal(triples, mixtures.mixture_triples(speakers, 300, seed=4))
    # The first triples do not depend on how many are drawn.
    np.testing.assert_array_equal(triples[:10], mixtures.mixture_triples(speakers, 10, seed=3))


def test_triples_repeat_only_when_the_data_has_too_few():
    # 4 speakers of 2 utterances: (A, C) in 12 orders, (B, D) the other two in 2, and 2 ways
    # each for (A, A'), (C, C'), B and D: 384 triples.
    speakers = ["a", "a", "b", "b", "c", "c", "d", "d"]
    triples = mixtures.mixture_triples(speakers, 50, seed=0)
    check_triples(triples, speakers)
    assert len({tuple(t) for t in triples}) == 50
    # One speaker with two utterances less: A, C from 2 speakers, B, D from the 2 others.
    speakers = ["a", "a", "b", "b", "c", "d"]
    triples = mixtures.mixture_triples(speakers, 40, seed=0)
    check_triples(triples, speakers)
    assert len({tuple(t) for t in triples}) == 2 * 2 * 2 * 2  # every triple there is, then repeats


def test_triples_errors_say_how_many_there_are_and_what_is_needed():
    with pytest.raises(ValueError, match=r"at least 4 speakers.*Received: utterances of 3 speaker\(s\)"):
        mixtures.mixture_triples(["a", "a", "b", "b", "c", "c"], 5)
    with pytest.raises(
        ValueError, match=r"at least 2 speakers with 2 or more utterances.*Received: 1 such speaker\(s\) among 5"
    ):
        mixtures.mixture_triples(["a", "a", "b", "c", "d", "e"], 5)
    with pytest.raises(ValueError, match="`num_trials` must be a positive integer"):
        mixtures.mixture_triples(["a", "a", "b", "b", "c", "d"], 0)
    with pytest.raises(ValueError, match="non-empty 1-D list"):
        mixtures.mixture_triples([], 5)


# === Segments and levels ===


def test_segments_crop_long_utterances_and_repeat_short_ones_deterministically():
    waveform = np.arange(100.0)
    segment = mixtures.mixture_segment(waveform, 30, seed=[1, 2])
    start = int(segment[0])
    np.testing.assert_array_equal(segment, np.arange(start, start + 30))
    np.testing.assert_array_equal(segment, mixtures.mixture_segment(waveform, 30, seed=[1, 2]))
    starts = {int(mixtures.mixture_segment(waveform, 30, seed=s)[0]) for s in range(50)}
    assert len(starts) > 10 and max(starts) <= 70
    short = mixtures.mixture_segment(np.arange(7.0), 20, seed=5)
    np.testing.assert_array_equal(short, (short[0] + np.arange(20)) % 7)  # a rotation, repeated
    assert mixtures.mixture_segment(np.arange(7.0), 7, seed=5).tolist() == list(range(7))


def test_second_source_is_brought_to_the_first_ones_level():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(2, 1000)), 7.0 * rng.normal(size=(2, 1000))

    def rms(x):
        return np.sqrt(np.mean(np.square(x), axis=-1))

    mixed = mixtures._mix(first, second, np.array([0.0, 10.0]))
    scaled = mixed - first.astype("float32")
    np.testing.assert_allclose(rms(scaled), rms(first) * np.array([1.0, 10 ** -0.5]), rtol=1e-4)
    np.testing.assert_allclose(scaled / second, scaled[:, :1] / second[:, :1] * np.ones_like(second), rtol=1e-3)
    # A silent source keeps its level.
    silent = mixtures._mix(first[:1], np.zeros((1, 1000)), np.zeros(1))
    np.testing.assert_allclose(silent, first[:1].astype("float32"))


# === mixture_verification ===


def test_oracle_embedder_gives_eer_0_and_constant_embedder_eer_50(corpus):
    rows, scores = mixtures.mixture_verification(
        tone_embedder, corpus, num_trials=20, segment_samples=SEGMENT, sample_rate=RATE, seed=1, batch_size=7
    )
    assert [(r["input"], r["system"]) for r in rows] == [
        ("mixture", "trained embedder"), ("clean", "trained embedder")
    ]
    for row in rows:
        assert row["eer"] == 0.0 and row["n_positive"] == 20 and row["n_negative"] == 20
        assert row["identities"] == 2 and row["segment_samples"] == SEGMENT and row["sir_db"] == [0.0, 0.0]
    labels = scores["labels"]
    assert labels.tolist() == [1] * 20 + [0] * 20
    check_triples(scores["triples"], corpus.speakers)
    for key in ("trained_mixture", "trained_clean"):
        # Targets share a speaker (distance 0), non-targets none (orthogonal one-hots).
        np.testing.assert_allclose(scores[key][:20], 0.0, atol=1e-6)
        np.testing.assert_allclose(scores[key][20:], -np.sqrt(2), atol=1e-6)

    rows, scores = mixtures.mixture_verification(
        constant_embedder(), corpus, num_trials=20, segment_samples=SEGMENT, sample_rate=RATE
    )
    assert [row["eer"] for row in rows] == [0.5, 0.5]
    np.testing.assert_allclose(scores["trained_mixture"], 0.0, atol=1e-6)


def test_reference_rows_and_determinism(corpus):
    from keras_spk.models import feature_statistics_embedder

    reference = feature_statistics_embedder(RATE, num_mel_bins=16)
    kwargs = dict(num_trials=12, segment_samples=SEGMENT, sample_rate=RATE, seed=5, reference=reference)
    rows, scores = mixtures.mixture_verification(tone_embedder, corpus, **kwargs)
    assert [(r["input"], r["system"]) for r in rows] == [
        ("mixture", mixtures.TRAINED_LABEL),
        ("clean", mixtures.TRAINED_LABEL),
        ("mixture", mixtures.REFERENCE_LABEL),
        ("clean", mixtures.REFERENCE_LABEL),
    ]
    assert rows[2]["identities"] == 1 and 0.0 <= rows[2]["eer"] <= 1.0
    assert set(scores) == {
        "labels", "triples", "trained_mixture", "trained_clean", "reference_mixture", "reference_clean"
    }
    again_rows, again = mixtures.mixture_verification(tone_embedder, corpus, **kwargs)
    assert again_rows == rows
    for key in scores:
        np.testing.assert_array_equal(again[key], scores[key])
    # Another seed: other triples.
    _, other = mixtures.mixture_verification(tone_embedder, corpus, **{**kwargs, "seed": 6, "reference": None})
    assert not np.array_equal(other["triples"], scores["triples"])


def test_mixtures_are_the_equal_level_sums_of_the_segments(corpus):
    seen = []

    def recording(x):
        seen.append(np.array(x))
        return tone_embedder(x)

    _, scores = mixtures.mixture_verification(
        recording, (corpus.paths, corpus.speakers), num_trials=3, segment_samples=SEGMENT, sample_rate=RATE,
        batch_size=100,
    )
    mixed = seen[0]
    assert mixed.shape == (9, SEGMENT)  # A+B, A'+C, C'+D of 3 triples
    # Each mixture holds its two speakers' tones at equal level.
    bins = [int(round(f * SEGMENT / RATE)) for f in TONES]
    speaker = {p: int(s[len("spk"):]) for p, s in zip(corpus.paths, corpus.speakers)}
    triples = scores["triples"]
    pairs = np.concatenate([triples[:, [0, 1]], triples[:, [2, 3]], triples[:, [4, 5]]])
    for m, (first, second) in enumerate(pairs):
        power = np.abs(np.fft.rfft(mixed[m]))[bins]
        i, j = speaker[corpus.paths[first]], speaker[corpus.paths[second]]
        assert power[i] == pytest.approx(power[j], rel=0.02)
        assert sorted(np.argsort(-power)[:2]) == sorted([i, j])


def test_errors_name_the_problem(corpus, tmp_path):
    kwargs = dict(num_trials=4, segment_samples=SEGMENT, sample_rate=RATE)
    with pytest.raises(ValueError, match=r"`segment_samples` must be at least the 2000 samples"):
        mixtures.mixture_verification(tone_embedder, corpus, min_samples=2000, **kwargs)
    with pytest.raises(ValueError, match=r"at least 4 speakers"):
        mixtures.mixture_verification(tone_embedder, corpus.select(range(9)), **kwargs)
    with pytest.raises(ValueError, match="sir_db must be two finite numbers"):
        mixtures.mixture_verification(tone_embedder, corpus, sir_db=(3, 1), **kwargs)
    with pytest.raises(ValueError, match=r"must map 4 waveforms \[4, samples\] to embeddings"):
        mixtures.mixture_verification(lambda x: np.ones((1, 3)), corpus, batch_size=4, **kwargs)
    def half_nan(x):
        return np.stack([np.ones((len(x), 3)), np.full((len(x), 3), np.nan)], axis=1)

    message = r"the mixture of .*\.wav and .*\.wav: the embedding of identity \d \(of 2\) holds NaN"
    with pytest.raises(ValueError, match=message):
        mixtures.mixture_verification(half_nan, corpus, **kwargs)
    # A file that is not audio: named.
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    utterances = (list(corpus.paths) + [str(bad)] * 2, list(corpus.speakers) + ["zz", "zz"])
    from keras_spk.data import AudioError

    with pytest.raises(AudioError, match="bad.wav"):
        mixtures.mixture_verification(
            tone_embedder, utterances, num_trials=60, segment_samples=SEGMENT, sample_rate=RATE
        )
