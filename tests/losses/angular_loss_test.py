
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


def test_get_config_round_trip_and_registration():
    loss = AngularLoss(alpha_degrees=40.0, name="ang")
    config = loss.get_config()
    assert config["alpha_degrees"] == 40.0 and config["name"] == "ang"
    assert AngularLoss.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(AngularLoss) == "keras_spk>AngularLoss"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, AngularLoss) and restored.get_config() == config
