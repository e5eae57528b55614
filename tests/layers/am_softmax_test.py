import numpy as np
import pytest

from keras_spk.layers.am_softmax import AMSoftmax
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


def reference(x, labels, kernel, s, m):
    """Eq. 4-5 of Heo et al. 2019 (AM-softmax), divided by the batch size."""
    x, kernel = x.astype("float64"), kernel.astype("float64")
    cos = np.zeros((len(x), kernel.shape[1]))
    for i in range(len(x)):
        for j in range(kernel.shape[1]):
            cos[i, j] = x[i] @ kernel[:, j] / np.linalg.norm(x[i]) / np.linalg.norm(kernel[:, j])
    loss = 0.0
    for i, y in enumerate(labels):
        target = np.exp(s * (cos[i, y] - m))
        others = sum(np.exp(s * cos[i, j]) for j in range(kernel.shape[1]) if j != y)
        loss -= np.log(target / (target + others))
    return s * cos, loss / len(labels)


@pytest.mark.parametrize("scale,margin", [(30.0, 0.2), (5.0, 0.35), (10.0, 0.0)])
def test_logits_and_loss_match_numpy(scale, margin):
    layer = AMSoftmax(5, scale=scale, margin=margin)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL])
    logits = to_numpy(layer([EMBEDDINGS, LABELS], training=False))
    want_logits, want_loss = reference(EMBEDDINGS, LABELS, KERNEL, scale, margin)
    # Logits are s * cos without the margin.
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(added_loss(layer), want_loss, rtol=1e-5)


def test_margin_raises_the_loss_and_is_invariant_to_norms():
    layer = AMSoftmax(5, scale=10.0, margin=0.3)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL])
    layer([EMBEDDINGS, LABELS])
    with_margin = added_loss(layer)
    # Scaling embeddings and class vectors changes nothing (cosines only).
    layer.set_weights([KERNEL * 7.0])
    layer([EMBEDDINGS * 0.1, LABELS])
    np.testing.assert_allclose(added_loss(layer), with_margin, rtol=1e-5)
    no_margin = AMSoftmax(5, scale=10.0, margin=0.0)
    no_margin([EMBEDDINGS, LABELS])
    no_margin.set_weights([KERNEL])
    no_margin([EMBEDDINGS, LABELS])
    assert with_margin > added_loss(no_margin)


def test_labels_of_shape_batch_by_one_and_inference_without_labels():
    want = reference(EMBEDDINGS, LABELS, KERNEL, 30.0, 0.2)[0]
    check_flat_labels_and_inference(AMSoftmax(5), EMBEDDINGS, LABELS, [KERNEL], want, atol=1e-4)


def test_toy_problem_loss_decreases():
    check_toy_problem_loss_decreases(AMSoftmax(3, scale=10.0, margin=0.2))


def test_run_layer_test():
    run_layer_test(
        lambda: AMSoftmax(5, scale=20.0, margin=0.3),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 5),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": 3, "scale": 0.0},
        {"num_classes": 3, "scale": float("inf")},
        {"num_classes": 3, "margin": -0.1},
        {"num_classes": 3, "margin": "0.2"},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        AMSoftmax(**kwargs)


def _backend_case():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    return LossProbe(AMSoftmax(7, scale=10.0, margin=0.3)), [x, y], {"training": False}


BACKEND_CASES = {"logits and loss": _backend_case}
