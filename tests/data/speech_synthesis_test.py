"""Tests for the formant speech synthesiser of the demo corpus."""

import numpy as np

from keras_spk.data import speech_synthesis


def test_synthesize_utterance():
    x = speech_synthesis.synthesize_utterance(seed=0, speaker=3, session=1, utterance=0, duration=2.5)
    assert x.shape == (40000,)
    assert np.all(np.isfinite(x))
    assert 0.3 <= np.max(np.abs(x)) <= 0.7
    y = speech_synthesis.synthesize_utterance(seed=0, speaker=3, session=1, utterance=1, duration=2.5)
    assert not np.allclose(x, y)


def test_each_item_has_its_own_random_stream():
    voice = speech_synthesis.speaker_voice(0, 3)
    # The same voice from a fresh draw, and a voice of its own per speaker.
    assert voice["f0"] == speech_synthesis.speaker_voice(0, 3)["f0"]
    assert voice["f0"] != speech_synthesis.speaker_voice(0, 4)["f0"]
    first = speech_synthesis.session_conditions(0, 3, 1, voice)
    second = speech_synthesis.session_conditions(0, 3, 2, voice)
    assert first["snr_db"] != second["snr_db"]
    # An utterance drawn from its parts is the one synthesize_utterance makes,
    # whatever was drawn before it.
    speech_synthesis.render_utterance(0, 3, 5, voice, second, 1.0)
    x = speech_synthesis.render_utterance(0, 3, 0, voice, first, 1.25)
    expected = speech_synthesis.synthesize_utterance(seed=0, speaker=3, session=1, utterance=0, duration=1.25)
    np.testing.assert_array_equal(x, expected)
    assert x.shape == (20000,)
    # The same content in another session: same length, other channel.
    y = speech_synthesis.render_utterance(0, 3, 0, voice, second, 1.25)
    assert y.shape == x.shape and not np.allclose(x, y)


def test_speaker_parameter_ranges():
    rng = np.random.default_rng(0)
    speakers = [speech_synthesis._sample_speaker(rng) for _ in range(200)]
    females = [s for s in speakers if s["female"]]
    males = [s for s in speakers if not s["female"]]
    assert 60 < len(females) < 140
    assert all(165 <= s["f0"] <= 255 for s in females)
    assert all(85 <= s["f0"] <= 155 for s in males)
    assert all(0.85 <= s["formant_scale"] <= 1.2 for s in speakers)
