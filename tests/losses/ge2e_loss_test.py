import keras
import numpy as np
import pytest

from keras_spk.losses.ge2e_loss import GE2EHead
from keras_spk.losses.ge2e_loss import GE2ELoss
from keras_spk.losses.ge2e_loss import ge2e_loss
from keras_spk.losses.ge2e_loss import ge2e_similarity
from tests.helpers.metric_losses import clustered_data
from tests.helpers.metric_losses import fit_history
from tests.helpers.metric_losses import shuffled_batch
from tests.test_case import run_layer_test


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def reference_scores(labels, x, w, b):
    """{speaker: S[ji, k]} per utterance, eq. 6-7 with e_ji left out of its own centroid."""
    labels = list(np.asarray(labels).reshape(-1))
    e = np.asarray(x, "float64")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    scores = []
    for i, y in enumerate(labels):
        row = {}
        for k in dict.fromkeys(labels):
            members = [j for j, label in enumerate(labels) if label == k and j != i]
            row[k] = w * cos(e[i], np.mean(e[members], axis=0)) + b if members else None
        scores.append(row)
    return scores


def reference_ge2e_loss(labels, x, w=10.0, b=-5.0, variant="softmax"):
    labels = list(np.asarray(labels).reshape(-1))
    out = np.zeros(len(labels))
    for i, row in enumerate(reference_scores(labels, x, w, b)):
        y = labels[i]
        if row[y] is None:  # a single-utterance speaker: no centroid to pull to
            continue
        others = [s for k, s in row.items() if k != y]
        if variant == "softmax":
            out[i] = -row[y] + np.log(sum(np.exp(s) for s in row.values()))
        else:
            hardest = max(sigmoid(s) for s in others) if others else 0.0
            out[i] = 1.0 - sigmoid(row[y]) + hardest
    return out


@pytest.mark.parametrize("variant", ["softmax", "sigmoid"])
def test_matches_numpy_reference(variant):
    for seed, counts, w, b in [(0, (3, 3, 3), 10.0, -5.0), (1, (2, 4, 3, 2), 3.0, 1.5)]:
        labels, x = shuffled_batch(seed, counts)
        expected = reference_ge2e_loss(labels, x, w, b, variant)
        got = to_numpy(ge2e_loss(labels, x, w=w, b=b, variant=variant))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        loss = GE2ELoss(w=w, b=b, variant=variant)
        np.testing.assert_allclose(float(loss(labels[:, None], x)), expected.mean(), rtol=1e-5)


def test_similarity_matrix_matches_reference():
    labels, x = shuffled_batch(1, (2, 4, 3, 2))
    rows = reference_scores(labels, x, 7.0, -2.0)
    n = len(labels)
    expected = np.array([[rows[i][labels[j]] for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(
        to_numpy(ge2e_similarity(labels, x, 7.0, -2.0)), expected, rtol=1e-5, atol=1e-5
    )


def test_own_centroid_leaves_the_utterance_out():
    # Speaker 0: e_0 = (1, 0) and e_1 = (0, 1). Left out, e_0's own centroid
    # is e_1: cos = 0, S = b. With e_0 in the centroid it would be cos 45 deg.
    labels = np.array([0, 0, 1, 1])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.1]], "float32")
    scores = to_numpy(ge2e_similarity(labels, x, w=2.0, b=-1.0))
    np.testing.assert_allclose(scores[0, 0], -1.0, atol=1e-6)
    np.testing.assert_allclose(scores[0, 1], -1.0, atol=1e-6)
    # Other speakers' centroids use all their (normalised) utterances.
    centroid = (x[2] / np.linalg.norm(x[2]) + x[3] / np.linalg.norm(x[3])) / 2.0
    np.testing.assert_allclose(scores[0, 2], 2.0 * cos(x[0], centroid) - 1.0, atol=1e-5)


def test_row_order_and_unequal_counts():
    labels, x = shuffled_batch(2, (2, 5, 3))
    order = np.random.default_rng(0).permutation(len(labels))
    for variant in ("softmax", "sigmoid"):
        a = to_numpy(ge2e_loss(labels, x, variant=variant))
        b = to_numpy(ge2e_loss(labels[order], x[order], variant=variant))
        np.testing.assert_allclose(b, a[order], rtol=1e-5, atol=1e-6)


def test_single_utterance_speaker_and_single_speaker():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    labels = np.array([0, 0, 0, 1])  # speaker 1 has one utterance
    got = to_numpy(ge2e_loss(labels, x, variant="softmax"))
    assert got[3] == 0.0
    np.testing.assert_allclose(got, reference_ge2e_loss(labels, x), rtol=1e-5, atol=1e-6)
    one_speaker = np.zeros(4)
    np.testing.assert_allclose(to_numpy(ge2e_loss(one_speaker, x)), 0.0, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(ge2e_loss(one_speaker, x, variant="sigmoid")),
        reference_ge2e_loss(one_speaker, x, variant="sigmoid"),
        rtol=1e-5,
    )


@pytest.mark.parametrize("variant", ["softmax", "sigmoid"])
def test_fixed_scale_training_reduces_the_loss(variant):
    losses = fit_history(GE2ELoss(variant=variant))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_head_output_and_added_loss():
    labels, x = shuffled_batch(1, (2, 4, 3, 2))
    head = GE2EHead(init_w=4.0, init_b=-1.0, variant="sigmoid")
    expected_loss = reference_ge2e_loss(labels, x, 4.0, -1.0, "sigmoid").mean()
    for training in (False, True):
        out = head([x, labels], training=training)
        np.testing.assert_allclose(
            to_numpy(out), to_numpy(ge2e_similarity(labels, x, 4.0, -1.0)), rtol=1e-5, atol=1e-6
        )
        assert len(head.losses) == 1
        np.testing.assert_allclose(float(to_numpy(head.losses[0])), expected_loss, rtol=1e-5)
    assert [w.path.split("/")[-1] for w in head.trainable_weights] == ["w", "b"]
    assert head.count_params() == 2


def test_head_passes_the_layer_checks():
    labels, x = shuffled_batch(0)
    out = run_layer_test(
        lambda: GE2EHead(variant="softmax"),
        [x, labels],
        expected_output_shape=(9, 9),
        fit_loss=None,
    )
    np.testing.assert_allclose(out, to_numpy(ge2e_similarity(labels, x)), rtol=1e-5, atol=1e-5)


def test_head_learns_w_and_b_and_keeps_w_positive():
    x, labels = clustered_data()
    features = keras.Input((8,))
    label_input = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(4)(features)
    head = GE2EHead(init_w=10.0, init_b=-5.0)
    model = keras.Model([features, label_input], head([embeddings, label_input]))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=None)
    history = model.fit([x, labels], epochs=15, batch_size=len(x), shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
    # evaluate() reports the added loss too.
    evaluated = model.evaluate([x, labels], batch_size=len(x), verbose=0, return_dict=True)["loss"]
    assert 0 < evaluated < losses[0]
    w, b = (float(to_numpy(v)) for v in (head.w, head.b))
    assert w != 10.0 and b != -5.0 and w >= 0.0
    # A large negative step is projected back to w >= 0 by the constraint.
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.apply([keras.ops.convert_to_tensor(1e6)], [head.w])
    assert float(to_numpy(head.w)) == 0.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"w": 0.0}, "w"),
        ({"w": -1.0}, "w"),
        ({"w": "10"}, "w"),
        ({"b": float("nan")}, "b"),
        ({"variant": "contrast"}, "variant"),
    ],
)
def test_bad_loss_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        GE2ELoss(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"init_w": 0.0}, "init_w"),
        ({"init_w": float("inf")}, "init_w"),
        ({"init_b": None}, "init_b"),
        ({"variant": "triplet"}, "variant"),
    ],
)
def test_bad_head_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        GE2EHead(**kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="variant"):
        ge2e_loss(np.zeros(2), np.zeros((2, 3), "float32"), variant="max")
    with pytest.raises(ValueError, match=r"\[embeddings, labels\]"):
        GE2EHead()(np.zeros((2, 3), "float32"))


def test_get_config_round_trip_and_registration():
    loss = GE2ELoss(w=5.0, b=-2.0, variant="sigmoid", name="g")
    config = loss.get_config()
    assert (config["w"], config["b"], config["variant"]) == (5.0, -2.0, "sigmoid")
    assert GE2ELoss.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(GE2ELoss) == "keras_spk>GE2ELoss"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, GE2ELoss) and restored.get_config() == config
    head = GE2EHead(init_w=3.0, init_b=1.0, variant="sigmoid", name="h")
    config = head.get_config()
    assert (config["init_w"], config["init_b"], config["variant"]) == (3.0, 1.0, "sigmoid")
    assert GE2EHead.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(GE2EHead) == "keras_spk>GE2EHead"


def _head_case():
    labels, x = shuffled_batch(7, (3, 2, 3))
    return GE2EHead(variant="sigmoid"), [x, labels], {"training": False}


BACKEND_CASES = {"shuffled P x K": _head_case}
