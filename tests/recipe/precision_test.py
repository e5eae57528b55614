"""Mixed precision (keras_spk.recipe.precision) on the five paper models, under this backend.

Each paper's trainer is built small, once in float32 and once under each
mixed policy with the float32 model's initial weights, and takes the same
three SGD steps on the same batch (dropout off, so both see the same
network). The losses must be finite and close to float32's. Measured on
CPU, the largest relative difference to float32 over the three steps:

```
                  mixed_float16          mixed_bfloat16
                TensorFlow  PyTorch    TensorFlow  PyTorch
fpm               1e-4       1e-4        3e-4       2e-4
mirnet            1.0e-2     5e-4        5.7e-3     3.1e-3
multi_metric      7.9e-3     9.7e-3      1.2e-1     5.6e-2
rawnet            1.8e-3     4.2e-3      3.8e-2     3.3e-2
speaker_basis     1.2e-3     1.3e-3      7.1e-3     7.8e-3
```

bfloat16 keeps 8 bits of mantissa (float16 11), hence its wider
tolerance; the multi-metric embedder is the furthest off because its two
batch normalisations over the pooled vectors divide by the spread of a
batch of 8, which magnifies the rounding of the ResNet-50 trunk (already
about 3 % at the pooled features in bfloat16, 0.3 % in float16).

The learning rate is small (1e-4): these untrained small networks are
sharply curved, and with larger steps a gradient 0.98 aligned with
float32's already lands somewhere else. Under `mixed_float16` the
optimizer is a loss-scale optimizer whose scale starts at 2**8 rather than
Keras's 2**15: from 2**15 the first one to three steps of MIRNet, the
multi-metric trainer and RawNet overflow and are skipped (dynamic loss
scaling halves its scale each time), and the losses would not be
comparable step by step.
"""

import keras
import numpy as np
import pytest

from keras_spk.layers import AAMSoftmax
from keras_spk.layers import AMSoftmax
from keras_spk.layers import ASoftmax
from keras_spk.layers import AttentiveStatisticsPooling
from keras_spk.layers import CenterLoss
from keras_spk.layers import EnergyVAD
from keras_spk.layers import LearnableDictionaryEncoding
from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import LogSpectrogram
from keras_spk.layers import LossHead
from keras_spk.layers import PreEmphasis
from keras_spk.layers import RingLoss
from keras_spk.layers import SelfAttentivePooling
from keras_spk.layers import SoftmaxHead
from keras_spk.layers import SpeakerBasis
from keras_spk.layers import StatisticsPooling
from keras_spk.layers import STFT
from keras_spk.layers import TemporalAveragePooling
from keras_spk.losses import GE2EHead
from keras_spk.recipe.precision import CONSTRAINTS
from keras_spk.recipe.precision import PRECISIONS
from keras_spk.recipe.precision import float32_embedder
from keras_spk.recipe.precision import precision_scope
from keras_spk.recipe.precision import set_precision
from tests.test_case import to_numpy

MIXED = ("mixed_float16", "mixed_bfloat16")
STEPS = 3
# The largest relative loss difference to float32 over the steps (see the table above).
TOLERANCE = {"mixed_float16": 3e-2, "mixed_bfloat16": 8e-2}
TOLERANCE_OF = {("multi_metric", "mixed_bfloat16"): 2.5e-1}

# Layers that compute in float32 under every policy: front-ends, poolings, heads, loss layers.
FLOAT32_LAYERS = (
    PreEmphasis, LogMelFilterbank, LogSpectrogram, STFT, EnergyVAD,
    TemporalAveragePooling, StatisticsPooling, SelfAttentivePooling,
    AttentiveStatisticsPooling, LearnableDictionaryEncoding,
    SoftmaxHead, AMSoftmax, AAMSoftmax, ASoftmax, SpeakerBasis, CenterLoss, RingLoss,
    LossHead, GE2EHead,
)
LOSS_LAYERS = FLOAT32_LAYERS[10:]


@pytest.fixture(autouse=True)
def restore_policy():
    previous = keras.mixed_precision.dtype_policy()
    yield
    keras.mixed_precision.set_dtype_policy(previous)


# --------------------------------------------------------------------------
# 1. The setting.
# --------------------------------------------------------------------------


def test_set_precision_sets_the_global_policy_and_returns_the_previous_one():
    keras.mixed_precision.set_dtype_policy("float32")
    assert set_precision("mixed_bfloat16") == "float32"
    assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
    assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    assert set_precision("float32") == "mixed_bfloat16"
    assert keras.layers.Dense(2).compute_dtype == "float32"


def test_precision_scope_puts_the_previous_policy_back_even_on_error():
    keras.mixed_precision.set_dtype_policy("float32")
    with pytest.raises(RuntimeError):
        with precision_scope("mixed_float16"):
            assert keras.layers.Dense(2).compute_dtype == "float16"
            raise RuntimeError("stop")
    assert keras.mixed_precision.dtype_policy().name == "float32"


@pytest.mark.parametrize("name", ["float16", "mixed", "bfloat16", None, 16])
def test_unknown_precision_is_an_error_listing_the_valid_ones(name):
    keras.mixed_precision.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="float32, mixed_float16, mixed_bfloat16"):
        set_precision(name)
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_config_constraint():
    rule = CONSTRAINTS["train.precision"]
    assert all(rule.problem(name, {}) is None for name in PRECISIONS)
    assert rule.problem("mixed_float32", {}) is not None
    assert "mixed_float16" in rule.problem("mixed_flaot16", {})  # did you mean
    assert rule.problem(None, {}) is not None


def test_float32_embedder_returns_a_float32_model_as_it_is():
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(3)(x))
    assert float32_embedder(model) is model


def test_float32_embedder_casts_a_mixed_output_and_shares_the_layers():
    set_precision("mixed_float16")
    x = keras.Input((4,), name="features")
    model = keras.Model(x, keras.layers.Dense(3, name="embedding")(x), name="embedder")
    assert model.output.dtype == "float16"
    wrapped = float32_embedder(model)
    assert wrapped.name == "embedder"
    assert wrapped.input.dtype == wrapped.output.dtype == "float32"
    assert wrapped.get_layer("embedding") is model.get_layer("embedding")
    data = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    got = wrapped(data)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_array_equal(to_numpy(got), to_numpy(model(data)).astype("float32"))


def test_float32_embedder_puts_float32_inputs_before_a_half_input():
    set_precision("mixed_float16")
    x = keras.Input((4,), dtype="float16")
    model = keras.Model(x, keras.layers.Dense(3)(x))
    wrapped = float32_embedder(model)
    assert wrapped.input.dtype == wrapped.output.dtype == "float32"
    data = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(to_numpy(wrapped(data)), to_numpy(model(data)).astype("float32"))


def test_float32_embedder_needs_a_graph():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional or built Sequential"):
        float32_embedder(Subclassed())


# --------------------------------------------------------------------------
# 2. The five paper models under each policy.
# --------------------------------------------------------------------------


def _voices(rng, labels, samples):
    """Waveforms `[batch, samples]`: each label a harmonic tone of its own pitch, plus noise.

    Rows of one label sound alike and rows of different labels differ, as
    speakers do; with white noise alone every row would pool to nearly the
    same features, and a batch normalisation over the batch would amplify
    the half-precision rounding of their tiny differences.
    """
    labels = np.asarray(labels).reshape(len(labels), -1)
    t = np.arange(samples) / 16000.0
    x = 0.02 * rng.normal(size=(len(labels), samples))
    for row, speakers in enumerate(labels):
        for speaker in speakers:
            pitch = 110.0 * 1.25 ** speaker
            for harmonic in range(1, 6):
                x[row] += 0.2 / harmonic * np.sin(2 * np.pi * harmonic * pitch * t + rng.uniform(0, 2 * np.pi))
    return x.astype("float32")


def _fpm(rng):
    from papers.fpm.model import build_system

    backbone = {"stackwise_num_filters": [8, 8, 16, 16], "stackwise_num_blocks": [1, 1, 1, 1], "stem_filters": 8}
    # A-softmax with ring loss, LDE (its L2 normalisation and FC) on an FPM.
    trainer, embedder = build_system(
        "msea_fpm_tc", 3, head="a_softmax", pooling="lde", backbone_config=backbone
    )
    labels = np.array([0, 1, 2])
    return trainer, embedder, [_voices(rng, labels, 8000), labels]


def _mirnet(rng):
    from papers.mirnet.model import build_mirnet

    trainer, embedder = build_mirnet(
        6, encoder_filters=(16, 16, 16, 16, 24), attention_units=8, resnet_filters=(4, 4, 8, 8)
    )
    labels = np.array([[0, 1], [2, 3], [4, 5], [1, 3]], "int32")
    return trainer, embedder, [_voices(rng, labels, 8000), labels]


def _multi_metric(rng):
    from papers.multi_metric.model import build_embedder
    from papers.multi_metric.model import build_multi_metric_trainer

    backbone = {"stackwise_num_filters": [8, 8, 16, 16], "stackwise_num_blocks": [1, 1, 1, 1], "stem_filters": 8}
    embedder = build_embedder(embedding_dim=16, dropout=0.0, backbone_config=backbone)
    trainer = build_multi_metric_trainer(embedder, 4)
    labels = np.repeat(np.arange(4), 2).astype("int32")
    return trainer, embedder, [_voices(rng, labels, 8000), labels]


def _rawnet(rng):
    from papers.rawnet.model import build_rawnet

    trainer, embedder = build_rawnet(
        3, stackwise_filters=(8, 8, 16, 16, 16, 16), strided_conv_filters=8, gru_units=16,
        recurrent_dropout=0.0, embedding_dim=8,
    )
    labels = np.array([0, 1, 2, 0])
    return trainer, embedder, [_voices(rng, labels, 2 * 3**7), labels]


def _speaker_basis(rng):
    from papers.speaker_basis.model import build_speaker_basis_model

    backbone = {"stackwise_num_filters": [4, 4, 8, 8], "stem_filters": 4}
    # Softmax, center loss and the basis loss (Table 2's "Proposed 1").
    trainer, embedder = build_speaker_basis_model(
        4, "proposed_1", num_mel_bins=16, backbone_config=backbone
    )
    labels = np.array([0, 1, 2, 3])
    return trainer, embedder, [_voices(rng, labels, 8000), labels]


MODELS = {
    "fpm": _fpm,
    "mirnet": _mirnet,
    "multi_metric": _multi_metric,
    "rawnet": _rawnet,
    "speaker_basis": _speaker_basis,
}


def _build(name, policy, weights=None):
    set_precision(policy)
    keras.utils.set_random_seed(0)
    trainer, embedder, data = MODELS[name](np.random.default_rng(0))
    if weights is not None:
        trainer.set_weights(weights)
    return trainer, embedder, data


def _train(trainer, data, policy):
    optimizer = keras.optimizers.SGD(1e-4)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**8)
    # Eagerly: three steps of a small model take less time than tracing them.
    trainer.compile(optimizer=optimizer, loss=None, jit_compile=False, run_eagerly=True)
    return np.array([float(np.ravel(trainer.train_on_batch(data))[0]) for _ in range(STEPS)])


_REFERENCE = {}


def _float32_reference(name):
    """(initial weights, float32 losses) of a model, computed once per session."""
    if name not in _REFERENCE:
        trainer, _, data = _build(name, "float32")
        weights = trainer.get_weights()
        _REFERENCE[name] = weights, _train(trainer, data, "float32")
    return _REFERENCE[name]


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_paper_model_trains_under_mixed_precision_like_float32(name, policy):
    weights, reference = _float32_reference(name)
    trainer, embedder, data = _build(name, policy, weights)

    # Heads and loss layers: float32 variables and outputs; front-ends and poolings float32.
    # Every layer, nested ones too (the poolings inside MultiScaleAggregation, the embedder's).
    layers = trainer._flatten_layers(include_self=False)
    checked = [layer for layer in layers if isinstance(layer, FLOAT32_LAYERS)]
    assert any(isinstance(layer, LOSS_LAYERS) for layer in checked)
    for layer in checked:
        assert layer.compute_dtype == "float32", layer.name
        assert all(v.dtype == "float32" for v in layer.weights if "float" in v.dtype), layer.name
        if isinstance(layer, LOSS_LAYERS):
            assert all(t.dtype == "float32" for t in keras.tree.flatten(layer.output)), layer.name

    losses = _train(trainer, data, policy)
    assert np.all(np.isfinite(losses)), losses
    difference = np.max(np.abs(losses - reference) / np.abs(reference))
    assert difference < TOLERANCE_OF.get((name, policy), TOLERANCE[policy]), (losses, reference)

    model = float32_embedder(embedder)
    assert model.input.dtype == model.output.dtype == "float32"
    out = model(data[0], training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.all(np.isfinite(to_numpy(out)))


# --------------------------------------------------------------------------
# 3. The exported SavedModel takes and returns float32.
# --------------------------------------------------------------------------


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf_saved_model export needs TensorFlow")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_saved_model_of_a_mixed_float16_embedder_is_float32(name, tmp_path):
    import tensorflow as tf

    _, embedder, data = _build(name, "mixed_float16")
    model = float32_embedder(embedder)
    path = str(tmp_path / name)
    model.export(path, format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(path)
    signature = served.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.dtype == tf.float32
    (output,) = signature.structured_outputs.values()
    assert output.dtype == tf.float32
    got = served.serve(tf.constant(data[0]))
    assert got.dtype == tf.float32
    want = to_numpy(model(data[0], training=False))
    scale = np.max(np.abs(want))
    # The same float16 graph: measured 0 for four of them, 5e-4 of the largest value for multi_metric.
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=2e-3 * scale)
