"""bench/gpu.py: the plain PyTorch FPM system, nvidia-smi sampling, the time budget, tiny runs.

The runs time nothing that is asserted (benchmarks print their figures);
they check that every row of the current backend is there, with a positive
throughput and a finite real-time factor, or a recorded reason.
"""

import importlib.util
import json
import math
import os
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "gpu.py")
# build_system("msea_fpm_tc", 1211, embedding_batch_norm=True): papers/fpm/model.py's
# 5,774,203 for MSEA with FPM-TC, plus the embedding BN's 2 x 128.
FPM_PARAMS = 5_774_459


def _load_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu = _load_bench()


def _run(tmp_path, *options, timeout=400):
    out = tmp_path / "bench.json"
    command = [sys.executable, SCRIPT, "--size", "tiny", "--json", str(out), *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _check_rows(result, backend, models, precisions):
    rows = {(r["model"], r["precision"]): r for r in result["rows"]}
    assert set(rows) == {(m, p) for m in models for p in precisions}
    for (model, precision), row in rows.items():
        assert row["backend"] == backend
        assert row["batch"] == 2
        assert row["crop_samples"] == gpu.SIZES["tiny"]["crops"][model]
        if precision != "float32" and ("skipped" in row or "error" in row):
            assert str(row.get("skipped") or row.get("error")).strip()  # a reason is recorded
            continue
        assert "error" not in row and "skipped" not in row, row
        assert row["utterances_per_s"] > 0
        assert row["utterances_per_s"] == pytest.approx(2 * row["steps"] / row["timed_s"])
        assert math.isfinite(row["rtf"]) and row["rtf"] > 0
        assert row["rtf"] == pytest.approx(row["embed_s"] / 4.0)
        assert math.isfinite(row["loss"])
        if model == "fpm":
            assert row["params"] == FPM_PARAMS
    return rows


def test_plain_fpm_model_is_the_keras_system():
    torch = pytest.importorskip("torch")
    from keras_spk.layers import LogMelFilterbank
    from papers.fpm.model import build_system

    trainer, _ = build_system("msea_fpm_tc", 1211, pooling="gap", embedding_batch_norm=True)
    keras_params = sum(int(np.prod(w.shape)) for w in trainer.trainable_weights)
    net = gpu.plain_fpm_model()
    assert keras_params == FPM_PARAMS
    assert gpu.count_parameters(net) == FPM_PARAMS

    x = 0.1 * np.random.default_rng(0).standard_normal((2, 16000)).astype("float32")
    expected = keras.ops.convert_to_numpy(LogMelFilterbank()(x))
    with torch.no_grad():
        features = net.front_end(torch.from_numpy(x)).numpy()
        assert features.shape == (2, 98, 64)
        np.testing.assert_allclose(features, expected, atol=1e-4)
        net.eval()
        assert tuple(net(torch.from_numpy(x)).shape) == (2, 1211)
        assert tuple(net.embed(torch.from_numpy(x)).shape) == (2, 128)


def _fake_nvidia_smi(folder):
    path = folder / "nvidia-smi"
    path.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *name,driver_version*) echo "Fake GPU 80GB, 580.1, 81559" ;;\n'
        '  *) echo "57, 1234" ;;\n'
        "esac\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sampler_reads_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert gpu.query_gpu() == {"name": "Fake GPU 80GB", "driver": "580.1", "memory_mib": 81559.0}
    with gpu.GpuSampler(interval=0.05) as sampler:
        pass  # even an instant section gets one sample
    summary = sampler.summary()
    assert summary["gpu_samples"] >= 1
    assert summary["gpu_busy_mean"] == pytest.approx(0.57)
    assert summary["gpu_busy_peak"] == pytest.approx(0.57)
    assert summary["gpu_mem_peak_mib"] == 1234.0


def test_sampler_without_nvidia_smi_reads_na(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu.query_gpu() is None
    with gpu.GpuSampler() as sampler:
        pass
    summary = sampler.summary()
    assert summary == {"gpu_busy_mean": None, "gpu_busy_peak": None, "gpu_mem_peak_mib": None,
                       "gpu_samples": 0}
    row = {"backend": "torch", "model": "fpm", "precision": "float32", **summary}
    assert gpu._row_line(row).split()[3:9] == ["n/a"] * 6


def test_spent_budget_skips_every_row(tmp_path, capsys):
    out = tmp_path / "bench.json"
    gpu.main(["--size", "tiny", "--budget-s", "0", "--backends", "torch", "--json", str(out)])
    result = json.loads(out.read_text())
    assert [(r["model"], r["precision"]) for r in result["rows"]] == [
        ("rawnet", "float32"), ("rawnet", "mixed"), ("fpm", "float32"), ("fpm", "mixed")
    ]
    for row in result["rows"]:
        assert row["skipped"] == "time budget: --budget-s 0 spent"
        assert "utterances_per_s" not in row
    assert "skipped: time budget" in capsys.readouterr().out


def test_tiny_run_rawnet_both_precisions(tmp_path):
    backend = keras.backend.backend()
    result, stdout = _run(tmp_path, "--backends", backend, "--models", "rawnet")
    assert result["settings"]["size"] == "tiny"
    assert set(result["versions"]) == {backend}
    _check_rows(result, backend, ["rawnet"], ["float32", "mixed"])
    assert "RTF" in stdout


@pytest.mark.slow
def test_tiny_run_every_row(tmp_path):
    backend = keras.backend.backend()
    pytest.importorskip("torch")
    result, stdout = _run(tmp_path, "--backends", backend, "plain-torch")
    keras_rows = [r for r in result["rows"] if r["backend"] == backend]
    plain_rows = [r for r in result["rows"] if r["backend"] == "plain-torch"]
    _check_rows({"rows": keras_rows}, backend, ["rawnet", "fpm"], ["float32", "mixed"])
    rows = _check_rows({"rows": plain_rows}, "plain-torch", ["fpm"], ["float32", "mixed"])
    assert rows[("fpm", "float32")]["policy"] == "float32"
    assert "FPM float32: plain PyTorch runs at" in stdout
