"""Shared by the bench scripts: CPU thread settings of the current Keras backend."""


def set_threads(threads):
    """Sets the backend's CPU thread count (0 keeps its default); before any op runs."""
    if threads <= 0:
        return
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    else:
        import torch

        torch.set_num_threads(threads)
