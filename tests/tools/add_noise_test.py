"""tools/add_noise.py: a noisy copy of an evaluation folder at a set SNR."""

import json
import os

import numpy as np
import pytest

from keras_spk.data import read_audio
from keras_spk.data import write_wav
from tools import add_noise


@pytest.fixture()
def folders(tmp_path):
    rng = np.random.default_rng(0)
    clean = tmp_path / "clean"
    for speaker, n in [("id1", 8000), ("id2", 12000)]:
        (clean / speaker / "v").mkdir(parents=True)
        t = np.arange(n) / 16000
        write_wav(clean / speaker / "v" / "u.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    noise = tmp_path / "noise"
    noise.mkdir()
    write_wav(noise / "n.wav", 0.2 * rng.standard_normal(3000).clip(-3, 3), 16000)  # shorter: repeated
    return clean, noise, tmp_path / "noisy"


def test_every_utterance_gets_noise_at_the_snr(folders):
    clean, noise, noisy = folders
    assert add_noise.main([str(clean), str(noisy), "--noise-dir", str(noise), "--snr-db", "5"]) == 0
    for speaker in ("id1", "id2"):
        x = read_audio(clean / speaker / "v" / "u.wav").astype(np.float64)
        y = read_audio(noisy / speaker / "v" / "u.wav").astype(np.float64)
        assert y.shape == x.shape
        snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
        assert snr == pytest.approx(5.0, abs=0.05)  # 16-bit rounding only
    with open(noisy / add_noise.INFO) as f:
        assert json.load(f)["snr_db"] == 5.0
    # The same command again leaves the copy; other settings into it are refused.
    before = os.path.getmtime(noisy / "id1" / "v" / "u.wav")
    assert add_noise.main([str(clean), str(noisy), "--noise-dir", str(noise), "--snr-db", "5"]) == 0
    assert os.path.getmtime(noisy / "id1" / "v" / "u.wav") == before
    with pytest.raises(ValueError, match="other settings"):
        add_noise.main([str(clean), str(noisy), "--noise-dir", str(noise), "--snr-db", "0"])


def test_generated_noise_and_errors(folders, tmp_path):
    clean, noise, noisy = folders
    assert add_noise.main([str(clean), str(noisy), "--noise-dir", "generated:3", "--snr-db", "0"]) == 0
    x = read_audio(clean / "id2" / "v" / "u.wav").astype(np.float64)
    y = read_audio(noisy / "id2" / "v" / "u.wav").astype(np.float64)
    assert 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2)) == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError, match="no such folder"):
        add_noise.main([str(clean), str(tmp_path / "x"), "--noise-dir", str(tmp_path / "none"), "--snr-db", "5"])
    with pytest.raises(ValueError, match="generated:SEED"):
        add_noise.main([str(clean), str(tmp_path / "y"), "--noise-dir", "generated:a", "--snr-db", "5"])
    (tmp_path / "silent").mkdir()
    write_wav(tmp_path / "silent" / "s.wav", np.zeros(100), 16000)
    with pytest.raises(ValueError, match="silent"):
        add_noise.main([str(clean), str(tmp_path / "z"), "--noise-dir", str(tmp_path / "silent"), "--snr-db", "5"])
