"""Keras layers for speaker verification."""

from keras_spk.layers.energy_vad import EnergyVAD
from keras_spk.layers.log_mel_filterbank import LogMelFilterbank
from keras_spk.layers.log_mel_filterbank import mel_filterbank_matrix
from keras_spk.layers.log_spectrogram import LogSpectrogram
from keras_spk.layers.pre_emphasis import PreEmphasis
