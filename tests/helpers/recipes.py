"""`run_recipe_test`: a recipe end to end on a tiny corpus, interrupted and resumed."""

import csv
import json
import os

import keras


class StopAfterEpochs(keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` at the end of the `epochs`-th epoch, counted over all stages.

    The epoch's checkpoint is written already (the runner's checkpoint
    callback comes first), as when a user stops a run between epochs.
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        if self.seen == self.epochs:
            raise KeyboardInterrupt("stopped for the test")


def read_log(run_path, stage):
    """The rows of a stage's CSV log (`logs/<stage>.csv`) as dicts."""
    with open(os.path.join(run_path, "logs", f"{stage}.csv"), newline="") as f:
        return list(csv.DictReader(f))


def read_state(run_path):
    """The run's `state.json` (no file: nothing finished yet)."""
    path = os.path.join(run_path, "state.json")
    if not os.path.exists(path):
        return {"stages": {}, "finished": False}
    with open(path) as f:
        return json.load(f)


def run_recipe_test(main, argv, out, stages, stop_after):
    """Runs a recipe's `main`, interrupts it, resumes it, and checks what every recipe must give.

    Args:
        main: the recipe's `main(argv, callbacks)`.
        argv: its command-line arguments (data and a tiny config), without `--output`.
        out: the run folder.
        stages: `{stage name: epochs}` of the config, in order (0: skipped).
        stop_after: epochs trained (over all stages) before the interruption.

    Checks: the first command stops with the stages before the interrupted
    one done and the interrupted one's checkpoints written; `--resume`
    finishes the run; each stage's CSV log holds each of its epochs exactly
    once (so nothing was trained twice or skipped); the back-end table has
    rows with EER and minDCF in [0, 1].

    Returns:
        `(run, rows)`: the finished `Run` and the rows of `results/results.json`.
    """
    import pytest

    with pytest.raises(KeyboardInterrupt):
        main(argv + ["--output", out], callbacks=[StopAfterEpochs(stop_after)])
    done, remaining, interrupted = [], stop_after, None
    for name, epochs in stages.items():
        if remaining >= epochs and epochs:
            done.append(name)
            remaining -= epochs
        elif epochs:
            interrupted = name
            break
    if interrupted is not None and remaining:
        checkpoints = sorted(os.listdir(os.path.join(out, "checkpoints", interrupted)))
        assert checkpoints[-1] == f"epoch-{remaining:03d}.weights.h5", checkpoints
    state = read_state(out)
    assert [s for s, v in state["stages"].items() if v == "done"] == [s for s in stages if s in done]
    assert not state["finished"]

    run = main(["--resume", out])
    assert run.resumed and run.finished
    for name, epochs in stages.items():
        if epochs:
            assert [int(row["epoch"]) for row in read_log(out, name)] == list(range(epochs)), name
    with open(os.path.join(out, "results", "results.json")) as f:
        rows = json.load(f)["results"]
    assert rows
    for row in rows:
        assert 0.0 <= row["eer"] <= 1.0 and 0.0 <= row["min_dcf_0.01"] <= 1.0, row
    return run, rows
