"""Helpers shared by the tests of the classification heads and embedding losses.

Used by tests/layers/{softmax_head,am_softmax,a_softmax,aam_softmax,
speaker_basis,center_loss,ring_loss}_test.py. Not a test module itself (the
name does not end in `_test.py`), so pytest and tests/backend_runner.py do
not collect it; each test module keeps its own `BACKEND_CASES`.
"""

import keras
import numpy as np

from tests.test_case import to_numpy


def added_loss(layer):
    """The sum of the losses `layer` added in its last call, as a float."""
    return float(sum(to_numpy(v) for v in layer.losses))


def toy_problem():
    """Three separable Gaussian classes in 2-D, 20 points each."""
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


def check_toy_problem_loss_decreases(head):
    """Ten epochs on the toy problem lower the loss by at least 10%."""
    losses = fit_losses(head)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


def check_flat_labels_and_inference(layer, embeddings, labels, weights, logits, **tolerance):
    """Labels `(batch, 1)` add the same loss as `(batch,)`; embeddings alone add none.

    `layer` is built on `[embeddings, labels]` and given `weights`; called
    with the embeddings alone it must return `logits` (within `tolerance`,
    the keyword arguments of `np.testing.assert_allclose`).
    """
    layer([embeddings, labels])
    layer.set_weights(weights)
    layer([embeddings, labels])
    flat = added_loss(layer)
    layer([embeddings, labels[:, None]])
    np.testing.assert_allclose(added_loss(layer), flat, rtol=1e-6)
    got = to_numpy(layer(embeddings))
    assert layer.losses == []
    np.testing.assert_allclose(got, logits, **tolerance)


class LossProbe(keras.layers.Layer):
    """Returns a layer's output and the loss it added, for the cross-backend check.

    Args:
        layer: the head or embedding loss layer to wrap.
        state: names of variables of `layer` to return as well, read after
            the call (e.g. `("centers",)`: the centers as updated by it).
    """

    def __init__(self, layer, state=(), **kwargs):
        super().__init__(**kwargs)
        self.inner = layer
        self.state = tuple(state)

    def call(self, inputs, training=None):
        output = self.inner(inputs, training=training)
        outputs = {"output": output, "loss": keras.ops.sum(keras.ops.stack(self.inner.losses))}
        for name in self.state:
            outputs[name] = keras.ops.convert_to_tensor(getattr(self.inner, name))
        return outputs
