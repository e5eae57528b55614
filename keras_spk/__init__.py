"""keras_spk: deep speaker verification for Keras 3 (TensorFlow and PyTorch backends).

Subpackages are imported on first use so that, for example,
``keras_spk.metrics`` does not pull in TensorFlow.
"""

import importlib

from keras_spk.version import __version__

_SUBPACKAGES = ("config", "data", "export", "layers", "losses", "metrics", "models", "recipe", "scoring", "utils")


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_spk.{name}")
    raise AttributeError(f"module 'keras_spk' has no attribute {name!r}")


__all__ = ["__version__", *_SUBPACKAGES]
