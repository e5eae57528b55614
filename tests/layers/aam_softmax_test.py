import math

import keras
import numpy as np
import pytest

from keras_spk.layers.aam_softmax import AAMSoftmax
from tests.helpers.heads import LossProbe
from tests.helpers.heads import added_loss
from tests.helpers.heads import check_flat_labels_and_inference
from tests.helpers.heads import check_toy_problem_loss_decreases
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
KERNEL = RNG.normal(size=(3, 5)).astype("float32")
# Sample 0 points almost opposite its class vector (theta_y near pi), so
# theta_y + m > pi and the fallback branch is exercised.
EMBEDDINGS[0] = -KERNEL[:, 0] + np.array([0.05, -0.03, 0.02], "float32")


def reference(x, labels, kernel, s, m, easy_margin=False):
    """ArcFace: s * cos(theta_y + m), with cos(theta) - m sin(m) once theta + m > pi."""
    x, kernel = x.astype("float64"), kernel.astype("float64")
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (
        kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    )
    loss = 0.0
    for i, y in enumerate(labels):
        theta = math.acos(np.clip(cos[i, y], -1, 1))
        if easy_margin:
            phi = math.cos(theta + m) if cos[i, y] > 0 else cos[i, y]
        elif theta + m < math.pi:
            phi = math.cos(theta + m)
        else:
            phi = cos[i, y] - m * math.sin(m)
        z = s * cos[i].copy()
        z[y] = s * phi
        loss -= z[y] - np.log(np.exp(z).sum())
    return s * cos, loss / len(labels)


def test_fixture_exercises_both_branches():
    cos = reference(EMBEDDINGS, LABELS, KERNEL, 1.0, 0.0)[0]
    thetas = np.arccos(cos[np.arange(4), LABELS])
    assert thetas[0] + 0.5 > math.pi and np.all(thetas[1:] + 0.5 < math.pi)
    assert cos[0, 0] < 0 < cos[np.arange(1, 4), LABELS[1:]].max()


@pytest.mark.parametrize(
    "scale,margin,easy",
    [(30.0, 0.2, False), (30.0, 0.5, False), (10.0, 0.5, True), (10.0, 0.0, False)],
)
def test_logits_and_loss_match_numpy(scale, margin, easy):
    layer = AAMSoftmax(5, scale=scale, margin=margin, easy_margin=easy)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL])
    logits = to_numpy(layer([EMBEDDINGS, LABELS], training=False))
    want_logits, want_loss = reference(EMBEDDINGS, LABELS, KERNEL, scale, margin, easy)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(added_loss(layer), want_loss, rtol=1e-5)


def test_hand_angles_in_two_dimensions():
    # Class vectors at 0 and 90 degrees; the embedding at 30 degrees from class 0.
    kernel = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    x = np.array([[math.cos(math.pi / 6), math.sin(math.pi / 6)]], "float32") * 3.0
    layer = AAMSoftmax(2, scale=4.0, margin=0.3)
    layer([x, np.array([0], "int32")])
    layer.set_weights([kernel])
    layer([x, np.array([0], "int32")])
    target = 4.0 * math.cos(math.pi / 6 + 0.3)
    other = 4.0 * math.cos(math.pi / 3)
    want = -(target - math.log(math.exp(target) + math.exp(other)))
    np.testing.assert_allclose(added_loss(layer), want, rtol=1e-5)


def test_gradient_is_finite_when_embedding_equals_class_vector():
    # cos = 1 exactly: sqrt(1 - cos^2) must not give a NaN gradient.
    x = np.array([[1.0, 0.0]], "float32")
    y = np.array([0], "int32")
    embeddings = keras.Input((2,))
    labels = keras.Input((), dtype="int32")
    trainable = keras.layers.Dense(2, use_bias=False, kernel_initializer="identity")
    head = AAMSoftmax(2, scale=8.0, margin=0.3, kernel_initializer="identity")
    model = keras.Model([embeddings, labels], head([trainable(embeddings), labels]))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=None)
    model.fit([x, y], epochs=2, batch_size=1, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_labels_of_shape_batch_by_one_and_inference_without_labels():
    want = reference(EMBEDDINGS, LABELS, KERNEL, 30.0, 0.2)[0]
    check_flat_labels_and_inference(AAMSoftmax(5), EMBEDDINGS, LABELS, [KERNEL], want, atol=1e-4)


def test_toy_problem_loss_decreases():
    check_toy_problem_loss_decreases(AAMSoftmax(3, scale=10.0, margin=0.2))


def test_run_layer_test():
    run_layer_test(
        lambda: AAMSoftmax(5, scale=20.0, margin=0.3, easy_margin=True),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 5),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": -1},
        {"num_classes": 3, "scale": -1.0},
        {"num_classes": 3, "margin": -0.1},
        {"num_classes": 3, "margin": 2.0},
        {"num_classes": 3, "easy_margin": 1},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        AAMSoftmax(**kwargs)


def _backend_case():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    return LossProbe(AAMSoftmax(7, scale=10.0, margin=0.5)), [x, y], {"training": False}


BACKEND_CASES = {"logits and loss": _backend_case}
