"""Argument checks and training loop shared by the Keras-based back-ends.

Private module. `DNNPairClassifier` (`keras_spk.scoring.dnn`) and `DCAE`
(`keras_spk.scoring.dcae`) are scikit-learn estimators around a small Keras
model trained as the RawNet back-end (section 4.2): LeakyReLU hidden layers,
L2 weight decay on every kernel, AMSGrad with inverse-time learning-rate
decay per step. Their `fit` methods check the shared arguments with
`check_training_params`, seed and import Keras with `seeded_keras`, and train
with `train_model`; their prediction methods run the model with
`predict_in_chunks`. Keras is imported only inside these functions, so the
estimator modules load without it.
"""

import numpy as np

from keras_spk.utils._checks import check_non_negative_real
from keras_spk.utils._checks import check_positive_int
from keras_spk.utils._checks import check_positive_real
from keras_spk.utils._checks import is_int

# Rows per forward pass at prediction time. Every pass has this shape (the last
# one padded), so a row's output does not depend on the rows scored with it.
PREDICT_CHUNK = 1024


def check_hidden_units(hidden_units, allow_empty=False):
    """`hidden_units` as a tuple of positive ints (an int is one layer).

    Args:
        hidden_units: an int or a tuple / list of ints.
        allow_empty: whether `()` (no hidden layer) is valid.

    Returns:
        tuple of ints.
    """
    hidden = hidden_units
    if is_int(hidden):
        hidden = (hidden,)
    if not isinstance(hidden, (tuple, list)) or not (hidden or allow_empty):
        if allow_empty:
            expected = "a sequence of them (empty for a linear encoder)"
        else:
            expected = "a non-empty sequence of them"
        raise ValueError(
            f"`hidden_units` must be a positive int or {expected}. "
            f"Received: hidden_units={hidden_units!r}"
        )
    return tuple(check_positive_int("hidden_units", units) for units in hidden)


def check_training_params(estimator, allow_empty_hidden=False):
    """The arguments every Keras back-end has, checked (at `fit` time).

    Reads `hidden_units`, `seed`, `negative_slope`, `weight_decay`,
    `learning_rate`, `lr_decay`, `epochs` and `batch_size` from `estimator`.

    Args:
        estimator: the estimator whose stored arguments are checked.
        allow_empty_hidden: whether `hidden_units=()` is valid.

    Returns:
        dict of the checked values, keyed by argument name (without `seed`,
        which `fit` reads from the estimator).
    """
    hidden = check_hidden_units(estimator.hidden_units, allow_empty=allow_empty_hidden)
    if not is_int(estimator.seed):
        raise ValueError(f"`seed` must be an integer. Received: seed={estimator.seed!r}")
    return {
        "hidden_units": hidden,
        "negative_slope": check_non_negative_real("negative_slope", estimator.negative_slope),
        "weight_decay": check_non_negative_real("weight_decay", estimator.weight_decay),
        "learning_rate": float(check_positive_real("learning_rate", estimator.learning_rate)),
        "lr_decay": check_non_negative_real("lr_decay", estimator.lr_decay),
        "epochs": check_positive_int("epochs", estimator.epochs),
        "batch_size": check_positive_int("batch_size", estimator.batch_size),
    }


def seeded_keras(seed):
    """Imports Keras and calls `keras.utils.set_random_seed(seed)`.

    This reseeds Python, NumPy and the backend globally, so that the model
    built next and its training are reproducible under one backend.

    Args:
        seed: int seed.

    Returns:
        the `keras` module.
    """
    import keras

    keras.utils.set_random_seed(int(seed))
    return keras


def kernel_regularizer(weight_decay):
    """`keras.regularizers.L2(weight_decay)`, or None for a zero weight decay."""
    import keras

    return keras.regularizers.L2(weight_decay) if weight_decay else None


def train_model(model, x, y, params, loss=None, verbose=0, jit_compile="auto"):
    """Compiles `model` with AMSGrad and inverse-time decay and trains it.

    The learning rate at step `t` is
    `learning_rate / (1 + lr_decay * t)` (Keras 2's `decay` argument).
    Batches are shuffled every epoch.

    Args:
        model: the `keras.Model` to train.
        x: its training inputs.
        y: its training targets, or None when the model adds its own losses.
        params: dict with `learning_rate`, `lr_decay`, `epochs` and
            `batch_size` (from `check_training_params`).
        loss: the Keras loss of `y`, or None.
        verbose: Keras `fit` verbosity (0 = silent).
        jit_compile: passed to `model.compile`.

    Returns:
        the training loss per epoch (list of floats).
    """
    import keras

    schedule = keras.optimizers.schedules.InverseTimeDecay(
        params["learning_rate"], decay_steps=1, decay_rate=params["lr_decay"]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule, amsgrad=True),
        loss=loss,
        jit_compile=jit_compile,
    )
    history = model.fit(
        x,
        y,
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        shuffle=True,
        verbose=verbose,
    )
    return [float(v) for v in history.history["loss"]]


def predict_in_chunks(model, x, chunk_size=PREDICT_CHUNK):
    """`model(x, training=False)` in chunks of rows, as a float64 array.

    Args:
        model: a Keras model with one input and one output.
        x: `(n_samples, n_features)` float32 array.
        chunk_size: rows per forward pass.

    Returns:
        float64 array of the model's outputs, `n_samples` rows.
    """
    import keras

    # Every pass has the same shape: the last chunk is padded with zero rows. A float32
    # matrix product may take another kernel (another summation order) for another number
    # of rows, so without it a row's score would depend on how many rows came with it.
    n, size = x.shape[0], chunk_size
    chunks = []
    for i in range(0, n, size):
        rows = x[i : i + size]
        if rows.shape[0] < size:
            rows = np.concatenate([rows, np.zeros((size - rows.shape[0],) + rows.shape[1:], rows.dtype)])
        output = keras.ops.convert_to_numpy(model(rows, training=False))
        chunks.append(output[: min(size, n - i)])
    return np.concatenate(chunks, axis=0).astype(np.float64)
