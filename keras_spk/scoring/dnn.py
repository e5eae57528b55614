"""The RawNet paper's DNN back-end as a scikit-learn classifier around a Keras model."""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.scoring._keras_training import check_training_params
from keras_spk.scoring._keras_training import kernel_regularizer
from keras_spk.scoring._keras_training import predict_in_chunks
from keras_spk.scoring._keras_training import seeded_keras
from keras_spk.scoring._keras_training import train_model
from keras_spk.utils._checks import check_non_negative_real

__all__ = ["DNNPairClassifier"]


def _check_rate(name, value):
    value = check_non_negative_real(name, value)
    if value >= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value!r}")
    return value


class DNNPairClassifier(ClassifierMixin, BaseEstimator):
    """Fully-connected DNN classifier of pair features (RawNet back-end).

    The DNN back-end of the RawNet paper: it takes pair features (the output
    of `BVector`, `ConcatMul` or `RBVector`) and classifies a trial as target
    or non-target with a two-way softmax. Architecture, per hidden layer
    (as in the authors' Keras back-end code):

    ```
    Dense(units, L2(weight_decay)) -> Dropout(dropout) -> LeakyReLU(negative_slope)
    ```

    after an optional `Dropout(input_dropout)` on the input, then
    `Dense(n_classes, L2(weight_decay), name="logits") -> softmax`.
    Training minimises the cross-entropy with AMSGrad, learning rate
    `learning_rate / (1 + lr_decay * step)` (Keras 2's `decay` argument).

    The verification score is `decision_function`: for two classes the
    logit difference `z_1 - z_0 = log(p_1 / p_0)`, the log posterior odds of
    `classes_[1]` (the target class for 0/1 labels), computed from the
    logits so it does not saturate as the softmax does. `predict_proba` is
    the softmax of the same logits in float64. More than two classes are
    also accepted (softmax over all; `decision_function` then returns the
    `[n, n_classes]` logits).

    The Keras model is built in `fit` (Keras imported there, so this module
    loads without it) and kept as `model_`: its config and weights are the
    learned state. `fit` calls `keras.utils.set_random_seed(seed)` first
    (this reseeds Python, NumPy and the backend globally), so the same data
    and seed give the same model under one backend; TensorFlow and PyTorch
    give different (equally valid) models.

    Args:
        hidden_units: sizes of the hidden layers; an int is one layer.
            Default: four layers of 1024 (RawNet §4.2).
        dropout: dropout rate after each hidden Dense (authors' code: 0.5).
        input_dropout: dropout rate on the input features (authors' code: 0.2).
        negative_slope: slope of LeakyReLU for negative inputs (Keras default 0.3,
            as in the authors' code).
        weight_decay: L2 factor on every kernel (RawNet §4.2: 1e-4).
        learning_rate: initial AMSGrad learning rate (RawNet §4.2: 1e-3).
        lr_decay: inverse-time decay per step (RawNet §4.2: 1e-4).
        epochs: passes over the training pairs.
        batch_size: pairs per step (RawNet §4.2: 102).
        seed: int seed for weights, dropout and shuffling.
        verbose: Keras `fit` verbosity (0 = silent).

    Attributes:
        classes_: sorted class labels; `classes_[1]` is the positive class.
        model_: the trained `keras.Model` (softmax output; layer "logits"
            holds the pre-softmax scores).
        loss_curve_: training loss per epoch (list of floats).
        n_features_in_: number of input features.

    Example:

    ```python
    backend = make_pipeline(ConcatMul(), DNNPairClassifier(hidden_units=(256, 256)))
    backend.fit(stack_pairs(train_emb[a], train_emb[b]), same)
    scores = backend.decision_function(stack_pairs(enroll_emb, test_emb))
    ```

    Reference:
        Jung et al., "RawNet: Advanced end-to-end deep neural network using
        raw waveforms for text-independent speaker verification", Interspeech
        2019, sections 3 and 4.2.
    """

    def __init__(
        self,
        hidden_units=(1024, 1024, 1024, 1024),
        dropout=0.5,
        input_dropout=0.2,
        negative_slope=0.3,
        weight_decay=1e-4,
        learning_rate=1e-3,
        lr_decay=1e-4,
        epochs=20,
        batch_size=102,
        seed=0,
        verbose=0,
    ):
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.negative_slope = negative_slope
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose

    def _checked_params(self):
        return {
            **check_training_params(self),
            "dropout": _check_rate("dropout", self.dropout),
            "input_dropout": _check_rate("input_dropout", self.input_dropout),
        }

    def _build_model(self, keras, n_features, n_classes, params):
        # === Layers ===
        regularizer = kernel_regularizer(params["weight_decay"])
        inputs = keras.Input(shape=(n_features,), name="pair_features")
        x = inputs
        if params["input_dropout"]:
            x = keras.layers.Dropout(params["input_dropout"], name="input_dropout")(x)
        for i, units in enumerate(params["hidden_units"]):
            x = keras.layers.Dense(units, kernel_regularizer=regularizer, name=f"dense_{i}")(x)
            if params["dropout"]:
                x = keras.layers.Dropout(params["dropout"], name=f"dropout_{i}")(x)
            x = keras.layers.LeakyReLU(
                negative_slope=params["negative_slope"], name=f"leaky_relu_{i}"
            )(x)
        logits = keras.layers.Dense(n_classes, kernel_regularizer=regularizer, name="logits")(x)
        outputs = keras.layers.Activation("softmax", name="softmax")(logits)
        # === Functional Model ===
        return keras.Model(inputs, outputs, name="dnn_pair_classifier")

    def fit(self, X, y):
        """Builds and trains the Keras model.

        Args:
            X: `[n, n_features]` pair features.
            y: `[n]` labels (two classes for verification: 1 target, 0 non-target).

        Returns:
            self.
        """
        params = self._checked_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        target_type = type_of_target(y, input_name="y")
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                f"Unknown label type: {target_type!r}; DNNPairClassifier needs class labels "
                "(1 = same speaker, 0 = different)."
            )
        classes, encoded = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(
                "DNNPairClassifier needs samples of at least 2 classes (target and "
                f"non-target pairs). Received one class: {classes[0]!r}"
            )

        keras = seeded_keras(self.seed)
        model = self._build_model(keras, X.shape[1], classes.shape[0], params)
        loss_curve = train_model(
            model,
            X.astype(np.float32),
            encoded.astype(np.int32),
            params,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            verbose=self.verbose,
        )
        self.classes_ = classes
        self.model_ = model
        self.loss_curve_ = loss_curve
        return self

    def _logits(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64]).astype(np.float32)
        import keras

        logits_model = keras.Model(self.model_.input, self.model_.get_layer("logits").output)
        return predict_in_chunks(logits_model, X)

    def decision_function(self, X):
        """Verification scores: log posterior odds `z_1 - z_0` of `classes_[1]`.

        Returns:
            `[n]` float64 scores for two classes, `[n, n_classes]` logits otherwise.
        """
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities `[n, n_classes]` (softmax of the logits, float64)."""
        logits = self._logits(X)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Most probable class of each row (`classes_[1]` iff `decision_function > 0`)."""
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return self.classes_[(logits[:, 1] - logits[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(logits, axis=1)]
