import keras
import numpy as np
import pytest

from keras_spk.losses.angular_loss import angular_loss
from keras_spk.losses.multi_metric_loss import PAPER_WEIGHTS
from keras_spk.losses.multi_metric_loss import MultiMetricLoss
from keras_spk.losses.multi_metric_loss import multi_metric_loss
from tests.helpers.metric_losses import clustered_data
from tests.helpers.metric_losses import reference_angular_loss
from tests.helpers.metric_losses import reference_npair_loss
from tests.helpers.metric_losses import reference_triplet_loss
from tests.helpers.metric_losses import shuffled_batch


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference_softmax_loss(labels, logits):
    logits = np.asarray(logits, "float64")
    out = []
    for row, label in zip(logits, np.asarray(labels).reshape(-1)):
        out.append(-(row[label] - np.log(np.sum(np.exp(row)))))
    return np.array(out)


def reference_multi_metric_loss(labels, x, logits, weights, margin, mining, distance, l2, alpha):
    """Eq. 14: the weighted sum of the per-row terms."""
    terms = {
        "triplet": lambda: reference_triplet_loss(labels, x, margin, mining, distance),
        "npair": lambda: reference_npair_loss(labels, x, l2),
        "angular": lambda: reference_angular_loss(labels, x, alpha),
        "softmax": lambda: reference_softmax_loss(labels, logits),
    }
    return sum(weight * terms[name]() for name, weight in weights.items())


def batch(seed=0):
    labels, x = shuffled_batch(seed, (3, 3, 3))
    logits = np.random.default_rng(seed).normal(size=(len(labels), 5)).astype("float32")
    return labels, x, logits


def test_paper_weights_are_the_default():
    paper = {"triplet": 1.0, "npair": 0.5, "angular": 1.0, "softmax": 0.1}
    assert MultiMetricLoss().weights == paper
    assert PAPER_WEIGHTS == MultiMetricLoss().weights


@pytest.mark.parametrize(
    "weights, mining, distance",
    [
        (None, "batch_hard", "squared"),
        ({"triplet": 0.7, "angular": 2.0}, "semi_hard", "euclidean"),
        ({"npair": 1.0, "softmax": 0.3}, "batch_hard", "cosine"),
    ],
)
def test_matches_numpy_reference(weights, mining, distance):
    labels, x, logits = batch(1)
    expected = reference_multi_metric_loss(
        labels, x, logits, weights or PAPER_WEIGHTS, 0.5, mining, distance, 0.01, 40.0
    )
    kwargs = dict(weights=weights, margin=0.5, mining=mining, distance=distance, l2_reg=0.01)
    got = to_numpy(multi_metric_loss(labels, x, logits, alpha_degrees=40.0, **kwargs))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    loss = MultiMetricLoss(alpha_degrees=40.0, **kwargs)
    np.testing.assert_allclose(float(loss(labels, (x, logits))), expected.mean(), rtol=1e-4)
    np.testing.assert_allclose(
        float(loss(labels, {"embeddings": x, "logits": logits})), expected.mean(), rtol=1e-4
    )


def test_each_term_is_weighted():
    labels, x, logits = batch(2)
    alone = {
        name: float(MultiMetricLoss(weights={name: 1.0})(labels, (x, logits)))
        for name in PAPER_WEIGHTS
    }
    assert all(value > 0 for value in alone.values()), alone
    combined = float(MultiMetricLoss()(labels, (x, logits)))
    np.testing.assert_allclose(
        combined, sum(PAPER_WEIGHTS[k] * alone[k] for k in PAPER_WEIGHTS), rtol=1e-5
    )


def test_angular_form_is_passed_to_the_angular_term():
    labels, x, logits = batch(4)
    hinge = to_numpy(angular_loss(labels, x, 40.0))
    npair = to_numpy(angular_loss(labels, x, 40.0, form="npair"))
    assert np.abs(hinge - npair).max() > 1e-2
    without_angular = {k: v for k, v in PAPER_WEIGHTS.items() if k != "angular"}
    others = to_numpy(multi_metric_loss(labels, x, logits, weights=without_angular))
    for form, angular in (("hinge", hinge), ("npair", npair)):
        got = to_numpy(
            multi_metric_loss(labels, x, logits, alpha_degrees=40.0, angular_form=form)
        )
        np.testing.assert_allclose(got, others + PAPER_WEIGHTS["angular"] * angular, rtol=1e-5)
        loss = MultiMetricLoss(alpha_degrees=40.0, angular_form=form)
        np.testing.assert_allclose(float(loss(labels, (x, logits))), got.mean(), rtol=1e-5)
    assert MultiMetricLoss().angular_form == "hinge"


def test_embeddings_only_without_softmax_term():
    labels, x, _ = batch(3)
    loss = MultiMetricLoss(weights={"triplet": 1.0, "npair": 0.5, "angular": 1.0})
    expected = reference_multi_metric_loss(
        labels, x, None, loss.weights, 0.3, "batch_hard", "squared", 0.002, 45.0
    )
    np.testing.assert_allclose(float(loss(labels, x)), expected.mean(), rtol=1e-4)
    # A zero softmax weight needs no logits either.
    zero = MultiMetricLoss(weights={"triplet": 1.0, "softmax": 0.0})
    assert np.isfinite(float(zero(labels, x)))


def test_softmax_term_without_logits_raises():
    labels, x, _ = batch(0)
    with pytest.raises(ValueError, match="needs classifier logits"):
        MultiMetricLoss()(labels, x)


def test_fit_with_two_outputs_and_compile_loss_weights():
    # The documented model.fit route: the softmax term is a second output's
    # cross-entropy, weighted by the compile loss weights.
    x, labels = clustered_data()
    keras.utils.set_random_seed(0)
    features = keras.Input((8,))
    embeddings = keras.layers.Dense(4, name="embeddings")(features)
    logits = keras.layers.Dense(4, name="logits")(embeddings)
    model = keras.Model(features, [embeddings, logits])
    metric = MultiMetricLoss(weights={"triplet": 1.0, "npair": 0.5, "angular": 1.0})
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=[metric, keras.losses.SparseCategoricalCrossentropy(from_logits=True)],
        loss_weights=[1.0, 0.1],
    )
    emb_np, logits_np = (to_numpy(t) for t in model(x))
    expected = float(MultiMetricLoss()(labels, (emb_np, logits_np)))
    evaluated = model.evaluate(x, [labels, labels], batch_size=len(x), verbose=0)
    np.testing.assert_allclose(evaluated[0], expected, rtol=1e-4)
    history = model.fit(x, [labels, labels], batch_size=len(x), epochs=15, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"weights": {"center": 1.0}}, "weights"),
        ({"weights": {"triplet": -1.0}}, "weights"),
        ({"weights": [1.0, 0.5]}, "weights"),
        ({"margin": -1.0}, "margin"),
        ({"mining": "easy"}, "mining"),
        ({"distance": "l1"}, "distance"),
        ({"l2_reg": -0.1}, "l2_reg"),
        ({"alpha_degrees": 95.0}, "alpha_degrees"),
        ({"angular_form": "wang"}, "angular_form"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        MultiMetricLoss(**kwargs)


def test_bad_prediction_structure_raises():
    labels, x, logits = batch(0)
    with pytest.raises(ValueError, match="embeddings, logits"):
        MultiMetricLoss()(labels, (x, logits, logits))
    with pytest.raises(ValueError, match="keys"):
        MultiMetricLoss()(labels, {"emb": x, "logits": logits})


def test_get_config_round_trip_and_registration():
    loss = MultiMetricLoss(
        weights={"triplet": 2.0, "softmax": 0.5},
        margin=0.2,
        mining="semi_hard",
        distance="cosine",
        l2_reg=0.0,
        alpha_degrees=30.0,
        angular_form="npair",
        name="mm",
    )
    config = loss.get_config()
    assert config["angular_form"] == "npair"
    assert config["weights"] == {"triplet": 2.0, "softmax": 0.5}
    assert (config["margin"], config["mining"], config["distance"]) == (0.2, "semi_hard", "cosine")
    assert (config["l2_reg"], config["alpha_degrees"], config["name"]) == (0.0, 30.0, "mm")
    assert MultiMetricLoss.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(MultiMetricLoss) == "keras_spk>MultiMetricLoss"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MultiMetricLoss) and restored.get_config() == config
