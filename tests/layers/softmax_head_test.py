import keras
import numpy as np
import pytest

from keras_spk.layers.softmax_head import SoftmaxHead
from tests.test_case import run_layer_test

# Tiny problem: 4 embeddings of dimension 3, 5 classes (class 1 and 3 absent).
RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
KERNEL = RNG.normal(size=(3, 5)).astype("float32")
BIAS = RNG.normal(size=(5,)).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference(x, labels, kernel, bias):
    """Eq. 1 of Heo et al. 2019, divided by the batch size M."""
    x, kernel = x.astype("float64"), kernel.astype("float64")
    logits = x @ kernel + (0.0 if bias is None else bias.astype("float64"))
    loss = 0.0
    for i, y in enumerate(labels):
        loss -= np.log(np.exp(logits[i, y]) / np.exp(logits[i]).sum())
    return logits, loss / len(labels)


def added_loss(layer):
    return float(sum(to_numpy(v) for v in layer.losses))


def toy_problem():
    """Three separable Gaussian classes in 2-D."""
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    x = np.concatenate([rng.normal(m, 0.4, size=(20, 2)) for m in means]).astype("float32")
    return x, np.repeat(np.arange(3), 20).astype("int32")


def fit_losses(head, epochs=10, learning_rate=0.05):
    """Loss per epoch of `head` trained alone on the toy problem (seeded init)."""
    keras.utils.set_random_seed(0)
    x, y = toy_problem()
    embeddings = keras.Input((2,))
    labels = keras.Input((), dtype="int32")
    model = keras.Model([embeddings, labels], head([embeddings, labels]))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=None)
    return model.fit([x, y], epochs=epochs, batch_size=len(x), verbose=0).history["loss"]


class LossProbe(keras.layers.Layer):
    """Returns a head's output and the loss it added, for the cross-backend check."""

    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.head = head

    def call(self, inputs, training=None):
        output = self.head(inputs, training=training)
        return {"output": output, "loss": keras.ops.sum(keras.ops.stack(self.head.losses))}


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
    layer = SoftmaxHead(5)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL, BIAS])
    layer([EMBEDDINGS, LABELS])
    flat = added_loss(layer)
    layer([EMBEDDINGS, LABELS[:, None]])
    np.testing.assert_allclose(added_loss(layer), flat, rtol=1e-6)
    logits = to_numpy(layer(EMBEDDINGS))
    assert layer.losses == []
    np.testing.assert_allclose(logits, reference(EMBEDDINGS, LABELS, KERNEL, BIAS)[0], atol=1e-5)


def test_toy_problem_loss_decreases():
    losses = fit_losses(SoftmaxHead(3))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


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
