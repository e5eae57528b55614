import keras
import numpy as np
import pytest

from keras_spk.layers import LAYERS
from keras_spk.layers import STFT
from keras_spk.layers import InverseSTFT
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def noise(batch, samples, seed=0, scale=0.5):
    return np.random.default_rng(seed).uniform(-scale, scale, (batch, samples)).astype("float32")


def reference_stft(x, frame_length=512, step=160, fft_length=512, window="hann", center=True):
    """Frame by frame with numpy: periodic window centred in the FFT frame, reflect padding."""
    n = np.arange(frame_length)
    cos = np.cos(2 * np.pi * n / frame_length)
    taper = 0.5 - 0.5 * cos if window == "hann" else 0.54 - 0.46 * cos
    padded_taper = np.zeros(fft_length)
    left = (fft_length - frame_length) // 2
    padded_taper[left : left + frame_length] = taper
    spectra = []
    for row in np.asarray(x, dtype="float64"):
        if center:
            row = np.pad(row, fft_length // 2, mode="reflect")
        frames = [
            np.fft.rfft(row[s : s + fft_length] * padded_taper)
            for s in range(0, len(row) - fft_length + 1, step)
        ]
        spectra.append(np.array(frames))
    spectra = np.stack(spectra)
    return np.abs(spectra), np.angle(spectra)


def assert_phase_close(got, want, magnitude, atol=1e-3):
    # Phase is only defined where there is energy; compare on the unit circle.
    keep = magnitude > 1e-3
    np.testing.assert_allclose(np.cos(got)[keep], np.cos(want)[keep], atol=atol)
    np.testing.assert_allclose(np.sin(got)[keep], np.sin(want)[keep], atol=atol)


@pytest.mark.parametrize(
    "kwargs, frame_length",
    [
        ({}, 512),
        ({"window": "hamming"}, 512),
        ({"center": False}, 512),
        ({"frame_length_ms": 25, "window": "hamming"}, 400),  # window shorter than the FFT
    ],
)
def test_matches_numpy_reference(kwargs, frame_length):
    x = noise(2, 12345, seed=frame_length)
    magnitude, phase = (to_numpy(t) for t in STFT(**kwargs)(x))
    want_magnitude, want_phase = reference_stft(
        x,
        frame_length=frame_length,
        window=kwargs.get("window", "hann"),
        center=kwargs.get("center", True),
    )
    assert magnitude.shape == phase.shape == want_magnitude.shape
    np.testing.assert_allclose(magnitude, want_magnitude, rtol=1e-4, atol=1e-4)
    assert_phase_close(phase, want_phase, want_magnitude)
    assert np.all(np.abs(phase) <= np.pi + 1e-6)


def test_frame_counts_and_output_shapes():
    # Centred frames: 1 + samples // 160; 3 s gives 301 frames of 257 bins.
    for samples, frames in ((16000, 101), (48000, 301), (16159, 101), (16160, 102)):
        magnitude, phase = STFT()(noise(1, samples))
        assert tuple(magnitude.shape) == tuple(phase.shape) == (1, frames, 257)
        assert STFT().compute_output_shape((1, samples)) == ((1, frames, 257), (1, frames, 257))
    # Uncentred: complete 512-sample frames only, 1 + (samples - 512) // 160.
    assert tuple(STFT(center=False)(noise(1, 16000))[0].shape) == (1, 97, 257)
    assert STFT(fft_length=1024).compute_output_shape((2, None)) == ((2, None, 513),) * 2
    magnitude, phase = STFT()(keras.Input((None,)))
    assert tuple(magnitude.shape) == tuple(phase.shape) == (None, None, 257)


@pytest.mark.parametrize("samples", [16000, 16001, 12345])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"window": "hamming"}, {"frame_length_ms": 25, "frame_step_ms": 12.5}],
)
def test_inverse_recovers_random_audio(samples, kwargs):
    x = noise(2, samples, seed=samples)
    magnitude, phase = STFT(**kwargs)(x)
    y = to_numpy(InverseSTFT(**kwargs)([magnitude, phase], length=samples))
    assert y.shape == x.shape
    # float32 FFTs: about 4e-7 on signals of amplitude 0.5, at the edges too.
    np.testing.assert_allclose(y, x, atol=2e-6)


def test_inverse_output_length():
    x = noise(1, 16050)
    spectra = STFT()(x)  # 101 frames
    inverse = InverseSTFT()
    natural = to_numpy(inverse(spectra))
    # Without `length`: (frames - 1) * step = 16000 samples, the first 16000 of x.
    assert natural.shape == (1, 16000)
    assert inverse.compute_output_shape([(1, 101, 257)] * 2) == (1, 16000)
    np.testing.assert_allclose(natural, x[:, :16000], atol=2e-6)
    # A longer `length` recovers the 50 samples past the last frame centre
    # (they are inside the last frame) and pads with zeros beyond the frames.
    longer = to_numpy(inverse(spectra, length=16400))
    assert longer.shape == (1, 16400)
    assert inverse.compute_output_shape([(1, 101, 257)] * 2, length=16400) == (1, 16400)
    np.testing.assert_allclose(longer[:, :16050], x, atol=2e-6)
    np.testing.assert_array_equal(longer[:, 16000 + 256 :], 0.0)
    shorter = to_numpy(inverse(spectra, length=100))
    np.testing.assert_allclose(shorter, x[:, :100], atol=2e-6)


def test_uncentred_inverse_recovers_the_covered_samples():
    x = noise(2, 16000, seed=4)
    spectra = STFT(center=False)(x)  # 97 frames cover samples [0, 15872)
    y = to_numpy(InverseSTFT(center=False)(spectra))
    assert y.shape == (2, 96 * 160 + 512)
    # The first and last samples meet only the Hann window's zero and its
    # neighbours (w[1]^2 and w[511]^2 are 1.4e-9, under the 1e-8 floor): 0.
    np.testing.assert_array_equal(y[:, [0, 1, -1]], 0.0)
    # Next to them the window is small (w[2] = 1.5e-4), which amplifies round-off.
    np.testing.assert_allclose(y[:, 2:-1], x[:, 2:15871], atol=1e-3)
    np.testing.assert_allclose(y[:, 100:-100], x[:, 100:15772], atol=2e-6)


def test_inverse_is_linear_in_the_magnitude():
    x = noise(1, 8000, seed=7)
    magnitude, phase = STFT()(x)
    half = to_numpy(InverseSTFT()([0.5 * to_numpy(magnitude), phase], length=8000))
    np.testing.assert_allclose(half, 0.5 * x, atol=2e-6)
    silence = to_numpy(InverseSTFT()([np.zeros_like(to_numpy(magnitude)), phase]))
    np.testing.assert_array_equal(silence, 0.0)


def test_variable_length_functional_model_and_keras_file(tmp_path):
    waveforms = keras.Input((None,))
    magnitude, phase = STFT(window="hamming")(waveforms)
    outputs = InverseSTFT(window="hamming")([magnitude, phase])
    model = keras.Model(waveforms, [magnitude, outputs])
    assert model.output_shape == [(None, None, 257), (None, None)]
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    for samples in (16000, 8160):
        x = noise(2, samples, seed=samples)
        want = [to_numpy(t) for t in model(x)]
        got = [to_numpy(t) for t in restored(x)]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[1], x[:, : (samples // 160) * 160], atol=2e-6)


def test_standard_layer_checks():
    x = noise(2, 4000)
    magnitude, phase = (to_numpy(t) for t in STFT()(x))
    out = run_layer_test(
        lambda: STFT(window="hamming"), x, expected_output_shape=[(2, 26, 257)] * 2, fit=False
    )
    assert len(out) == 2
    run_layer_test(
        lambda: InverseSTFT(window="hann"),
        [magnitude, phase],
        expected_output_shape=(2, 4000),
        fit=False,
    )


def test_config_and_registry():
    layer = InverseSTFT(frame_length_ms=25, frame_step_ms=12.5, fft_length=None, center=False)
    config = layer.get_config()
    assert {k: config[k] for k in ("frame_length_ms", "frame_step_ms", "fft_length")} == {
        "frame_length_ms": 25,
        "frame_step_ms": 12.5,
        "fft_length": None,
    }
    assert config["center"] is False and config["window"] == "hann"
    assert layer.num_bins == 257  # 400 samples -> FFT 512
    assert InverseSTFT.from_config(config).get_config() == config
    assert LAYERS["stft"] is STFT and LAYERS["inverse_stft"] is InverseSTFT
    assert keras.saving.get_registered_name(STFT) == "keras_spk>STFT"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": "rectangular"},
        {"window": "hann_symmetric"},
        {"center": "yes"},
        {"fft_length": 256},  # shorter than the 512-sample frame
        {"frame_step_ms": 0},
        {"sample_rate": 0},
    ],
)
@pytest.mark.parametrize("cls", [STFT, InverseSTFT])
def test_bad_arguments_raise(cls, kwargs):
    with pytest.raises(ValueError, match="Received"):
        cls(**kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="more than fft_length // 2 = 256 samples"):
        STFT()(noise(1, 256))
    with pytest.raises(ValueError, match="at least fft_length = 512 samples"):
        STFT(center=False)(noise(1, 511))
    magnitude = np.ones((1, 10, 257), "float32")
    with pytest.raises(ValueError, match="`length` must be None or a positive integer"):
        InverseSTFT()([magnitude, magnitude], length=0)
    with pytest.raises(ValueError, match=r"`phase` must be \[batch, frames, 257\]"):
        InverseSTFT()([magnitude, magnitude[..., :256]])
    with pytest.raises(ValueError, match="a list \\[magnitude, phase\\]"):
        InverseSTFT()([magnitude])


def _real_and_imaginary_parts():
    # Phase is compared through the real and imaginary parts it gives: in a
    # bin with (nearly) no energy, or a real bin where the imaginary part is
    # +-0, the angle itself may differ by up to 2 pi between FFT libraries.
    waveforms = keras.Input((2000,))
    magnitude, phase = STFT()(waveforms)
    outputs = [magnitude, magnitude * keras.ops.cos(phase), magnitude * keras.ops.sin(phase)]
    return keras.Model(waveforms, outputs)


BACKEND_CASES = {
    "stft magnitude, real and imaginary parts": lambda: (
        _real_and_imaginary_parts(),
        noise(2, 2000, seed=3, scale=0.1),
        None,
    ),
    "inverse stft of a random spectrum": lambda: (
        InverseSTFT(window="hamming"),
        [
            np.random.default_rng(5).uniform(0, 0.1, (2, 12, 257)).astype("float32"),
            np.random.default_rng(6).uniform(-np.pi, np.pi, (2, 12, 257)).astype("float32"),
        ],
        {"length": 2000},
    ),
}
