"""Hostile and broken audio: header bounds, corrupt compressed streams, extreme samples.

Each test is a file that used to exhaust memory, hang, or decode silently
to garbage; each must now be an error naming the file and the problem, in
the eager reader and in the training pipeline alike.
"""

import io
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from keras_spk.data import AudioError
from keras_spk.data import read_audio
from keras_spk.data import resample
from keras_spk.data import training_dataset
from keras_spk.data import write_wav
from keras_spk.data import audio
from tests.helpers.audio import wav_bytes
from tests.helpers.audio import write_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tone(seconds, rate, amplitude=0.4):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def flac_bytes(x, rate, subtype="PCM_16"):
    buffer = io.BytesIO()
    soundfile.write(buffer, x, rate, format="FLAC", subtype=subtype)
    return buffer.getvalue()


def raises_naming(path, *fragments, sample_rate=16000):
    with pytest.raises(AudioError) as info:
        read_audio(path, sample_rate)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def pcm16(x):
    return np.round(np.asarray(x) * 32767).astype("<i2").tobytes()


# === Header fields out of bounds ===
@pytest.mark.parametrize("rate", [1, 100, 7999, 384001, 2**31, 2**32 - 1])
def test_absurd_wav_sample_rates_are_refused(tmp_path, rate):
    # 100 samples at a declared 1 Hz used to be stretched to 1.6 million (and a
    # 4 KB file to gigabytes); the byte rate is consistent, so only the rate is wrong.
    contents = bytearray(wav_bytes(pcm16(tone(0.00625, 16000))))
    contents[24:28] = struct.pack("<I", rate)
    contents[28:32] = struct.pack("<I", (2 * rate) % 2**32)
    path = write_bytes(tmp_path / f"rate{rate}.wav", bytes(contents))
    raises_naming(path, "sample rate is out of range", f"({rate} Hz", "8000 to 384000 Hz")


def test_lowest_and_highest_rates_are_read(tmp_path):
    for rate in (8000, 384000):
        path = write_bytes(tmp_path / f"ok{rate}.wav", wav_bytes(pcm16(tone(0.01, rate)), rate=rate))
        assert read_audio(path).shape == (160,)


@pytest.mark.parametrize(
    "field,offset,value,fragment",
    [
        ("channels", 22, 17, "channel count is out of range (17 channels"),
        ("block_align", 32, 7, "bit depth (block align 7, expected 1 x 16 bits = 2 bytes)"),
        ("byte_rate", 28, 8000, "(byte rate 8000, expected 16000 Hz x 2 bytes = 32000)"),
    ],
)
def test_inconsistent_wav_header_fields_are_named(tmp_path, field, offset, value, fragment):
    contents = bytearray(wav_bytes(pcm16(tone(0.05, 16000))))
    size = 2 if field in ("channels", "block_align") else 4
    contents[offset : offset + size] = value.to_bytes(size, "little")
    path = write_bytes(tmp_path / f"{field}.wav", bytes(contents))
    raises_naming(path, fragment)


def test_flac_with_an_absurd_header_rate_is_refused(tmp_path):
    contents = bytearray(flac_bytes(tone(0.2, 16000), 16000))
    # STREAMINFO: the 20-bit sample rate starts at byte 18; set it to 1 Hz.
    contents[18], contents[19] = 0, 0
    contents[20] = (contents[20] & 0x0F) | 0x10
    path = write_bytes(tmp_path / "rate1.flac", bytes(contents))
    raises_naming(path, "sample rate is out of range (1 Hz")


def test_a_short_fmt_chunk_is_named(tmp_path):
    # A consistent 8-byte 'fmt ' chunk: its rate and depth would be read from the data.
    fmt = b"fmt " + struct.pack("<I", 8) + struct.pack("<HHI", 1, 1, 16000)
    data = b"data" + struct.pack("<I", 200) + bytes(200)
    contents = b"RIFF" + struct.pack("<I", 4 + len(fmt) + len(data)) + b"WAVE" + fmt + data
    path = write_bytes(tmp_path / "short_fmt.wav", contents)
    raises_naming(path, "'fmt ' chunk is too short (8 bytes, needs 16)")


# === Corrupt compressed streams ===
def frame_offsets(contents):
    """Byte offsets of FLAC frame sync codes (0xFFF8) after the metadata."""
    data = np.frombuffer(contents, np.uint8)
    hits = np.where((data[:-1] == 0xFF) & (data[1:] == 0xF8))[0]
    return [int(h) for h in hits if h > 42]


def test_one_flipped_byte_in_a_flac_frame_is_an_error(tmp_path):
    # tensorflow-io returned this file with a frame of zeros and no error; the
    # frame's CRC says it is corrupt.
    x = tone(1.0, 16000) + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    contents = bytearray(flac_bytes(x, 16000))
    frames = frame_offsets(bytes(contents))
    contents[(frames[1] + frames[2]) // 2] ^= 0x10
    path = write_bytes(tmp_path / "flipped.flac", bytes(contents))
    raises_naming(path, "cannot decode audio; the file is corrupt or truncated")


def test_flac_cut_at_a_frame_boundary_is_truncated(tmp_path):
    contents = flac_bytes(tone(1.0, 16000), 16000)
    frames = frame_offsets(contents)
    path = write_bytes(tmp_path / "cut.flac", contents[: frames[2]])
    message = raises_naming(path)
    assert "truncated or corrupt" in message or "corrupt or truncated" in message, message


def test_a_flac_header_declaring_hours_is_an_error_not_an_allocation(tmp_path):
    contents = bytearray(flac_bytes(tone(0.3, 16000), 16000))
    # STREAMINFO's 36-bit total sample count (bytes 21.5-25): declare 2**35 samples.
    contents[21] = (contents[21] & 0xF0) | 0x08
    contents[22:26] = b"\x00\x00\x00\x00"
    path = write_bytes(tmp_path / "huge_total.flac", bytes(contents))
    message = raises_naming(path)
    assert "truncated or corrupt" in message or "corrupt or truncated" in message, message


def test_a_flac_longer_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "MAX_COMPRESSED_SECONDS", 0.5)
    path = write_bytes(tmp_path / "long.flac", flac_bytes(np.zeros(16000 * 2, np.float32), 16000))
    raises_naming(path, "decodes to more than 0.5 s of audio (8000 samples", "MAX_COMPRESSED_SECONDS")
    # At high rates the bound in samples (memory) comes first.
    monkeypatch.setattr(audio, "MAX_COMPRESSED_SAMPLES", 1000)
    raises_naming(path, "more than 0.0625 s of audio (1000 samples at 16000 Hz)")


def test_corrupt_flac_in_training_names_the_file(tmp_path):
    good = str(tmp_path / "good.wav")
    write_wav(good, tone(1.0, 16000), 16000)
    contents = flac_bytes(tone(1.0, 16000), 16000)
    bad = write_bytes(tmp_path / "bad file.flac", contents[:60] + bytes(200) + contents[260:])
    dataset = training_dataset([good, bad], [0, 1], 8000, 2, seed=0, start_epoch=0)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        next(iter(dataset))
    message = audio.audio_error_message(info.value)
    assert message.startswith(f"{bad}: cannot decode audio"), message


def test_opus_decodes(tmp_path):
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(0.5, 48000), 48000, format="OGG", subtype="OPUS")
    path = write_bytes(tmp_path / "speech.opus.ogg", buffer.getvalue())
    x = read_audio(path)
    # (Opus rings at an abrupt end of stream: the amplitude is checked before it.)
    assert abs(len(x) - 8000) <= 320 and 0.3 < np.max(np.abs(x[:-400])) < 0.5


# === Extreme samples, checked after every transform ===
@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize("value", [3e38, -3e38, 1e30, 41.0])
def test_float_samples_far_outside_full_scale_are_refused(tmp_path, value, rate):
    x = np.full(400, 0.1, "<f4")
    x[100:110] = value
    path = write_bytes(tmp_path / f"loud{rate}.wav", wav_bytes(x.tobytes(), 3, rate=rate, bits=32))
    # At 8 kHz the resampler used to turn 3e38 into Inf after the finiteness check.
    raises_naming(path, "samples far outside [-1, 1]", "limit 2")


def test_stereo_mixdown_overflow_is_refused(tmp_path):
    x = np.full([200, 2], 3e38, "<f4")
    path = write_bytes(tmp_path / "stereo.wav", wav_bytes(x.tobytes(), 3, 2, bits=32))
    with pytest.raises(AudioError, match="NaN or Inf|far outside"):
        read_audio(path)


def test_float_headroom_is_kept(tmp_path):
    x = np.full(400, 1.5, "<f4")
    path = write_bytes(tmp_path / "hot.wav", wav_bytes(x.tobytes(), 3, bits=32))
    np.testing.assert_array_equal(read_audio(path), x)


# === The resampler's memory is bounded ===
def test_resampling_in_blocks_equals_one_block(monkeypatch):
    x = tf.constant(np.random.default_rng(0).standard_normal(3001), tf.float32)
    whole = resample(x, 44100, 16000).numpy()
    monkeypatch.setattr(audio, "_RESAMPLE_BLOCK", 1000)
    blocked = resample(x, 44100, 16000).numpy()
    assert blocked.shape == whole.shape == (1089,)
    np.testing.assert_array_equal(blocked, whole)
    up = resample(x[:5], 8000, 16000).numpy()
    assert up.shape == (10,)
    assert resample(x[:0], 8000, 16000).numpy().shape == (0,)


def test_downsampling_a_long_file_needs_little_memory(tmp_path):
    # 20 s at 192 kHz: the whole-signal gather was 320,000 x 384 taps per
    # intermediate (about 1 GB each, several at once).
    path = tmp_path / "long192k.wav"
    write_wav(path, 0.1 * np.sin(np.arange(192000 * 20) * 0.01), 192000)
    script = (
        "import resource, sys\n"
        "from keras_spk.data import read_audio\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "x = read_audio(sys.argv[1])\n"
        "assert x.shape == (320000,), x.shape\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grown_kib = int(result.stdout.split()[-1])
    assert grown_kib < 1024 * 1024, f"reading grew the process by {grown_kib / 1024:.0f} MiB"


def test_audio_check_failure_tells_the_checks_from_other_errors(tmp_path):
    bad = write_bytes(tmp_path / "it's [bad].wav", b"RIFF")
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        next(iter(tf.data.Dataset.from_tensor_slices([bad]).map(audio.load_audio)))
    assert audio.audio_check_failure(info.value) == (
        f"{bad}: not a supported audio file (expected WAV, FLAC, Ogg Vorbis/Opus or MP3 content)"
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        tf.debugging.Assert(False, ["x: something else"])
    assert audio.audio_check_failure(info.value) is None
    assert audio.audio_check_failure(ValueError("no message attribute")) is None
