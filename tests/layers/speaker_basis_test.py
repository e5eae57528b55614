import math

import keras
import numpy as np
import pytest

from keras_spk.layers.speaker_basis import SpeakerBasis
from tests.helpers.heads import LossProbe
from tests.helpers.heads import check_toy_problem_loss_decreases
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
KERNEL = RNG.normal(size=(3, 5)).astype("float32")


def cos(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


def reference_basis_loss(kernel):
    """Eq. 9: sum over i, j != i of cos(W_i, W_j), W_i the i-th column."""
    n = kernel.shape[1]
    return sum(cos(kernel[:, i], kernel[:, j]) for i in range(n) for j in range(n) if j != i)


def reference_hard_loss(x, labels, kernel, num_hard):
    """Eq. 10, divided by the batch size: the H bases h != y_i with the largest cos(W_h, e_i)."""
    total = 0.0
    for i, y in enumerate(labels):
        negatives = sorted(
            (cos(kernel[:, h], x[i]) for h in range(kernel.shape[1]) if h != y), reverse=True
        )
        positive = cos(kernel[:, y], x[i])
        total += sum(math.log(1.0 + math.exp(c - positive)) for c in negatives[:num_hard])
    return total / len(labels)


def reference_softmax_loss(x, labels, kernel):
    logits = x.astype("float64") @ kernel.astype("float64")
    return -np.mean([logits[i, y] - np.log(np.exp(logits[i]).sum()) for i, y in enumerate(labels)])


def loss_of(layer, x=EMBEDDINGS, labels=LABELS, kernel=KERNEL):
    layer([x, labels])
    layer.set_weights([kernel])
    logits = to_numpy(layer([x, labels], training=False))
    assert len(layer.losses) == 1
    return float(to_numpy(layer.losses[0])), logits


def test_basis_loss_sum_matches_all_pairs_loop():
    layer = SpeakerBasis(5, basis_weight=1.0, softmax_weight=0.0, basis_reduction="sum")
    loss, logits = loss_of(layer)
    np.testing.assert_allclose(loss, reference_basis_loss(KERNEL), rtol=1e-5, atol=1e-5)
    # Logits are the plain inner products.
    np.testing.assert_allclose(logits, EMBEDDINGS @ KERNEL, rtol=1e-5, atol=1e-5)


def test_basis_loss_mean_divides_by_the_number_of_ordered_pairs():
    layer = SpeakerBasis(5, basis_weight=2.0, softmax_weight=0.0)
    loss, _ = loss_of(layer)
    np.testing.assert_allclose(loss, 2.0 * reference_basis_loss(KERNEL) / 20, rtol=1e-5, atol=1e-6)


def test_basis_loss_extremes():
    # Orthogonal bases: 0. Identical bases: every pair has cos = 1.
    layer = SpeakerBasis(3, softmax_weight=0.0)
    loss, _ = loss_of(layer, kernel=np.eye(3, dtype="float32"))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
    loss, _ = loss_of(layer, kernel=np.ones((3, 3), "float32") * [[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(loss, 1.0, rtol=1e-6)
    # Bases as far apart as possible (regular simplex in a plane): -1 / (N - 1).
    angles = 2 * np.pi * np.arange(3) / 3
    simplex = np.stack([np.cos(angles), np.sin(angles), np.zeros(3)]).astype("float32")
    loss, _ = loss_of(layer, kernel=simplex)
    np.testing.assert_allclose(loss, -0.5, rtol=1e-5)


@pytest.mark.parametrize("num_hard", [1, 2, 4])
def test_hard_negative_loss_matches_sorted_loop(num_hard):
    layer = SpeakerBasis(
        5, basis_weight=0.0, hard_weight=1.0, num_hard=num_hard, softmax_weight=0.0
    )
    loss, _ = loss_of(layer)
    want = reference_hard_loss(EMBEDDINGS, LABELS, KERNEL, num_hard)
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_hard_negatives_are_mined_among_all_speakers():
    # Class 3 is absent from the batch but is the hardest negative of utterance 0.
    kernel = KERNEL.copy()
    kernel[:, 3] = EMBEDDINGS[0] + 0.01
    layer = SpeakerBasis(5, basis_weight=0.0, hard_weight=1.0, num_hard=1, softmax_weight=0.0)
    loss, _ = loss_of(layer, kernel=kernel)
    np.testing.assert_allclose(loss, reference_hard_loss(EMBEDDINGS, LABELS, kernel, 1), rtol=1e-5)
    positive = cos(kernel[:, 0], EMBEDDINGS[0])
    assert reference_hard_loss(EMBEDDINGS[:1], LABELS[:1], kernel, 1) == pytest.approx(
        math.log(1.0 + math.exp(cos(kernel[:, 3], EMBEDDINGS[0]) - positive))
    )


def test_softmax_loss_matches_eq_1():
    layer = SpeakerBasis(5, basis_weight=0.0)
    loss, _ = loss_of(layer)
    np.testing.assert_allclose(loss, reference_softmax_loss(EMBEDDINGS, LABELS, KERNEL), rtol=1e-5)


def test_weighted_sum_of_all_three_terms():
    layer = SpeakerBasis(
        5, basis_weight=0.5, hard_weight=2.0, num_hard=3, softmax_weight=0.7, basis_reduction="sum"
    )
    loss, _ = loss_of(layer)
    want = (
        0.7 * reference_softmax_loss(EMBEDDINGS, LABELS, KERNEL)
        + 0.5 * reference_basis_loss(KERNEL)
        + 2.0 * reference_hard_loss(EMBEDDINGS, LABELS, KERNEL, 3)
    )
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_bias_and_labels_of_shape_batch_by_one_and_inference():
    layer = SpeakerBasis(5, use_bias=True, hard_weight=1.0, num_hard=2)
    layer([EMBEDDINGS, LABELS])
    bias = np.arange(5, dtype="float32")
    layer.set_weights([KERNEL, bias])
    layer([EMBEDDINGS, LABELS])
    flat = float(to_numpy(layer.losses[0]))
    layer([EMBEDDINGS, LABELS[:, None]])
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), flat, rtol=1e-6)
    logits = to_numpy(layer(EMBEDDINGS))
    assert layer.losses == []
    np.testing.assert_allclose(logits, EMBEDDINGS @ KERNEL + bias, rtol=1e-5, atol=1e-5)


def test_basis_loss_gradient_spreads_the_bases():
    # Bases only, no embeddings: minimising L_BC should push the mean cosine down.
    layer = SpeakerBasis(4, softmax_weight=0.0)
    layer([EMBEDDINGS, LABELS % 4])
    start = np.array([[1.0, 0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.0, 0.1]], "float32")
    layer.set_weights([start])
    embeddings = keras.Input((3,))
    labels = keras.Input((), dtype="int32")
    model = keras.Model([embeddings, labels], layer([embeddings, labels]))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=None)
    history = model.fit([EMBEDDINGS, LABELS % 4], epochs=30, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert losses[0] > 0.9 and losses[-1] < 0.0, losses


@pytest.mark.parametrize(
    "kwargs",
    [
        {"softmax_weight": 1.0},
        {"softmax_weight": 0.0, "hard_weight": 1.0, "num_hard": 2},
        {"softmax_weight": 1.0, "basis_weight": 1.0, "hard_weight": 0.5, "num_hard": 1},
    ],
)
def test_toy_problem_loss_decreases(kwargs):
    check_toy_problem_loss_decreases(SpeakerBasis(3, **kwargs))


def test_run_layer_test():
    run_layer_test(
        lambda: SpeakerBasis(5, hard_weight=1.0, num_hard=2, use_bias=True),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 5),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 1},
        {"num_classes": 5, "basis_weight": -1.0},
        {"num_classes": 5, "hard_weight": -0.1},
        {"num_classes": 5, "num_hard": 0},
        {"num_classes": 5, "hard_weight": 1.0, "num_hard": 5},
        {"num_classes": 5, "softmax_weight": None},
        {"num_classes": 5, "basis_reduction": "max"},
        {"num_classes": 5, "use_bias": 0},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SpeakerBasis(**kwargs)


def test_num_hard_is_not_checked_when_unused():
    assert SpeakerBasis(5).num_hard == 100


def _backend_case():
    rng = np.random.default_rng(15)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    head = SpeakerBasis(7, basis_weight=0.5, hard_weight=1.0, num_hard=3)
    return LossProbe(head), [x, y], {"training": False}


BACKEND_CASES = {"logits and loss": _backend_case}
