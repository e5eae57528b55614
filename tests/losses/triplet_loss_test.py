import keras
import numpy as np
import pytest

from keras_spk.losses.triplet_loss import TripletLoss
from keras_spk.losses.triplet_loss import triplet_loss
from tests.helpers.metric_losses import clustered_data
from tests.helpers.metric_losses import fit_history
from tests.helpers.metric_losses import reference_triplet_loss
from tests.helpers.metric_losses import shuffled_batch


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_hand_computed_batch_hard():
    # 1-D points: speaker 0 at 0 and 1, speaker 1 at 3 and 5.
    labels = np.array([0, 0, 1, 1])
    x = np.array([[0.0], [1.0], [3.0], [5.0]], "float32")
    # squared: anchor 0: [1 + 1 - 9]_+ = 0; anchor 1: [1 + 1 - 4]_+ = 0;
    # anchor 2: [4 + 1 - 4]_+ = 1; anchor 3: [4 + 1 - 16]_+ = 0.
    got = to_numpy(triplet_loss(labels, x, margin=1.0, distance="squared"))
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0, 0.0], atol=1e-6)
    # euclidean: anchor 2: [2 + 1 - 2]_+ = 1; anchor 1: [1 + 1 - 2]_+ = 0.
    got = to_numpy(triplet_loss(labels, x, margin=1.0, distance="euclidean"))
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0, 0.0], atol=1e-6)
    # The Loss averages over the batch.
    np.testing.assert_allclose(float(TripletLoss(margin=1.0)(labels, x)), 0.25, rtol=1e-6)


def test_hand_computed_semi_hard():
    labels = np.array([0, 0, 1, 1, 1])
    x = np.array([[0.0], [2.0], [1.0], [3.0], [-4.0]], "float32")
    # Anchor 0 (d_ap = 2, euclidean): negatives at 1, 3, 4; the closest one
    # farther than 2 is 3 -> [2 + 0.5 - 3]_+ = 0. Anchor 1 (d_ap = 2):
    # negatives at 1, 1, 6 -> 6 -> 0. Anchor 2 (positives at 2 and 5;
    # negatives at 1, 1): none farther than 2 -> farthest, 1:
    # [2 + .5 - 1] = 1.5 and [5 + .5 - 1] = 4.5 -> mean 3.
    got = to_numpy(triplet_loss(labels, x, margin=0.5, mining="semi_hard", distance="euclidean"))
    np.testing.assert_allclose(got[:3], [0.0, 0.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(
        got, reference_triplet_loss(labels, x, 0.5, "semi_hard", "euclidean"), atol=1e-6
    )


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
@pytest.mark.parametrize("distance", ["squared", "euclidean", "cosine"])
def test_matches_numpy_reference(mining, distance):
    for seed, counts in [(0, (3, 3, 3)), (1, (2, 4, 3, 2))]:
        labels, x = shuffled_batch(seed, counts)
        margin = 0.5 if distance == "cosine" else 1.0
        expected = reference_triplet_loss(labels, x, margin, mining, distance)
        assert np.sum(expected > 0) >= 2
        got = to_numpy(triplet_loss(labels, x, margin=margin, mining=mining, distance=distance))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        loss = TripletLoss(margin=margin, mining=mining, distance=distance)
        np.testing.assert_allclose(float(loss(labels, x)), expected.mean(), rtol=1e-4, atol=1e-6)
        # Labels as [batch, 1] columns, as model.fit may give them.
        np.testing.assert_allclose(
            float(loss(labels[:, None], x)), expected.mean(), rtol=1e-4, atol=1e-6
        )


def test_row_order_does_not_matter():
    labels, x = shuffled_batch(3)
    order = np.random.default_rng(4).permutation(len(labels))
    for mining in ("batch_hard", "semi_hard"):
        a = to_numpy(triplet_loss(labels, x, mining=mining))
        b = to_numpy(triplet_loss(labels[order], x[order], mining=mining))
        np.testing.assert_allclose(b, a[order], rtol=1e-5, atol=1e-6)


def test_anchor_without_positive_or_negative_gives_zero():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    # Speaker 2 has one utterance: no positive.
    got = to_numpy(triplet_loss(np.array([0, 0, 2]), x, margin=100.0))
    assert got[2] == 0.0 and got[0] > 0
    # A single speaker: no negatives at all.
    np.testing.assert_array_equal(to_numpy(triplet_loss(np.zeros(3), x, margin=100.0)), 0.0)


def test_identical_embeddings_have_finite_gradient():
    # Euclidean distance is not differentiable at 0: the helper must not
    # turn the duplicated rows into NaN gradients.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], "float32")
    labels = np.array([0, 0, 1, 1], "int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="ones")])
    model.compile(optimizer="sgd", loss=TripletLoss(margin=5.0, distance="euclidean"))
    history = model.fit(x, labels, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_training_reduces_the_loss(mining):
    losses = fit_history(TripletLoss(margin=1.0, mining=mining, distance="euclidean"))
    assert np.all(np.isfinite(losses))
    assert losses[0] > 0.1 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin": -0.1},
        {"margin": float("nan")},
        {"margin": "0.3"},
        {"margin": True},
        {"mining": "hard"},
        {"distance": "manhattan"},
    ],
)
def test_bad_arguments_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"Received: {name}="):
        TripletLoss(**kwargs)
    with pytest.raises(ValueError, match=f"Received: {name}="):
        triplet_loss(np.zeros(2), np.zeros((2, 3), "float32"), **kwargs)


def test_bad_embedding_rank_raises():
    with pytest.raises(ValueError, match="shape"):
        triplet_loss(np.zeros(2), np.zeros((2, 3, 4), "float32"))


def test_get_config_round_trip_and_registration():
    loss = TripletLoss(margin=0.5, mining="semi_hard", distance="cosine", name="tri")
    config = loss.get_config()
    assert config["margin"] == 0.5 and config["mining"] == "semi_hard"
    assert config["distance"] == "cosine" and config["name"] == "tri"
    assert TripletLoss.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(TripletLoss) == "keras_spk>TripletLoss"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, TripletLoss) and restored.get_config() == config


def test_compiled_model_save_and_load(tmp_path):
    x, y = clustered_data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss=TripletLoss(margin=0.7, mining="semi_hard"))
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    before = model.evaluate(x, y, batch_size=len(x), verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(restored.loss, TripletLoss) and restored.loss.margin == 0.7
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=len(x), verbose=0), before, rtol=1e-5
    )


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_cosine_margin_half_is_half_the_squared_loss_with_margin_one_on_unit_vectors(mining):
    # On unit vectors ||a - b||^2 = 2 (1 - cos(a, b)), so eq. 8 with m = 1 is twice the cosine-distance
    # triplet with margin 0.5 (the multi-metric authors' setting), with the same hardest pairs.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(4), 3)
    cosine = to_numpy(triplet_loss(labels, x.astype("float32"), margin=0.5, mining=mining, distance="cosine"))
    squared = to_numpy(triplet_loss(labels, x.astype("float32"), margin=1.0, mining=mining, distance="squared"))
    assert np.abs(cosine).max() > 0.05
    np.testing.assert_allclose(cosine, 0.5 * squared, atol=1e-5)
