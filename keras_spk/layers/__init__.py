"""Keras layers for speaker verification (keras.ops only: TensorFlow and PyTorch backends).

Every layer is registered for `.keras` saving and reachable by a lower-case
name through `get(name)` (for YAML configs).
"""

from keras_spk.layers.a_softmax import ASoftmax
from keras_spk.layers.a_softmax import angular_margin_psi
from keras_spk.layers.aam_softmax import AAMSoftmax
from keras_spk.layers.am_softmax import AMSoftmax
from keras_spk.layers.attentive_statistics_pooling import AttentiveStatisticsPooling
from keras_spk.layers.batch_normalization import BatchNormalization
from keras_spk.layers.center_loss import CenterLoss
from keras_spk.layers.channel_exchange import ChannelExchange
from keras_spk.layers.channel_exchange import SplitViews
from keras_spk.layers.conv1d import Conv1D
from keras_spk.layers.energy_vad import EnergyVAD
from keras_spk.layers.feature_pyramid import FeaturePyramid
from keras_spk.layers.gru import GRU
from keras_spk.layers.learnable_dictionary_encoding import LearnableDictionaryEncoding
from keras_spk.layers.log_mel_filterbank import LogMelFilterbank
from keras_spk.layers.log_mel_filterbank import mel_filterbank_matrix
from keras_spk.layers.log_spectrogram import LogSpectrogram
from keras_spk.layers.loss_head import LossHead
from keras_spk.layers.multi_scale_aggregation import MultiScaleAggregation
from keras_spk.layers.pre_emphasis import PreEmphasis
from keras_spk.layers.rawnet_block import RawNetBlock
from keras_spk.layers.residual_attention import ResidualAttention
from keras_spk.layers.ring_loss import RingLoss
from keras_spk.layers.self_attentive_pooling import SelfAttentivePooling
from keras_spk.layers.softmax_head import SoftmaxHead
from keras_spk.layers.spec_augment import SpecAugment
from keras_spk.layers.spectral_attention import SpectralAttention
from keras_spk.layers.speaker_basis import SpeakerBasis
from keras_spk.layers.squeeze_excitation import SqueezeExcitation
from keras_spk.layers.statistics_pooling import StatisticsPooling
from keras_spk.layers.stft import InverseSTFT
from keras_spk.layers.stft import MatchLength
from keras_spk.layers.stft import STFT
from keras_spk.layers.temporal_average_pooling import TemporalAveragePooling
from keras_spk.utils.registry import lookup

LAYERS = {
    # Front-ends
    "pre_emphasis": PreEmphasis,
    "log_mel_filterbank": LogMelFilterbank,
    "log_spectrogram": LogSpectrogram,
    "energy_vad": EnergyVAD,
    "stft": STFT,
    "inverse_stft": InverseSTFT,
    "match_length": MatchLength,
    "spec_augment": SpecAugment,
    # Multi-scale aggregation
    "feature_pyramid": FeaturePyramid,
    "multi_scale_aggregation": MultiScaleAggregation,
    # Poolings
    "temporal_average_pooling": TemporalAveragePooling,
    "gap": TemporalAveragePooling,
    "statistics_pooling": StatisticsPooling,
    "self_attentive_pooling": SelfAttentivePooling,
    "sap": SelfAttentivePooling,
    "attentive_statistics_pooling": AttentiveStatisticsPooling,
    "asp": AttentiveStatisticsPooling,
    "learnable_dictionary_encoding": LearnableDictionaryEncoding,
    "lde": LearnableDictionaryEncoding,
    # Blocks
    "squeeze_excitation": SqueezeExcitation,
    "residual_attention": ResidualAttention,
    "rawnet_block": RawNetBlock,
    "channel_exchange": ChannelExchange,
    "split_views": SplitViews,
    "spectral_attention": SpectralAttention,
    # Keras's layers with the same weights and configs, computed in fewer passes
    "batch_normalization": BatchNormalization,
    "conv1d": Conv1D,
    "gru": GRU,
    # Heads
    "softmax": SoftmaxHead,
    "softmax_head": SoftmaxHead,
    "am_softmax": AMSoftmax,
    "a_softmax": ASoftmax,
    "aam_softmax": AAMSoftmax,
    "speaker_basis": SpeakerBasis,
    "center_loss": CenterLoss,
    "ring_loss": RingLoss,
    "loss_head": LossHead,
}


def get(name):
    """The layer class registered under `name` (see `LAYERS`); unknown names raise ValueError."""
    return lookup(LAYERS, name, "layer")
