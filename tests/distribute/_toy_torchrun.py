"""The runner's toy recipe under torchrun, optionally killed after some epochs.

    torchrun --nproc_per_node 2 _toy_torchrun.py [--kill-after N] RECIPE ARGS...

With `--kill-after N`, every process exits (status 3) at the end of the
N-th epoch, after rank 0 wrote its checkpoint, as when a machine goes down.
"""

import os
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class KillAfterEpochs(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        if self.seen == self.epochs:
            sys.stdout.flush()
            os._exit(3)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    from tests.helpers import toy_recipe

    argv = sys.argv[1:]
    callbacks = []
    if argv[:1] == ["--kill-after"]:
        callbacks.append(KillAfterEpochs(int(argv[1])))
        argv = argv[2:]
    toy_recipe.main(argv, callbacks=callbacks)
