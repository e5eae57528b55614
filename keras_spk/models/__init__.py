"""Keras models for speaker verification: backbones that papers' recipes build on.

Every model is registered for `.keras` saving and reachable by a lower-case
name through `get(name)` (for YAML configs).
"""

from keras_spk.models.feature_statistics import feature_statistics_embedder
from keras_spk.models.resnet import ResNetBackbone
from keras_spk.models.separation import ConcatenateToFrames
from keras_spk.models.separation import SpectralMSE
from keras_spk.models.separation import apply_mask
from keras_spk.models.separation import build_upit
from keras_spk.models.separation import build_voicefilter
from keras_spk.models.separation import spectral_mse
from keras_spk.utils.registry import lookup

MODELS = {
    "resnet": ResNetBackbone,
    "resnet_backbone": ResNetBackbone,
}


def get(name):
    """The model class registered under `name` (see `MODELS`); unknown names raise ValueError."""
    return lookup(MODELS, name, "model")
