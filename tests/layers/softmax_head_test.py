import numpy as np
import pytest

from keras_spk.layers.softmax_head import SoftmaxHead
from tests.helpers.heads import LossProbe
from tests.helpers.heads import added_loss
from tests.helpers.heads import check_flat_labels_and_inference
from tests.helpers.heads import check_toy_problem_loss_decreases
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

# Tiny problem: 4 embeddings of dimension 3, 5 classes (class 1 and 3 absent).
RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
KERNEL = RNG.normal(size=(3, 5)).astype("float32")
BIAS = RNG.normal(size=(5,)).astype("float32")


def reference(x, labels, kernel, bias):
    """Eq. 1 of Heo et al. 2019, divided by the batch size M."""
    x, kernel = x.astype("float64"), kernel.astype("float64")
    logits = x @ kernel + (0.0 if bias is None else bias.astype("float64"))
    loss = 0.0
    for i, y in enumerate(labels):
        loss -= np.log(np.exp(logits[i, y]) / np.exp(logits[i]).sum())
    return logits, loss / len(labels)


@pytest.mark.parametrize("use_bias", [True, False])
def test_logits_and_loss_match_numpy(use_bias):
    layer = SoftmaxHead(5, use_bias=use_bias)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL, BIAS] if use_bias else [KERNEL])
    logits = to_numpy(layer([EMBEDDINGS, LABELS], training=False))
    want_logits, want_loss = reference(EMBEDDINGS, LABELS, KERNEL, BIAS if use_bias else None)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(added_loss(layer), want_loss, rtol=1e-5)


def test_labels_of_shape_batch_by_one_and_inference_without_labels():
    want = reference(EMBEDDINGS, LABELS, KERNEL, BIAS)[0]
    check_flat_labels_and_inference(
        SoftmaxHead(5), EMBEDDINGS, LABELS, [KERNEL, BIAS], want, atol=1e-5
    )


def test_toy_problem_loss_decreases():
    check_toy_problem_loss_decreases(SoftmaxHead(3))


def test_parameter_count():
    layer = SoftmaxHead(5)
    layer([EMBEDDINGS, LABELS])
    assert layer.count_params() == 3 * 5 + 5
    layer = SoftmaxHead(5, use_bias=False)
    layer(EMBEDDINGS)
    assert layer.count_params() == 3 * 5


def test_run_layer_test():
    run_layer_test(
        lambda: SoftmaxHead(5),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 5),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"num_classes": 0}, {"num_classes": 2.5}, {"num_classes": 3, "use_bias": "yes"}],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SoftmaxHead(**kwargs)


def test_rejects_embeddings_of_wrong_rank():
    with pytest.raises(ValueError, match="embedding_dim"):
        SoftmaxHead(3)(np.zeros((2, 4, 3), "float32"))


def _backend_case():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 7, size=(6,)).astype("int32")
    return LossProbe(SoftmaxHead(7)), [x, y], {"training": False}


BACKEND_CASES = {"logits and loss": _backend_case}
