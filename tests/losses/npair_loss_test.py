import keras
import numpy as np
import pytest

from keras_spk.losses.npair_loss import NPairLoss
from keras_spk.losses.npair_loss import npair_loss
from tests.helpers.metric_losses import clustered_data
from tests.helpers.metric_losses import fit_history
from tests.helpers.metric_losses import reference_npair_loss
from tests.helpers.metric_losses import shuffled_batch


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def eq10(anchors, positives):
    """Eq. 10 of Xu et al. literally: sum_i log(1 + sum_{j != i} exp(f_i.f_j+ - f_i.f_i+))."""
    total = 0.0
    for i in range(len(anchors)):
        inner = sum(
            np.exp(anchors[i] @ positives[j] - anchors[i] @ positives[i])
            for j in range(len(anchors))
            if j != i
        )
        total += np.log(1.0 + inner)
    return total


def test_hand_computed_example():
    labels = np.array([0, 0, 1, 1])
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], "float32")
    # Each anchor: positive inner product 1, negative 0 -> log(1 + e^-1).
    np.testing.assert_allclose(
        to_numpy(npair_loss(labels, x, l2_reg=0.0)), np.full(4, np.log1p(np.exp(-1.0))), rtol=1e-6
    )
    # l2_reg adds l2_reg * ||f||^2 = 0.1 per row.
    np.testing.assert_allclose(
        float(NPairLoss(l2_reg=0.1)(labels, x)), np.log1p(np.exp(-1.0)) + 0.1, rtol=1e-6
    )


def test_k2_is_eq10_in_both_directions():
    # P = 5 speakers x K = 2, rows in random order.
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(5), 2)
    rng.shuffle(labels)
    x = rng.normal(size=(10, 6))
    first = np.array([np.flatnonzero(labels == s)[0] for s in range(5)])
    second = np.array([np.flatnonzero(labels == s)[1] for s in range(5)])
    expected = (eq10(x[first], x[second]) + eq10(x[second], x[first])) / 10
    got = float(NPairLoss(l2_reg=0.0)(labels, x.astype("float32")))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("l2_reg", [0.0, 0.002, 0.5])
def test_matches_numpy_reference(l2_reg):
    for seed, counts in [(0, (3, 3, 3)), (1, (2, 4, 3, 2)), (5, (4, 4))]:
        labels, x = shuffled_batch(seed, counts)
        expected = reference_npair_loss(labels, x, l2_reg)
        got = to_numpy(npair_loss(labels, x, l2_reg=l2_reg))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            float(NPairLoss(l2_reg=l2_reg)(labels[:, None], x)), expected.mean(), rtol=1e-5
        )


def test_single_utterance_speaker_is_only_a_negative():
    labels = np.array([0, 0, 1, 2, 2])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    got = to_numpy(npair_loss(labels, x, l2_reg=0.0))
    assert got[2] == 0.0
    np.testing.assert_allclose(got, reference_npair_loss(labels, x, 0.0), rtol=1e-5, atol=1e-6)


def test_large_logits_stay_finite():
    labels = np.array([0, 0, 1, 1])
    x = np.array([[30.0, 0.0], [0.0, 30.0], [0.0, 30.0], [30.0, 0.0]], "float32")
    # Every anchor: positive inner product 0, negative 900, so
    # log(1 + e^900) = 900 (a naive log(1 + sum exp) overflows to inf).
    np.testing.assert_allclose(to_numpy(npair_loss(labels, x, l2_reg=0.0)), 900.0, rtol=1e-6)


def test_training_reduces_the_loss():
    losses = fit_history(NPairLoss())
    assert np.all(np.isfinite(losses))
    assert losses[0] > 0.1 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("l2_reg", [-1.0, float("inf"), "0.1", None, False])
def test_bad_l2_reg_raises(l2_reg):
    with pytest.raises(ValueError, match="Received: l2_reg="):
        NPairLoss(l2_reg=l2_reg)
    with pytest.raises(ValueError, match="Received: l2_reg="):
        npair_loss(np.zeros(2), np.zeros((2, 3), "float32"), l2_reg=l2_reg)


def test_tuple_y_pred_raises():
    with pytest.raises(ValueError, match="one tensor"):
        npair_loss(np.zeros(2), (np.zeros((2, 3)), np.zeros((2, 3))))


def test_get_config_round_trip_and_registration(tmp_path):
    loss = NPairLoss(l2_reg=0.01, name="np")
    config = loss.get_config()
    assert config["l2_reg"] == 0.01 and config["name"] == "np"
    assert NPairLoss.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(NPairLoss) == "keras_spk>NPairLoss"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, NPairLoss) and restored.get_config() == config
    x, y = clustered_data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").loss.l2_reg == 0.01
