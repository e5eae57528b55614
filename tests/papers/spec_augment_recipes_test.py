"""SpecAugment in the four filterbank recipes: after the front-end, in training only, no weights."""

import importlib

import keras
import numpy as np
import pytest

from keras_spk.layers import SpecAugment
from papers.fpm.model import build_system
from papers.mirnet.model import build_mirnet
from papers.mirnet.model import build_separator
from papers.multi_metric.model import build_embedder as build_multi_metric_embedder
from papers.speaker_basis.model import build_embedder as build_speaker_basis_embedder
from tests.test_case import to_numpy

SETTINGS = {"freq_masks": 2, "freq_width": 4, "time_masks": 2, "time_width": 5, "seed": 1}
NARROW = {"stackwise_num_filters": [4, 4, 8, 8], "stackwise_num_blocks": [1, 1, 1, 1], "stem_filters": 4}
TINY_MIRNET = {"encoder_filters": (8, 8, 8, 8, 8), "attention_units": 4, "resnet_filters": (4, 4, 8, 8)}


def _fpm(spec_augment):
    return build_system("msea", 5, num_mel_bins=16, backbone_config=NARROW, spec_augment=spec_augment)[1]


def _speaker_basis(spec_augment):
    return build_speaker_basis_embedder(num_mel_bins=16, backbone_config=NARROW, spec_augment=spec_augment)


def _multi_metric(spec_augment):
    # No dropout: training-mode outputs then differ only by the masks.
    return build_multi_metric_embedder(
        embedding_dim=8, dropout=0.0, backbone_config=NARROW, spec_augment=spec_augment
    )


def _mirnet(spec_augment):
    return build_mirnet(5, spec_augment=spec_augment, **TINY_MIRNET)[1]


EMBEDDERS = {"fpm": _fpm, "speaker_basis": _speaker_basis, "multi_metric": _multi_metric, "mirnet": _mirnet}


def _largest_difference(a, b):
    return float(np.max(np.abs(to_numpy(a) - to_numpy(b))))


@pytest.mark.parametrize("recipe", sorted(EMBEDDERS))
def test_spec_augment_masks_in_training_only_and_adds_no_weights(recipe):
    plain = EMBEDDERS[recipe](None)
    augmented = EMBEDDERS[recipe](dict(SETTINGS))
    assert "spec_augment" in [layer.name for layer in augmented.layers]
    assert "spec_augment" not in [layer.name for layer in plain.layers]
    assert len(augmented.weights) == len(plain.weights)
    assert augmented.count_params() == plain.count_params()
    augmented.set_weights(plain.get_weights())

    waveforms = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8000)).astype("float32")
    # Inference first: a training-mode call moves the BN statistics.
    inference = augmented(waveforms, training=False)
    np.testing.assert_allclose(to_numpy(inference), to_numpy(plain(waveforms, training=False)), atol=1e-6)
    training = augmented(waveforms, training=True)
    assert _largest_difference(training, inference) > 1e-4
    # With batch statistics in both, what differs is the masking.
    assert _largest_difference(training, plain(waveforms, training=True)) > 1e-4


def test_spec_augment_masks_whole_bins_and_frames_of_the_front_end_output():
    embedder = _speaker_basis(dict(SETTINGS))
    features = keras.Model(embedder.input, embedder.get_layer("spec_augment").output)
    log_mel = keras.Model(embedder.input, embedder.get_layer("log_mel").output)
    waveforms = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 8000)).astype("float32")
    x = to_numpy(log_mel(waveforms))
    y = to_numpy(features(waveforms, training=True))
    np.testing.assert_array_equal(to_numpy(features(waveforms)), x)
    changed = y != x
    assert changed.any()
    assert (y[changed] == 0).all()
    for row in changed:  # every changed cell lies in a fully masked frame or bin
        frames, bins = row.all(axis=1), row.all(axis=0)
        assert (row == (frames[:, None] | bins[None, :])).all()


def test_frozen_mirnet_conditions_the_separator_without_masking():
    _, embedder = build_mirnet(5, spec_augment=dict(SETTINGS), **TINY_MIRNET)
    embedder.trainable = False
    trainer, _ = build_separator(
        "mirnet", identities=embedder, conv_filters=4, lstm_units=8, fc_units=8, dilations=(1, 2)
    )
    view = trainer.get_layer("mirnet_embedder")
    assert not any(isinstance(layer, SpecAugment) for layer in view.layers)
    assert len(view.weights) == len(embedder.weights)
    mixture = np.random.default_rng(2).normal(size=(2, 4000)).astype("float32") * 0.1
    np.testing.assert_allclose(
        to_numpy(view(mixture, training=True)), to_numpy(embedder(mixture, training=False)), atol=1e-6
    )


def test_settings_come_from_data_augment_spec_augment():
    from keras_spk.data.augment import spec_augment_settings

    masks = {"spec_augment": {"freq_masks": 1, "time_masks": 0}}
    assert spec_augment_settings({"data": {"augment": masks}, "seed": 7}) == {
        "freq_masks": 1, "freq_width": 8, "time_masks": 0, "time_width": 10, "seed": 7,
    }
    assert spec_augment_settings({"data": {}, "seed": 7}) is None
    assert spec_augment_settings({"data": {"augment": {"probability": 0.5}}, "seed": 7}) is None


# Each recipe's function that gives its builder's keyword arguments.
BUILDER_SETTINGS = {"fpm": "model_settings", "speaker_basis": "model_settings",
            "multi_metric": "embedder_settings", "mirnet": "mirnet_settings"}


@pytest.mark.parametrize("recipe", sorted(EMBEDDERS))
def test_each_recipe_passes_the_settings_to_its_builder(recipe):
    from keras_spk.config import load_config

    train = importlib.import_module(f"papers.{recipe}.train")
    config = load_config(train.DEFAULT_CONFIG, ["--data.augment.spec_augment.time_masks=2"])
    settings = getattr(train, BUILDER_SETTINGS[recipe])(config)
    assert settings["spec_augment"]["time_masks"] == 2
    assert settings["spec_augment"]["seed"] == config["seed"]
