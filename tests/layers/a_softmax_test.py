import math

import keras
import numpy as np
import pytest

from keras_spk.layers.a_softmax import ASoftmax
from keras_spk.layers.a_softmax import angular_margin_psi
from tests.helpers.heads import LossProbe
from tests.helpers.heads import added_loss
from tests.helpers.heads import check_flat_labels_and_inference
from tests.helpers.heads import check_toy_problem_loss_decreases
from tests.helpers.heads import toy_problem
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
KERNEL = RNG.normal(size=(3, 5)).astype("float32")


def reference_psi(theta, m):
    """psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi / m, (k + 1) pi / m]."""
    k = min(int(math.floor(theta * m / math.pi)), m - 1)
    return (-1) ** k * math.cos(m * theta) - 2 * k


def reference_lambda(t, base=1000.0, gamma=0.12, power=1.0, minimum=5.0):
    return max(minimum, base * (1.0 + gamma * t) ** (-power))


def reference(x, labels, kernel, m, lam):
    """SphereFace target logit ||x|| (lam cos + psi) / (1 + lam); others ||x|| cos."""
    x, kernel = x.astype("float64"), kernel.astype("float64")
    w = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    logits = x @ w
    loss = 0.0
    for i, y in enumerate(labels):
        norm = np.linalg.norm(x[i])
        cos = logits[i, y] / norm
        theta = math.acos(np.clip(cos, -1.0, 1.0))
        z = logits[i].copy()
        z[y] = norm * (lam * cos + reference_psi(theta, m)) / (1.0 + lam)
        loss -= z[y] - np.log(np.exp(z).sum())
    return logits, loss / len(labels)


# (m, theta, psi) worked by hand from psi = (-1)^k cos(m theta) - 2k.
HAND_PSI = [
    (1, math.pi / 3, 0.5),
    (2, 0.0, 1.0),
    (2, math.pi / 3, -0.5),  # k = 0: cos(2 pi / 3)
    (2, 2 * math.pi / 3, -1.5),  # k = 1: -cos(4 pi / 3) - 2 = 0.5 - 2
    (2, math.pi, -3.0),  # 1 - 2m
    (3, math.pi / 6, 0.0),  # k = 0: cos(pi / 2)
    (3, math.pi / 2, -2.0),  # k = 1: -cos(3 pi / 2) - 2
    (3, 5 * math.pi / 6, -4.0),  # k = 2: cos(5 pi / 2) - 4
    (4, math.pi / 8, 0.0),  # k = 0: cos(pi / 2)
    (4, math.pi / 3, -1.5),  # k = 1: -cos(4 pi / 3) - 2
    (4, 3 * math.pi / 4, -5.0),  # k = 3: -cos(3 pi) - 6 = 1 - 6
    (4, math.pi, -7.0),  # 1 - 2m
]


@pytest.mark.parametrize("m,theta,want", HAND_PSI)
def test_psi_on_hand_angles(m, theta, want):
    got = to_numpy(angular_margin_psi(keras.ops.convert_to_tensor([math.cos(theta)]), m))
    np.testing.assert_allclose(got, [want], atol=1e-5)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_psi_matches_definition_and_is_monotonic(m):
    thetas = np.linspace(0.0, math.pi, 721)
    got = to_numpy(angular_margin_psi(keras.ops.convert_to_tensor(np.cos(thetas)), m))
    want = [reference_psi(t, m) for t in thetas]
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert np.all(np.diff(got) <= 1e-5)


@pytest.mark.parametrize("m,lam", [(4, 5.0), (2, 0.0), (3, 100.0), (1, 0.0)])
def test_logits_and_loss_match_numpy(m, lam):
    # lambda_base=0 pins lambda to lambda_min whatever the counter says.
    layer = ASoftmax(5, margin=m, lambda_base=0.0, lambda_min=lam)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL, np.array(0, "int64")])
    logits = to_numpy(layer([EMBEDDINGS, LABELS], training=False))
    want_logits, want_loss = reference(EMBEDDINGS, LABELS, KERNEL, m, lam)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(added_loss(layer), want_loss, rtol=1e-5)


def test_margin_one_without_lambda_is_plain_softmax_on_normalised_weights():
    layer = ASoftmax(5, margin=1, lambda_base=0.0, lambda_min=0.0)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL, np.array(0, "int64")])
    logits = to_numpy(layer([EMBEDDINGS, LABELS]))
    plain = -np.mean(
        [logits[i, y] - np.log(np.exp(logits[i]).sum()) for i, y in enumerate(LABELS)]
    )
    np.testing.assert_allclose(added_loss(layer), plain, rtol=1e-5)


def test_lambda_annealing_over_training_steps():
    layer = ASoftmax(5, margin=4)  # base 1000, gamma 0.12, power 1, min 5
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL, np.array(0, "int64")])
    for step in range(1, 4):
        layer([EMBEDDINGS, LABELS], training=True)
        # The counter advances first and the step uses the new value.
        assert int(to_numpy(layer.iterations)) == step
        want = reference(EMBEDDINGS, LABELS, KERNEL, 4, reference_lambda(step))[1]
        np.testing.assert_allclose(added_loss(layer), want, rtol=1e-5)
    np.testing.assert_allclose(reference_lambda(3), 1000.0 / 1.36)
    # Inference with labels reports the loss at the current lambda, no step.
    layer([EMBEDDINGS, LABELS], training=False)
    assert int(to_numpy(layer.iterations)) == 3
    want = reference(EMBEDDINGS, LABELS, KERNEL, 4, reference_lambda(3))[1]
    np.testing.assert_allclose(added_loss(layer), want, rtol=1e-5)
    # Embeddings alone: no loss and no step.
    layer(EMBEDDINGS, training=True)
    assert layer.losses == [] and int(to_numpy(layer.iterations)) == 3
    # Late in training lambda has decayed to lambda_min.
    layer.iterations.assign(100000)
    np.testing.assert_allclose(to_numpy(layer.annealed_lambda(layer.iterations)), 5.0)
    layer([EMBEDDINGS, LABELS], training=False)
    np.testing.assert_allclose(
        added_loss(layer), reference(EMBEDDINGS, LABELS, KERNEL, 4, 5.0)[1], rtol=1e-5
    )


@pytest.mark.parametrize("t", [0, 1, 10, 1000])
def test_annealed_lambda_formula(t):
    layer = ASoftmax(3, lambda_base=500.0, lambda_gamma=0.2, lambda_power=2.0, lambda_min=1.0)
    want = reference_lambda(t, 500.0, 0.2, 2.0, 1.0)
    np.testing.assert_allclose(to_numpy(layer.annealed_lambda(t)), want, rtol=1e-5)


def test_fit_advances_the_counter_once_per_step():
    x, y = toy_problem()
    embeddings = keras.Input((2,))
    labels = keras.Input((), dtype="int32")
    head = ASoftmax(3, margin=2)
    model = keras.Model([embeddings, labels], head([embeddings, labels]))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=None)
    model.fit([x, y], epochs=2, batch_size=20, verbose=0)
    assert int(to_numpy(head.iterations)) == 6
    model.evaluate([x, y], batch_size=20, verbose=0)
    assert int(to_numpy(head.iterations)) == 6


def test_labels_of_shape_batch_by_one_and_inference_without_labels():
    want = reference(EMBEDDINGS, LABELS, KERNEL, 4, 5.0)[0]
    check_flat_labels_and_inference(
        ASoftmax(5), EMBEDDINGS, LABELS, [KERNEL, np.array(0, "int64")], want, atol=1e-5
    )


def test_mixed_precision_computes_the_loss_in_float32():
    layer = ASoftmax(5, margin=4, lambda_base=0.0, lambda_min=1.0, dtype="mixed_float16")
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL, np.array(0, "int64")])
    logits = layer([EMBEDDINGS, LABELS], training=True)
    assert keras.backend.standardize_dtype(logits.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.losses[0].dtype) == "float32"
    want = reference(EMBEDDINGS, LABELS, KERNEL, 4, 1.0)[1]
    np.testing.assert_allclose(added_loss(layer), want, rtol=1e-3)


def test_toy_problem_loss_decreases():
    check_toy_problem_loss_decreases(ASoftmax(3, margin=4, lambda_base=0.0, lambda_min=5.0))


def test_run_layer_test():
    run_layer_test(
        lambda: ASoftmax(5, margin=3, lambda_min=0.0),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 5),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": 3, "margin": 0},
        {"num_classes": 3, "margin": 2.5},
        {"num_classes": 3, "lambda_base": -1.0},
        {"num_classes": 3, "lambda_gamma": float("nan")},
        {"num_classes": 3, "lambda_power": -1.0},
        {"num_classes": 3, "lambda_min": -5.0},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        ASoftmax(**kwargs)


def _backend_inputs():
    rng = np.random.default_rng(14)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    return [x, y]


def _backend_case():
    # lambda pinned at 0.5, so the margin term dominates the target logit.
    head = ASoftmax(7, margin=4, lambda_base=0.0, lambda_min=0.5)
    return LossProbe(head), _backend_inputs(), {"training": False}


def _backend_case_annealed():
    # Two training calls (build, then the compared call): lambda(2) = 1000 / 1.24.
    head = ASoftmax(7, margin=3, lambda_base=1000.0, lambda_min=0.0)
    return LossProbe(head), _backend_inputs(), {"training": True}


BACKEND_CASES = {
    "logits and loss": _backend_case,
    "annealed lambda in training": _backend_case_annealed,
}
