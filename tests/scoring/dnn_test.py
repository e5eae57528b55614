"""DNNPairClassifier: the RawNet DNN back-end (run under both Keras backends by .ci/run)."""

import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from keras_spk.metrics import eer
from keras_spk.scoring.dnn import DNNPairClassifier
from keras_spk.scoring.pairs import BVector
from keras_spk.scoring.pairs import ConcatMul
from keras_spk.scoring.pairs import sample_pairs
from keras_spk.scoring.pairs import stack_pairs

# Small enough for a CPU test: a few hundred steps at most.
TINY = {
    "hidden_units": (32, 32),
    "epochs": 4,
    "batch_size": 64,
    "learning_rate": 3e-3,
    "dropout": 0.1,
    "input_dropout": 0.0,
}


def trial_set(n_speakers, n_pairs, seed, dim=16):
    """Pairs of Gaussian speaker embeddings: speaker mean N(0, I) + N(0, 0.8^2 I)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_speakers, dim))
    labels = np.repeat(np.arange(n_speakers), 10)
    embeddings = means[labels] + 0.8 * rng.normal(size=(labels.size, dim))
    a, b, same = sample_pairs(labels, n_pairs, seed=seed + 1)
    return stack_pairs(embeddings[a], embeddings[b]), same


@pytest.fixture(scope="module")
def data():
    X_train, y_train = trial_set(40, 2000, seed=10)
    X_eval, y_eval = trial_set(20, 1000, seed=20)
    return X_train, y_train, X_eval, y_eval


@pytest.fixture(scope="module")
def concat_mul_backend(data):
    X_train, y_train, _, _ = data
    return make_pipeline(ConcatMul(), DNNPairClassifier(**TINY)).fit(X_train, y_train)


def test_concat_mul_dnn_backend_beats_chance(data, concat_mul_backend):
    _, _, X_eval, y_eval = data
    value = eer(concat_mul_backend.decision_function(X_eval), y_eval)
    assert value < 0.25, (keras.backend.backend(), value)  # chance: 0.5; measured about 0.15


def test_b_vector_dnn_backend_beats_chance(data):
    X_train, y_train, X_eval, y_eval = data
    backend = make_pipeline(BVector(), DNNPairClassifier(**TINY)).fit(X_train, y_train)
    value = eer(backend.decision_function(X_eval), y_eval)
    assert value < 0.25, (keras.backend.backend(), value)  # chance: 0.5; measured about 0.15


def test_training_loss_decreases(concat_mul_backend):
    curve = concat_mul_backend[-1].loss_curve_
    assert len(curve) == TINY["epochs"]
    assert curve[-1] < 0.8 * curve[0]


def test_decision_function_is_the_log_odds_of_the_softmax(data, concat_mul_backend):
    _, _, X_eval, _ = data
    classifier = concat_mul_backend[-1]
    features = concat_mul_backend[0].transform(X_eval[:200])
    decision = classifier.decision_function(features)
    proba = classifier.predict_proba(features)
    assert decision.shape == (200,) and proba.shape == (200, 2)
    np.testing.assert_allclose(
        decision, np.log(proba[:, 1]) - np.log(proba[:, 0]), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_array_equal(classifier.predict(features), (decision > 0).astype(int))
    # The stored model's softmax output gives the same probabilities (float32).
    softmax = keras.ops.convert_to_numpy(
        classifier.model_(features.astype("float32"), training=False)
    )
    np.testing.assert_allclose(softmax, proba, atol=1e-5)


def test_architecture_follows_the_parameters():
    X, y = trial_set(10, 200, seed=0, dim=4)
    classifier = DNNPairClassifier(
        hidden_units=(8, 6, 5),
        dropout=0.25,
        input_dropout=0.1,
        negative_slope=0.2,
        weight_decay=1e-3,
        epochs=1,
    ).fit(X, y)
    layers = classifier.model_.layers
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [8, 6, 5, 2]
    assert all(float(layer.kernel_regularizer.l2) == pytest.approx(1e-3) for layer in dense)
    assert [layer.rate for layer in layers if isinstance(layer, keras.layers.Dropout)] == [
        0.1,
        0.25,
        0.25,
        0.25,
    ]
    slopes = [layer.negative_slope for layer in layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert slopes == pytest.approx([0.2] * 3)
    assert layers[-1].name == "softmax" and dense[-1].name == "logits"
    assert classifier.n_features_in_ == 8
    one_layer = DNNPairClassifier(hidden_units=16, dropout=0.0, input_dropout=0.0, epochs=1).fit(
        X, y
    )
    assert [type(layer).__name__ for layer in one_layer.model_.layers] == [
        "InputLayer",
        "Dense",
        "LeakyReLU",
        "Dense",
        "Activation",
    ]


def test_same_seed_same_model_other_seed_other_model():
    X, y = trial_set(10, 300, seed=1, dim=4)
    params = {"hidden_units": (16,), "epochs": 2, "batch_size": 32}
    first = DNNPairClassifier(seed=3, **params).fit(X, y).decision_function(X)
    again = DNNPairClassifier(seed=3, **params).fit(X, y).decision_function(X)
    other = DNNPairClassifier(seed=4, **params).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_string_labels_and_three_classes():
    X, y = trial_set(10, 300, seed=2, dim=4)
    names = np.where(y == 1, "same", "different")
    classifier = DNNPairClassifier(hidden_units=(8,), epochs=1).fit(X, names)
    assert classifier.classes_.tolist() == ["different", "same"]
    assert set(classifier.predict(X)) <= {"different", "same"}
    three = DNNPairClassifier(hidden_units=(8,), epochs=1).fit(X, np.arange(300) % 3)
    assert three.decision_function(X).shape == (300, 3)
    assert three.predict_proba(X).shape == (300, 3)


def test_bad_inputs_raise():
    X, y = trial_set(10, 100, seed=3, dim=4)
    with pytest.raises(NotFittedError):
        DNNPairClassifier().predict(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DNNPairClassifier(epochs=1).fit(X, np.ones(100))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        DNNPairClassifier(epochs=1).fit(X, y[:50])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DNNPairClassifier(epochs=1).fit(bad, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        DNNPairClassifier(epochs=1).fit(X, np.linspace(0, 1, 100))
    fitted = DNNPairClassifier(hidden_units=(4,), epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :6])
    with pytest.raises(ValueError, match="NaN"):
        fitted.decision_function(bad)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_units": ()}, "hidden_units"),
        ({"hidden_units": (16, 0)}, "hidden_units"),
        ({"hidden_units": "16"}, "hidden_units"),
        ({"dropout": 1.0}, "dropout"),
        ({"input_dropout": -0.1}, "input_dropout"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"seed": None}, "seed"),
    ],
)
def test_bad_parameters_raise_in_fit(params, match):
    X, y = trial_set(10, 100, seed=3, dim=4)
    estimator = DNNPairClassifier(**params)
    assert clone(estimator).get_params()[next(iter(params))] == params[next(iter(params))]
    with pytest.raises(ValueError, match=match):
        estimator.fit(X, y)
