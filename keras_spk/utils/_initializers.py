"""A fresh initializer for every weight a layer or model creates."""

import keras


def fresh_initializer(initializer):
    """A new instance of `initializer` (an identifier, config or instance).

    Keras initializers without a seed draw their seed once, when they are
    constructed, so one instance called for two weights of the same shape
    gives both the same values (Keras warns about it). Layers that create
    several weights or sub-layers from one `kernel_initializer` argument call
    this for each, so that every weight gets its own draw. A seeded
    initializer stays seeded: its copies repeat its values, as the user asked.

    Args:
        initializer: a string, a config dict or a `keras.initializers.Initializer`.

    Returns:
        A new `keras.initializers.Initializer`.
    """
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return keras.initializers.get(initializer)
