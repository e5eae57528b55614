"""Training stages with a checkpoint every epoch and exact resumption."""

import glob
import os
import re

import keras

_CHECKPOINT = re.compile(r"^epoch-(\d+)\.weights\.h5$")


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


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model's weights and optimizer state after every epoch.

    Each checkpoint is written under a temporary name and renamed, so an
    interruption never leaves a half-written `epoch-NNN.weights.h5`. With
    `keep`, only the newest `keep` checkpoints are kept.

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
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        if self.keep is not None:
            for _, path in list_checkpoints(self.directory)[: -self.keep]:
                os.remove(path)


def restore_checkpoint(model, directory):
    """Loads the newest checkpoint of `directory` into `model` (weights and optimizer).

    Returns:
        The number of epochs that checkpoint had completed, or 0 when there
        is none (the model is left as it is).
    """
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        return 0
    epoch, path = checkpoints[-1]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return epoch


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

    Args:
        run: the `keras_spk.recipe.Run`.
        stage: the stage's name, a folder name (e.g. `"pretrain"`).
        model: a compiled `keras.Model`.
        make_dataset: callable `start_epoch -> dataset`.
        epochs: int, the stage's total epochs.
        steps_per_epoch: int, batches per epoch.
        callbacks: extra Keras callbacks.
        keep_checkpoints: keep only the newest N checkpoints (None: all).
        verbose: `model.fit` verbosity.

    Returns:
        The `History` of this call, or `None` when the stage was already done.
    """
    directory = run.join("checkpoints", stage)
    if run.stage_done(stage):
        epoch = restore_checkpoint(model, directory)
        print(f"[{stage}] finished earlier; loaded its checkpoint (epoch {epoch}).")
        return None
    initial_epoch = restore_checkpoint(model, directory)
    if initial_epoch:
        print(f"[{stage}] resuming after epoch {initial_epoch} of {epochs}.")
    history = None
    if initial_epoch < epochs:
        log_dir = run.makedirs("logs")
        history = model.fit(
            make_dataset(initial_epoch),
            initial_epoch=initial_epoch,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=[
                EpochCheckpoint(directory, keep=keep_checkpoints),
                keras.callbacks.CSVLogger(os.path.join(log_dir, f"{stage}.csv"), append=True),
                keras.callbacks.TensorBoard(os.path.join(log_dir, "tensorboard", stage)),
                *callbacks,
            ],
            verbose=verbose,
            shuffle=False,  # the dataset orders each epoch itself
        )
    run.mark_stage_done(stage)
    return history
