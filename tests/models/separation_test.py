"""Tests for the separation networks (VoiceFilter, uPIT), their loss and the resynthesis."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_spk.data.speech_synthesis import synthesize_utterance
from keras_spk.layers import STFT
from keras_spk.losses import PermutationInvariantLoss
from keras_spk.metrics import sdr_improvement
from keras_spk.models import ConcatenateToFrames
from keras_spk.models import SpectralMSE
from keras_spk.models import apply_mask
from keras_spk.models import build_upit
from keras_spk.models import build_voicefilter
from keras_spk.models import spectral_mse
from tests.test_case import to_numpy

SMALL = dict(conv_filters=4, lstm_units=8, fc_units=8)


def trainable_by_kind(model):
    """Trainable parameters per layer class name."""
    counts = {}
    for layer in model.layers:
        n = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        counts[type(layer).__name__] = counts.get(type(layer).__name__, 0) + n
    return {k: v for k, v in counts.items() if v}


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --------------------------------------------------------------------------
# Parameter counts (MIRNet recipe, section C3)
# --------------------------------------------------------------------------

# Convolutions (kernel (time, freq), weights + biases):
#   1x7: 1*7*1*64 + 64 = 512;  7x1: 7*64*64 + 64 = 28,736;
#   five 5x5 (dilation 1, 2, 4, 8, 16): 5 * (25*64*64 + 64) = 512,320;
#   1x1 to 8: 64*8 + 8 = 520                                -> 542,088
# Batch normalisation (gamma, beta): 2 * (7*64 + 8)          -> 912
CONVOLUTIONS, BATCH_NORM = 542_088, 912


def blstm(input_dim, units=400):
    # Keras's LSTM: 4 gates, each with input and recurrent kernels and one
    # bias (PyTorch's nn.LSTM has two biases: 2 * 4 * 400 = 3,200 more).
    return 2 * 4 * units * (input_dim + units + 1)


def test_voicefilter_parameter_count_at_e512():
    model = build_voicefilter(condition_dim=512)
    assert blstm(8 * 257 + 512) == 9_500_800
    assert trainable_by_kind(model) == {
        "Conv2D": CONVOLUTIONS,
        "BatchNormalization": BATCH_NORM,
        "Bidirectional": 9_500_800,
        "Dense": (800 * 600 + 600) + (600 * 257 + 257),  # fc1 480,600 + fc2 154,457
    }
    assert trainable(model) == 10_678_857
    # Plus the batch normalisations' moving means and variances.
    assert model.count_params() == 10_678_857 + BATCH_NORM


def test_voicefilter_parameter_count_at_e256():
    model = build_voicefilter(condition_dim=256)
    # Only the BLSTM's input changes: 2 * 4 * 400 * 256 = 819,200 fewer.
    assert trainable(model) == 9_859_657 == 10_678_857 - 2 * 4 * 400 * 256


def test_upit_parameter_count():
    model = build_upit()
    assert trainable_by_kind(model) == {
        "Conv2D": CONVOLUTIONS,
        "BatchNormalization": BATCH_NORM,
        "Bidirectional": blstm(8 * 257),  # no condition: 7,862,400
        "Dense": (800 * 1200 + 1200) + (1200 * 514 + 514),  # fc1 961,200 + fc2 617,314
    }
    assert trainable(model) == 9_983_914


# --------------------------------------------------------------------------
# Structure and outputs
# --------------------------------------------------------------------------


def test_voicefilter_layers_follow_the_paper():
    model = build_voicefilter(condition_dim=16, **SMALL)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(1, 7), (7, 1)] + [(5, 5)] * 5 + [(1, 1)]
    assert [c.dilation_rate[0] for c in convs] == [1, 1, 1, 2, 4, 8, 16, 1]
    assert {c.dilation_rate[1] for c in convs} == {1}
    assert [c.filters for c in convs] == [4] * 7 + [8]
    kinds = [type(layer).__name__ for layer in model.layers]
    # Every convolution is followed by batch normalisation and ReLU.
    for i, kind in enumerate(kinds):
        if kind == "Conv2D":
            assert kinds[i + 1 : i + 3] == ["BatchNormalization", "ReLU"]
    blstm_layer = model.get_layer("voicefilter_blstm")
    assert blstm_layer.forward_layer.units == 8
    condition_output = model.get_layer("voicefilter_condition").output
    assert tuple(condition_output.shape) == (None, None, 8 * 257 + 16)
    assert model.get_layer("voicefilter_fc2").activation.__name__ == "sigmoid"


def test_voicefilter_masks_any_length_and_depends_on_the_condition():
    model = build_voicefilter(condition_dim=16, **SMALL)
    rng = np.random.default_rng(0)
    condition = rng.normal(size=(2, 16)).astype("float32")
    for frames in (30, 17):
        magnitude = rng.uniform(0, 3, (2, frames, 257)).astype("float32")
        mask = to_numpy(model([magnitude, condition]))
        assert mask.shape == (2, frames, 257)
        assert np.all((mask > 0) & (mask < 1))
    other = to_numpy(model([magnitude, -condition]))
    assert np.abs(other - mask).max() > 1e-4
    # Each example's mask depends on its own inputs only.
    alone = to_numpy(model([magnitude[1:], condition[1:]]))
    np.testing.assert_allclose(alone, mask[1:], atol=1e-5)


@pytest.mark.parametrize("num_sources", [2, 3])
def test_upit_emits_one_mask_per_source(num_sources):
    model = build_upit(num_sources=num_sources, **SMALL)
    magnitude = np.random.default_rng(1).uniform(0, 3, (2, 21, 257)).astype("float32")
    masks = to_numpy(model(magnitude))
    assert masks.shape == (2, num_sources, 21, 257)
    assert model.output_shape == (None, num_sources, None, 257)
    # Source k of frame t is fc2's units [k * 257, (k + 1) * 257) of that frame.
    head = keras.Model(model.input, model.get_layer("upit_fc2").output)
    flat = to_numpy(head(magnitude)).reshape(2, 21, num_sources, 257)
    np.testing.assert_allclose(masks, flat.transpose(0, 2, 1, 3), rtol=1e-6)


def test_concatenate_to_frames_by_hand():
    frames = np.arange(12, dtype="float32").reshape(1, 3, 4)
    condition = np.array([[10.0, 20.0]], "float32")
    got = to_numpy(ConcatenateToFrames()([frames, condition]))
    want = np.concatenate([frames, np.tile([[[10.0, 20.0]]], (1, 3, 1))], axis=-1)
    np.testing.assert_array_equal(got, want)
    symbolic = ConcatenateToFrames()([keras.Input((None, 4)), keras.Input((2,))])
    assert tuple(symbolic.shape) == (None, None, 6)


def test_keras_file_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    magnitude = rng.uniform(0, 3, (2, 13, 257)).astype("float32")
    condition = rng.normal(size=(2, 16)).astype("float32")
    for model, inputs in (
        (build_voicefilter(condition_dim=16, **SMALL), [magnitude, condition]),
        (build_upit(**SMALL), magnitude),
    ):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        np.testing.assert_allclose(to_numpy(restored(inputs)), to_numpy(model(inputs)), atol=1e-6)


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (build_voicefilter, {"condition_dim": 0}, "condition_dim=0"),
        (build_voicefilter, {"lstm_units": 1.5}, "lstm_units=1.5"),
        (build_voicefilter, {"dilations": ()}, r"dilations=\(\)"),
        (build_voicefilter, {"dilations": (1, 0)}, "dilations"),
        (build_voicefilter, {"dilations": "124"}, "dilations"),
        (build_upit, {"num_sources": 1}, "num_sources=1"),
        (build_upit, {"num_bins": None}, "num_bins=None"),
        (build_upit, {"fc_units": -1}, "fc_units=-1"),
    ],
)
def test_bad_arguments_raise(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


# --------------------------------------------------------------------------
# Spectral MSE and uPIT
# --------------------------------------------------------------------------


def test_spectral_mse_by_hand():
    y_true = np.array([[[16.0, 1.0]], [[0.0, 4.0]]], "float32")  # [2, 1, 2]
    y_pred = np.array([[[1.0, 1.0]], [[0.0, 1.0]]], "float32")
    # power 0.5: example 0: ((4 - 1)^2 + 0) / 2 = 4.5; example 1: (0 + (2 - 1)^2) / 2 = 0.5.
    per_example = to_numpy(SpectralMSE(power=0.5).call(y_true, y_pred))
    np.testing.assert_allclose(per_example, [4.5, 0.5], rtol=1e-5)
    np.testing.assert_allclose(float(SpectralMSE(power=0.5)(y_true, y_pred)), 2.5, rtol=1e-5)
    # power 1: a plain MSE on magnitudes.
    np.testing.assert_allclose(
        to_numpy(SpectralMSE(power=1).call(y_true, y_pred)), [112.5, 4.5], rtol=1e-6
    )
    # The default 0.3: (16^0.3 - 1)^2 / 2 for example 0.
    np.testing.assert_allclose(
        to_numpy(spectral_mse().call(y_true, y_pred))[0], (16**0.3 - 1) ** 2 / 2, rtol=1e-5
    )
    assert spectral_mse(0.5).power == 0.5


def test_spectral_mse_gradient_is_finite_at_zero():
    y_true = np.ones((1, 3, 2), "float32")
    loss = SpectralMSE()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        y_pred = tf.Variable(np.zeros((1, 3, 2), "float32"))
        with tf.GradientTape() as tape:
            value = loss(y_true, y_pred)
        gradient = tape.gradient(value, y_pred).numpy()
    else:
        import torch

        y_pred = torch.zeros((1, 3, 2), requires_grad=True)
        loss(torch.as_tensor(y_true), y_pred).backward()
        gradient = y_pred.grad.numpy()
    assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize("kwargs", [{"power": 0}, {"power": -0.3}, {"epsilon": 0.0}])
def test_spectral_mse_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SpectralMSE(**kwargs)


def test_upit_loss_is_at_most_either_assignment_and_zero_for_swapped_sources():
    rng = np.random.default_rng(3)
    clean = rng.uniform(0, 2, (4, 2, 6, 257)).astype("float32")  # [batch, K, T, F]
    estimates = rng.uniform(0, 2, (4, 2, 6, 257)).astype("float32")
    upit = PermutationInvariantLoss(per_speaker_loss=spectral_mse())
    per_example = to_numpy(upit.call(clean, estimates))
    single = SpectralMSE()
    for b in range(4):
        fixed = [
            sum(float(single(clean[b : b + 1, i], estimates[b : b + 1, p[i]])) for i in range(2))
            for p in itertools.permutations(range(2))
        ]
        assert per_example[b] <= min(fixed) + 1e-5
        np.testing.assert_allclose(per_example[b], min(fixed), rtol=1e-5)
    assert float(upit(clean, clean[:, ::-1])) == pytest.approx(0.0, abs=1e-7)
    # The per-source loss survives the PIT loss's config.
    config = keras.losses.serialize(upit)
    restored = keras.losses.deserialize(config)
    assert isinstance(restored.per_speaker_loss, SpectralMSE)
    np.testing.assert_allclose(to_numpy(restored.call(clean, estimates)), per_example, rtol=1e-6)


def test_upit_trains_with_the_permutation_invariant_loss():
    model = build_upit(**SMALL)
    magnitude = keras.Input((None, 257))
    estimates = model(magnitude) * ops.expand_dims(magnitude, 1)
    trainer = keras.Model(magnitude, estimates)
    trainer.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=PermutationInvariantLoss(per_speaker_loss=spectral_mse()),
    )
    rng = np.random.default_rng(4)
    sources = rng.uniform(0, 1, (4, 2, 10, 257)).astype("float32")
    mixture = sources.sum(axis=1)
    history = trainer.fit(mixture, sources, epochs=5, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


# --------------------------------------------------------------------------
# Resynthesis
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_speakers():
    """Two synthetic speakers (2 s each), their mixture and the spectrograms."""
    sources = np.stack([synthesize_utterance(0, spk, 0, 0, 2.0) for spk in (1, 2)])
    sources = sources.astype("float32")
    mixture = sources.sum(axis=0)
    stft = STFT()
    source_magnitudes = np.stack([to_numpy(stft(s[None])[0])[0] for s in sources])
    magnitude, phase = (to_numpy(t) for t in stft(mixture[None]))
    return sources, mixture, source_magnitudes, magnitude, phase


def test_ideal_ratio_mask_separates_and_all_ones_mask_changes_nothing(two_speakers):
    sources, mixture, source_magnitudes, magnitude, phase = two_speakers
    power = source_magnitudes**2
    ideal = np.sqrt(power / np.maximum(power.sum(axis=0), 1e-12))[None]  # [1, 2, T, F]
    estimates = to_numpy(apply_mask(ideal, magnitude, phase, length=len(mixture)))
    assert estimates.shape == (1, 2, len(mixture))
    assert sdr_improvement(sources, estimates[0], mixture) > 10.0
    # All ones: the mixture back, to float32 round-off, so SDRi is 0.
    ones = to_numpy(apply_mask(np.ones_like(ideal), magnitude, phase, length=len(mixture)))
    np.testing.assert_allclose(ones[0], np.stack([mixture, mixture]), atol=1e-6)
    assert abs(sdr_improvement(sources, ones[0], mixture)) < 1e-6
    # One 3-D mask gives one waveform, as the matching source of a 4-D mask.
    single = to_numpy(apply_mask(ideal[:, 0], magnitude, phase, length=len(mixture)))
    np.testing.assert_array_equal(single, estimates[:, 0])


def test_apply_mask_in_a_functional_model_from_waveforms(tmp_path, two_speakers):
    sources, mixture, _, magnitude, phase = two_speakers
    waveforms = keras.Input((None,))
    spectra = STFT()(waveforms)
    masks = build_upit(**SMALL)(spectra[0])
    separator = keras.Model(waveforms, apply_mask(masks, *spectra))
    assert separator.output_shape == (None, 2, None)
    got = to_numpy(separator(mixture[None]))
    want = to_numpy(apply_mask(to_numpy(masks_of(separator, mixture)), magnitude, phase))
    np.testing.assert_allclose(got, want, atol=1e-5)
    path = tmp_path / "separator.keras"
    separator.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(mixture[None])), got, atol=1e-6)


def masks_of(separator, mixture):
    upit = next(layer for layer in separator.layers if layer.name == "upit")
    magnitude = STFT()(mixture[None])[0]
    return upit(magnitude)


def test_apply_mask_errors(two_speakers):
    _, _, _, magnitude, phase = two_speakers
    with pytest.raises(ValueError, match="`mask` must be"):
        apply_mask(np.ones((1, 2, 5, 257)), magnitude, phase)
    with pytest.raises(ValueError, match="`magnitude` and `phase`"):
        apply_mask(np.ones(magnitude.shape), magnitude, phase[:, :5])
    with pytest.raises(ValueError, match="`inverse_stft` must be an InverseSTFT"):
        apply_mask(np.ones(magnitude.shape), magnitude, phase, inverse_stft=STFT())
