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
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LogSpectrogram(**kwargs)


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
def test_tf_saved_model_export(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogSpectrogram(mean_normalization_window=30)(inputs))
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
}
