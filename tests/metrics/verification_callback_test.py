"""Tests for keras_spk.metrics.verification_callback (validation EER / minDCF).

Run under both backends: `KERAS_BACKEND=tensorflow` and `KERAS_BACKEND=torch`.

The trial audio is built so that the embedding is known in closed form: an
utterance with "angle" `theta` and level `r` is

    x[n] = r * (cos(theta) + sqrt(2) * sin(theta) * sin(2 pi f n / sr))

with a whole number of sine periods, so `mean(x) = r cos(theta)` and
`std(x) = r sin(theta)`. The embedding model returns `[mean(x), std(x)]`,
whose direction is `theta`: the cosine score of two utterances is
`cos(theta_1 - theta_2)`, and speakers are as separable as their angles.
"""

import math

import keras
import numpy as np
import pytest

from keras_spk import data
from keras_spk import metrics
from keras_spk.metrics import eer
from keras_spk.metrics import min_dcf
from keras_spk.metrics.verification_callback import VerificationCallback
from keras_spk.metrics.verification_callback import cosine_trial_scores

SAMPLE_RATE = 8000
SAMPLES = 800  # 0.1 s
FREQUENCY = 100  # 10 whole periods in SAMPLES


def waveform(theta, r=0.5):
    n = np.arange(SAMPLES)
    sine = np.sin(2 * np.pi * FREQUENCY * n / SAMPLE_RATE)
    return (r * (np.cos(theta) + np.sqrt(2) * np.sin(theta) * sine)).astype(np.float32)


def numpy_embedding(x):
    x = np.asarray(x, np.float64).reshape(-1)
    mean = x.mean()
    return np.array([mean, np.sqrt(np.mean((x - mean) ** 2))])


def numpy_cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class MomentEmbedding(keras.layers.Layer):
    """[batch, samples] -> [batch, 2]: mean and standard deviation of each row."""

    def call(self, x):
        mean = keras.ops.mean(x, axis=-1, keepdims=True)
        std = keras.ops.sqrt(keras.ops.mean(keras.ops.square(x - mean), axis=-1, keepdims=True))
        return keras.ops.concatenate([mean, std], axis=-1)


def embedding_model(trainable=False):
    inputs = keras.Input(shape=(None,))
    x = MomentEmbedding()(inputs)
    if trainable:
        x = keras.layers.Dense(2, kernel_initializer="identity", use_bias=False)(x)
    return keras.Model(inputs, x)


def make_trials(root, angles, file_waveform=waveform):
    """Writes one FLOAT WAV per (speaker, utterance) angle and an all-pairs trial list.

    Args:
        angles: [speakers][utterances] angles in radians.

    Returns:
        (trials, waveforms): the `Trials` and name -> float32 waveform.
    """
    root.mkdir(parents=True, exist_ok=True)
    waves = {}
    for s, speaker_angles in enumerate(angles):
        for u, theta in enumerate(speaker_angles):
            name = f"spk{s}/utt{u}.wav"
            (root / f"spk{s}").mkdir(exist_ok=True)
            waves[name] = file_waveform(theta)
            data.write_wav(root / name, waves[name], SAMPLE_RATE, subtype="FLOAT")
    names = sorted(waves)
    enroll, test, labels = [], [], []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            enroll.append(a)
            test.append(b)
            labels.append(int(a.split("/")[0] == b.split("/")[0]))
    list_path = root.parent / "trials.txt"
    data.write_trials(list_path, enroll, test, labels)
    return data.read_trials(list_path, root), waves


def reference(trials, waves, p_targets=(0.01, 0.05)):
    """EER / minDCF from numpy embeddings and numpy cosine scores."""
    emb = {name: numpy_embedding(w) for name, w in waves.items()}
    scores = np.array([numpy_cosine(emb[a], emb[b]) for a, b in zip(trials.enroll, trials.test)])
    results = {"eer": eer(scores, trials.labels)}
    for p in p_targets:
        results[f"min_dcf_{p:g}"] = min_dcf(scores, trials.labels, p_target=p)
    return results, scores


def separable_angles():
    # Speakers 20 degrees apart, utterances within +-3 degrees.
    jitter = [-3.0, 0.5, 2.5]
    return [[math.radians(10 + 20 * s + j) for j in jitter] for s in range(4)]


def overlapping_angles():
    # Speakers about 17 degrees apart with up to 15 degrees of spread: confusable.
    # Chosen so that no two trials score within 2.8e-4 of each other (float32
    # rounding in the model cannot reorder them) and the EER (1/9) falls
    # between two operating points (the interpolation is exercised).
    degrees = [[3.6, 1.5, 16.2], [30.8, 24.2, 34.1], [37.8, 48.3, 42.9], [59.1, 63.7, 65.3]]
    return [[math.radians(d) for d in speaker] for speaker in degrees]


def min_gap(scores):
    distinct = np.unique(np.round(scores, 12))
    return float(np.min(np.diff(distinct))) if distinct.size > 1 else np.inf


@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    """(trials, waveforms, callback) with perfectly separable speakers.

    The callback caches the decoded audio, so tests sharing it decode once;
    tests change its settings with `monkeypatch`.
    """
    trials, waves = make_trials(tmp_path_factory.mktemp("separable") / "audio", separable_angles())
    return trials, waves, VerificationCallback(trials, embedding_model(), sample_rate=SAMPLE_RATE)


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """(trials, waveforms, callback) with confusable speakers."""
    trials, waves = make_trials(tmp_path_factory.mktemp("overlap") / "audio", overlapping_angles())
    return trials, waves, VerificationCallback(trials, embedding_model(), sample_rate=SAMPLE_RATE)


# ---------------------------------------------------------------- cosine_trial_scores


def test_cosine_trial_scores_matches_numpy():
    e = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-2.0, 0.5, 3.0], [0.0, 0.0, 4.0]])
    enroll = np.array([0, 0, 1, 2, 3])
    test = np.array([1, 2, 3, 2, 0])
    expected = [numpy_cosine(e[i], e[j]) for i, j in zip(enroll, test)]
    scores = cosine_trial_scores(e, enroll, test)
    assert scores.dtype == np.float64 and scores.shape == (5,)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores[:2], [1 / np.sqrt(2), -2 / np.sqrt(13.25)], atol=1e-12)
    assert scores[3] == pytest.approx(1.0) and scores[4] == pytest.approx(0.0)
    # Scale invariant; accepts float32 and lists.
    np.testing.assert_allclose(
        cosine_trial_scores((e * 7).astype(np.float32).tolist(), enroll, test), expected, atol=1e-6
    )


@pytest.mark.parametrize("bad", [0.0, np.nan, np.inf])
def test_cosine_trial_scores_rejects_zero_and_nan(bad):
    e = np.array([[1.0, 2.0], [3.0, 4.0]])
    e[1] = bad
    with pytest.raises(ValueError, match="zero vectors or NaN"):
        cosine_trial_scores(e, np.array([0]), np.array([1]))


def test_exported_from_metrics_package():
    assert metrics.VerificationCallback is VerificationCallback
    assert metrics.cosine_trial_scores is cosine_trial_scores
    with pytest.raises(AttributeError):
        metrics.not_a_name  # noqa: B018


# ---------------------------------------------------------------- evaluate()


def test_embed_order_and_values(overlapping):
    trials, waves, callback = overlapping
    emb = callback.embed()
    assert emb.shape == (12, 2)
    expected = np.stack([numpy_embedding(waves[name]) for name in trials.utterances])
    np.testing.assert_allclose(emb, expected, rtol=1e-4, atol=1e-6)


def test_separable_speakers_give_zero_eer(separable):
    trials, waves, callback = separable
    expected, scores = reference(trials, waves)
    assert expected == {"eer": 0.0, "min_dcf_0.01": 0.0, "min_dcf_0.05": 0.0}
    results = callback.evaluate()
    assert list(results) == ["eer", "min_dcf_0.01", "min_dcf_0.05"]
    assert results == expected
    assert all(type(v) is float for v in results.values())


def test_overlapping_speakers_match_numpy_reference(overlapping, monkeypatch):
    trials, waves, callback = overlapping
    expected, scores = reference(trials, waves, p_targets=(0.01, 0.05, 0.5))
    # Precondition: a non-trivial operating point, and scores far enough apart
    # that float32 rounding in the model cannot reorder them.
    assert expected["eer"] == pytest.approx(1 / 9)
    assert 0 < expected["min_dcf_0.5"] < 1
    assert min_gap(scores) > 2e-4
    monkeypatch.setattr(callback, "p_targets", (0.01, 0.05, 0.5))
    results = callback.evaluate()
    assert set(results) == set(expected)
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-9), key
    # The scores themselves agree with the numpy cosine of numpy embeddings.
    got = cosine_trial_scores(callback.embed(), callback.enroll_index, callback.test_index)
    np.testing.assert_allclose(got, scores, atol=1e-5)


def test_identical_embeddings_give_eer_one_half(tmp_path):
    # Every file holds the same audio: every trial gets the same score.
    trials, _ = make_trials(
        tmp_path / "audio", separable_angles(), file_waveform=lambda theta: waveform(0.7)
    )
    callback = VerificationCallback(trials, embedding_model(), sample_rate=SAMPLE_RATE)
    scores = cosine_trial_scores(callback.embed(), callback.enroll_index, callback.test_index)
    assert np.unique(scores).size == 1
    results = callback.evaluate()
    assert results["eer"] == 0.5
    assert results["min_dcf_0.01"] == 1.0 and results["min_dcf_0.05"] == 1.0


def test_plain_callable_embedding_model(overlapping, monkeypatch):
    trials, waves, callback = overlapping
    calls = []

    def embedder(x):
        calls.append(np.shape(x))
        return numpy_embedding(x)[None]

    monkeypatch.setattr(callback, "embedding_model", embedder)
    expected, _ = reference(trials, waves)
    results = callback.evaluate()
    assert calls == [(1, SAMPLES)] * 12  # each utterance whole, one at a time
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-9), key


def test_on_epoch_end_without_logs_and_verbose(separable, monkeypatch, capsys):
    _, _, callback = separable
    monkeypatch.setattr(callback, "verbose", 1)
    callback.on_epoch_end(0, None)
    out = capsys.readouterr().out
    assert "Epoch 1" in out and "66 trials" in out and "eer 0.0000" in out
    logs = {"loss": 1.0}
    monkeypatch.setattr(callback, "prefix", "dev_")
    callback.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0, "dev_eer": 0.0, "dev_min_dcf_0.01": 0.0, "dev_min_dcf_0.05": 0.0}


# ---------------------------------------------------------------- model.fit


class LogRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs or {}))


def fit(callback, monkeypatch, frequency, epochs=2):
    model = embedding_model(trainable=True)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x = np.stack([waveform(t) for t in rng.uniform(0.2, 1.2, size=8)])
    y = np.zeros((8, 2), np.float32)
    # The callback embeds with the model being trained.
    monkeypatch.setattr(callback, "embedding_model", None)
    monkeypatch.setattr(callback, "frequency", frequency)
    recorder = LogRecorder()
    history = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[callback, recorder])
    return model, callback, recorder, history


KEYS = ("val_eer", "val_min_dcf_0.01", "val_min_dcf_0.05")


def test_fit_logs_every_epoch(overlapping, monkeypatch):
    model, callback, recorder, history = fit(overlapping[2], monkeypatch, frequency=1)
    for key in KEYS:
        assert len(history.history[key]) == 2, key
        assert all(0.0 <= v <= 1.0 for v in history.history[key])
    assert len(history.history["loss"]) == 2
    for logs in recorder.epochs:
        assert set(KEYS) <= set(logs)
    # The last epoch's values are those of the final weights.
    assert callback.model is model
    final = callback.evaluate()
    for key in KEYS:
        assert history.history[key][-1] == pytest.approx(final[key[len("val_") :]], abs=1e-9)


def test_fit_frequency_two(separable, monkeypatch):
    _, _, recorder, history = fit(separable[2], monkeypatch, frequency=2)
    assert len(recorder.epochs) == 2
    assert not set(KEYS) & set(recorder.epochs[0])
    assert set(KEYS) <= set(recorder.epochs[1])
    for key in KEYS:
        assert history.history[key] == [0.0], key
    assert len(history.history["loss"]) == 2


# ---------------------------------------------------------------- arguments, caching


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frequency": 0},
        {"frequency": -1},
        {"p_targets": (0.0,)},
        {"p_targets": (1.0,)},
        {"p_targets": (0.01, 1.0)},
        {"p_targets": (-0.1,)},
    ],
)
def test_bad_arguments(separable, kwargs):
    trials = separable[0]
    with pytest.raises(ValueError, match="frequency|p_targets"):
        VerificationCallback(trials, embedding_model(), **kwargs)


@pytest.mark.parametrize("cache_audio, expected_reads", [(True, 1), (False, 2)])
def test_cache_audio_decodes_once(overlapping, monkeypatch, cache_audio, expected_reads):
    from keras_spk.data import pipeline

    trials = overlapping[0]
    real = pipeline.evaluation_dataset
    reads = []

    def counting(*args, **kwargs):
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluation_dataset", counting)
    callback = VerificationCallback(
        trials, embedding_model(), sample_rate=SAMPLE_RATE, cache_audio=cache_audio
    )
    first = callback.evaluate()
    second = callback.evaluate()
    assert first == second
    assert len(reads) == expected_reads
    assert reads[0] == (trials.paths, SAMPLE_RATE)


def test_a_trial_file_that_cannot_be_decoded_is_named(tmp_path):
    trials, _ = make_trials(tmp_path / "audio", separable_angles())
    bad = tmp_path / "audio" / "spk1" / "utt2.wav"
    bad.write_bytes(bad.read_bytes()[:60])  # cut inside the data chunk
    callback = VerificationCallback(trials, embedding_model(), sample_rate=SAMPLE_RATE)
    with pytest.raises(data.AudioError) as info:
        callback.evaluate()
    assert str(info.value) == f"Validation trials: {bad}: file is truncated: the WAV data chunk is longer than the file"
