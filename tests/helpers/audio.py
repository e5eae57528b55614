"""Audio shared by the data tests: coded corpus waveforms and WAV bytes built by hand.

Used by tests/data/{pipeline,mixture,audio,hostile_audio}_test.py.
"""

import pathlib
import struct

import numpy as np

# === The coded corpus of the pipeline tests ===
CROP = 400
# File i holds the 16-bit integers (i + 1) * 1000 + t, t = 0 .. length - 1 (length < 1000):
# every decoded sample names its file (value // 1000 - 1) and its position (value % 1000).
LENGTHS = [150, 999, 400, 620, 90, 401, 333, 800, 250, 500, 712, 399]
SPEAKER_OF_FILE = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]


def coded_waveform(index, length):
    return ((index + 1) * 1000 + np.arange(length)) / 32768.0


def write_coded_corpus(root):
    """Writes one 16-kHz WAV per `LENGTHS` entry (`coded_waveform`) into `root`; returns the paths."""
    from keras_spk.data import write_wav

    paths = []
    for i, n in enumerate(LENGTHS):
        path = pathlib.Path(root) / f"utt{i:02d}.wav"
        write_wav(path, coded_waveform(i, n), 16000)
        paths.append(str(path))
    return paths


# === Building WAV bytes by hand (independent of write_wav) ===
# WAVE_FORMAT_EXTENSIBLE sub-format GUID tail (after the 2-byte format code).
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def chunk(chunk_id, payload, declared=None):
    size = len(payload) if declared is None else declared
    pad = b"\x00" if len(payload) % 2 else b""
    return chunk_id + struct.pack("<I", size) + payload + pad


def fmt_payload(audio_format, channels, rate, bits, extensible=False):
    block = channels * bits // 8
    payload = struct.pack("<HHIIHH", 0xFFFE if extensible else audio_format, channels, rate,
                          rate * block, block, bits)
    if extensible:
        mask = (1 << channels) - 1
        payload += struct.pack("<HHIH", 22, bits, mask, audio_format) + _GUID_TAIL
    return payload


def wav_bytes(data, audio_format=1, channels=1, rate=16000, bits=16, extensible=False,
              before_fmt=(), between=(), data_size=None):
    """A RIFF/WAVE file: [chunks before fmt] fmt [chunks between] data."""
    body = b"".join(before_fmt)
    body += chunk(b"fmt ", fmt_payload(audio_format, channels, rate, bits, extensible))
    body += b"".join(between)
    # The data chunk is written last and without its pad byte, as writers do.
    size = len(data) if data_size is None else data_size
    body += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def list_chunk(text=b"INFOISFT\x05\x00\x00\x00test\x00"):
    return chunk(b"LIST", text)


def write_bytes(path, contents):
    path = pathlib.Path(path)
    path.write_bytes(contents)
    return str(path)
