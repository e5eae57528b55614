"""Tests for the synthetic demo corpus generator."""

import filecmp
import hashlib
import json
import os
import pathlib
import wave

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from keras_spk.data import demo_corpus
from keras_spk.data import speech_synthesis
from keras_spk.metrics import eer

TINY = dict(
    num_train_speakers=6,
    num_train_utterances=3,
    num_test_speakers=6,
    num_test_utterances=3,
    videos_per_speaker=2,
    min_duration=1.0,
    max_duration=1.5,
)
# Enough speakers and trials for the EER checks, still a few seconds to build.
SMALL = dict(
    num_train_speakers=16,
    num_train_utterances=8,
    num_test_speakers=8,
    num_test_utterances=6,
    min_duration=1.5,
    max_duration=2.5,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "corpus"
    return pathlib.Path(demo_corpus.make_demo_corpus(root, seed=0, **TINY))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small") / "corpus"
    return pathlib.Path(demo_corpus.make_demo_corpus(root, seed=0, **SMALL))


# ---------------------------------------------------------------------------
# Helpers: reading, a log-mel front end and a trained LDA baseline.
# ---------------------------------------------------------------------------


def _read_wav(path):
    with wave.open(str(path)) as f:
        params = (f.getnchannels(), f.getsampwidth(), f.getframerate())
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return params, pcm


def _wav_files(root):
    return sorted(p for p in root.rglob("*.wav"))


def _speakers(root, split):
    return {p.name for p in (root / split).iterdir() if p.is_dir()}


def _read_trials(root):
    with open(root / "trials.txt") as f:
        return [line.split() for line in f]


def _mel_filterbank(num_mels=40, n_fft=512, sample_rate=16000):
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def from_mel(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = from_mel(np.linspace(to_mel(20.0), to_mel(7600.0), num_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fb = np.zeros((num_mels, bins.size))
    for i in range(num_mels):
        lo, centre, hi = edges[i : i + 3]
        rising = (bins - lo) / (centre - lo)
        falling = (hi - bins) / (hi - centre)
        fb[i] = np.clip(np.minimum(rising, falling), 0.0, None)
    return fb


_FILTERBANK = _mel_filterbank()


def _log_mel(x):
    """25 ms frames every 10 ms, 40 log-mel energies per frame."""
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160] * np.hamming(400)
    power = np.abs(np.fft.rfft(frames, 512)) ** 2
    return np.log(power @ _FILTERBANK.T + 1e-8)


def _utterance_features(path):
    """Mean and standard deviation of the log-mel frames (80 dims)."""
    _, pcm = _read_wav(path)
    feats = _log_mel(pcm / 32768.0)
    return np.concatenate([feats.mean(axis=0), feats.std(axis=0)])


def _split_features(root, split):
    paths = [p.relative_to(root / split).as_posix() for p in _wav_files(root / split)]
    feats = np.stack([_utterance_features(root / split / p) for p in paths])
    return paths, feats


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _baseline_eers(root):
    """EERs of random embeddings, raw log-mel cosine and LDA + cosine."""
    train_paths, train_x = _split_features(root, "train")
    test_paths, test_x = _split_features(root, "test")
    index = {p: i for i, p in enumerate(test_paths)}
    trials = _read_trials(root)
    labels = np.array([int(t[0]) for t in trials])
    a = np.array([index[t[1]] for t in trials])
    b = np.array([index[t[2]] for t in trials])

    rand = np.random.default_rng(0).normal(size=(len(test_paths), 64))
    num_mels = test_x.shape[1] // 2
    raw = test_x[:, :num_mels]  # untrained: mean log-mel only
    train_speakers = [p.split("/")[0] for p in train_paths]
    lda = LinearDiscriminantAnalysis(n_components=len(set(train_speakers)) - 1)
    lda.fit(train_x, train_speakers)
    z = lda.transform(test_x)
    return {
        "random": eer(_cosine(rand[a], rand[b]), labels),
        "raw": eer(_cosine(raw[a], raw[b]), labels),
        "lda": eer(_cosine(z[a], z[b]), labels),
    }


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def _relative_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_identical_bytes(tiny, tmp_path):
    again = pathlib.Path(demo_corpus.make_demo_corpus(tmp_path / "again", seed=0, **TINY))
    files = _relative_files(tiny)
    assert files == _relative_files(again)
    _, mismatch, errors = filecmp.cmpfiles(tiny, again, files, shallow=False)
    assert mismatch == [] and errors == []


def _corpus_digest(root):
    """SHA-256 over every file's relative path and SHA-256, in path order."""
    digest = hashlib.sha256()
    for name in _relative_files(root):
        digest.update(f"{name} {hashlib.sha256((root / name).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


# Digest of the TINY corpus of seed 0 as generator version 2 writes it (its
# 36 WAV files, trials.txt and corpus.json), recorded when the synthesiser
# moved to keras_spk.data.speech_synthesis without changing a byte.
TINY_DIGEST = (2, "b4f5235f58000c2424662487d1beb85a531a19545fcf7679c25e3e0381d928c4")


def test_corpus_bytes_are_those_of_its_generator_version(tiny):
    # Cached corpora are reused while GENERATOR_VERSION is unchanged, so any
    # change to the audio or layout must come with a new version.
    assert len(_relative_files(tiny)) == 38
    assert (demo_corpus.GENERATOR_VERSION, _corpus_digest(tiny)) == TINY_DIGEST, (
        "The demo corpus changed: bump GENERATOR_VERSION and record the new digest."
    )


def test_different_seed_gives_different_corpus(tiny, tmp_path):
    other = pathlib.Path(demo_corpus.make_demo_corpus(tmp_path / "other", seed=1, **TINY))
    assert (tiny / "trials.txt").read_bytes() != (other / "trials.txt").read_bytes()
    a = b"".join(p.read_bytes() for p in _wav_files(tiny))
    b = b"".join(p.read_bytes() for p in _wav_files(other))
    assert a != b


# ---------------------------------------------------------------------------
# Layout and trials
# ---------------------------------------------------------------------------


def test_layout(tiny):
    train, test = _speakers(tiny, "train"), _speakers(tiny, "test")
    assert len(train) == TINY["num_train_speakers"]
    assert len(test) == TINY["num_test_speakers"]
    assert not train & test
    for spk in train | test:
        assert spk.startswith("id") and len(spk) == 7 and spk[2:].isdigit()
    for split, n_utt in (("train", "num_train_utterances"), ("test", "num_test_utterances")):
        for spk_dir in (tiny / split).iterdir():
            videos = [v for v in spk_dir.iterdir() if v.is_dir()]
            assert len(videos) == TINY["videos_per_speaker"]
            assert all(len(v.name) == 11 for v in videos)
            wavs = list(spk_dir.rglob("*.wav"))
            assert len(wavs) == TINY[n_utt]
            for w in wavs:
                assert len(w.stem) == 5 and w.stem.isdigit()
    info = json.loads((tiny / "corpus.json").read_text())
    assert info["version"] == demo_corpus.GENERATOR_VERSION
    assert info["seed"] == 0
    assert info["num_train_speakers"] == TINY["num_train_speakers"]
    assert not list(tiny.parent.glob("*.tmp-*"))


def test_trials(tiny):
    trials = _read_trials(tiny)
    assert all(len(t) == 3 and t[0] in ("0", "1") for t in trials)
    for _, a, b in trials:
        assert (tiny / "test" / a).is_file()
        assert (tiny / "test" / b).is_file()
        assert a != b
    # Labels are correct and balanced.
    for label, a, b in trials:
        assert (label == "1") == (a.split("/")[0] == b.split("/")[0])
    num_target = sum(t[0] == "1" for t in trials)
    assert num_target == len(trials) - num_target
    # Every same-speaker pair appears exactly once, with no duplicates.
    pairs = [frozenset(t[1:]) for t in trials]
    assert len(set(pairs)) == len(pairs)
    per_speaker = TINY["num_test_utterances"]
    expected = TINY["num_test_speakers"] * per_speaker * (per_speaker - 1) // 2
    assert num_target == expected
    # Shuffled: not all targets first.
    assert [t[0] for t in trials] != sorted((t[0] for t in trials), reverse=True)


# ---------------------------------------------------------------------------
# Audio format and content
# ---------------------------------------------------------------------------


def test_wav_format(tiny):
    lo = TINY["min_duration"] * 16000
    hi = TINY["max_duration"] * 16000
    for path in _wav_files(tiny):
        params, pcm = _read_wav(path)
        assert params == (1, 2, 16000)
        assert lo - 1 <= pcm.size <= hi + 1
        x = pcm.astype(np.float64) / 32768.0
        assert np.all(np.isfinite(x))
        peak = np.max(np.abs(x))
        # Peak-normalised well below full scale, never clipped.
        assert 0.29 <= peak <= 0.71
        assert np.sqrt(np.mean(x**2)) > 0.01


def test_leading_and_trailing_silence(tiny):
    for path in _wav_files(tiny):
        _, pcm = _read_wav(path)
        x = pcm.astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(x, 1600)[::400]  # 100 ms
        rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-9
        loudest = rms.max()
        # The first and last 100 ms hold only the noise floor.
        assert 20 * np.log10(loudest / rms[0]) > 10.0
        assert 20 * np.log10(loudest / rms[-1]) > 10.0


# ---------------------------------------------------------------------------
# Learnability
# ---------------------------------------------------------------------------


def test_baselines_on_small_corpus(small):
    eers = _baseline_eers(small)
    # Random embeddings: chance level.
    assert 0.4 <= eers["random"] <= 0.6
    # A speaker-trained projection beats chance by far and clearly beats
    # the untrained features (content and channel must be ignored).
    assert eers["lda"] < 0.3
    assert eers["lda"] < eers["raw"] - 0.08


@pytest.mark.slow
def test_default_corpus(tmp_path):
    import time

    start = time.perf_counter()
    root = pathlib.Path(demo_corpus.make_demo_corpus(tmp_path / "demo", seed=0))
    elapsed = time.perf_counter() - start
    assert elapsed < 60.0
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 100e6
    eers = _baseline_eers(root)
    assert 0.4 <= eers["random"] <= 0.6
    assert eers["lda"] < 0.15
    assert eers["raw"] > eers["lda"] + 0.15


# ---------------------------------------------------------------------------
# Atomic writes, caching and argument checks
# ---------------------------------------------------------------------------


def test_existing_directory_requires_force(tiny, tmp_path):
    with pytest.raises(FileExistsError, match="already exists"):
        demo_corpus.make_demo_corpus(tiny, seed=0, **TINY)


def test_force_replaces_demo_corpus_only(tmp_path):
    out = tmp_path / "demo"
    demo_corpus.make_demo_corpus(out, seed=0, **TINY)
    demo_corpus.make_demo_corpus(out, seed=5, force=True, **TINY)
    assert json.loads((out / "corpus.json").read_text())["seed"] == 5
    assert not list(tmp_path.glob("demo.*"))

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a keras_spk demo corpus"):
        demo_corpus.make_demo_corpus(user, seed=0, force=True, **TINY)
    assert (user / "notes.txt").read_text() == "keep me"


def test_empty_directory_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    demo_corpus.make_demo_corpus(out, seed=0, **TINY)
    assert (out / "corpus.json").is_file()


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(speech_synthesis, "render_utterance", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        demo_corpus.make_demo_corpus(tmp_path / "demo", seed=0, **TINY)
    assert list(tmp_path.iterdir()) == []


def test_ensure_reuses_and_regenerates(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    path = demo_corpus.ensure_demo_corpus(out, seed=0, **TINY)
    assert path == str(out.absolute())
    stamp = (out / "trials.txt").stat().st_mtime_ns

    # Same settings: reused without rebuilding.
    def fail(*args, **kwargs):
        raise AssertionError("should not rebuild")

    with monkeypatch.context() as m:
        m.setattr(demo_corpus, "_build", fail)
        assert demo_corpus.ensure_demo_corpus(out, seed=0, **TINY) == path
    assert (out / "trials.txt").stat().st_mtime_ns == stamp

    # Other seed: the (generated) corpus is replaced.
    demo_corpus.ensure_demo_corpus(out, seed=2, **TINY)
    assert json.loads((out / "corpus.json").read_text())["seed"] == 2

    # Older generator version: rebuilt.
    info = json.loads((out / "corpus.json").read_text())
    info["version"] = -1
    (out / "corpus.json").write_text(json.dumps(info))
    demo_corpus.ensure_demo_corpus(out, seed=2, **TINY)
    assert json.loads((out / "corpus.json").read_text())["version"] == (
        demo_corpus.GENERATOR_VERSION
    )


def test_ensure_refuses_foreign_directory(tmp_path):
    out = tmp_path / "data"
    (out / "train").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a keras_spk demo corpus"):
        demo_corpus.ensure_demo_corpus(out, seed=0, **TINY)
    assert (out / "train").is_dir()


def test_default_demo_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_SPK_DEMO_DIR", str(tmp_path / "x"))
    assert demo_corpus.default_demo_dir() == str(tmp_path / "x")
    monkeypatch.delenv("KERAS_SPK_DEMO_DIR")
    expected = os.path.join(os.path.expanduser("~"), ".cache", "keras_spk", "demo")
    assert demo_corpus.default_demo_dir() == expected


def test_ensure_uses_default_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_SPK_DEMO_DIR", str(tmp_path / "cache"))
    path = demo_corpus.ensure_demo_corpus(seed=0, **TINY)
    assert path == str(tmp_path / "cache")
    assert (tmp_path / "cache" / "trials.txt").is_file()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(num_train_speakers=0), "num_train_speakers"),
        (dict(num_test_speakers=1), "num_test_speakers"),
        (dict(num_test_utterances=1), "num_test_utterances"),
        (dict(min_duration=3.0, max_duration=2.0), "min_duration"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        demo_corpus.make_demo_corpus(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


def test_ensure_rejects_unknown_option(tmp_path):
    with pytest.raises(ValueError, match="num_speakers"):
        demo_corpus.ensure_demo_corpus(tmp_path / "demo", num_speakers=3)


def test_synthesize_utterance_matches_corpus_file(tiny):
    # Any corpus file can be regenerated on its own from the seed.
    config = {**demo_corpus._DEFAULTS, **TINY}
    item = demo_corpus._plan(0, config)[-1]
    x = speech_synthesis.synthesize_utterance(
        seed=0,
        speaker=item["speaker_index"],
        session=item["session"],
        utterance=item["utterance"],
        duration=item["duration"],
    )
    _, pcm = _read_wav(tiny / item["split"] / item["path"])
    # write_wav quantises as round(x * 2**15), clipped to the int16 range.
    expected = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(expected, pcm)
