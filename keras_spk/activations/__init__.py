"""Activation functions (keras.ops only: TensorFlow and PyTorch backends).

Each is a registered serializable function, usable wherever Keras takes an
activation, and reachable by name through `get(name)` (for YAML configs).
"""

from keras_spk.activations.hard_sigmoid_keras2 import hard_sigmoid_keras2
from keras_spk.utils.registry import lookup

ACTIVATIONS = {
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
}


def get(name):
    """The activation registered under `name` (see `ACTIVATIONS`); unknown names raise ValueError."""
    return lookup(ACTIVATIONS, name, "activation")
