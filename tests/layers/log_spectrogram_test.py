import keras
import numpy as np
import pytest

from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import LogSpectrogram
from tests.helpers.frontend import make_waveform
from tests.helpers.frontend import reference_sliding_mean
from tests.test_case import to_numpy


def reference_log_spectrogram(
    x, frame_length=400, frame_step=160, fft_length=512, log_offset=1e-6, window=None, taper=None
):
    taper = np.hamming(frame_length) if taper is None else taper  # symmetric Hamming
    out = []
    for row in np.asarray(x, dtype="float64"):
        feats = []
        start = 0
        while start + frame_length <= len(row):
            spectrum = np.fft.rfft(row[start : start + frame_length] * taper, n=fft_length)
            feats.append(np.log(np.abs(spectrum) + log_offset))
            start += frame_step
        feats = np.array(feats).reshape(-1, fft_length // 2 + 1)
        if window:
            feats = reference_sliding_mean(feats, window)
        out.append(feats)
    return np.stack(out)


def reference_mean_variance(features, epsilon=1e-5):
    """Per-utterance, per-bin standardisation over the frames, one loop per bin."""
    out = np.empty_like(features)
    for k in range(features.shape[1]):
        column = features[:, k]
        mean = sum(column) / len(column)
        std = np.sqrt(sum((v - mean) ** 2 for v in column) / len(column))  # divisor T
        out[:, k] = (column - mean) / (std + epsilon)
    return out


# The multi-metric paper's front-end (Xu et al. 2020, section 4.2): 20 ms
# Hamming frames every 10 ms, FFT 320 (161 bins), log1p of the magnitude.
PAPER_FRAMING = dict(frame_length_ms=20, frame_step_ms=10, fft_length=320, log_offset=1.0)


def reference_paper_features(x):
    spectra = reference_log_spectrogram(
        x, frame_length=320, frame_step=160, fft_length=320, log_offset=1.0
    )
    return np.stack([reference_mean_variance(s) for s in spectra])


# Per-bin log magnitudes (unlike mel sums) include bins close to zero, where
# float32 FFT round-off of ~1e-6 is a larger relative error; 1e-3 absolute
# still flags any real mistake (wrong window, bin or offset is >= 1e-2).
ATOL = 1e-3


@pytest.mark.parametrize("samples", [16000, 16001, 12345])
def test_matches_numpy_reference(samples):
    x = make_waveform(2, samples, seed=samples)
    got = to_numpy(LogSpectrogram()(x))
    want = reference_log_spectrogram(x)
    assert got.shape == want.shape == (2, 1 + (samples - 400) // 160, 257)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=ATOL)


def test_matches_numpy_reference_with_normalisation_and_other_settings():
    x = make_waveform(2, 16000, seed=5)
    layer = LogSpectrogram(
        sample_rate=8000,
        frame_length_ms=32,
        frame_step_ms=16,
        fft_length=512,
        window="hann",
        log_offset=1e-3,
        mean_normalization_window=11,
    )
    want = reference_log_spectrogram(
        x,
        frame_length=256,
        frame_step=128,
        fft_length=512,
        log_offset=1e-3,
        window=11,
        taper=np.hanning(256),
    )
    np.testing.assert_allclose(to_numpy(layer(x)), want, rtol=1e-4, atol=ATOL)


@pytest.mark.parametrize("samples", [48160, 16000, 12345])
def test_mean_variance_normalisation_matches_numpy_reference(samples):
    # 48,160 samples = the paper's 300 frames: 1 + (48160 - 320) // 160.
    x = make_waveform(2, samples, seed=samples)
    got = to_numpy(LogSpectrogram(normalization="mean_variance", **PAPER_FRAMING)(x))
    want = reference_paper_features(x)
    assert got.shape == want.shape == (2, 1 + (samples - 320) // 160, 161)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=ATOL)
    # Every bin of every utterance: mean 0, deviation std / (std + 1e-5) ~ 1.
    np.testing.assert_allclose(got.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(got.std(axis=1), 1.0, atol=1e-3)


def test_mean_variance_by_hand_on_a_two_frame_input():
    # Two frames of the log spectrum, per bin a and b: the mean is (a + b) / 2,
    # the deviation |a - b| / 2, so the frames become +-|a - b| / (|a - b| + 2e-5),
    # i.e. sign(a - b) and sign(b - a) up to the epsilon.
    x = make_waveform(1, 320 + 160, seed=3)
    raw = to_numpy(LogSpectrogram(**PAPER_FRAMING)(x))[0]
    got = to_numpy(LogSpectrogram(normalization="mean_variance", **PAPER_FRAMING)(x))[0]
    half = np.abs(raw[0] - raw[1]) / 2.0
    np.testing.assert_allclose(got[0], (raw[0] - raw[1]) / 2.0 / (half + 1e-5), atol=1e-4)
    # (float32 round-off of a - mean and b - mean, relative to a tiny |a - b|.)
    np.testing.assert_allclose(got[1], -got[0], atol=1e-3)


def test_mean_variance_is_per_utterance_and_variable_length():
    inputs = keras.Input((None,))
    layer = LogSpectrogram(normalization="mean_variance", **PAPER_FRAMING)
    model = keras.Model(inputs, layer(inputs))
    for samples in (16000, 24321):
        x = make_waveform(2, samples, seed=samples)
        got = to_numpy(model(x))
        np.testing.assert_allclose(got, reference_paper_features(x), rtol=1e-4, atol=ATOL)
        # A row's statistics are its own: the same row alone gives the same output.
        np.testing.assert_allclose(to_numpy(model(x[1:])), got[1:], rtol=1e-5, atol=1e-5)
    # Scaling the waveform changes log1p features, but the output stays standardised.
    np.testing.assert_allclose(to_numpy(model(3.0 * x)).std(axis=1), 1.0, atol=1e-3)


def test_mean_variance_constant_and_short_inputs_stay_finite():
    layer = LogSpectrogram(normalization="mean_variance", **PAPER_FRAMING)
    # Digital silence: every bin is constant (log1p(0) = 0), deviation 0: 0 / 1e-5 = 0.
    np.testing.assert_array_equal(to_numpy(layer(np.zeros((1, 4000), "float32"))), 0.0)
    # One frame: each bin equals its mean.
    one = to_numpy(layer(make_waveform(1, 320)))
    assert one.shape == (1, 1, 161)
    np.testing.assert_array_equal(one, 0.0)
    assert to_numpy(layer(make_waveform(2, 319))).shape == (2, 0, 161)


def test_rectangular_window():
    x = make_waveform(1, 2000)
    got = to_numpy(LogSpectrogram(window="rectangular")(x))
    want = reference_log_spectrogram(x, taper=np.ones(400))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=ATOL)


def test_same_frames_as_filterbank():
    x = make_waveform(1, 12345)
    spec = to_numpy(LogSpectrogram()(x))
    mel = to_numpy(LogMelFilterbank()(x))
    assert spec.shape[1] == mel.shape[1] == 75


def test_output_shapes_static_and_symbolic():
    layer = LogSpectrogram()
    assert layer.compute_output_shape((3, 16000)) == (3, 98, 257)
    assert layer.compute_output_shape((3, 100)) == (3, 0, 257)
    assert LogSpectrogram(fft_length=1024).compute_output_shape((1, 16000)) == (1, 98, 513)
    outputs = layer(keras.Input((None,)))
    assert tuple(outputs.shape) == (None, None, 257)


def test_variable_length_functional_model():
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogSpectrogram()(inputs))
    for samples in (16000, 12345):
        x = make_waveform(2, samples, seed=samples)
        np.testing.assert_allclose(
            to_numpy(model(x)), reference_log_spectrogram(x), rtol=1e-4, atol=ATOL
        )


def test_input_shorter_than_one_frame_gives_zero_frames():
    for window in (None, 300):
        out = to_numpy(LogSpectrogram(mean_normalization_window=window)(make_waveform(2, 399)))
        assert out.shape == (2, 0, 257)
    out = to_numpy(LogSpectrogram()(np.zeros((1, 400), "float32")))
    assert out.shape == (1, 1, 257)
    np.testing.assert_allclose(out, np.log(1e-6), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": -16000},
        {"frame_length_ms": 0.01},
        {"frame_step_ms": 0},
        {"fft_length": 399},
        {"window": "hamming_periodic"},
        {"log_offset": -1.0},
        {"mean_normalization_window": -3},
        {"normalization": "cmvn"},
        {"normalization": True},
        {"normalization": "mean_variance", "mean_normalization_window": 300},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LogSpectrogram(**kwargs)


def test_normalization_config_round_trip_and_keras_file(tmp_path):
    layer = LogSpectrogram(normalization="mean_variance", **PAPER_FRAMING)
    config = layer.get_config()
    assert config["normalization"] == "mean_variance"
    assert LogSpectrogram.from_config(config).get_config() == config
    assert LogSpectrogram().get_config()["normalization"] is None
    # Zero and None windows with a normalisation are both "no sliding window".
    assert LogSpectrogram(normalization="mean_variance", mean_normalization_window=0)
    inputs = keras.Input((None,))
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = make_waveform(2, 16001)
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(model(x)))
    assert restored.layers[-1].get_config()["normalization"] == "mean_variance"


def test_keras_save_and_load(tmp_path):
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogSpectrogram(mean_normalization_window=100)(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = make_waveform(2, 16001)
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(model(x)))
    assert restored.layers[-1].get_config()["mean_normalization_window"] == 100


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF SavedModel export")
@pytest.mark.parametrize(
    "kwargs",
    [{"mean_normalization_window": 30}, dict(PAPER_FRAMING, normalization="mean_variance")],
)
def test_tf_saved_model_export(tmp_path, kwargs):
    import tensorflow as tf

    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogSpectrogram(**kwargs)(inputs))
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    for samples in (16000, 12345):
        x = make_waveform(2, samples, seed=samples)
        np.testing.assert_allclose(
            reloaded.serve(x).numpy(), to_numpy(model(x)), rtol=1e-4, atol=1e-4
        )


BACKEND_CASES = {
    "odd length": lambda: (
        LogSpectrogram(),
        np.random.default_rng(3).uniform(-0.5, 0.5, (2, 16001)).astype("float32"),
        None,
    ),
    # Noise rather than `make_waveform`: a pure tone's large bins carry FFT
    # round-off of ~1e-5 after standardisation, at the cases' tolerance.
    "mean_variance, the multi-metric paper's framing": lambda: (
        LogSpectrogram(normalization="mean_variance", **PAPER_FRAMING),
        np.random.default_rng(3).uniform(-0.5, 0.5, (2, 12345)).astype("float32"),
        None,
    ),
}
