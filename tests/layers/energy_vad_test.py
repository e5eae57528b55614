import keras
import numpy as np
import pytest

from keras_spk.layers import EnergyVAD

SR = 16000
# Synthetic utterance: low noise floor (-80 dB), then two tones whose spans
# start on a 160-sample frame step and last 400 + 160 * j samples, so that
# the frames lying entirely inside a tone cover it exactly. Each tone fits a
# whole number of periods in 80 samples, so every full tone frame has the
# same energy, while frames that only partly overlap a tone are >= 2.2 dB
# quieter: with threshold_db=1 the speech samples are exactly the tones.
TONE_A = (8000, 16400)  # 200 Hz, 8400 samples
TONE_B = (24000, 29200)  # 400 Hz, 5200 samples


def make_signal(samples=32000):
    x = 1e-4 * np.random.RandomState(0).normal(size=max(samples, 32000))
    for (start, end), freq in ((TONE_A, 200.0), (TONE_B, 400.0)):
        t = np.arange(end - start) / SR
        x[start:end] = 0.5 * np.sin(2 * np.pi * freq * t)
    return x[:samples].astype("float32")


def tone_samples(x):
    return np.concatenate([x[TONE_A[0] : TONE_A[1]], x[TONE_B[0] : TONE_B[1]]])


def reference_vad(row, threshold_db=40.0, max_samples=None, frame_length=400, frame_step=160):
    """Frame loop: dB energies, relative threshold, union of speech frames."""
    row = np.asarray(row, dtype="float64")
    starts = list(range(0, len(row) - frame_length + 1, frame_step))
    energy = np.array([np.mean(row[s : s + frame_length] ** 2) for s in starts])
    valid = energy > 1e-10
    if not valid.any():
        return np.zeros(0, "float32")
    energy_db = 10 * np.log10(np.maximum(energy, 1e-10))
    loudest = energy_db[valid].max()
    covered = np.zeros(len(row), bool)
    for s, is_valid, db in zip(starts, valid, energy_db):
        if is_valid and db >= loudest - threshold_db:
            covered[s : s + frame_length] = True
    return row[covered][:max_samples].astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def check_rows(speech, lengths, expected_rows):
    speech, lengths = to_numpy(speech), to_numpy(lengths)
    assert lengths.dtype == np.int32
    assert list(lengths) == [len(r) for r in expected_rows]
    assert speech.shape == (len(expected_rows), max(len(r) for r in expected_rows))
    for row, length, expected in zip(speech, lengths, expected_rows):
        np.testing.assert_array_equal(row[:length], expected)
        np.testing.assert_array_equal(row[length:], 0.0)


def test_returns_exactly_the_tone_samples():
    x = make_signal()
    speech, lengths = EnergyVAD(threshold_db=1.0)(x[None])
    check_rows(speech, lengths, [tone_samples(x)])


def test_default_threshold_matches_numpy_reference():
    # At 40 dB, frames partly overlapping a tone are speech too, so a
    # little of the noise floor on each side is kept.
    x = make_signal()
    speech, lengths = EnergyVAD()(x[None])
    expected = reference_vad(x)
    assert len(expected) > len(tone_samples(x))
    check_rows(speech, lengths, [expected])


@pytest.mark.parametrize("samples", [16000, 16001, 12345, 32000])
def test_odd_lengths_match_numpy_reference(samples):
    # Tones plus noise bursts of random level, one level per 1000 samples.
    rng = np.random.RandomState(samples)
    levels = np.repeat(10.0 ** rng.uniform(-4, -1, size=samples // 1000 + 1), 1000)[:samples]
    x = make_signal(samples) + (levels * rng.normal(size=samples)).astype("float32")
    batch = np.stack([x, x[::-1].copy()])
    speech, lengths = EnergyVAD(threshold_db=20.0)(batch)
    check_rows(speech, lengths, [reference_vad(r, threshold_db=20.0) for r in batch])


def test_max_speech_seconds_cuts_to_first_speech():
    x = make_signal()
    tones = tone_samples(x)
    speech, lengths = EnergyVAD(threshold_db=1.0, max_speech_seconds=0.3)(x[None])
    check_rows(speech, lengths, [tones[:4800]])  # inside tone A
    speech, lengths = EnergyVAD(threshold_db=1.0, max_speech_seconds=0.6)(x[None])
    check_rows(speech, lengths, [tones[:9600]])  # all of A, start of B
    speech, lengths = EnergyVAD(threshold_db=1.0, max_speech_seconds=10.0)(x[None])
    check_rows(speech, lengths, [tones])  # longer than the speech: no-op


def test_padded_batch_respects_lengths():
    x = make_signal()
    batch = np.stack([x, x.copy()])
    # Loud padding: would be the loudest "speech" if it were not masked.
    batch[1, 20000:] = 5.0 * np.random.RandomState(1).normal(size=12000)
    speech, lengths = EnergyVAD(threshold_db=1.0)(batch, lengths=np.array([32000, 20000]))
    check_rows(speech, lengths, [tone_samples(x), x[TONE_A[0] : TONE_A[1]]])


def test_trailing_partial_frame_is_never_speech():
    # 16200 samples: the last full frame ends at 16080, so tone A's samples
    # 16080..16199 (in the partial frame) are dropped.
    x = make_signal()[:16200]
    speech, lengths = EnergyVAD(threshold_db=1.0)(x[None])
    check_rows(speech, lengths, [x[8000:16080]])
    # Same result when the cut comes from `lengths` on a longer padded row.
    speech, lengths = EnergyVAD(threshold_db=1.0)(make_signal()[None], lengths=np.array([16200]))
    check_rows(speech, lengths, [x[8000:16080]])


def test_no_speech_gives_length_zero():
    x = make_signal()
    batch = np.stack([x, np.zeros_like(x)])
    speech, lengths = EnergyVAD(threshold_db=1.0)(batch)
    check_rows(speech, lengths, [tone_samples(x), np.zeros(0)])
    # All rows silent, or shorter than one frame: empty output, no error.
    for silent in (np.zeros((2, 8000), "float32"), x[None, TONE_A[0] : TONE_A[0] + 399]):
        speech, lengths = EnergyVAD()(silent)
        assert to_numpy(speech).shape == (len(silent), 0)
        np.testing.assert_array_equal(to_numpy(lengths), 0)
    speech, lengths = EnergyVAD()(np.stack([x, x]), lengths=np.array([0, 100]))
    np.testing.assert_array_equal(to_numpy(lengths), 0)


def test_symbolic_output_specs():
    speech, lengths = EnergyVAD()(keras.Input((None,)))
    assert tuple(speech.shape) == (None, None) and speech.dtype == "float32"
    assert tuple(lengths.shape) == (None,) and lengths.dtype == "int32"
    assert EnergyVAD().compute_output_shape((4, 16000)) == ((4, None), (4,))


def build_model(**kwargs):
    waveforms = keras.Input((None,), name="waveforms")
    valid = keras.Input((), dtype="int32", name="lengths")
    outputs = EnergyVAD(**kwargs)(waveforms, lengths=valid)
    return keras.Model([waveforms, valid], outputs)


def test_functional_model_with_lengths_variable_length():
    model = build_model(threshold_db=1.0)
    for samples in (32000, 20001):
        x = make_signal(samples)
        speech, lengths = model([np.stack([x, x]), np.array([samples, 16200], "int32")])
        check_rows(speech, lengths, [tone_samples(x), x[8000:16080]])


def test_keras_save_and_load(tmp_path):
    model = build_model(threshold_db=10.0, max_speech_seconds=0.5)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.stack([make_signal(), make_signal()[::-1].copy()])
    valid = np.array([32000, 30001], "int32")
    for got, want in zip(restored([x, valid]), model([x, valid])):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    config = restored.layers[-1].get_config()
    assert config["threshold_db"] == 10.0 and config["max_speech_seconds"] == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0},
        {"frame_step_ms": 0},
        {"threshold_db": -1.0},
        {"threshold_db": "40"},
        {"max_speech_seconds": 0},
        {"max_speech_seconds": 1e-6},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        EnergyVAD(**kwargs)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF SavedModel export")
def test_tf_saved_model_export(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((None,))
    model = keras.Model(inputs, EnergyVAD(max_speech_seconds=1.0)(inputs))
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    for samples in (32000, 12345):
        x = np.stack([make_signal(samples), make_signal(samples)[::-1].copy()])
        got_speech, got_lengths = reloaded.serve(x)
        want_speech, want_lengths = model(x)
        np.testing.assert_array_equal(got_lengths.numpy(), to_numpy(want_lengths))
        np.testing.assert_allclose(got_speech.numpy(), to_numpy(want_speech), atol=1e-4)


def _vad_case():
    rng = np.random.default_rng(4)
    x = np.zeros((2, 16000), "float32")
    x[0, 2000:6000] = rng.uniform(-0.5, 0.5, 4000)
    x[1, 8000:15000] = rng.uniform(-0.5, 0.5, 7000)
    return EnergyVAD(max_speech_seconds=0.3), x, None


BACKEND_CASES = {"two rows": _vad_case}
