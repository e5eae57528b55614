import keras
import numpy as np
import pytest

from keras_spk.layers.ring_loss import RingLoss
from tests.helpers.heads import LossProbe
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

RNG = np.random.default_rng(7)
EMBEDDINGS = RNG.normal(size=(4, 3)).astype("float32") * 3.0
LABELS = np.array([0, 2, 4, 2], dtype="int32")


def reference_loss(x, radius, weight):
    """Zheng et al.: lambda / 2 * mean_i (||x_i|| - R)^2."""
    norms = [np.sqrt(np.sum(row.astype("float64") ** 2)) for row in x]
    return weight / 2 * np.mean([(n - radius) ** 2 for n in norms])


@pytest.mark.parametrize("radius,weight", [(1.0, 0.01), (4.0, 0.5), (0.0, 1.0)])
def test_loss_matches_formula_and_output_is_the_input(radius, weight):
    layer = RingLoss(weight=weight, initial_radius=radius)
    out = to_numpy(layer(EMBEDDINGS, training=True))
    np.testing.assert_array_equal(out, EMBEDDINGS)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(
        float(to_numpy(layer.losses[0])), reference_loss(EMBEDDINGS, radius, weight), rtol=1e-5
    )
    assert float(to_numpy(layer.radius)) == radius


def test_when_the_loss_is_added():
    layer = RingLoss(weight=0.2, initial_radius=2.0)
    layer(EMBEDDINGS, training=False)
    assert layer.losses == []
    layer(EMBEDDINGS)
    assert layer.losses == []
    out = to_numpy(layer([EMBEDDINGS, LABELS], training=False))
    np.testing.assert_array_equal(out, EMBEDDINGS)
    np.testing.assert_allclose(
        float(to_numpy(layer.losses[0])), reference_loss(EMBEDDINGS, 2.0, 0.2), rtol=1e-5
    )


def test_radius_receives_the_gradient_and_moves_to_the_mean_norm():
    inputs = keras.Input((3,))
    ring = RingLoss(weight=0.5, initial_radius=1.0)
    model = keras.Model(inputs, ring(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=None)
    norms = np.linalg.norm(EMBEDDINGS.astype("float64"), axis=1)
    model.fit(EMBEDDINGS, epochs=1, batch_size=4, verbose=0)
    # dL/dR = -weight * mean(||x|| - R), so one SGD step moves R by lr * that.
    want = 1.0 + 0.1 * 0.5 * np.mean(norms - 1.0)
    np.testing.assert_allclose(float(to_numpy(ring.radius)), want, rtol=1e-5)
    # 100 more steps in one epoch (cheaper than 100 epochs).
    history = model.fit(
        np.tile(EMBEDDINGS, (100, 1)), epochs=1, batch_size=4, shuffle=False, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    radius = float(to_numpy(ring.radius))
    np.testing.assert_allclose(radius, norms.mean(), rtol=1e-2)
    # R -> mean norm minimises the loss over R.
    assert reference_loss(EMBEDDINGS, radius, 0.5) < 0.5 * reference_loss(EMBEDDINGS, want, 0.5)


def test_norms_are_pulled_to_the_radius():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")
    ring = RingLoss(weight=1.0, initial_radius=1.0)
    model = keras.Model(inputs, ring(dense(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=None)
    losses = model.fit(EMBEDDINGS, epochs=20, batch_size=4, verbose=0).history["loss"]
    assert losses[-1] < 0.1 * losses[0], losses
    norms = np.linalg.norm(to_numpy(model(EMBEDDINGS)), axis=1)
    radius = float(to_numpy(ring.radius))
    assert np.max(np.abs(norms - radius)) < 0.5 * np.max(
        np.abs(np.linalg.norm(EMBEDDINGS, axis=1) - 1.0)
    )


def test_run_layer_test():
    run_layer_test(
        lambda: RingLoss(weight=0.1, initial_radius=2.0),
        EMBEDDINGS,
        expected_output_shape=(4, 3),
        fit_loss=None,
    )
    run_layer_test(
        lambda: RingLoss(),
        [EMBEDDINGS, LABELS],
        expected_output_shape=(4, 3),
        fit_loss=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": -0.01},
        {"weight": "0.01"},
        {"initial_radius": float("nan")},
        {"initial_radius": None},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        RingLoss(**kwargs)


def _backend_case():
    rng = np.random.default_rng(17)
    x = rng.normal(size=(6, 8)).astype("float32")
    return LossProbe(RingLoss(weight=0.5)), x, {"training": True}


BACKEND_CASES = {"embeddings and loss": _backend_case}
