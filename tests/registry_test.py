"""Components are reachable by lower-case name, and unknown names list the valid ones."""

import keras
import pytest

from keras_spk import layers
from keras_spk import losses

ISSUE_LAYERS = [
    "FeaturePyramid", "MultiScaleAggregation", "TemporalAveragePooling", "StatisticsPooling",
    "SelfAttentivePooling", "AttentiveStatisticsPooling", "LearnableDictionaryEncoding",
    "SqueezeExcitation", "ResidualAttention", "RawNetBlock", "SoftmaxHead", "AMSoftmax",
    "ASoftmax", "AAMSoftmax", "SpeakerBasis", "CenterLoss", "RingLoss",
]
ISSUE_LOSSES = [
    "GE2ELoss", "TripletLoss", "NPairLoss", "AngularLoss", "MultiMetricLoss",
    "PermutationInvariantLoss",
]


@pytest.mark.parametrize("name", ISSUE_LAYERS)
def test_every_layer_is_importable_registered_and_named(name):
    cls = getattr(layers, name)
    assert keras.saving.get_registered_name(cls) == f"keras_spk>{name}"
    assert cls in layers.LAYERS.values()
    assert all(key == key.lower() for key in layers.LAYERS)


@pytest.mark.parametrize("name", ISSUE_LOSSES)
def test_every_loss_is_importable_registered_and_named(name):
    cls = getattr(losses, name)
    assert keras.saving.get_registered_name(cls) == f"keras_spk>{name}"
    assert cls in losses.LOSSES.values()


def test_lookup_by_name():
    assert layers.get("LDE") is layers.LearnableDictionaryEncoding
    assert layers.get("sap") is layers.SelfAttentivePooling
    assert losses.get("triplet") is losses.TripletLoss
    assert layers.get(layers.RingLoss) is layers.RingLoss  # a class passes through


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown layer 'lda'.*learnable_dictionary_encoding"):
        layers.get("lda")
    with pytest.raises(ValueError, match="Unknown loss 'tripplet'.*triplet"):
        losses.get("tripplet")
