"""Tiny seeded embedders and test tones shared by the inference and extraction tests.

Used by tests/inference_test.py and tests/tools/extract_test.py.
`keras_embed(model, waveform)` here embeds one `[samples]` waveform and
returns its `[dim]` row (tests/helpers/export.py has the batched one).
"""

import keras
import numpy as np

from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import PreEmphasis

DIM = 8
K = 2


def build_tiny_embedder(seed=3):
    """PreEmphasis -> LogMelFilterbank -> mean over frames -> Dense, seeded weights.

    Without mean normalisation, so the embedding follows the long-term spectrum.
    """
    waveforms = keras.Input((None,), name="waveforms")
    x = LogMelFilterbank(num_mel_bins=16, mean_normalization_window=None)(PreEmphasis(0.97)(waveforms))
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(waveforms, keras.layers.Dense(DIM)(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def keras_embed(model, waveform):
    return keras.ops.convert_to_numpy(model(waveform[None], training=False))[0]


def tone(rng, samples, frequency, sample_rate=16000):
    """A sine of `frequency` Hz plus a little noise, [samples] in [-1, 1]."""
    t = np.arange(samples) / sample_rate
    return 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.standard_normal(samples)


def build_tiny_multi_embedder(seed=6):
    """A mixture -> one embedding per speaker model: Conv1D front-end on samples,
    mean over time, Dense to K * DIM, Reshape to (K, DIM); seeded weights."""
    waveforms = keras.Input((None,), name="waveforms")
    x = keras.layers.Reshape((-1, 1))(PreEmphasis(0.97)(waveforms))
    x = keras.layers.Conv1D(6, 400, strides=160, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(K * DIM)(x)
    model = keras.Model(waveforms, keras.layers.Reshape((K, DIM))(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model
