import itertools

import keras
import numpy as np
import pytest

from keras_spk.losses.permutation_invariant_loss import PermutationInvariantLoss
from keras_spk.losses.permutation_invariant_loss import pairwise_speaker_losses
from keras_spk.losses.permutation_invariant_loss import permutation_invariant_loss


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def cross_entropy(label, logits):
    logits = np.asarray(logits, "float64")
    return -(logits[label] - np.log(np.sum(np.exp(logits))))


def reference_pit(y_true, y_pred, pair_loss=cross_entropy):
    """Eq. 3-5 of Han et al. generalised: loop over itertools.permutations."""
    losses, permutations = [], []
    for labels, estimates in zip(y_true, y_pred):
        best = None
        for permutation in itertools.permutations(range(len(labels))):
            total = sum(pair_loss(labels[i], estimates[permutation[i]]) for i in range(len(labels)))
            if best is None or total < best[0]:
                best = (total, permutation)
        losses.append(best[0])
        permutations.append(best[1])
    return np.array(losses), np.array(permutations)


def confident_logits(classes_per_slot, num_classes=6, confidence=8.0):
    """Logits [batch, K, C] whose slot k is confident in classes_per_slot[b][k]."""
    classes_per_slot = np.asarray(classes_per_slot)
    logits = np.zeros(classes_per_slot.shape + (num_classes,), "float32")
    for index in np.ndindex(classes_per_slot.shape):
        logits[index + (classes_per_slot[index],)] = confidence
    return logits


def test_k2_is_min_of_eq4_and_eq5():
    rng = np.random.default_rng(0)
    y_true = np.array([[3, 1], [0, 2], [4, 4]])
    y_pred = rng.normal(size=(3, 2, 5)).astype("float32")
    ce = cross_entropy
    l1 = [ce(y[0], p[0]) + ce(y[1], p[1]) for y, p in zip(y_true, y_pred)]  # eq. 4
    l2 = [ce(y[0], p[1]) + ce(y[1], p[0]) for y, p in zip(y_true, y_pred)]  # eq. 5
    got = to_numpy(permutation_invariant_loss(y_true, y_pred))
    np.testing.assert_allclose(got, np.minimum(l1, l2), rtol=1e-5)  # eq. 3


def test_hand_built_k2_permutations():
    y_true = np.array([[3, 1], [3, 1]])
    # Example 0: slot 0 says 1 and slot 1 says 3 (swapped); example 1 in order.
    y_pred = confident_logits([[1, 3], [3, 1]])
    loss, permutation = PermutationInvariantLoss().call_with_permutation(y_true, y_pred)
    np.testing.assert_array_equal(to_numpy(permutation), [[1, 0], [0, 1]])
    np.testing.assert_allclose(
        to_numpy(loss), reference_pit(y_true, y_pred)[0], rtol=1e-5, atol=1e-6
    )
    assert np.all(to_numpy(loss) < 0.01)


def test_hand_built_k3_permutations():
    y_true = np.array([[0, 1, 2], [5, 4, 3], [2, 0, 1]])
    # permutation[b, i] = the slot holding label i.
    expected = np.array([[2, 0, 1], [0, 1, 2], [1, 2, 0]])
    slots = np.zeros_like(y_true)
    for b in range(3):
        slots[b, expected[b]] = y_true[b]
    y_pred = confident_logits(slots)
    loss = PermutationInvariantLoss()
    permutation = to_numpy(loss.best_permutation(y_true, y_pred))
    np.testing.assert_array_equal(permutation, expected)
    assert permutation.dtype == np.int32
    # The permutation lines the estimates up with the labels.
    aligned = np.take_along_axis(y_pred, permutation[..., None], axis=1)
    np.testing.assert_array_equal(aligned.argmax(-1), y_true)


@pytest.mark.parametrize("num_speakers", [2, 3, 4])
def test_matches_loop_over_permutations(num_speakers):
    rng = np.random.default_rng(num_speakers)
    y_true = rng.integers(0, 7, size=(5, num_speakers))
    y_pred = rng.normal(size=(5, num_speakers, 7)).astype("float32") * 2.0
    expected_loss, expected_permutation = reference_pit(y_true, y_pred)
    got_loss, got_permutation = permutation_invariant_loss(y_true, y_pred, return_permutation=True)
    np.testing.assert_allclose(to_numpy(got_loss), expected_loss, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(got_permutation), expected_permutation)
    loss = PermutationInvariantLoss()
    np.testing.assert_allclose(float(loss(y_true, y_pred)), expected_loss.mean(), rtol=1e-5)


def test_pair_loss_matrix():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, size=(2, 3))
    y_pred = rng.normal(size=(2, 3, 4)).astype("float32")
    got = to_numpy(pairwise_speaker_losses(y_true, y_pred))
    expected = [
        [[cross_entropy(y_true[b, i], y_pred[b, j]) for j in range(3)] for i in range(3)]
        for b in range(2)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "per_speaker_loss",
    ["mean_squared_error", keras.losses.MeanSquaredError(), keras.losses.mean_squared_error],
)
def test_other_per_speaker_losses(per_speaker_loss):
    # Embedding targets: y_true and y_pred [batch, K, dim], MSE per pair.
    rng = np.random.default_rng(3)
    y_true = rng.normal(size=(4, 3, 5)).astype("float32")
    y_pred = rng.normal(size=(4, 3, 5)).astype("float32")
    expected, permutation = reference_pit(y_true, y_pred, lambda t, p: np.mean((t - p) ** 2))
    loss = PermutationInvariantLoss(per_speaker_loss)
    got_loss, got_permutation = loss.call_with_permutation(y_true, y_pred)
    np.testing.assert_allclose(to_numpy(got_loss), expected, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(got_permutation), permutation)


def test_training_with_unordered_speakers_reduces_the_loss():
    # Each example mixes two of 4 speakers; the target pair comes in random
    # order, so only a permutation invariant loss can fit it.
    rng = np.random.default_rng(0)
    pairs = np.array([pair for pair in itertools.permutations(range(4), 2)] * 4)
    prototypes = rng.normal(size=(4, 8))
    x = (prototypes[pairs[:, 0]] + prototypes[pairs[:, 1]]).astype("float32")
    y = pairs[:, ::-1].copy()
    rng.shuffle(y.T)  # not the order the network could guess
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8),
            keras.layers.Reshape((2, 4)),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=PermutationInvariantLoss())
    history = model.fit(x, y, batch_size=len(x), epochs=40, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "true_shape, pred_shape",
    [((2, 1), (2, 1, 5)), ((2, 9), (2, 9, 5)), ((2, 3), (2, 2, 5)), ((2,), (2, 5))],
)
def test_bad_number_of_speakers_raises(true_shape, pred_shape):
    y_true = np.zeros(true_shape, "int32")
    y_pred = np.zeros(pred_shape, "float32")
    with pytest.raises(ValueError, match="Received: y_true.shape="):
        permutation_invariant_loss(y_true, y_pred)


def test_dynamic_number_of_speakers_raises():
    with pytest.raises(ValueError, match="static number of speakers"):
        permutation_invariant_loss(
            keras.KerasTensor((None, None), dtype="int32"), keras.KerasTensor((None, None, 5))
        )


@pytest.mark.parametrize("per_speaker_loss", ["no_such_loss", 3])
def test_bad_per_speaker_loss_raises(per_speaker_loss):
    with pytest.raises(ValueError, match="Received: per_speaker_loss="):
        PermutationInvariantLoss(per_speaker_loss)


@pytest.mark.parametrize(
    "per_speaker_loss",
    [None, "mean_squared_error", keras.losses.SparseCategoricalCrossentropy(from_logits=True)],
)
def test_get_config_round_trip_and_registration(per_speaker_loss):
    loss = PermutationInvariantLoss(per_speaker_loss, name="pit")
    config = loss.get_config()
    assert config["name"] == "pit"
    clone = PermutationInvariantLoss.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(PermutationInvariantLoss) == (
        "keras_spk>PermutationInvariantLoss"
    )
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, PermutationInvariantLoss)
    assert restored.get_config() == config
    # The restored loss computes the same values.
    rng = np.random.default_rng(0)
    if per_speaker_loss == "mean_squared_error":
        y_true = rng.normal(size=(3, 2, 4)).astype("float32")
    else:
        y_true = rng.integers(0, 4, size=(3, 2))
    y_pred = rng.normal(size=(3, 2, 4)).astype("float32")
    np.testing.assert_allclose(
        float(restored(y_true, y_pred)), float(loss(y_true, y_pred)), rtol=1e-6
    )
