import keras
import numpy as np
import pytest

from keras_spk.layers.center_loss import CenterLoss
from tests.helpers.heads import LossProbe
from tests.helpers.heads import toy_problem
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

# 4 embeddings of dimension 3, 5 classes: classes 1 and 3 are absent.
RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
CENTERS = RNG.normal(size=(5, 3)).astype("float32")


def reference_loss(x, labels, centers, weight, reduction="sum"):
    """Eq. 2: lambda / 2 * sum_i ||e_i - c_{y_i}||^2 (or its batch mean)."""
    total = sum(
        0.5 * np.sum((x[i].astype("float64") - centers[y]) ** 2) for i, y in enumerate(labels)
    )
    return weight * (total if reduction == "sum" else total / len(labels))


def reference_update(x, labels, centers, alpha):
    """Eq. 3, one class at a time: delta_c_k = sum (c_k - e_i) / (1 + n_k)."""
    new = centers.astype("float64").copy()
    for k in range(len(centers)):
        members = [i for i, y in enumerate(labels) if y == k]
        delta = sum((centers[k] - x[i] for i in members), np.zeros(centers.shape[1]))
        new[k] = centers[k] - alpha * delta / (1 + len(members))
    return new


def built_layer(**kwargs):
    layer = CenterLoss(5, **kwargs)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([CENTERS])
    return layer


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_matches_eq_2_and_output_is_the_input(reduction):
    layer = built_layer(weight=0.3, reduction=reduction)
    out = to_numpy(layer([EMBEDDINGS, LABELS], training=False))
    np.testing.assert_array_equal(out, EMBEDDINGS)
    assert len(layer.losses) == 1
    want = reference_loss(EMBEDDINGS, LABELS, CENTERS, 0.3, reduction)
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), want, rtol=1e-5)
    # No update outside training.
    np.testing.assert_array_equal(to_numpy(layer.centers), CENTERS)


def test_one_training_call_applies_the_alpha_rule():
    layer = built_layer(alpha=0.5, weight=1e-3)
    layer([EMBEDDINGS, LABELS], training=True)
    # The loss of this call uses the centers from before the update.
    want = reference_loss(EMBEDDINGS, LABELS, CENTERS, 1e-3)
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), want, rtol=1e-5)
    centers = to_numpy(layer.centers)
    np.testing.assert_allclose(
        centers, reference_update(EMBEDDINGS, LABELS, CENTERS, 0.5), rtol=1e-5, atol=1e-6
    )
    # Absent classes keep their centers exactly.
    np.testing.assert_array_equal(centers[[1, 3]], CENTERS[[1, 3]])
    # By hand for class 2 (utterances 1 and 3): c - 0.5 * (2c - e1 - e3) / 3.
    c2 = CENTERS[2] - 0.5 * (2 * CENTERS[2] - EMBEDDINGS[1] - EMBEDDINGS[3]) / 3
    np.testing.assert_allclose(centers[2], c2, rtol=1e-5, atol=1e-6)


def test_labels_of_shape_batch_by_one_and_inference_without_labels():
    layer = built_layer()
    layer([EMBEDDINGS, LABELS[:, None]], training=True)
    np.testing.assert_allclose(
        to_numpy(layer.centers), reference_update(EMBEDDINGS, LABELS, CENTERS, 0.5), atol=1e-6
    )
    updated = to_numpy(layer.centers)
    out = to_numpy(layer(EMBEDDINGS, training=True))
    np.testing.assert_array_equal(out, EMBEDDINGS)
    assert layer.losses == []
    np.testing.assert_array_equal(to_numpy(layer.centers), updated)


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_fit_updates_centers_by_the_alpha_rule_every_step():
    # Frozen identity embeddings, so the centers follow eq. 3 exactly.
    embeddings = keras.Input((3,))
    labels = keras.Input((), dtype="int32")
    frozen = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity", trainable=False)
    center_loss = CenterLoss(5, alpha=0.5, weight=1.0)
    model = keras.Model([embeddings, labels], center_loss([frozen(embeddings), labels]))
    center_loss.set_weights([CENTERS])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=None)
    history = model.fit([EMBEDDINGS, LABELS], epochs=3, batch_size=4, shuffle=False, verbose=0)
    want = CENTERS
    losses = []
    for _ in range(3):
        losses.append(reference_loss(EMBEDDINGS, LABELS, want, 1.0))
        want = reference_update(EMBEDDINGS, LABELS, want, 0.5)
    np.testing.assert_allclose(to_numpy(center_loss.centers), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)


def test_toy_problem_loss_decreases_and_gradient_reaches_embeddings():
    x, y = toy_problem()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,))
    labels = keras.Input((), dtype="int32")
    dense = keras.layers.Dense(2)
    center_loss = CenterLoss(3, alpha=0.5, weight=0.1)
    model = keras.Model([inputs, labels], center_loss([dense(inputs), labels]))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=None)
    before = dense.get_weights()[0].copy()
    losses = model.fit([x, y], epochs=10, batch_size=60, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    assert not np.allclose(dense.get_weights()[0], before)
    # The centers moved away from their zero initialisation towards the classes.
    assert np.all(np.linalg.norm(to_numpy(center_loss.centers), axis=1) > 0.1)


def test_no_gradient_into_the_centers():
    layer = CenterLoss(5)
    layer([EMBEDDINGS, LABELS])
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 1


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_run_layer_test():
    run_layer_test(
        lambda: CenterLoss(5, alpha=0.3, weight=0.1),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 3),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": 5, "alpha": 1.5},
        {"num_classes": 5, "alpha": -0.1},
        {"num_classes": 5, "weight": -1.0},
        {"num_classes": 5, "reduction": "none"},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        CenterLoss(**kwargs)


def _backend_inputs():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    return [x, y]


def _backend_case():
    probe = LossProbe(CenterLoss(7, weight=0.5), state=("centers",))
    return probe, _backend_inputs(), {"training": False}


def _backend_case_training():
    # One alpha-rule update from the harness's seeded centers.
    layer = CenterLoss(7, alpha=0.5, weight=0.5, reduction="mean")
    return LossProbe(layer, state=("centers",)), _backend_inputs(), {"training": True}


BACKEND_CASES = {
    "embeddings and loss": _backend_case,
    "center update in training": _backend_case_training,
}
