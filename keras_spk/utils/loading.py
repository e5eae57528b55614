"""Loading `.keras` model files that hold keras_spk layers and backbones."""

import os

KERAS_SUFFIX = ".keras"


def check_model_file(path):
    """`path` as a string if it names an existing `.keras` file, else a clear error.

    Useful before handing the path to another process (e.g. an export under
    another backend), so that a wrong path fails here, named.

    Args:
        path: str or path-like, the model file.

    Returns:
        `os.fspath(path)`.

    Raises:
        FileNotFoundError: nothing exists at `path`.
        ValueError: `path` is a folder or a file whose name does not end in
            `.keras` (e.g. a `.weights.h5` file, which holds no architecture).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file not found: {path}. Write it with model.save('embedder.keras').")
    if not os.path.isfile(path) or not path.endswith(KERAS_SUFFIX):
        raise ValueError(
            f"{path} is not a .keras model file. Write one with model.save('embedder.keras'). "
            "(A .weights.h5 file holds no architecture: load it into the model's builder and "
            "save it with model.save('embedder.keras').)"
        )
    return path


def load_model(path):
    """Loads a `.keras` model file holding keras_spk layers or backbones.

    `keras.saving.load_model(path, compile=False)` after importing
    `keras_spk.layers` and `keras_spk.models`, which registers their classes
    for deserialisation. The model is not compiled: it is for inference,
    export or fine-tuning with a new `compile()`.

    Args:
        path: str or path-like, a `.keras` file written by `model.save()`.

    Returns:
        The Keras model.

    Raises:
        FileNotFoundError: nothing exists at `path`.
        ValueError: `path` is not a `.keras` file, or Keras cannot load it
            (e.g. a layer class outside keras_spk that no imported module
            registered); the message names `path`.

    Example:

    >>> embedder = load_model("runs/fpm/embedder.keras")  # doctest: +SKIP
    """
    path = check_model_file(path)
    import keras

    import keras_spk.layers  # registers keras_spk's layers for loading
    import keras_spk.models  # noqa: F401  (and its backbones)

    try:
        return keras.saving.load_model(path, compile=False)
    except (TypeError, ValueError, OSError) as error:
        raise ValueError(
            f"Cannot load the Keras model {path}: {error}. Custom layers outside keras_spk must be "
            "registered with keras.saving.register_keras_serializable by an imported module."
        ) from error
