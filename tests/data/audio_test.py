"""Tests for audio reading: WAV parsing, compressed formats, resampling, errors."""

import math
import os
import pathlib
import struct
import wave

import numpy as np
import pytest
import tensorflow as tf

from keras_spk.data import AudioError
from keras_spk.data import decode_audio
from keras_spk.data import find_bad_audio
from keras_spk.data import load_audio
from keras_spk.data import read_audio
from keras_spk.data import resample
from keras_spk.data import training_dataset
from keras_spk.data import write_wav
from tests.helpers.audio import chunk
from tests.helpers.audio import fmt_payload
from tests.helpers.audio import list_chunk
from tests.helpers.audio import wav_bytes
from tests.helpers.audio import write_bytes

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
# The fixtures hold 0.3 s of 0.5 * sin(2 pi 440 t) (see fixtures/README.md).
FIXTURE_FREQUENCY = 440.0
FIXTURE_AMPLITUDE = 0.5
FIXTURE_DURATION = 0.3


def decode_bytes(contents, sample_rate=16000):
    return decode_audio(tf.constant(contents), "<memory>", sample_rate).numpy()


def sine(n, rate, frequency=440.0, amplitude=0.5):
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(n) / rate)


RNG = np.random.default_rng(1234)
INT16 = np.concatenate([[-32768, 32767, 0, 1, -1], RNG.integers(-32768, 32768, 200)])
INT24 = np.concatenate([[-(2**23), 2**23 - 1, 0, 1, -1], RNG.integers(-(2**23), 2**23, 200)])
INT32 = np.concatenate([[-(2**31), 2**31 - 1, 0, 1, -1], RNG.integers(-(2**31), 2**31, 200)])


def int24_bytes(values):
    v = np.asarray(values, np.int64) & 0xFFFFFF
    return np.stack([v & 255, (v >> 8) & 255, v >> 16], 1).astype(np.uint8).tobytes()


# (name, audio format, bits, data bytes, expected float64 values)
ENCODINGS = [
    ("u8", 1, 8, np.arange(256, dtype=np.uint8).tobytes(), (np.arange(256) - 128) / 128.0),
    ("pcm16", 1, 16, INT16.astype("<i2").tobytes(), INT16 / 32768.0),
    ("pcm24", 1, 24, int24_bytes(INT24), INT24 / 2.0**23),
    ("pcm32", 1, 32, INT32.astype("<i4").tobytes(), INT32 / 2.0**31),
    ("float32", 3, 32, RNG.uniform(-1, 1, 101).astype("<f4").tobytes(), None),
    ("float64", 3, 64, RNG.uniform(-1, 1, 101).astype("<f8").tobytes(), None),
]


def expected_values(audio_format, bits, data, expected):
    if expected is not None:
        return expected
    return np.frombuffer(data, "<f4" if bits == 32 else "<f8").astype(np.float32)


# === Encodings ===
@pytest.mark.parametrize(
    "name,audio_format,bits,data,expected", ENCODINGS, ids=[e[0] for e in ENCODINGS]
)
def test_wav_encodings_decode_to_known_values(tmp_path, name, audio_format, bits, data, expected):
    want = expected_values(audio_format, bits, data, expected)
    contents = wav_bytes(data, audio_format=audio_format, bits=bits)
    path = write_bytes(tmp_path / f"{name}.wav", contents)
    got = read_audio(path)
    assert got.dtype == np.float32
    assert got.shape == (len(want),)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    # Same result from the in-memory op.
    np.testing.assert_array_equal(decode_bytes(contents), got)


def test_float64_values_are_rounded_to_float32(tmp_path):
    values = np.array([0.1, -1.0 / 3.0, 1e-9, 0.999999999], "<f8")
    got = read_audio(write_bytes(tmp_path / "f64.wav", wav_bytes(values.tobytes(), 3, bits=64)))
    np.testing.assert_array_equal(got, values.astype(np.float32))


@pytest.mark.parametrize(
    "name,audio_format,bits,data,expected", ENCODINGS, ids=[e[0] for e in ENCODINGS]
)
def test_stereo_is_mixed_down_to_the_mean(name, audio_format, bits, data, expected):
    want = expected_values(audio_format, bits, data, expected)
    frame = bits // 8
    samples = [data[i : i + frame] for i in range(0, len(data), frame)]
    if len(samples) % 2:
        samples, want = samples[:-1], want[:-1]
    # Interleave: left = even samples, right = odd samples.
    stereo = b"".join(samples)
    got = decode_bytes(wav_bytes(stereo, audio_format, channels=2, bits=bits))
    np.testing.assert_allclose(got, (want[0::2] + want[1::2]) / 2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("audio_format,bits", [(1, 16), (1, 24), (3, 32)])
def test_wave_format_extensible(audio_format, bits):
    if audio_format == 3:
        want = np.array([0.25, -0.5, 0.125, 0.75], np.float32)
        data = want.astype("<f4").tobytes()
    elif bits == 16:
        ints = np.array([100, -200, 32767, -32768])
        want, data = ints / 32768.0, ints.astype("<i2").tobytes()
    else:
        ints = np.array([100, -200, 2**23 - 1, -(2**23)])
        want, data = ints / 2.0**23, int24_bytes(ints)
    contents = wav_bytes(data, audio_format, bits=bits, extensible=True)
    assert struct.unpack("<I", contents[16:20])[0] == 40  # fmt chunk size
    assert struct.unpack("<H", contents[20:22])[0] == 0xFFFE
    np.testing.assert_allclose(decode_bytes(contents), want, rtol=1e-6)
    # Also behind a LIST chunk (general chunk walk).
    walked = wav_bytes(data, audio_format, bits=bits, extensible=True, before_fmt=[list_chunk()])
    np.testing.assert_allclose(decode_bytes(walked), want, rtol=1e-6)


def test_plain_fast_path_and_fmt_with_cb_size(tmp_path):
    # The common case: 16-bit mono at the target rate, fmt size 16.
    ints = INT16[:50]
    contents = wav_bytes(ints.astype("<i2").tobytes())
    np.testing.assert_array_equal(decode_bytes(contents), ints / 32768.0)
    # fmt size 18 (cbSize = 0), as some writers produce; data starts at 46.
    payload = fmt_payload(1, 1, 16000, 16) + b"\x00\x00"
    body = chunk(b"fmt ", payload) + chunk(b"data", ints.astype("<i2").tobytes())
    contents = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
    np.testing.assert_array_equal(decode_bytes(contents), ints / 32768.0)


@pytest.mark.parametrize("where", ["between", "before_fmt", "both", "odd_sized"])
def test_extra_chunks_are_skipped(where, tmp_path):
    ints = np.array([1000, -2000, 3000, -4000, 5000, 32767, -32768])
    data = ints.astype("<i2").tobytes()
    want = ints / 32768.0
    odd = chunk(b"junk", b"abc")  # 3 bytes + pad byte
    extra = {
        "between": dict(between=[list_chunk()]),
        "before_fmt": dict(before_fmt=[list_chunk()]),
        "both": dict(before_fmt=[list_chunk()], between=[chunk(b"fact", b"\x07\x00\x00\x00")]),
        "odd_sized": dict(before_fmt=[odd], between=[odd]),
    }[where]
    for rate in (16000, 8000):  # also with a rate that needs resampling
        contents = wav_bytes(data, rate=rate, **extra)
        path = write_bytes(tmp_path / f"{where}_{rate}.wav", contents)
        got = read_audio(path, sample_rate=rate)
        np.testing.assert_array_equal(got, want.astype(np.float32))
    # 24-bit stereo behind chunks too (walk path, other encodings).
    left, right = INT24[:20], INT24[20:40]
    inter = np.stack([left, right], 1).reshape(-1)
    contents = wav_bytes(int24_bytes(inter), channels=2, bits=24, **extra)
    np.testing.assert_allclose(decode_bytes(contents), (left + right) / 2.0**24, rtol=1e-6)


def test_streaming_size_runs_to_end_of_file():
    ints = np.array([5, -6, 7, -8, 9])
    contents = wav_bytes(ints.astype("<i2").tobytes(), data_size=0xFFFFFFFF)
    np.testing.assert_array_equal(decode_bytes(contents), ints / 32768.0)


@pytest.mark.parametrize("subtype,bits", [("PCM_U8", 8), ("PCM_16", 16), ("PCM_24", 24),
                                          ("PCM_32", 32), ("FLOAT", 32)])
def test_write_wav_round_trip(tmp_path, subtype, bits):
    x = np.concatenate([sine(301, 16000, amplitude=0.9), [-1.0, 0.0, 0.999]])
    stereo = np.stack([x, -0.5 * x], 1)
    for name, wave_in in [("mono", x), ("stereo", stereo)]:
        path = tmp_path / f"{name}.wav"
        write_wav(path, wave_in, 16000, subtype=subtype)
        header = path.read_bytes()[:44]
        assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
        assert struct.unpack("<HHIIHH", header[20:36]) == (
            3 if subtype == "FLOAT" else 1,
            wave_in.ndim,
            16000,
            16000 * wave_in.ndim * bits // 8,
            wave_in.ndim * bits // 8,
            bits,
        )
        if subtype == "FLOAT":
            q = np.asarray(wave_in, np.float32).astype(np.float64)
        else:
            scale = 2.0 ** (bits - 1)
            q = np.clip(np.round(np.asarray(wave_in) * scale), -scale, scale - 1) / scale
        want = q if q.ndim == 1 else q.mean(axis=1)
        np.testing.assert_allclose(read_audio(path), want, rtol=1e-6, atol=1e-7)
        if subtype != "FLOAT":  # the standard library agrees on PCM files
            with wave.open(str(path)) as w:
                assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (
                    wave_in.ndim, bits // 8, 16000)
                assert w.getnframes() == len(x)


def test_write_wav_rejects_unknown_subtype(tmp_path):
    with pytest.raises(ValueError, match="PCM_12"):
        write_wav(tmp_path / "x.wav", np.zeros(4), 16000, subtype="PCM_12")
    assert not (tmp_path / "x.wav").exists()


# === Resampling ===
@pytest.mark.parametrize("rate,n", [(8000, 2401), (44100, 4417), (22050, 2000), (48000, 4801)])
def test_files_are_resampled_to_16k(tmp_path, rate, n):
    path = tmp_path / f"sine_{rate}.wav"
    write_wav(path, sine(n, rate), rate, subtype="FLOAT")
    got = read_audio(path, sample_rate=16000)
    expected_len = math.ceil(n * 16000 / rate)
    assert got.shape == (expected_len,)
    # Away from the edges (the filter spans a few ms) the result is the same sine at 16 kHz.
    want = sine(expected_len, 16000)
    edge = 80
    np.testing.assert_allclose(got[edge:-edge], want[edge:-edge], atol=1e-3, rtol=0)
    # And it is really 440 Hz: the dominant FFT bin.
    spectrum = np.abs(np.fft.rfft(got[edge:-edge]))
    freq = np.argmax(spectrum) * 16000 / len(got[edge:-edge])
    assert abs(freq - 440.0) < 16000 / len(got[edge:-edge])


def test_resample_same_rate_is_identity_and_lengths():
    x = RNG.uniform(-1, 1, 333).astype(np.float32)
    np.testing.assert_allclose(resample(x, 16000, 16000).numpy(), x, atol=1e-6)
    assert resample(x, 16000, 8000).shape == (167,)
    assert resample(x, 8000, 16000).shape == (666,)
    assert resample(x, 44100, 16000).shape == (math.ceil(333 * 16000 / 44100),)


def test_downsampling_removes_content_above_the_new_nyquist():
    # 7 kHz at 32 kHz is above 4 kHz Nyquist of an 8 kHz output: it must not alias into the band.
    rate = 32000
    x = sine(6400, rate, frequency=7000.0, amplitude=0.5) + sine(6400, rate, frequency=1000.0)
    y = resample(x.astype(np.float32), rate, 8000).numpy()
    assert y.shape == (1600,)
    np.testing.assert_allclose(y[100:-100], sine(1600, 8000, 1000.0)[100:-100], atol=2e-3)


# === Compressed formats ===
def fixture_reference(n, rate):
    return sine(n, rate, FIXTURE_FREQUENCY, FIXTURE_AMPLITUDE)


@pytest.mark.parametrize("name,bits", [("sine_16k_pcm16.flac", 16), ("sine_16k_pcm24.flac", 24)])
def test_flac_decodes_exactly(name, bits):
    path = FIXTURES / name
    got = read_audio(path)
    n = int(round(FIXTURE_DURATION * 16000))
    assert got.shape == (n,)
    scale = 2.0 ** (bits - 1)
    # On the quantisation grid of the bit depth, within one step of the sine.
    np.testing.assert_array_equal(got * scale, np.round(got * scale))
    np.testing.assert_allclose(got, fixture_reference(n, 16000), atol=1.0 / scale, rtol=0)
    # The same bytes through the in-memory op.
    np.testing.assert_array_equal(decode_bytes(path.read_bytes()), got)


def test_flac_is_resampled_from_its_header_rate():
    got = read_audio(FIXTURES / "sine_16k_pcm16.flac", sample_rate=8000)
    assert got.shape == (2400,)
    ref = fixture_reference(2400, 8000)
    np.testing.assert_allclose(got[40:-40], ref[40:-40], atol=1e-3)


def best_lag_correlation(x, ref, max_lag):
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        a = x[max(lag, 0) :]
        b = ref[max(-lag, 0) :]
        m = min(len(a), len(b))
        if m < len(ref) // 2:
            continue
        best = max(best, float(np.corrcoef(a[:m], b[:m])[0, 1]))
    return best


def dominant_frequency(x, rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


@pytest.mark.parametrize(
    "name,native_rate", [("sine_8k_vorbis.ogg", 8000), ("sine_16k.mp3", 16000)]
)
def test_lossy_formats_decode_to_the_sine(name, native_rate):
    path = FIXTURES / name
    for rate in (native_rate, 16000):
        got = read_audio(path, sample_rate=rate)
        n = int(round(FIXTURE_DURATION * rate))
        # Encoder delay/padding may change the length by at most one MP3 frame.
        assert abs(len(got) - n) <= 1152 * rate // native_rate, len(got)
        assert np.all(np.isfinite(got)) and np.max(np.abs(got)) < 0.7
        assert abs(dominant_frequency(got, rate) - 440.0) <= rate / len(got)
        ref = fixture_reference(len(got) + 2400, rate)
        # Up to a phase shift (any encoder delay), the decoded audio is the sine.
        assert best_lag_correlation(got, ref, max_lag=60) > 0.99


def test_lossy_resampling_matches_header_rate():
    # The Ogg fixture is at 8 kHz: reading at 16 kHz doubles the sample count.
    native = read_audio(FIXTURES / "sine_8k_vorbis.ogg", sample_rate=8000)
    up = read_audio(FIXTURES / "sine_8k_vorbis.ogg", sample_rate=16000)
    assert len(up) == 2 * len(native)
    np.testing.assert_allclose(up[100:-100:2], native[50:-50], atol=2e-3)


# === Errors ===
def assert_audio_error(path, *fragments):
    with pytest.raises(AudioError) as info:
        read_audio(path)
    message = str(info.value)
    assert os.fspath(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def good_wav(n=400):
    return wav_bytes((INT16[:1].repeat(n)).astype("<i2").tobytes())


BAD_WAVS = {
    "empty": (lambda: b"", "empty"),
    "header_only": (
        lambda: wav_bytes(b"", data_size=32000),
        "data chunk is longer than the file",
    ),
    "cut_mid_data": (lambda: good_wav()[: 44 + 401], "data chunk is longer than the file"),
    "partial_frame": (lambda: wav_bytes(b"\x01" * 801), "ends inside a sample frame"),
    "partial_frame_24bit_stereo": (
        lambda: wav_bytes(b"\x01" * 14, channels=2, bits=24),
        "ends inside a sample frame",
    ),
    "not_audio": (lambda: b"This is a text file, not audio at all.\n" * 3, "not a supported audio"),
    "riff_not_wave": (lambda: b"RIFF\x10\x00\x00\x00AVI " + b"\x00" * 40, "not a supported audio"),
    "pcm12": (lambda: wav_bytes(b"\x00" * 40, bits=12), "unsupported WAV encoding"),
    "alaw": (lambda: wav_bytes(b"\x00" * 40, audio_format=6, bits=8), "unsupported WAV encoding"),
    "float16": (
        lambda: wav_bytes(b"\x00" * 40, audio_format=3, bits=16),
        "unsupported WAV encoding",
    ),
    "extensible_alaw": (
        lambda: wav_bytes(b"\x00" * 40, audio_format=6, bits=8, extensible=True),
        "unsupported WAV encoding",
    ),
    "zero_channels": (lambda: wav_bytes(b"\x00" * 40, channels=0), "zero channels"),
    "zero_rate": (lambda: wav_bytes(b"\x00" * 40, rate=0), "zero sample rate"),
    "no_data_chunk": (
        lambda: b"RIFF\x24\x00\x00\x00WAVE" + chunk(b"fmt ", fmt_payload(1, 1, 16000, 16)),
        "no 'fmt ' or 'data' chunk",
    ),
    "no_samples": (lambda: wav_bytes(b""), "no audio samples"),
    "nan_float32": (
        lambda: wav_bytes(np.array([0.1, np.nan, 0.2], "<f4").tobytes(), 3, bits=32),
        "NaN or Inf",
    ),
    "inf_float32": (
        lambda: wav_bytes(np.array([0.1, 0.2, np.inf], "<f4").tobytes(), 3, bits=32),
        "NaN or Inf",
    ),
    "neg_inf_float64": (
        lambda: wav_bytes(np.array([-np.inf, 0.2], "<f8").tobytes(), 3, bits=64),
        "NaN or Inf",
    ),
    "nan_in_one_channel": (
        lambda: wav_bytes(np.array([0.1, np.nan, 0.2, 0.3], "<f4").tobytes(), 3, 2, bits=32),
        "NaN or Inf",
    ),
    # The same problems behind an extra chunk (they take the chunk-walk path).
    "walk_cut_mid_data": (
        lambda: wav_bytes(b"\x00" * 800, before_fmt=[list_chunk()])[:300],
        "data chunk is longer than the file",
    ),
    "walk_partial_frame": (
        lambda: wav_bytes(b"\x00" * 801, between=[list_chunk()]),
        "ends inside a sample frame",
    ),
    "walk_alaw": (
        lambda: wav_bytes(b"\x00" * 40, audio_format=6, bits=8, between=[list_chunk()]),
        "unsupported WAV encoding",
    ),
    "walk_nan": (
        lambda: wav_bytes(np.array([np.nan], "<f4").tobytes(), 3, bits=32, between=[list_chunk()]),
        "NaN or Inf",
    ),
    "walk_no_data_chunk": (
        lambda: b"RIFF\x30\x00\x00\x00WAVE"
        + list_chunk()
        + chunk(b"fmt ", fmt_payload(1, 1, 16000, 16)),
        "no 'fmt ' or 'data' chunk",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WAVS))
def test_bad_wav_raises_audio_error_naming_file_and_problem(tmp_path, case):
    make, fragment = BAD_WAVS[case]
    path = write_bytes(tmp_path / f"{case}.wav", make())
    assert_audio_error(path, fragment)


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nowhere" / "missing.wav"
    assert_audio_error(path, "no such audio file")


def test_bad_file_in_graph_op_raises_invalid_argument_with_path(tmp_path):
    path = write_bytes(tmp_path / "cut.wav", good_wav()[:100])
    with pytest.raises(tf.errors.InvalidArgumentError, match="cut.wav: file is truncated"):
        load_audio(path).numpy()
    with pytest.raises(tf.errors.InvalidArgumentError, match="mem.wav: file is empty"):
        decode_audio(tf.constant(b""), "mem.wav").numpy()


@pytest.mark.parametrize(
    "name", ["sine_16k_pcm16.flac", "sine_16k_pcm24.flac", "sine_8k_vorbis.ogg", "sine_16k.mp3"]
)
def test_truncated_compressed_files_raise(tmp_path, name):
    contents = (FIXTURES / name).read_bytes()
    path = write_bytes(tmp_path / f"half_{name}", contents[: len(contents) // 2])
    assert_audio_error(path, "corrupt or truncated")


@pytest.mark.parametrize("ext", [".flac", ".ogg", ".mp3"])
def test_garbage_with_compressed_extension_raises(tmp_path, ext):
    garbage = bytes((i * 7 + 3) % 200 for i in range(2000))  # never 0xFF: not an MP3 sync word
    path = write_bytes(tmp_path / f"garbage{ext}", garbage)
    assert_audio_error(path, "not a supported audio file")


def test_flac_magic_with_garbage_body_raises(tmp_path):
    path = write_bytes(tmp_path / "fake.flac", b"fLaC" + bytes(range(100)) * 3)
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert path in str(info.value)


def test_ogg_page_without_a_decodable_stream_raises(tmp_path):
    page = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x1e" + b"OpusHead" + b"\x00" * 40
    message = assert_audio_error(write_bytes(tmp_path / "opus.ogg", page), "cannot decode audio")
    assert "BytesIO" not in message


def test_find_bad_audio_returns_exactly_the_bad_files(tmp_path):
    good = []
    for i in range(4):
        p = tmp_path / f"good{i}.wav"
        write_wav(p, sine(800 + 100 * i, 16000), 16000)
        good.append(str(p))
    good.append(str(FIXTURES / "sine_16k_pcm16.flac"))
    nan = wav_bytes(np.array([np.nan], "<f4").tobytes(), 3, bits=32)
    bad = {
        write_bytes(tmp_path / "empty.wav", b""): "empty",
        write_bytes(tmp_path / "cut.wav", good_wav()[:200]): "truncated",
        write_bytes(tmp_path / "nan.wav", nan): "NaN",
        str(tmp_path / "missing.wav"): "no such audio file",
        write_bytes(tmp_path / "half.ogg", (FIXTURES / "sine_8k_vorbis.ogg").read_bytes()[:1500]):
            "corrupt or truncated",
    }
    mixed = [good[0], *list(bad)[:2], good[1], good[2], *list(bad)[2:], good[3], good[4]]
    result = find_bad_audio(mixed)
    assert [p for p, _ in result] == [p for p in mixed if p in bad]
    for path, message in result:
        assert path in message and bad[path] in message, message
    assert find_bad_audio(good) == []
    assert find_bad_audio([]) == []


def test_training_dataset_with_a_bad_file_raises_naming_it(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"ok{i}.wav"
        write_wav(p, sine(1600, 16000), 16000)
        paths.append(str(p))
    bad = write_bytes(tmp_path / "broken_file.wav", good_wav()[:300])
    paths.insert(2, bad)
    dataset = training_dataset(paths, [0, 1, 2, 3], crop_samples=800, batch_size=2, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in dataset:
            pass
    assert bad in info.value.message
    assert "truncated" in info.value.message


@pytest.mark.parametrize("name", ["it's.wav", 'quote"d.wav', "data [copy].wav", "back\\slash.wav",
                                  "müller.wav"])
def test_error_message_keeps_awkward_paths_and_quotes_intact(tmp_path, name):
    # TensorFlow prints assertion messages C-escaped and in brackets; the AudioError
    # must still hold the real path and the problem text verbatim.
    path = write_bytes(tmp_path / name, b"")
    message = assert_audio_error(path, "file is empty (0 bytes)")
    assert message == f"{path}: file is empty (0 bytes)"
    path = write_bytes(tmp_path / f"nofmt_{name}", BAD_WAVS["no_data_chunk"][0]())
    message = assert_audio_error(path)
    problem = "WAV file has no 'fmt ' or 'data' chunk (corrupt or truncated header)"
    assert message == f"{path}: {problem}"
