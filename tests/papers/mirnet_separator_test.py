"""Table 2's separators (Han et al. 2020, section 4.2): counts, loss, resynthesis, the clean embedder.

Trainable parameters, by hand (D = 257 bins, 64 filters, BLSTM 400, Keras's
one LSTM bias per gate):

- VoiceFilter on a 512-d condition (row (b), MIRNet frozen): convolutions
  542,088 + BN 912 + BLSTM 2 * 4 * 400 * (8 * 257 + 512 + 400 + 1) =
  9,500,800 + fc1 800 * 600 + 600 = 480,600 + fc2 600 * 257 + 257 =
  154,457: 10,678,857; the frozen MIRNet adds none.
- uPIT (row (c)): fc1 doubled to 1,200, fc2 to 2 * 257 outputs, no
  condition: 542,088 + 912 + 2 * 4 * 400 * (8 * 257 + 400 + 1) =
  7,862,400 + 961,200 + 617,314 = 9,983,914.
"""

import keras
import numpy as np
import pytest

from keras_spk.layers import STFT
from keras_spk.metrics.separation import sdr_improvement
from keras_spk.layers import MatchLength
from papers.mirnet.model import build_clean_embedder
from papers.mirnet.model import build_mirnet
from papers.mirnet.model import build_separator
from tests.test_case import to_numpy

TINY_SEPARATOR = {"conv_filters": 4, "lstm_units": 8, "fc_units": 8, "dilations": (1, 2)}
TINY_MIRNET = {"encoder_filters": (8, 8, 8, 8, 8), "attention_units": 4, "resnet_filters": (4, 4, 8, 8)}


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _frozen_mirnet(**kwargs):
    _, embedder = build_mirnet(10, **kwargs)
    embedder.trainable = False
    return embedder


def test_paper_sizes_give_table_2s_trainable_counts():
    embedder = _frozen_mirnet()  # Table 1's MIRNet: 512-d identities
    trainer, separator = build_separator("mirnet", identities=embedder)
    assert _trainable(trainer) == 10_678_857
    assert _trainable(separator) == 10_678_857
    upit, _ = build_separator("none")
    assert _trainable(upit) == 542_088 + 912 + 7_862_400 + 961_200 + 617_314 == 9_983_914


def test_mirnet_condition_is_pit_over_the_two_outputs():
    """Swapping MIRNet's identities swaps the masks; the PIT loss is the same either way."""
    embedder = _frozen_mirnet(**TINY_MIRNET)
    trainer, separator = build_separator("mirnet", identities=embedder, **TINY_SEPARATOR)
    rng = np.random.default_rng(0)
    mixture = rng.normal(size=(2, 4000)).astype("float32") * 0.1
    sources = rng.normal(size=(2, 2, 4000)).astype("float32") * 0.1
    labels = np.zeros((2, 2), "int32")
    trainer.compile(optimizer="adam", loss=None)
    loss = trainer.evaluate((mixture, labels, sources), verbose=0, return_dict=True)["loss"]
    swapped = trainer.evaluate((mixture, labels, sources[:, ::-1]), verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, swapped, rtol=1e-5)
    estimates = to_numpy(separator(mixture))
    assert estimates.shape == (2, 2, 4000)
    assert np.isfinite(estimates).all()


def test_enrolment_condition_keeps_the_source_order():
    """Row (a)'s k-th output is conditioned on source k: swapping the sources changes its loss."""
    _, clean = build_clean_embedder(10, resnet_filters=(4, 4, 8, 8))
    clean.trainable = False
    trainer, separator = build_separator("enrolment", enrolment_embedder=clean, **TINY_SEPARATOR)
    rng = np.random.default_rng(1)
    mixture = rng.normal(size=(2, 4000)).astype("float32") * 0.1
    sources = np.stack([np.sin(np.arange(4000) * 0.05), rng.normal(size=4000)])[None].repeat(2, 0)
    sources = sources.astype("float32") * 0.1
    enrolment = rng.normal(size=(2, 2, 3000)).astype("float32") * 0.1
    labels = np.zeros((2, 2), "int32")
    trainer.compile(optimizer="adam", loss=None)
    inputs = (mixture, labels, sources, enrolment)
    loss = trainer.evaluate(inputs, verbose=0, return_dict=True)["loss"]
    swapped = trainer.evaluate((mixture, labels, sources[:, ::-1], enrolment), verbose=0, return_dict=True)["loss"]
    assert abs(loss - swapped) > 1e-6
    assert [i.name for i in separator.inputs] == ["mixture", "enrolment"]
    assert to_numpy(separator([mixture, enrolment])).shape == (2, 2, 4000)


def test_upit_trains_a_step_and_logs_the_separation_loss():
    trainer, separator = build_separator("none", **TINY_SEPARATOR)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    rng = np.random.default_rng(2)
    mixture = rng.normal(size=(4, 3200)).astype("float32") * 0.1
    sources = rng.normal(size=(4, 2, 3200)).astype("float32") * 0.1
    history = trainer.fit((mixture, np.zeros((4, 2), "int32"), sources), epochs=1, verbose=0)
    assert set(history.history) >= {"loss", "separation_loss"}
    assert np.isfinite(history.history["separation_loss"][0])


def test_an_all_ones_mask_gives_the_mixture_back_and_sdri_zero():
    """The separator's resynthesis (mixture phase, inverse STFT, cut to length) is exact for mask 1."""
    magnitude_input = keras.Input((None,))
    magnitude, phase = STFT()(magnitude_input)
    from keras_spk.layers import InverseSTFT

    waveform = InverseSTFT()([magnitude, phase])
    waveform = MatchLength()([keras.ops.stack([waveform, waveform], axis=1), magnitude_input])
    model = keras.Model(magnitude_input, waveform)
    rng = np.random.default_rng(3)
    t = np.arange(16037) / 16000
    sources = np.stack([np.sin(2 * np.pi * 220 * t), 0.5 * rng.normal(size=t.size)]).astype("float32")
    mixture = sources.sum(0)
    estimates = to_numpy(model(mixture[None]))[0]
    assert estimates.shape == (2, 16037)
    # The last 37 samples are past the last centred frame: zeros there, the rest exact.
    np.testing.assert_allclose(estimates[0, :16000], mixture[:16000], atol=1e-4)
    improvement = sdr_improvement(sources[:, :16000], estimates[:, :16000], mixture[:16000])
    np.testing.assert_allclose(improvement, 0.0, atol=1e-3)


def test_match_length_cuts_and_pads():
    x = np.arange(12, dtype="float32").reshape(1, 2, 6)
    padded = to_numpy(MatchLength()([x, np.zeros((1, 8), "float32")]))
    np.testing.assert_array_equal(padded, np.concatenate([x, np.zeros((1, 2, 2))], axis=-1))
    cut = to_numpy(MatchLength()([x, np.zeros((1, 4), "float32")]))
    np.testing.assert_array_equal(cut, x[..., :4])


def test_clean_embedder_shapes_and_loss():
    trainer, embedder = build_clean_embedder(5, resnet_filters=(4, 4, 8, 8))
    assert tuple(to_numpy(embedder(np.zeros((2, 8000), "float32"))).shape) == (2, 8)
    trainer.compile(optimizer="adam", loss=None)
    history = trainer.fit(
        (np.random.default_rng(0).normal(size=(4, 8000)).astype("float32"), np.arange(4) % 5),
        epochs=1, verbose=0,
    )
    assert "speaker_head_loss" in history.history


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"condition": "mixture"}, "condition"),
        ({"condition": "mirnet"}, "identities"),
        ({"condition": "enrolment"}, "enrolment_embedder"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_separator(**kwargs)
