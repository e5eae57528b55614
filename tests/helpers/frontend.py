"""Numpy references shared by the front-end layer tests."""

import numpy as np


def reference_sliding_mean(features, window):
    """Kaldi apply-cmvn-sliding --center=true, written as in Kaldi's loop."""
    num_frames = features.shape[0]
    out = np.empty_like(features)
    for t in range(num_frames):
        start = t - window // 2
        end = start + window
        if start < 0:
            end -= start
            start = 0
        if end > num_frames:
            start -= end - num_frames
            end = num_frames
            if start < 0:
                start = 0
        out[t] = features[t] - features[start:end].mean(axis=0)
    return out


def make_waveform(batch, samples, seed=0):
    rng = np.random.RandomState(seed)
    t = np.arange(samples) / 16000.0
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t + rng.uniform(0, 6, size=(batch, 1)))
    return (tone + 0.1 * rng.normal(size=(batch, samples))).astype("float32")
