"""Training stages with a checkpoint every epoch and exact resumption."""

import contextlib
import glob
import os
import random
import re
import sys
import warnings

import keras
import numpy as np

_CHECKPOINT = re.compile(r"^epoch-(\d+)\.weights\.h5$")
# The group of a checkpoint that holds the random state (Keras's own are
# `layers`, `optimizer` and `vars`; `load_weights` reads only those).
RANDOM_STATE_GROUP = "random_state"


def checkpoint_path(directory, epoch):
    """`<directory>/epoch-NNN.weights.h5`, the state after `epoch` epochs."""
    return os.path.join(directory, f"epoch-{epoch:03d}.weights.h5")


def list_checkpoints(directory):
    """`[(epoch, path), ...]` of the complete checkpoints in `directory`, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, "epoch-*.weights.h5")):
        match = _CHECKPOINT.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


# === Random state ===
#
# What a training epoch draws random numbers from, besides its data (which
# `make_dataset` makes a function of the epoch): every `keras.random.SeedGenerator`
# of the model (dropout and recurrent dropout under TensorFlow, and layers
# given a seed), Keras's global `SeedGenerator` (`keras.random` calls without a
# seed), torch's CPU and CUDA generators (PyTorch's unseeded dropout, which
# Keras's `Dropout` and RNN dropout use under the torch backend when built
# without a seed), TensorFlow's global `tf.random.Generator`, and Python's
# and NumPy's global generators. Each is a plain array here.


def _model_seed_states(model):
    # `Layer.variables` is `weights` plus the `SeedGenerator` states, in a fixed order.
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _keras_global_state_modules():
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
    except ImportError:  # another Keras layout: its global generator is not carried
        return None, None
    return global_state, seed_generator


def _tf_global_generator():
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.ops import stateful_random_ops
    except ImportError:
        return None
    return getattr(stateful_random_ops, "global_generator", None)


def get_random_state(model):
    """The random state that training `model` draws from, as NumPy arrays.

    Together with the weights, the optimizer and an epoch's data, it fixes
    what the next epoch computes. See `set_random_state`.

    Args:
        model: a `keras.Model`.

    Returns:
        `{name: np.ndarray}`: `model_seed_generator_<i>` (each
        `keras.random.SeedGenerator` of `model`, in `model.variables`
        order), `keras_global_seed_generator` (when created),
        `python_random`, `numpy_random`, `torch_cpu` and `torch_cuda_<i>`
        (when torch is imported; CUDA when initialised) and
        `tf_global_generator` (when created).
    """
    state = {}
    for i, variable in enumerate(_model_seed_states(model)):
        state[f"model_seed_generator_{i}"] = np.array(keras.ops.convert_to_numpy(variable))
    global_state, seed_generator = _keras_global_state_modules()
    if global_state is not None:
        generator = global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)
        if generator is not None:
            state["keras_global_seed_generator"] = np.array(keras.ops.convert_to_numpy(generator.state))
    version, internal, gauss_next = random.getstate()
    state["python_random"] = np.array([version, *internal], dtype=np.int64)
    if gauss_next is not None:
        state["python_random_gauss_next"] = np.array([gauss_next], dtype=np.float64)
    _, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    state["numpy_random_key"] = np.array(key, dtype=np.uint32)
    state["numpy_random"] = np.array([pos, has_gauss], dtype=np.int64)
    state["numpy_random_gauss"] = np.array([cached_gaussian], dtype=np.float64)
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch_cpu"] = torch.get_rng_state().numpy().copy()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, device_state in enumerate(torch.cuda.get_rng_state_all()):
                state[f"torch_cuda_{i}"] = device_state.cpu().numpy().copy()
    tf_generator = _tf_global_generator()
    if tf_generator is not None:
        state["tf_global_generator"] = np.array(tf_generator.state.numpy())
        state["tf_global_generator_algorithm"] = np.array([int(tf_generator.algorithm)], dtype=np.int64)
    return state


def set_random_state(model, state, source="the random state"):
    """Sets what `get_random_state` returned, so training continues as it would have.

    Args:
        model: the `keras.Model` (the same architecture as the one saved).
        state: a dict from `get_random_state`.
        source: what `state` came from, for error messages.

    Raises:
        ValueError: `state` holds another number of `SeedGenerator`s than
            `model` has (another model).
    """
    seeds = _model_seed_states(model)
    saved = _numbered(state, "model_seed_generator_")
    if len(saved) != len(seeds):
        raise ValueError(
            f"{source} holds the state of {len(saved)} random seed generator(s), but the model "
            f"{model.name!r} has {len(seeds)}: it was written for another model. Resume with "
            "the model (and config) that wrote it, or start a new run."
        )
    for variable, value in zip(seeds, saved):
        variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))
    global_state, seed_generator = _keras_global_state_modules()
    if global_state is not None:
        if "keras_global_seed_generator" in state:
            generator = seed_generator.global_seed_generator()
            generator.state.assign(
                keras.ops.convert_to_tensor(state["keras_global_seed_generator"], dtype=generator.state.dtype)
            )
        else:  # created later, from Python's generator (restored below)
            global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    if "python_random" in state:
        version, *internal = (int(x) for x in state["python_random"])
        gauss_next = state.get("python_random_gauss_next")
        random.setstate((version, tuple(internal), None if gauss_next is None else float(gauss_next[0])))
    if "numpy_random_key" in state:
        pos, has_gauss = (int(x) for x in state["numpy_random"])
        cached_gaussian = float(state["numpy_random_gauss"][0])
        np.random.set_state(("MT19937", state["numpy_random_key"], pos, has_gauss, cached_gaussian))
    torch = sys.modules.get("torch")
    if torch is not None and "torch_cpu" in state:
        torch.set_rng_state(torch.from_numpy(np.array(state["torch_cpu"], dtype=np.uint8)))
        cuda = _numbered(state, "torch_cuda_")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.from_numpy(np.array(v, dtype=np.uint8)) for v in cuda])
    if "tf_global_generator" in state:
        import tensorflow as tf

        algorithm = int(state["tf_global_generator_algorithm"][0])
        generator = tf.random.get_global_generator()
        if int(generator.algorithm) == algorithm:
            generator.reset(state["tf_global_generator"])
        else:
            generator = tf.random.Generator.from_state(state["tf_global_generator"], algorithm)
            tf.random.set_global_generator(generator)


def _numbered(state, prefix):
    """The values of `state`'s `<prefix><i>` entries, in the order of `i`."""
    found = sorted(
        (int(name[len(prefix):]), value) for name, value in state.items() if name.startswith(prefix)
    )
    return [value for _, value in found]


def _write_random_state(path, state):
    import h5py

    with h5py.File(path, "a") as f:
        group = f.create_group(RANDOM_STATE_GROUP)
        for name, value in state.items():
            group.create_dataset(name, data=value)


def _read_random_state(path):
    """The random state saved in checkpoint `path`, or `None` when it has none."""
    import h5py

    with h5py.File(path, "r") as f:
        if RANDOM_STATE_GROUP not in f:
            return None
        group = f[RANDOM_STATE_GROUP]
        return {name: np.array(group[name]) for name in group}


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model's weights, optimizer state and random state after every epoch.

    A checkpoint is a Keras `.weights.h5` file (`model.load_weights` reads
    it) with one more group, `random_state`: what `get_random_state`
    returns at the end of the epoch (the model's `SeedGenerator`s, Keras's,
    torch's, TensorFlow's, Python's and NumPy's global generators), which
    `restore_checkpoint` sets again, so the next epoch draws the dropout
    masks an uninterrupted run would. Each checkpoint is written under a
    temporary name and renamed, so an interruption never leaves a
    half-written `epoch-NNN.weights.h5`. With `keep`, only the newest
    `keep` checkpoints are kept.

    Args:
        directory: folder of the checkpoints (created when needed).
        keep: int >= 1 or `None` (keep all). Defaults to `None`.
    """

    def __init__(self, directory, keep=None):
        super().__init__()
        if keep is not None and (not isinstance(keep, int) or keep < 1):
            raise ValueError(f"`keep` must be None or an int >= 1. Received: keep={keep!r}")
        self.directory = directory
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        final = checkpoint_path(self.directory, epoch + 1)
        temporary = os.path.join(self.directory, f".tmp-{os.getpid()}-{os.path.basename(final)}")
        try:
            self.model.save_weights(temporary)
            _write_random_state(temporary, get_random_state(self.model))
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        if self.keep is not None:
            for _, path in list_checkpoints(self.directory)[: -self.keep]:
                os.remove(path)


def restore_checkpoint(model, directory):
    """Loads the newest checkpoint of `directory` into `model`, random state included.

    The weights and optimizer state go into `model`; the random state saved
    beside them (see `EpochCheckpoint`) is set again (`set_random_state`):
    the model's `SeedGenerator`s and the global generators of Keras, torch,
    TensorFlow, Python and NumPy. A checkpoint without random state (written
    by an older version) loads with a warning: training continues from it,
    but with other dropout masks than an uninterrupted run.

    Returns:
        The number of epochs that checkpoint had completed, or 0 when there
        is none (the model and the random state are left as they are).
    """
    return _load_checkpoint(model, directory)[0]


def _load_checkpoint(model, directory):
    """`restore_checkpoint`, returning `(epoch, random_state)` (`random_state`: dict or None)."""
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        return 0, None
    epoch, path = checkpoints[-1]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    model.load_weights(path)
    state = _read_random_state(path)
    if state is None:
        warnings.warn(
            f"{path} holds no random state (it was written by an older version): training "
            "resumes from its weights and optimizer, but draws other dropout masks than an "
            "uninterrupted run would, so the results will differ slightly.",
            stacklevel=3,
        )
    else:
        set_random_state(model, state, source=path)
    return epoch, state


class _ResumeRandomState(keras.callbacks.Callback):
    """Sets a checkpoint's random state again just before the first training step.

    `model.fit` may draw random numbers before its first step, which an
    uninterrupted run drew once at its start and not between epochs: under
    PyTorch, making the data loader's iterator draws a base seed from
    torch's global generator.
    """

    def __init__(self, state):
        super().__init__()
        self._state = state

    def on_train_batch_begin(self, batch, logs=None):
        if self._state is not None:
            set_random_state(self.model, self._state)
            self._state = None


@contextlib.contextmanager
def _naming_bad_audio(stage):
    """Turns a decode failure inside the training pipeline into an `AudioError` naming the file.

    The audio checks fail as a TensorFlow assertion holding "<path>: <problem>";
    `model.fit` would show it inside a trace of several screens (under either
    backend, since the data comes from tf.data). Other errors pass unchanged.
    """
    import tensorflow as tf

    from keras_spk.data.audio import AudioError
    from keras_spk.data.audio import audio_check_failure

    try:
        yield
    except tf.errors.OpError as error:
        problem = audio_check_failure(error)
        if problem is None:
            raise
        raise AudioError(
            f"[{stage}] training stopped at a file that cannot be used: "
            f"{problem}\nRe-encode or remove it; `python tools/check_audio.py "
            "DATA_DIR` lists every such file of a corpus in one pass. Training resumes from the "
            "last checkpoint when the command is run again."
        ) from None


def fit_stage(
    run,
    stage,
    model,
    make_dataset,
    epochs,
    steps_per_epoch,
    callbacks=(),
    keep_checkpoints=None,
    verbose="auto",
    optimizer=None,
):
    """Trains `model` for one stage of a recipe, resuming where it stopped.

    The stage's checkpoints are `<run>/checkpoints/<stage>/`. If the stage
    already finished, its last checkpoint is loaded and nothing is trained.
    Otherwise training starts from the newest checkpoint (weights, optimizer
    state and epoch counter), or from the model as given when there is none,
    and runs to `epochs` with a checkpoint after every epoch, a CSV log
    (`logs/<stage>.csv`, appended on resumption) and TensorBoard events
    (`logs/tensorboard/<stage>/`).

    `make_dataset(start_epoch)` must return the training data of epochs
    `start_epoch, start_epoch + 1, ...` as one endless stream (e.g.
    `keras_spk.data.training_dataset(..., start_epoch=start_epoch)`), so a
    resumed stage sees the batches an uninterrupted one would have seen.

    Resumption is exact: the checkpoint also holds the random state at the
    end of its epoch (`get_random_state`: the model's `SeedGenerator`s and
    the global generators of Keras, torch, TensorFlow, Python and NumPy),
    which is set again just before the first resumed training step, so the
    dropout and recurrent-dropout masks are those of an uninterrupted run
    and so are the losses and weights, bit for bit. A finished stage loads
    its random state too, so the next stage starts from the same state in
    either case. Not carried, and so not exact when a model uses them:
    TensorFlow's stateful random ops seeded by op seeds (e.g.
    `tf.random.uniform` with no stateless seed; Keras does not use them)
    and generators held by other objects (e.g. a `np.random.Generator` in
    a callback). GPU kernels that are not deterministic (some cuDNN and
    atomic-add kernels) make any two runs differ slightly, resumed or not.

    Args:
        run: the `keras_spk.recipe.Run`.
        stage: the stage's name, a folder name (e.g. `"pretrain"`).
        model: a `keras.Model`, compiled unless `optimizer` is given.
        make_dataset: callable `start_epoch -> dataset`, or `start_epoch ->
            (dataset, steps_per_epoch)` when `steps_per_epoch` is `None`
            (as `RecipeData.training_dataset` returns).
        epochs: int, the stage's total epochs.
        steps_per_epoch: int, batches per epoch, or `None` (from `make_dataset`).
        callbacks: extra Keras callbacks.
        keep_checkpoints: keep only the newest N checkpoints (None: all).
        verbose: `model.fit` verbosity.
        optimizer: `None` (`model` is compiled already), or the stage's
            `(optimizer, schedule)` config sections: `model` is compiled
            with `keras_spk.recipe.optimizers.build_optimizer(...)` and
            `loss=None` (the model adds its own losses).

    Returns:
        The `History` of this call, or `None` when the stage was already done.
    """
    if steps_per_epoch is None:
        first, steps_per_epoch = make_dataset(0)
        make_both = make_dataset

        def make_dataset(start_epoch):  # noqa: F811 - the dataset alone; epoch 0's is built already
            return first if start_epoch == 0 else make_both(start_epoch)[0]

    parallel = getattr(run, "parallel", None)
    if optimizer is not None:
        from keras_spk.recipe.optimizers import build_optimizer

        optimizer_section, schedule_section = optimizer
        built = build_optimizer(
            optimizer_section, schedule_section, steps_per_epoch=steps_per_epoch, epochs=epochs
        )
        if parallel is not None:
            if keras.mixed_precision.dtype_policy().name == "mixed_float16":
                # Wrapped here (compile would do it) so that the averaged gradients are
                # checked for overflow, identically in every process.
                built = keras.optimizers.LossScaleOptimizer(built)
            built = parallel.wrap_optimizer(built)
        model.compile(optimizer=built, loss=None)
    elif parallel is not None and model.optimizer is not None:
        parallel.wrap_optimizer(model.optimizer)
    directory = run.join("checkpoints", stage)
    if run.stage_done(stage):
        epoch = restore_checkpoint(model, directory)
        print(f"[{stage}] finished earlier; loaded its checkpoint (epoch {epoch}).")
        return None
    initial_epoch, random_state = _load_checkpoint(model, directory)
    if initial_epoch:
        print(f"[{stage}] resuming after epoch {initial_epoch} of {epochs}.")
    history = None
    if initial_epoch < epochs:
        writing = []
        if getattr(run, "writer", True):  # in data-parallel training, rank 0 writes
            log_dir = run.makedirs("logs")
            writing = [
                EpochCheckpoint(directory, keep=keep_checkpoints),
                keras.callbacks.CSVLogger(os.path.join(log_dir, f"{stage}.csv"), append=True),
                keras.callbacks.TensorBoard(os.path.join(log_dir, "tensorboard", stage)),
            ]
        elif verbose == "auto" or verbose:
            verbose = 0  # one progress bar, rank 0's
        with _naming_bad_audio(stage):
            history = model.fit(
                make_dataset(initial_epoch),
                initial_epoch=initial_epoch,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=[
                    _ResumeRandomState(random_state),
                    *(parallel.callbacks() if parallel is not None else []),
                    *writing,
                    *callbacks,
                ],
                verbose=verbose,
                shuffle=False,  # the dataset orders each epoch itself
            )
    run.mark_stage_done(stage)
    return history
