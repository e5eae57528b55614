import math

import keras
import numpy as np
import pytest

from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import mel_filterbank_matrix
from keras_spk.layers import _framing
from tests.helpers.frontend import make_waveform
from tests.helpers.frontend import reference_sliding_mean
from tests.test_case import to_numpy

# ---------------------------------------------------------------------------
# Plain numpy reference, written independently of the layer: explicit loops
# over frames, mel bands and frequency bins, float64 throughout.
# ---------------------------------------------------------------------------


def reference_mel_matrix(num_mel_bins, num_bins, sample_rate, low, high):
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    edges = [
        mel(low) + (mel(high) - mel(low)) * i / (num_mel_bins + 1) for i in range(num_mel_bins + 2)
    ]
    matrix = np.zeros((num_bins, num_mel_bins))
    for k in range(num_bins):
        m_k = mel(k * sample_rate / 2.0 / (num_bins - 1))
        for m in range(num_mel_bins):
            left, center, right = edges[m], edges[m + 1], edges[m + 2]
            if left < m_k <= center:
                matrix[k, m] = (m_k - left) / (center - left)
            elif center < m_k < right:
                matrix[k, m] = (right - m_k) / (right - center)
    return matrix


def reference_log_mel(
    x,
    sample_rate=16000,
    num_mel_bins=64,
    frame_length=400,
    frame_step=160,
    fft_length=512,
    low=20.0,
    high=None,
    log_offset=1e-6,
    window=300,
):
    high = sample_rate / 2 if high is None else high
    weights = reference_mel_matrix(num_mel_bins, fft_length // 2 + 1, sample_rate, low, high)
    hamming = np.hamming(frame_length)  # symmetric, like the layer
    out = []
    for row in np.asarray(x, dtype="float64"):
        feats = []
        start = 0
        while start + frame_length <= len(row):
            spectrum = np.fft.rfft(row[start : start + frame_length] * hamming, n=fft_length)
            feats.append(np.log(np.abs(spectrum) ** 2 @ weights + log_offset))
            start += frame_step
        feats = np.array(feats).reshape(-1, num_mel_bins)
        if window:
            feats = reference_sliding_mean(feats, window)
        out.append(feats)
    return np.stack(out)


# ---------------------------------------------------------------------------
# Mel matrix.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [(64, 257, 16000, 20.0, 8000.0), (40, 201, 8000, 0.0, 3800.0), (80, 513, 16000, 100.0, 7000.0)],
)
def test_mel_matrix_matches_loop_reference(args):
    num_mel_bins, num_bins, sample_rate, low, high = args
    got = mel_filterbank_matrix(num_mel_bins, num_bins, sample_rate, low, high, dtype="float64")
    want = reference_mel_matrix(num_mel_bins, num_bins, sample_rate, low, high)
    assert got.shape == (num_bins, num_mel_bins)
    np.testing.assert_allclose(got, want, atol=1e-12)
    # Every band is non-empty at these settings and peaks at most at 1.
    assert np.all(got.max(axis=0) > 0) and got.max() <= 1.0


def test_mel_matrix_default_upper_edge_is_nyquist():
    np.testing.assert_array_equal(
        mel_filterbank_matrix(upper_edge_hertz=None), mel_filterbank_matrix(upper_edge_hertz=8000.0)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_mel_bins": 0},
        {"num_spectrogram_bins": 1},
        {"lower_edge_hertz": -1.0},
        {"upper_edge_hertz": 9000.0},
        {"lower_edge_hertz": 500.0, "upper_edge_hertz": 400.0},
        {"sample_rate": 0},
    ],
)
def test_mel_matrix_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        mel_filterbank_matrix(**kwargs)


# ---------------------------------------------------------------------------
# Sliding mean normalisation on hand-worked examples.
# ---------------------------------------------------------------------------


def _slide(values, window):
    x = keras.ops.convert_to_tensor(np.asarray(values, dtype="float32").reshape(1, -1, 1))
    return to_numpy(_framing.sliding_mean_normalization(x, window))[0, :, 0]


def test_sliding_mean_hand_example_odd_window():
    # W=3, T=5. Windows: t=0 -> [0,3) shifted right, t=1 -> [0,3),
    # t=2 -> [1,4), t=3 -> [2,5), t=4 -> [2,5) shifted left.
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    means = [7 / 3, 7 / 3, 14 / 3, 28 / 3, 28 / 3]
    np.testing.assert_allclose(_slide(x, 3), np.subtract(x, means), rtol=1e-6, atol=1e-6)


def test_sliding_mean_hand_example_even_window():
    # W=4: window is [t-2, t+2), so t=0,1,2 -> [0,4), t=3,4 -> [1,5).
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    means = [15 / 4, 15 / 4, 15 / 4, 30 / 4, 30 / 4]
    np.testing.assert_allclose(_slide(x, 4), np.subtract(x, means), rtol=1e-6, atol=1e-6)


def test_sliding_mean_shorter_than_window_uses_whole_utterance():
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    np.testing.assert_allclose(_slide(x, 8), np.subtract(x, 31 / 5), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_slide(x, 5), np.subtract(x, 31 / 5), rtol=1e-6, atol=1e-6)


def test_sliding_mean_matches_kaldi_loop():
    x = np.random.RandomState(3).normal(size=(2, 37, 4)).astype("float32") + 5.0
    got = to_numpy(_framing.sliding_mean_normalization(keras.ops.convert_to_tensor(x), 10))
    want = np.stack([reference_sliding_mean(row.astype("float64"), 10) for row in x])
    np.testing.assert_allclose(got, want, atol=1e-5)


# ---------------------------------------------------------------------------
# Layer against the reference.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [16000, 16001, 12345])
def test_matches_numpy_reference_default_config(samples):
    # 12345 samples = 75 frames < 300: the whole-utterance mean is used.
    x = make_waveform(2, samples, seed=samples)
    got = to_numpy(LogMelFilterbank()(x))
    want = reference_log_mel(x)
    assert got.shape == want.shape == (2, 1 + (samples - 400) // 160, 64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_matches_numpy_reference_without_normalisation():
    x = make_waveform(2, 16000)
    for window in (None, 0):
        got = to_numpy(LogMelFilterbank(mean_normalization_window=window)(x))
        np.testing.assert_allclose(got, reference_log_mel(x, window=None), rtol=1e-4, atol=1e-4)


def test_matches_numpy_reference_short_window_and_other_settings():
    # T=98 > W=21, so the window slides; non-default mel and FFT settings.
    x = make_waveform(1, 16000, seed=7)
    layer = LogMelFilterbank(
        num_mel_bins=40,
        fft_length=1024,
        lower_edge_hertz=100.0,
        upper_edge_hertz=7000.0,
        log_offset=1e-3,
        mean_normalization_window=21,
    )
    want = reference_log_mel(
        x, num_mel_bins=40, fft_length=1024, low=100.0, high=7000.0, log_offset=1e-3, window=21
    )
    np.testing.assert_allclose(to_numpy(layer(x)), want, rtol=1e-4, atol=1e-4)


def test_fft_length_defaults_to_next_power_of_two():
    assert LogMelFilterbank()._fft_length == 512
    assert LogMelFilterbank(sample_rate=8000)._fft_length == 256
    assert LogMelFilterbank(frame_length_ms=32)._fft_length == 512


def test_output_shapes_static_and_symbolic():
    layer = LogMelFilterbank()
    assert layer.compute_output_shape((3, 16000)) == (3, 98, 64)
    assert layer.compute_output_shape((3, 399)) == (3, 0, 64)
    assert layer.compute_output_shape((None, None)) == (None, None, 64)
    outputs = layer(keras.Input((None,)))
    assert tuple(outputs.shape) == (None, None, 64)
    outputs = layer(keras.Input((16001,)))
    assert tuple(outputs.shape) == (None, 98, 64)


def test_variable_length_functional_model():
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMelFilterbank()(inputs))
    for samples in (16000, 12345):
        x = make_waveform(2, samples, seed=samples)
        np.testing.assert_allclose(
            to_numpy(model(x)), reference_log_mel(x), rtol=1e-4, atol=1e-4
        )


def test_input_shorter_than_one_frame_gives_zero_frames():
    layer = LogMelFilterbank()
    out = to_numpy(layer(make_waveform(2, 399)))
    assert out.shape == (2, 0, 64)
    # Exactly one frame: normalisation over one frame gives exact zeros.
    out = to_numpy(layer(make_waveform(2, 400)))
    assert out.shape == (2, 1, 64)
    np.testing.assert_allclose(out, 0.0, atol=1e-6)
    assert not np.isnan(out).any()


def test_silence_is_finite():
    out = to_numpy(LogMelFilterbank(mean_normalization_window=None)(np.zeros((1, 1000), "float32")))
    np.testing.assert_allclose(out, np.log(1e-6), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0},
        {"sample_rate": 16000.5},
        {"num_mel_bins": 0},
        {"frame_length_ms": 0},
        {"frame_step_ms": -10},
        {"fft_length": 256},
        {"window": "blackman"},
        {"lower_edge_hertz": -5.0},
        {"upper_edge_hertz": 9000.0},
        {"log_offset": 0.0},
        {"mean_normalization_window": -1},
        {"mean_normalization_window": 2.5},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LogMelFilterbank(**kwargs)


def test_get_config_round_trip():
    layer = LogMelFilterbank(num_mel_bins=40, fft_length=1024, mean_normalization_window=None)
    config = layer.get_config()
    assert config["num_mel_bins"] == 40 and config["fft_length"] == 1024
    assert config["mean_normalization_window"] is None
    clone = LogMelFilterbank.from_config(config)
    x = make_waveform(1, 4000)
    np.testing.assert_array_equal(to_numpy(clone(x)), to_numpy(layer(x)))


def test_keras_save_and_load(tmp_path):
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMelFilterbank(num_mel_bins=40)(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = make_waveform(2, 12345)
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(model(x)))
    assert isinstance(restored.layers[-1], LogMelFilterbank)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF SavedModel export")
def test_tf_saved_model_export(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMelFilterbank(mean_normalization_window=50)(inputs))
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    for samples in (16000, 12345):
        x = make_waveform(2, samples, seed=samples)
        np.testing.assert_allclose(
            reloaded.serve(x).numpy(), to_numpy(model(x)), rtol=1e-4, atol=1e-4
        )


BACKEND_CASES = {
    "sliding mean, 3.1 s": lambda: (
        LogMelFilterbank(mean_normalization_window=300),
        np.random.default_rng(1).uniform(-0.5, 0.5, (2, 49601)).astype("float32"),
        None,
    ),
    "no normalisation": lambda: (
        LogMelFilterbank(num_mel_bins=40, mean_normalization_window=None),
        np.random.default_rng(2).uniform(-0.5, 0.5, (1, 12345)).astype("float32"),
        None,
    ),
}
