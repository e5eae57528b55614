"""`loss_weight` and per-term logging, shared by every loss-adding layer (`_heads.LossTerms`)."""

import csv

import keras
import numpy as np
import pytest

from keras_spk.layers import AAMSoftmax
from keras_spk.layers import AMSoftmax
from keras_spk.layers import ASoftmax
from keras_spk.layers import CenterLoss
from keras_spk.layers import RingLoss
from keras_spk.layers import SoftmaxHead
from keras_spk.layers import SpeakerBasis
from keras_spk.layers import _heads
from keras_spk.losses import GE2EHead
from tests.helpers.heads import added_loss
from tests.helpers.heads import toy_problem
from tests.test_case import to_numpy

RNG = np.random.default_rng(11)
EMBEDDINGS = RNG.normal(size=(6, 3)).astype("float32")
LABELS = np.array([0, 1, 2, 0, 1, 2], dtype="int32")

LAYERS = {
    "softmax_head": lambda **kw: SoftmaxHead(3, **kw),
    "am_softmax": lambda **kw: AMSoftmax(3, **kw),
    "aam_softmax": lambda **kw: AAMSoftmax(3, **kw),
    "a_softmax": lambda **kw: ASoftmax(3, **kw),
    "speaker_basis": lambda **kw: SpeakerBasis(3, hard_weight=1.0, num_hard=1, **kw),
    "center_loss": lambda **kw: CenterLoss(3, weight=0.1, centers_initializer="ones", **kw),
    "ring_loss": lambda **kw: RingLoss(weight=0.5, **kw),
    "ge2e_head": lambda **kw: GE2EHead(**kw),
}
TERMS = {
    "speaker_basis": [
        "speaker_basis_softmax_loss",
        "speaker_basis_basis_loss",
        "speaker_basis_hard_negative_loss",
    ],
    "center_loss": ["center_loss"],
    "ring_loss": ["ring_loss"],
}


def _added(factory, **kwargs):
    keras.utils.set_random_seed(0)
    layer = factory(**kwargs)
    layer([EMBEDDINGS, LABELS], training=False)
    return layer, added_loss(layer)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_loss_weight_scales_the_added_loss(name):
    _, plain = _added(LAYERS[name])
    _, default = _added(LAYERS[name], loss_weight=1.0)
    assert default == plain
    _, scaled = _added(LAYERS[name], loss_weight=2.5)
    np.testing.assert_allclose(scaled, 2.5 * plain, rtol=1e-6)
    layer, _ = _added(LAYERS[name], loss_weight=0.0)
    assert layer.losses == []


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_loss_weight_in_config_and_checked(name):
    layer = LAYERS[name](loss_weight=0.3)
    config = layer.get_config()
    assert config["loss_weight"] == 0.3
    assert layer.__class__.from_config(config).get_config() == config
    for bad in (-1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="loss_weight"):
            LAYERS[name](loss_weight=bad)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_layer_logs_its_terms_named_after_it(name):
    layer = LAYERS[name](name=name)
    assert [m.name for m in layer.metrics] == TERMS.get(name, [f"{name}_loss"])


def test_default_loss_is_the_head_loss_bit_for_bit():
    keras.utils.set_random_seed(0)
    layer = SoftmaxHead(3)
    layer([EMBEDDINGS, LABELS])
    logits = layer.linear_logits(keras.ops.convert_to_tensor(EMBEDDINGS))
    want = _heads.cross_entropy(logits, _heads.one_hot(LABELS, 3))
    assert to_numpy(layer.losses[0]) == to_numpy(want)


def test_metric_names():
    assert _heads.loss_metric_name("softmax_head") == "softmax_head_loss"
    assert _heads.loss_metric_name("center_loss") == "center_loss"
    assert _heads.loss_metric_name("speaker_basis", "basis") == "speaker_basis_basis_loss"
    assert _heads.loss_metric_name("loss") == "loss_loss"


def _model(loss_weight=0.5, dropout=0.0):
    keras.utils.set_random_seed(4)
    embeddings = keras.Input((2,))
    labels = keras.Input((), dtype="int32")
    x = keras.layers.Dense(4, name="dense")(embeddings)
    x = keras.layers.Dropout(dropout)(x)
    x = CenterLoss(3, weight=0.01, loss_weight=2.0, name="center_loss")([x, labels])
    x = RingLoss(weight=0.1, name="ring_loss")([x, labels])
    logits = SoftmaxHead(3, loss_weight=loss_weight, name="softmax_head")([x, labels])
    basis = SpeakerBasis(3, basis_weight=0.5, hard_weight=0.2, num_hard=1, name="speaker_basis")(
        [x, labels]
    )
    return keras.Model([embeddings, labels], [logits, basis])


def test_logged_terms_equal_the_terms_by_hand_and_sum_to_the_loss(tmp_path):
    x, y = toy_problem()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=None)
    dense = [to_numpy(w).astype("float64") for w in model.get_layer("dense").weights]
    head = [to_numpy(w).astype("float64") for w in model.get_layer("softmax_head").weights]
    log = tmp_path / "log.csv"
    # One epoch of a single batch at learning rate 0: the terms of these weights.
    history = model.fit(
        [x, y], epochs=1, batch_size=len(x), verbose=0, callbacks=[keras.callbacks.CSVLogger(log)]
    ).history
    terms = [
        "center_loss",
        "ring_loss",
        "softmax_head_loss",
        "speaker_basis_softmax_loss",
        "speaker_basis_basis_loss",
        "speaker_basis_hard_negative_loss",
    ]
    assert sorted(history) == sorted(["loss", *terms])
    e = x.astype("float64") @ dense[0] + dense[1]
    logits = e @ head[0] + head[1]
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(
        history["softmax_head_loss"][0], 0.5 * -np.mean(log_softmax[np.arange(len(y)), y]), rtol=1e-5
    )
    # Centers start at 0: 2.0 * 0.01 * 1/2 sum_i ||e_i||^2.
    np.testing.assert_allclose(history["center_loss"][0], 0.01 * np.sum(e**2), rtol=1e-5)
    np.testing.assert_allclose(sum(history[t][0] for t in terms), history["loss"][0], rtol=1e-5)
    with open(log) as f:
        header = next(csv.reader(f))
    # CSVLogger also writes (empty) val_ columns when there is no validation.
    assert {"epoch", "loss", *terms} <= set(header)


def test_terms_are_batch_size_weighted_means_reset_each_epoch():
    # A last batch of another size: the epoch's terms still sum to `loss`,
    # and every epoch (and evaluate) starts from fresh metrics.
    x, y = toy_problem()
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=None)
    history = model.fit([x, y], validation_data=([x, y],), epochs=3, batch_size=25, verbose=0)
    history = history.history
    terms = [k for k in history if k != "loss" and not k.startswith("val_")]
    for epoch in range(3):
        total = sum(history[t][epoch] for t in terms)
        np.testing.assert_allclose(total, history["loss"][epoch], rtol=1e-5)
        val_total = sum(history[f"val_{t}"][epoch] for t in terms)
        np.testing.assert_allclose(val_total, history["val_loss"][epoch], rtol=1e-5)
    evaluated = model.evaluate([x, y], batch_size=25, verbose=0, return_dict=True)
    for t in terms:
        np.testing.assert_allclose(evaluated[t], history[f"val_{t}"][-1], rtol=1e-5)
    model.reset_metrics()
    assert all(float(to_numpy(m.count)) == 0.0 for m in model.get_layer("softmax_head").metrics)


def test_logging_changes_no_weight_and_no_random_draw(monkeypatch):
    # Same seeded training (with dropout) with and without the metric
    # updates: bit-identical weights.
    x, y = toy_problem()

    def train():
        model = _model(dropout=0.3)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=None)
        history = model.fit([x, y], epochs=2, batch_size=16, verbose=0).history
        return [to_numpy(w) for w in model.weights], history

    logged, history = train()
    assert "softmax_head_loss" in history
    # Shape inference skips the updates: make every call look like it.
    monkeypatch.setattr(_heads, "in_symbolic_scope", lambda: True)
    silent, silent_history = train()
    assert silent_history["softmax_head_loss"] == [0.0, 0.0]
    assert silent_history["loss"] == history["loss"]
    for a, b in zip(logged, silent):
        np.testing.assert_array_equal(a, b)


class TermProbe(keras.layers.Layer):
    """Calls a loss layer once and returns the value each of its term metrics logged."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.inner = layer

    def call(self, inputs, training=None):
        for metric in self.inner.metrics:  # this call's terms only (the harness calls twice)
            metric.reset_state()
        self.inner(inputs, training=training)
        return {metric.name: metric.result() for metric in self.inner.metrics}


def _backend_case():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    head = SpeakerBasis(7, basis_weight=0.5, hard_weight=1.0, num_hard=3, loss_weight=0.5)
    return TermProbe(head), [x, y], {"training": True}


BACKEND_CASES = {"logged terms": _backend_case}
