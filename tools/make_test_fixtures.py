"""Regenerates the tiny compressed-audio fixtures in tests/data/fixtures.

The audio tests read these small files, so that what they decode does not
depend on the encoder of the machine they run on. Each holds a 0.3 s mono
440 Hz sine of amplitude 0.5 (`0.5 * sin(2 * pi * 440 * n / rate)`),
written with `soundfile` (libsndfile):

    python tools/make_test_fixtures.py

The tests compare the decoded audio with the same analytic sine.
"""

import os

import numpy as np
import soundfile

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures")
FREQUENCY = 440.0
AMPLITUDE = 0.5
DURATION = 0.3

# name: (sample rate, format, subtype)
FILES = {
    "sine_16k_pcm16.flac": (16000, "FLAC", "PCM_16"),
    "sine_16k_pcm24.flac": (16000, "FLAC", "PCM_24"),
    "sine_8k_vorbis.ogg": (8000, "OGG", "VORBIS"),
    "sine_16k.mp3": (16000, "MP3", "MPEG_LAYER_III"),
}


def sine(rate):
    n = np.arange(int(round(DURATION * rate)))
    return AMPLITUDE * np.sin(2 * np.pi * FREQUENCY * n / rate)


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    for name, (rate, container, subtype) in FILES.items():
        path = os.path.join(FIXTURES, name)
        soundfile.write(path, sine(rate), rate, format=container, subtype=subtype)
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
