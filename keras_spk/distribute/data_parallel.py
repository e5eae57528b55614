"""Data-parallel training under the PyTorch backend, started with `torchrun`.

Keras's torch trainer has no distributed mode, and wrapping the model in
`torch.nn.parallel.DistributedDataParallel` means writing a training loop
of one's own. Here `model.fit` stays the one training loop: the optimizer
averages the gradients across the processes before it applies them (one
all-reduce of all gradients per step, as DDP does), the weights are
broadcast from rank 0 when training starts, and each process reads its
share of every batch (`keras_spk.data.sampler_dataset(..., replica=...)`).
A step of `N` processes on batches of `B / N` is then the step of one
process on the batch of `B`: same gradients up to float summation order,
same centres (`CenterLoss` sums its update across processes). Batch
normalisation statistics are each process's own.
"""

import datetime
import os

import keras

# How long a process waits for the others at a collective: rank 0 alone evaluates and
# exports between stages and systems while the others wait for the next training step.
DEFAULT_TIMEOUT_S = 4 * 3600


def _environment_int(name, environ):
    value = environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"The environment variable {name}={value!r} is not an integer; torchrun sets it. "
            "Start the command with torchrun, or unset it."
        ) from None


def data_parallel_from_environment(environ=None):
    """A `DataParallel` for the process `torchrun` started, or `None` for a single process.

    Reads `RANK`, `WORLD_SIZE` and `LOCAL_RANK` (set by `torchrun`);
    `WORLD_SIZE` unset or 1 means a single process.

    Raises:
        ValueError: `WORLD_SIZE` > 1 under another backend than PyTorch (the
            message says what to use instead), or inconsistent variables.
    """
    environ = os.environ if environ is None else environ
    world = _environment_int("WORLD_SIZE", environ)
    if world is None or world == 1:
        return None
    if keras.backend.backend() != "torch":
        raise ValueError(
            f"This process was started by torchrun (WORLD_SIZE={world}), but data-parallel "
            "training across processes is offered under the PyTorch backend only: set "
            "KERAS_BACKEND=torch. TensorFlow's multi-worker strategy does not work with Keras 3's "
            "model.fit (keras-team/keras#20585); on one machine with several GPUs, TensorFlow "
            "trains with train.distribution: mirrored in a single process."
        )
    rank = _environment_int("RANK", environ)
    local_rank = _environment_int("LOCAL_RANK", environ)
    if rank is None or not 0 <= rank < world:
        raise ValueError(
            f"RANK={environ.get('RANK')!r} is not a rank of WORLD_SIZE={world}; start the command "
            "with torchrun, which sets both."
        )
    return DataParallel(rank, world, local_rank if local_rank is not None else rank)


class DataParallel:
    """One process of a data-parallel PyTorch run (`torchrun --nproc_per_node N ...`).

    Args:
        rank: this process's rank, 0 .. world_size - 1.
        world_size: the number of processes.
        local_rank: the rank on this machine (its GPU index).
        backend: `None` (NCCL with CUDA, gloo otherwise), "nccl" or "gloo".
        timeout_s: how long a collective waits for the other processes.

    Example:
    ```python
    parallel = data_parallel_from_environment()   # under torchrun
    parallel.setup()
    model.compile(optimizer=parallel.wrap_optimizer(keras.optimizers.Adam()), loss=None)
    dataset, steps = sampler_dataset("random", paths, labels, crop_samples=32000,
                                     batch_size=256, start_epoch=0, replica=parallel.replica)
    model.fit(dataset, steps_per_epoch=steps, epochs=10, callbacks=parallel.callbacks(),
              verbose=parallel.is_writer)
    ```
    """

    def __init__(self, rank, world_size, local_rank=0, backend=None, timeout_s=DEFAULT_TIMEOUT_S):
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.local_rank = int(local_rank)
        self.backend = backend
        self.timeout_s = timeout_s

    def __repr__(self):
        return f"DataParallel(rank={self.rank}, world_size={self.world_size})"

    @property
    def is_writer(self):
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def replica(self):
        """`(rank, world_size)`, the `replica` argument of the samplers."""
        return self.rank, self.world_size

    def setup(self):
        """Joins the process group (once); selects this process's GPU when there are GPUs."""
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            return self
        backend = self.backend
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(
            backend=backend,
            rank=self.rank,
            world_size=self.world_size,
            timeout=datetime.timedelta(seconds=self.timeout_s),
        )
        return self

    def barrier(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()

    def broadcast_object(self, value):
        """Rank 0's `value` (any picklable object), on every process."""
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def shutdown(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def average_gradients(self, gradients):
        """Gradients averaged over the processes, with one all-reduce; `None`s pass through."""
        import torch
        import torch.distributed as dist

        present = [g for g in gradients if g is not None]
        if not present:
            return list(gradients)
        flat = torch.cat([g.reshape(-1).to(torch.float32) for g in present])
        dist.all_reduce(flat)
        flat /= self.world_size
        averaged, offset = [], 0
        for g in gradients:
            if g is None:
                averaged.append(None)
                continue
            averaged.append(flat[offset : offset + g.numel()].view_as(g).to(g.dtype))
            offset += g.numel()
        return averaged

    def wrap_optimizer(self, optimizer):
        """`optimizer`, made to average its gradients across the processes before applying them.

        The optimizer keeps its class name, settings and variables (its
        checkpoints load as the plain optimizer's); its `apply` averages
        first. Under a `mixed_float16` policy, pass the
        `keras.optimizers.LossScaleOptimizer`: the averaged (scaled)
        gradients are then checked for overflow identically in every
        process, which so skip the same steps.
        """
        cls = type(optimizer)
        if getattr(cls, "_averages_across_processes", False):
            return optimizer
        parallel = self

        def apply(self, grads, trainable_variables=None):
            return cls.apply(self, parallel.average_gradients(list(grads)), trainable_variables)

        optimizer.__class__ = type(
            cls.__name__, (cls,), {"apply": apply, "_averages_across_processes": True}
        )
        return optimizer

    def callbacks(self):
        """Callbacks for `model.fit`: rank 0's weights broadcast when training starts."""
        return [_BroadcastWeights(self)]


class _BroadcastWeights(keras.callbacks.Callback):
    """Every process starts from rank 0's weights (and random-generator states)."""

    def __init__(self, parallel):
        super().__init__()
        self.parallel = parallel

    def on_train_begin(self, logs=None):
        import torch.distributed as dist

        for variable in self.model.variables:
            dist.broadcast(variable.value.data, src=0)
