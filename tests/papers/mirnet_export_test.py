"""Exporting MIRNet's embedder: a mixture waveform in, `[batch, 2, dim]` identities out.

A small MIRNet (papers/mirnet/model.py; narrow encoder and ResNet-18,
seeded weights) is exported as a SavedModel and served in a subprocess
where neither `keras` nor `keras_spk` can be imported: the `embeddings`
output is `(-1, 2, dim)` and matches Keras to 1e-4 on two lengths (TensorFlow
backend: `export_saved_model`; PyTorch backend: the weights rebuilt under
TensorFlow by `export_from_weights`).
"""

import keras
import numpy as np
import pytest

from keras_spk import export
from papers.mirnet.model import build_mirnet
from tests.helpers.export import check_serving_matches_keras
from tests.helpers.export import keras_embed
from tests.helpers.export import saved_model_cli_show
from tests.helpers.export import signature_tensors

IDENTITIES = 2
DIM = 16
LENGTHS = (8000 + 37, 12000 + 101)  # 0.5 s and 0.75 s, not whole hops


def build_small_mirnet(seed=0):
    """A small MIRNet embedder with seeded weights (also `export_from_weights`'s builder)."""
    _, embedder = build_mirnet(
        5,
        encoder_filters=(16, 16, 16, 16, 24),
        attention_units=8,
        resnet_filters=(4, 8, 8, DIM),
    )
    rng = np.random.default_rng(seed)
    values = []
    for weight in embedder.weights:
        shape = tuple(weight.shape)
        if weight.path.endswith(("gamma", "moving_variance")):
            value = rng.uniform(0.5, 1.5, shape)
        elif weight.path.endswith("kernel"):
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        values.append(value.astype("float32"))
    embedder.set_weights(values)
    return embedder


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export_saved_model runs under TensorFlow")
def test_saved_model_serves_two_identities_without_keras(tmp_path):
    model = build_small_mirnet(seed=3)
    path = export.export_saved_model(model, tmp_path / "mirnet" / "1")
    _, _, expected = check_serving_matches_keras(
        tmp_path, model, path, LENGTHS, batch=2, dim=DIM, identities=IDENTITIES
    )
    assert expected.shape[1:] == (IDENTITIES, DIM)
    assert np.abs(expected[:, 0] - expected[:, 1]).max() > 1e-3  # two different identities
    signatures = signature_tensors(saved_model_cli_show(path))
    assert signatures["serving_default"][("output", "embeddings")] == ("DT_FLOAT", f"(-1, {IDENTITIES}, {DIM})")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="exports a model built under PyTorch")
@pytest.mark.slow  # two TensorFlow subprocesses (export, then serving)
def test_torch_weights_export_to_a_saved_model(tmp_path):
    model = build_small_mirnet(seed=4)
    weights = tmp_path / "mirnet.weights.h5"
    model.save_weights(weights)
    written = export.export_from_weights(
        build_small_mirnet, weights, tmp_path / "mirnet" / "1", builder_kwargs={"seed": 0}, timeout=300
    )
    check_serving_matches_keras(tmp_path, model, written, LENGTHS, dim=DIM, identities=IDENTITIES)
    assert keras_embed(model, np.zeros((1, LENGTHS[0]), "float32")).shape == (1, IDENTITIES, DIM)
