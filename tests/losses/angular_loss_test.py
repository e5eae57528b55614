
import math

import keras
import numpy as np
import pytest

from keras_spk.losses.angular_loss import AngularLoss
from keras_spk.losses.angular_loss import angular_loss
from tests.helpers.metric_losses import fit_history
from tests.helpers.metric_losses import reference_angular_loss
from tests.helpers.metric_losses import shuffled_batch


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference_npair_angular_loss(labels, x, alpha_degrees=45.0):
    """Wang et al.'s N-pair angular loss per anchor, as loops.

    The tuplets of `reference_npair_loss`: utterance r of speaker s (batch
    order) has the positive (r + 1) mod n_s of its speaker and the negatives
    (r + 1) mod n_t of every other speaker t.
    """
    labels = list(np.asarray(labels).reshape(-1))
    x = np.asarray(x, "float64")
    tan_squared = math.tan(math.radians(alpha_degrees)) ** 2
    rows = {s: [i for i, label in enumerate(labels) if label == s] for s in dict.fromkeys(labels)}
    out = np.zeros(len(labels))
    for a, s in enumerate(labels):
        own = rows[s]
        if len(own) < 2:
            continue
        r = own.index(a)
        p = own[(r + 1) % len(own)]
        total = 0.0
        for t, other in rows.items():
            if t == s:
                continue
            n = other[(r + 1) % len(other)]
            f = 4.0 * tan_squared * (x[a] + x[p]) @ x[n] - 2.0 * (1.0 + tan_squared) * x[a] @ x[p]
            total += np.exp(f)
        out[a] = np.log(1.0 + total)
    return out


def test_hand_computed_example():
    # a = (0, 0), p = (2, 0), so x_c = (1, 0) and ||a - p||^2 = 4.
    labels = np.array([0, 0, 1])
    x = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.5]], "float32")
    # ||n - x_c||^2 = 2.25; alpha = 45 deg: [4 - 4 * 2.25]_+ = 0.
    np.testing.assert_allclose(to_numpy(angular_loss(labels, x, 45.0)), 0.0, atol=1e-6)
    # alpha = 30 deg, tan^2 = 1/3: [4 - 3]_+ = 1 for both anchors 0 and 1.
    np.testing.assert_allclose(
        to_numpy(angular_loss(labels, x, 30.0)), [1.0, 1.0, 0.0], rtol=1e-5, atol=1e-6
    )
    # The Loss averages over the batch: 2 / 3.
    np.testing.assert_allclose(float(AngularLoss(30.0)(labels, x)), 2.0 / 3.0, rtol=1e-5)


def test_scale_invariant_up_to_the_square():
    labels, x = shuffled_batch(0)
    base = to_numpy(angular_loss(labels, x, 35.0))
    np.testing.assert_allclose(to_numpy(angular_loss(labels, 3.0 * x, 35.0)), 9.0 * base, rtol=1e-4)


@pytest.mark.parametrize("alpha_degrees", [30.0, 45.0, 55.0])
def test_matches_numpy_reference(alpha_degrees):
    for seed, counts in [(0, (3, 3, 3)), (1, (2, 4, 3, 2))]:
        labels, x = shuffled_batch(seed, counts)
        x = x * np.float32(0.5) + np.random.default_rng(seed).normal(size=x.shape).astype("float32")
        expected = reference_angular_loss(labels, x, alpha_degrees)
        assert np.any(expected > 0)
        got = to_numpy(angular_loss(labels, x, alpha_degrees))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            float(AngularLoss(alpha_degrees)(labels[:, None], x)), expected.mean(), rtol=1e-4
        )


def test_anchor_without_positive_gives_zero():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    got = to_numpy(angular_loss(np.array([0, 0, 1]), x, 80.0))
    assert got[2] == 0.0
    np.testing.assert_array_equal(to_numpy(angular_loss(np.zeros(3), x, 80.0)), 0.0)


def test_training_reduces_the_loss():
    losses = fit_history(AngularLoss(45.0), noise=3.0)
    assert np.all(np.isfinite(losses))
    assert losses[0] > 0.1 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("alpha_degrees", [0.0, 90.0, -10.0, float("nan"), "45", True])
def test_bad_alpha_raises(alpha_degrees):
    with pytest.raises(ValueError, match="Received: alpha_degrees="):
        AngularLoss(alpha_degrees)
    with pytest.raises(ValueError, match="Received: alpha_degrees="):
        angular_loss(np.zeros(2), np.zeros((2, 3), "float32"), alpha_degrees)


# --------------------------------------------------------------------------
# form="npair": Wang et al.'s log-sum-exp form (the multi-metric authors' code).
# --------------------------------------------------------------------------


def test_npair_form_hand_computed_example():
    # Two speakers x two utterances; each anchor has one positive (the other
    # utterance of its speaker) and one negative (the other speaker's
    # utterance of the positive's view):
    #   row 0: a = (1, 0),  p = (0, 1),  n = row 3 = (-1, 0)
    #   row 1: a = (0, 1),  p = (1, 0),  n = row 2 = (1, 1)
    #   row 2: a = (1, 1),  p = (-1, 0), n = row 1 = (0, 1)
    #   row 3: a = (-1, 0), p = (1, 1),  n = row 0 = (1, 0)
    # (a + p).n = -1, 2, 1, 0 and a.p = 0, 0, -1, -1.
    labels = np.array([0, 0, 1, 1])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], "float32")
    # alpha = 45 deg, tan^2 = 1: f = 4 (a + p).n - 4 a.p = -4, 8, 8, 4.
    want = np.log1p(np.exp([-4.0, 8.0, 8.0, 4.0]))
    got = to_numpy(angular_loss(labels, x, 45.0, form="npair"))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # alpha = 30 deg, tan^2 = 1/3: f = 4/3 (a + p).n - 8/3 a.p = -4/3, 8/3, 4, 8/3.
    want = np.log1p(np.exp([-4.0 / 3.0, 8.0 / 3.0, 4.0, 8.0 / 3.0]))
    got = to_numpy(angular_loss(labels, x, 30.0, form="npair"))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The Loss averages the anchors.
    np.testing.assert_allclose(
        float(AngularLoss(30.0, form="npair")(labels, x)), want.mean(), rtol=1e-5
    )


def test_npair_form_is_the_hinge_argument_up_to_a_constant_on_unit_vectors():
    # ||a - p||^2 - 4 t ||n - c||^2 = f + (1 - t)(|a|^2 + |p|^2) - 4 t |n|^2, so on
    # unit vectors at 45 deg (t = 1) f = hinge argument + 4. With P = K = 2
    # each anchor has one N-pair negative, so the loss is log(1 + e^(argument + 4)).
    rng = np.random.default_rng(3)
    labels = np.array([0, 1, 0, 1])
    x = rng.normal(size=(4, 3))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    # Anchor: (positive, negative) by the cyclic views (speaker 0: rows 0, 2; 1: rows 1, 3).
    tuplets = {0: (2, 3), 1: (3, 2), 2: (0, 1), 3: (1, 0)}
    argument = np.array(
        [
            np.sum((x[a] - x[p]) ** 2) - 4.0 * np.sum((x[n] - (x[a] + x[p]) / 2.0) ** 2)
            for a, (p, n) in sorted(tuplets.items())
        ]
    )
    assert np.sum(argument > 0) == 2  # two violations, two satisfied constraints
    x = x.astype("float32")
    npair = to_numpy(angular_loss(labels, x, 45.0, form="npair"))
    np.testing.assert_allclose(npair, np.log1p(np.exp(argument + 4.0)), rtol=1e-5)


@pytest.mark.parametrize("alpha_degrees", [30.0, 45.0, 55.0])
def test_npair_form_matches_numpy_reference(alpha_degrees):
    for seed, counts in [(0, (3, 3, 3)), (1, (2, 4, 3, 2)), (5, (2, 2, 2, 2, 2))]:
        labels, x = shuffled_batch(seed, counts)
        x = 0.3 * x
        expected = reference_npair_angular_loss(labels, x, alpha_degrees)
        got = to_numpy(angular_loss(labels, x, alpha_degrees, form="npair"))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            float(AngularLoss(alpha_degrees, form="npair")(labels[:, None], x)),
            expected.mean(),
            rtol=1e-4,
        )


def test_npair_form_single_utterance_speaker_and_single_speaker():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    labels = np.array([0, 0, 1, 2, 2])
    got = to_numpy(angular_loss(labels, x, 45.0, form="npair"))
    assert got[2] == 0.0  # no positive; still a negative of the others
    np.testing.assert_allclose(got, reference_npair_angular_loss(labels, x), rtol=1e-5, atol=1e-6)
    # No negatives: log(1 + 0) = 0.
    np.testing.assert_array_equal(to_numpy(angular_loss(np.zeros(5), x, 45.0, form="npair")), 0.0)


def _loss_gradient(loss, labels, x):
    """d mean(loss) / d x, read from one SGD step (learning rate 1) of a layer whose output is x.

    A bias-free Dense layer with kernel `x` on the identity matrix outputs
    `x` itself, so its kernel gradient is the loss's gradient with respect
    to the embeddings, on either backend.
    """
    dense = keras.layers.Dense(x.shape[1], use_bias=False)
    model = keras.Sequential([keras.Input((len(x),)), dense])
    dense.kernel.assign(x)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
    model.train_on_batch(np.eye(len(x), dtype="float32"), labels)
    return x - to_numpy(dense.kernel)


def test_npair_form_gradients_are_finite_and_match_finite_differences():
    labels, x = shuffled_batch(2, (2, 2, 2))
    x = 0.3 * x
    got = _loss_gradient(AngularLoss(40.0, form="npair"), labels, x)
    expected = np.zeros_like(x, dtype="float64")
    step = 1e-5
    for index in np.ndindex(*x.shape):
        up, down = x.astype("float64"), x.astype("float64")
        up[index] += step
        down[index] -= step
        difference = reference_npair_angular_loss(labels, up, 40.0).mean()
        difference -= reference_npair_angular_loss(labels, down, 40.0).mean()
        expected[index] = difference / (2 * step)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    # Every anchor: (a + p).n = 900 and a.p = 0, so f = 4 * 900 and the loss
    # is log(1 + e^3600) = 3600, where a naive log(1 + sum exp) overflows.
    big = np.array([[30.0, 0.0], [0.0, 30.0], [0.0, 30.0], [30.0, 0.0]], "float32")
    np.testing.assert_allclose(
        to_numpy(angular_loss(np.array([0, 0, 1, 1]), big, 45.0, form="npair")), 3600.0, rtol=1e-6
    )
    gradient = _loss_gradient(AngularLoss(45.0, form="npair"), np.array([0, 0, 1, 1]), big)
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


def test_npair_form_training_reduces_the_loss():
    losses = fit_history(AngularLoss(45.0, form="npair"), noise=3.0)
    assert np.all(np.isfinite(losses))
    assert losses[0] > 0.1 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("form", ["wang", "NPAIR", None, 1])
def test_bad_form_raises(form):
    with pytest.raises(ValueError, match="Received: form="):
        AngularLoss(form=form)
    with pytest.raises(ValueError, match="Received: form="):
        angular_loss(np.zeros(2), np.zeros((2, 3), "float32"), form=form)


def test_get_config_round_trip_and_registration():
    loss = AngularLoss(alpha_degrees=40.0, name="ang")
    config = loss.get_config()
    assert config["alpha_degrees"] == 40.0 and config["name"] == "ang"
    assert config["form"] == "hinge"
    npair = AngularLoss(form="npair")
    assert AngularLoss.from_config(npair.get_config()).form == "npair"
    assert AngularLoss.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(AngularLoss) == "keras_spk>AngularLoss"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, AngularLoss) and restored.get_config() == config


# --------------------------------------------------------------------------
# Same values under both backends (tests/cross_backend_test.py).
# --------------------------------------------------------------------------


class _PerAnchorAngularLoss:
    """`angular_loss` in the shape of a weightless layer, for `run_backend_case`."""

    weights = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def set_weights(self, values):
        assert not values

    def __call__(self, inputs):
        labels, x = inputs
        return angular_loss(labels, x, **self.kwargs)


def _backend_case(**kwargs):
    def factory():
        labels, x = shuffled_batch(6, (3, 2, 3, 2))
        return _PerAnchorAngularLoss(**kwargs), [labels, 0.5 * x], None

    return factory


BACKEND_CASES = {
    "hinge, 40 degrees": _backend_case(alpha_degrees=40.0),
    "npair form, 45 degrees": _backend_case(alpha_degrees=45.0, form="npair"),
}
