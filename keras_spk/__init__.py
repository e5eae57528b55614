"""keras_spk: deep speaker verification for Keras 3 (TensorFlow and PyTorch backends).

Subpackages are imported on first use so that, for example,
``keras_spk.metrics`` does not pull in TensorFlow.
"""

from keras_spk.utils.lazy import lazy_module_exports
from keras_spk.version import __version__

_SUBPACKAGES = ("activations", "config", "data", "evaluation", "export", "layers", "losses", "metrics", "models", "recipe", "scoring", "utils")

__getattr__, __dir__, __all__ = lazy_module_exports(__name__, {}, submodules=_SUBPACKAGES)
__all__ = ["__version__", *__all__]
