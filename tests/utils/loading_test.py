"""Tests of keras_spk.utils.loading: `.keras` files with keras_spk layers and backbones."""

import re

import keras
import numpy as np
import pytest

from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import PreEmphasis
from keras_spk.models import ResNetBackbone
from keras_spk.utils.loading import check_model_file
from keras_spk.utils.loading import load_model
from tests.test_case import run_python
from tests.test_case import set_seeded_weights


# Loads a model in a fresh process that imports nothing of keras_spk but the loader.
FRESH_LOAD = """
import sys
import keras
import numpy as np
from keras_spk.utils.loading import load_model
model = load_model(sys.argv[1])
waveforms = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(waveforms, training=False)))
"""


def _tiny_embedder():
    """keras_spk layers and a one-stage keras_spk backbone, seeded weights."""
    waveforms = keras.Input((None,), name="waveforms")
    x = LogMelFilterbank(num_mel_bins=8, mean_normalization_window=None)(PreEmphasis(0.97)(waveforms))
    backbone = ResNetBackbone(
        stackwise_num_filters=[2],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        stem_filters=2,
        stem_kernel_size=3,
        feature_shape=(None, 8, 1),
    )
    x = backbone(keras.ops.expand_dims(x, -1))["C2"]
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(waveforms, keras.layers.Dense(3)(x))
    set_seeded_weights(model, seed=0, scale=0.3)
    return model


def _waveforms():
    return np.random.default_rng(1).normal(0.0, 0.1, (2, 1600)).astype("float32")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _tiny_embedder()
    path = tmp_path_factory.mktemp("loading") / "embedder.keras"
    model.save(path)
    expected = keras.ops.convert_to_numpy(model(_waveforms(), training=False))
    assert np.isfinite(expected).all() and np.ptp(expected) > 0  # a comparison that can fail
    return path, expected


def test_round_trip_gives_the_same_embeddings(saved):
    path, expected = saved
    for given in (path, str(path)):
        model = load_model(given)
        assert model.compiled is False  # compile=False
        assert any(isinstance(layer, ResNetBackbone) for layer in model.layers)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(_waveforms(), training=False)),
            expected,
            rtol=1e-5,
            atol=1e-6,
            equal_nan=False,
        )


def test_a_fresh_process_loads_without_importing_the_layers(saved, tmp_path):
    path, expected = saved
    np.save(tmp_path / "waveforms.npy", _waveforms())
    run_python(["-c", FRESH_LOAD, path, tmp_path / "waveforms.npy", tmp_path / "out.npy"])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6, equal_nan=False)


def test_path_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere.keras"
    with pytest.raises(
        FileNotFoundError,
        match=rf"Model file not found: {re.escape(str(missing))}\. Write it with model\.save",
    ):
        load_model(missing)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path))} is not a \.keras model file"):
        load_model(tmp_path)
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"model\.weights\.h5 is not a \.keras model file.*holds no architecture"
    ):
        load_model(weights)


def test_unloadable_files_are_named_with_the_fix(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(
        ValueError,
        match=rf"Cannot load the Keras model {re.escape(str(junk))}: .*register_keras_serializable",
    ):
        load_model(junk)

    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((3,))
    unregistered = tmp_path / "unregistered.keras"
    keras.Model(inputs, Unregistered()(inputs)).save(unregistered)
    with pytest.raises(
        ValueError,
        match=rf"(?s)Cannot load the Keras model {re.escape(str(unregistered))}: .*'Unregistered'.*register",
    ):
        load_model(unregistered)


def test_check_model_file_returns_the_path_as_a_string(saved):
    path, _ = saved
    assert check_model_file(path) == str(path)
