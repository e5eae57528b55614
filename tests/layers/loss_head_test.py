import keras
import numpy as np
import pytest

import keras_spk
from keras_spk.layers import LossHead
from keras_spk.layers import SoftmaxHead
from tests.helpers.heads import added_loss
from tests.test_case import to_numpy

RNG = np.random.default_rng(3)
EMBEDDINGS = RNG.normal(size=(6, 4)).astype("float32")
LABELS = np.array([0, 0, 1, 1, 2, 2], dtype="int32")


@keras.saving.register_keras_serializable(package="keras_spk_tests")
def per_sample_squared_norm(y_true, y_pred):
    """Per-sample values: reduced by their mean in LossHead."""
    del y_true
    return keras.ops.sum(keras.ops.square(y_pred), axis=-1)


def test_loss_instance_weighted_and_output_unchanged():
    layer = LossHead(keras_spk.losses.TripletLoss(), weight=0.5)
    out = layer([EMBEDDINGS, LABELS])
    want = 0.5 * float(to_numpy(keras_spk.losses.TripletLoss()(LABELS, EMBEDDINGS)))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(added_loss(layer), want, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(out), EMBEDDINGS)


def test_callable_with_per_sample_values_is_averaged():
    layer = LossHead(per_sample_squared_norm, weight=2.0)
    layer([EMBEDDINGS, LABELS])
    want = 2.0 * np.mean(np.sum(EMBEDDINGS.astype("float64") ** 2, axis=-1))
    np.testing.assert_allclose(added_loss(layer), want, rtol=1e-6)


def test_keras_loss_name():
    target = RNG.normal(size=(6, 4)).astype("float32")
    layer = LossHead("mse", weight=3.0)
    layer([EMBEDDINGS, target])
    np.testing.assert_allclose(added_loss(layer), 3.0 * np.mean((EMBEDDINGS - target) ** 2), rtol=1e-6)


def test_several_predictions_are_passed_as_a_list():
    logits = RNG.normal(size=(6, 3)).astype("float32")
    seen = []

    def loss(y_true, y_pred):
        seen.append(len(y_pred))
        return keras.ops.mean(y_pred[0]) + keras.ops.mean(y_pred[1])

    for inputs in ([[EMBEDDINGS, logits], LABELS], [EMBEDDINGS, logits, LABELS]):
        layer = LossHead(loss)
        out = layer(inputs)
        assert len(out) == 2
        np.testing.assert_allclose(added_loss(layer), EMBEDDINGS.mean() + logits.mean(), rtol=1e-5)
    assert seen == [2, 2]


def test_weight_zero_adds_nothing_and_logs_zero():
    layer = LossHead(keras_spk.losses.TripletLoss(), weight=0, name="unused")
    layer([EMBEDDINGS, LABELS])
    assert layer.losses == []
    assert float(to_numpy(layer.loss_metric().result())) == 0.0
    assert layer.loss_metric().name == "unused_loss"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": "mse", "weight": -0.1},
        {"loss": "mse", "weight": float("nan")},
        {"loss": "mse", "weight": float("inf")},
        {"loss": "mse", "weight": "1"},
        {"loss": "no_such_loss"},
        {"loss": 3},
        {"loss": keras_spk.losses.TripletLoss},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        LossHead(**kwargs)


def test_rejects_a_single_input():
    with pytest.raises(ValueError, match="Received"):
        LossHead("mse")(EMBEDDINGS)


@pytest.mark.parametrize(
    "loss",
    [keras_spk.losses.MultiMetricLoss(weights={"triplet": 1.0, "npair": 0.5}), per_sample_squared_norm, "mse"],
    ids=["loss_instance", "registered_callable", "name"],
)
def test_save_and_load(tmp_path, loss):
    keras.utils.set_random_seed(0)
    embeddings = keras.Input((4,))
    labels = keras.Input((), dtype="float32" if loss == "mse" else "int32")
    x = keras.layers.Dense(4, name="dense")(embeddings)
    target = labels if loss != "mse" else keras.layers.Reshape((1,))(labels)
    out = LossHead(loss, weight=0.25, name="term")([x, target])
    model = keras.Model([embeddings, labels], out)
    y = LABELS.astype("float32" if loss == "mse" else "int32")
    model([EMBEDDINGS, y])
    before = float(sum(to_numpy(v) for v in model.losses))
    config = model.get_layer("term").get_config()
    assert config["weight"] == 0.25
    clone = LossHead.from_config(config)
    assert clone.get_config() == config
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(to_numpy(restored([EMBEDDINGS, y])), to_numpy(model([EMBEDDINGS, y])))
    np.testing.assert_allclose(float(sum(to_numpy(v) for v in restored.losses)), before, rtol=1e-6)


def test_two_term_trainer_reduces_each_term():
    # 0.1 * softmax + 0.5 * triplet on one embedding, P x K batches (4 x 4).
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    means = rng.normal(size=(4, 8)) * 1.5
    labels = np.repeat(np.arange(4), 4).astype("int32")
    x = (means[labels] + rng.normal(size=(16, 8))).astype("float32")
    features = keras.Input((8,))
    label_input = keras.Input((), dtype="int32")
    embedding = keras.layers.Dense(6, name="embedding")(features)
    embedding = LossHead(keras_spk.losses.TripletLoss(), weight=0.5, name="triplet")(
        [embedding, label_input]
    )
    logits = SoftmaxHead(4, loss_weight=0.1, name="softmax_head")([embedding, label_input])
    model = keras.Model([features, label_input], logits)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=None)
    history = model.fit([x, labels], epochs=30, batch_size=16, shuffle=False, verbose=0).history
    assert sorted(history) == ["loss", "softmax_head_loss", "triplet_loss"]
    for term in ("softmax_head_loss", "triplet_loss"):
        assert history[term][-1] < 0.8 * history[term][0], (term, history[term])
    total = np.array(history["softmax_head_loss"]) + np.array(history["triplet_loss"])
    np.testing.assert_allclose(total, history["loss"], rtol=1e-5)


def _backend_case():
    from keras_spk.losses import TripletLoss
    from tests.helpers.heads import LossProbe

    rng = np.random.default_rng(21)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = np.repeat(np.arange(4), 2).astype("int32")
    head = LossHead(TripletLoss(margin=0.5, distance="cosine"), weight=0.5)
    return LossProbe(head), [x, y], {"training": True}


BACKEND_CASES = {"output and weighted loss": _backend_case}
