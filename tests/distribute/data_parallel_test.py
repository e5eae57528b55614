"""Data-parallel training matches one process on the global batch, under each backend.

TensorFlow: `MirroredStrategy` over two logical CPU devices. PyTorch:
`torchrun --nproc_per_node 2` with gloo on the loopback interface. Each
runs a few SGD steps of a model with a center loss (`reduction="sum"`, the
case that needs care) from the same weights, on the same global batches,
in fresh processes (logical devices and process groups are set up once
per process).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_spk.distribute import DataParallel
from keras_spk.distribute import data_parallel_from_environment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "_train_script.py")
BACKEND = keras.backend.backend()


def environment():
    env = dict(os.environ, KERAS_BACKEND=BACKEND, GLOO_SOCKET_IFNAME="lo", PYTHONPATH=ROOT)
    env.pop("WORLD_SIZE", None)
    return env


def run(args, timeout=300):
    result = subprocess.run(
        [sys.executable, *args], env=environment(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def torchrun(*args, timeout=300, check=True):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        command + list(args), env=environment(), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def weights(path):
    with np.load(path) as f:
        return [f[f"w{i}"] for i in range(len(f.files))]


def assert_same_training(out, name):
    init, single, parallel = (weights(os.path.join(out, f"{n}.npz")) for n in ("init", "single", name))
    names = ["embedding kernel", "embedding bias", "centres", "softmax kernel", "softmax bias"]
    for label, a, b, c in zip(names, init, single, parallel):
        assert np.abs(b - a).max() > 1e-3, f"{label} did not train"
        np.testing.assert_allclose(c, b, atol=1e-5, err_msg=label)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy is TensorFlow's")
def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(tmp_path):
    run([SCRIPT, str(tmp_path)])
    run([SCRIPT, str(tmp_path), "--mirrored", "2"])
    assert_same_training(str(tmp_path), "mirrored_2")


@pytest.mark.skipif(BACKEND != "torch", reason="torchrun data parallelism is the PyTorch backend's")
def test_torchrun_two_processes_match_one_process(tmp_path):
    run([SCRIPT, str(tmp_path)])
    torchrun(SCRIPT, str(tmp_path))
    assert_same_training(str(tmp_path), "data_parallel_2")


def test_environment_decides_data_parallelism():
    assert data_parallel_from_environment({}) is None
    assert data_parallel_from_environment({"WORLD_SIZE": "1"}) is None
    if BACKEND == "torch":
        parallel = data_parallel_from_environment({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
        assert (parallel.rank, parallel.world_size, parallel.local_rank) == (2, 4, 0)
        assert parallel.replica == (2, 4) and not parallel.is_writer
        with pytest.raises(ValueError, match="RANK"):
            data_parallel_from_environment({"WORLD_SIZE": "2", "RANK": "5"})
    else:
        with pytest.raises(ValueError, match="KERAS_BACKEND=torch.*20585"):
            data_parallel_from_environment({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        data_parallel_from_environment({"WORLD_SIZE": "two"})


def test_gradients_are_averaged_in_one_buffer():
    if BACKEND != "torch":
        pytest.skip("the PyTorch backend's gradients")
    import torch
    import torch.distributed as dist

    parallel = DataParallel(0, 1)
    calls = []
    real = dist.all_reduce
    try:
        dist.all_reduce = lambda tensor: calls.append(tensor.clone())
        grads = [torch.ones(2, 3), None, torch.full((4,), 2.0)]
        averaged = parallel.average_gradients(grads)
    finally:
        dist.all_reduce = real
    assert len(calls) == 1 and calls[0].shape == (10,)
    assert averaged[1] is None and averaged[0].shape == (2, 3)
    np.testing.assert_allclose(averaged[2].numpy(), 2.0)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "torch", reason="torchrun data parallelism is the PyTorch backend's")
def test_a_killed_two_process_recipe_run_resumes_exactly(tmp_path):
    from tests.helpers.corpus import data_args
    from tests.helpers.corpus import make_tiny_corpus
    from tests.helpers.recipes import read_log
    from tests.helpers.recipes import read_state

    class Factory:
        def mktemp(self, name):
            path = tmp_path / name
            path.mkdir()
            return path

    corpus = make_tiny_corpus(Factory(), seed=5)
    script = os.path.join(HERE, "_toy_torchrun.py")
    killed, straight = str(tmp_path / "killed"), str(tmp_path / "straight")
    args = data_args(corpus)
    result = torchrun(script, "--kill-after", "3", *args, "--output", killed, check=False)
    assert result.returncode != 0
    state = read_state(killed)
    assert state["stages"] == {"softmax": "done"} and not state["finished"]
    assert sorted(os.listdir(os.path.join(killed, "checkpoints", "metric"))) == ["epoch-001.weights.h5"]
    torchrun(script, *args, "--output", killed)
    torchrun(script, *args, "--output", straight)
    assert read_state(killed)["finished"]
    for stage in ("softmax", "metric"):
        assert [r["epoch"] for r in read_log(killed, stage)] == ["0", "1"]
        assert read_log(killed, stage) == read_log(straight, stage)
    assert os.path.exists(os.path.join(killed, "results", "results.json"))


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy is TensorFlow's")
def test_a_recipe_trains_under_mirrored_strategy_and_evaluates(tmp_path):
    from tests.helpers.corpus import data_args
    from tests.helpers.corpus import make_tiny_corpus
    from tests.helpers.recipes import read_log
    from tests.helpers.recipes import read_state

    class Factory:
        def mktemp(self, name):
            path = tmp_path / name
            path.mkdir()
            return path

    corpus = make_tiny_corpus(Factory(), seed=5)
    out = str(tmp_path / "mirrored")
    result = run([os.path.join(HERE, "_toy_mirrored.py"), *data_args(corpus), "--output", out,
                  "--train.distribution=mirrored", "--train.devices=['/cpu:0', '/cpu:1']"])
    assert "MirroredStrategy over 2 replica(s)" in result.stdout
    assert read_state(out)["finished"]
    assert [r["epoch"] for r in read_log(out, "metric")] == ["0", "1"]
    assert os.path.exists(os.path.join(out, "results", "results.json"))
