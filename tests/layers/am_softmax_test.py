import keras
import numpy as np
import pytest

from keras_spk.layers.am_softmax import AMSoftmax
from tests.test_case import run_layer_test

RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 2, 4, 2], dtype="int32")
KERNEL = RNG.normal(size=(3, 5)).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


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


def added_loss(layer):
    return float(sum(to_numpy(v) for v in layer.losses))


def toy_problem():
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
    layer = AMSoftmax(5)
    layer([EMBEDDINGS, LABELS])
    layer.set_weights([KERNEL])
    layer([EMBEDDINGS, LABELS])
    flat = added_loss(layer)
    layer([EMBEDDINGS, LABELS[:, None]])
    np.testing.assert_allclose(added_loss(layer), flat, rtol=1e-6)
    logits = to_numpy(layer(EMBEDDINGS))
    assert layer.losses == []
    np.testing.assert_allclose(
        logits, reference(EMBEDDINGS, LABELS, KERNEL, 30.0, 0.2)[0], atol=1e-4
    )


def test_toy_problem_loss_decreases():
    losses = fit_losses(AMSoftmax(3, scale=10.0, margin=0.2))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


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
