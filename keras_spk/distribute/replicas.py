"""Sums across data-parallel replicas, on either backend.

This module (with the rest of `keras_spk.distribute`) is where the
library talks to `tf.distribute` and `torch.distributed` directly: the
collectives have no `keras.ops` form.
"""

import keras


def _tf_replica_context():
    """The replica context of a `tf.distribute` strategy with several replicas, or None."""
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync < 2:
        return None
    return context


def _torch_group_size():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def num_replicas():
    """How many replicas a training step runs on (1 without data parallelism).

    Under TensorFlow, the current `tf.distribute` strategy's replicas;
    under PyTorch, the processes of the initialised `torch.distributed`
    group (one per device with `torchrun`).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    if backend == "torch":
        return _torch_group_size()
    return 1


def cross_replica_sum(x):
    """The sum of `x` over the data-parallel replicas; `x` itself without data parallelism.

    For state a layer updates from its batch (counts, sums): summed over
    the replicas, every replica computes the update of the whole global
    batch, so the state stays identical on every replica and equal to
    single-device training on that batch. Call it from a layer's `call` in
    training (under TensorFlow, in a `tf.distribute` replica context, as
    `model.fit` runs it; under PyTorch, in every process of the group, in
    the same order). Not differentiable: use it on values under
    `stop_gradient`.

    Args:
        x: a tensor.

    Returns:
        A tensor of `x`'s shape and dtype.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        context = _tf_replica_context()
        if context is None:
            return x
        return context.all_reduce("sum", x)
    if backend == "torch":
        if _torch_group_size() < 2:
            return x
        import torch.distributed as dist

        total = x.detach().clone()
        dist.all_reduce(total)
        return total
    return x
