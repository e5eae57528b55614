"""Several GPUs of one machine under TensorFlow: `tf.distribute.MirroredStrategy`."""

import keras


def mirrored_strategy(devices=None):
    """A `tf.distribute.MirroredStrategy` over `devices` (default: every GPU, else the CPU).

    Build and compile the model inside `strategy.scope()` and train it with
    `model.fit` as usual: each batch is split across the replicas, their
    losses are scaled by `1 / replicas` and the gradients summed, so a step
    is that of one device on the whole batch. Layers that update their own
    state from a batch (`CenterLoss`) sum it across replicas
    (`keras_spk.distribute.cross_replica_sum`). Batch normalisation
    statistics are each replica's own (no synchronised batch norm).

    Args:
        devices: `None`, or a list of device names (e.g. `["/gpu:0",
            "/gpu:1"]`; `["/cpu:0", "/cpu:1"]` for logical CPU devices).

    Raises:
        ValueError: under another backend than TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "MirroredStrategy is TensorFlow's: run with KERAS_BACKEND=tensorflow, or under the "
            "torch backend start the command with torchrun (data-parallel training). "
            f"Received: backend={keras.backend.backend()!r}"
        )
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=None if devices is None else list(devices))
