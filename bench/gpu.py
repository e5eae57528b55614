"""Training throughput and embedding speed on one GPU: RawNet and ResNet-34-FPM per backend.

For each Keras backend (TensorFlow, PyTorch; each in its own process, since
a process has one backend) and each precision (float32; mixed: the
`"mixed_float16"` dtype policy on a GPU, `"mixed_bfloat16"` on a CPU), one
row per model:

- RawNet (`papers/rawnet/model.py`, `build_rawnet`, Table 1 with the
  paper's recurrent dropout 0.3, 1,211 speakers, AMSGrad 1e-3) on
  59,049-sample crops;
- ResNet-34-FPM (`papers/fpm/model.py`, `build_system("msea_fpm_tc")`: the
  recipe's default system, configs/fpm.yaml: 64 log-mel bands, the
  ResNet-34 of Table 1, FPM-TC over C3-C5, MSEA with GAP, the embedding BN
  of the configs, a softmax output layer, L2 5e-5, SGD 0.1 with momentum
  0.9) on the paper's 3-s crops (48,240 samples: 300 frames);

and the same FPM system written in plain PyTorch in this file
(`plain_fpm_model`: the same log-mel front end, ResNet-34, FPM-TC, MSEA/GAP
head, embedding BN and softmax layer, the same parameter count; SGD with
weight decay 1e-4, PyTorch's form of L2 5e-5), in float32 and under
`torch.autocast` (float16 with a `GradScaler` on a GPU, bfloat16 on a CPU),
with `cudnn.benchmark` on in both PyTorch processes. There is no plain
PyTorch RawNet.

Each row gives training utterances per second (`--steps` timed
`train_on_batch` calls on one synthetic batch kept on the device, after
`--warmup` steps that absorb tracing, XLA compilation and autotuning; the
first step's time is shown apart), the GPU's busy fraction
(`utilization.gpu`) and memory in use sampled from `nvidia-smi` every 0.2 s
in a background thread during the timed steps (mean busy fraction, peak
memory of the whole device), the framework's own peak allocation, and the
embedding real-time factor (RTF: median seconds to embed one 4-s
utterance, divided by 4 s; RawNet with the extraction build, recurrent
dropout 0, which lets the GRU use cuDNN). Data loading is not timed: the
data pipeline has its own bench (bench/pipeline.py).

`--size full` (the default when `nvidia-smi` lists a GPU) uses batches of
128 and the papers' crops; `--size tiny` (the default otherwise) batches of
2, one timed step and short crops (6,561 samples for RawNet, 1 s for FPM),
so that a CPU-only machine finishes in a minute or so per backend (most of
it TensorFlow's tracing). A time budget (`--budget-s`, 450 s) is shared by
the processes, cheapest first; rows left when a process's share is spent
are skipped with a note, and a process still running well past its share
is stopped. A row that fails (mixed precision unsupported, out of memory, a
backend not installed) records its error and the bench goes on; when XLA
(Keras's "auto" `jit_compile` under TensorFlow on a GPU) fails, the row is
timed without it and says so. A backend that sees no GPU on a machine that
has one is reported in a note; its full-size rows are skipped.

The processes get `TF_FORCE_GPU_ALLOW_GROWTH=true` (TensorFlow otherwise
takes nearly all GPU memory at start-up). Keras's `train_on_batch` returns
its logs as numbers, so it waits for every step; the plain PyTorch loop
waits once, after its last timed step. `--json PATH` writes the settings,
the GPU, each process's versions and every row (its figures, or `skipped`
or `error`).

    python bench/gpu.py [--size auto|tiny|full] [--batch N] [--steps N] [--warmup N]
                        [--backends tensorflow torch plain-torch] [--models rawnet fpm]
                        [--precisions float32 mixed] [--jit-compile auto|true|false]
                        [--repeats N] [--crop-rawnet N] [--crop-fpm N]
                        [--budget-s 450] [--json PATH]
"""

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_SPEAKERS = 1211
SAMPLE_RATE = 16000
UTTERANCE_SECONDS = 4.0
FPM_SYSTEM = "msea_fpm_tc"
BACKENDS = ("tensorflow", "torch", "plain-torch")
KERAS_BACKENDS = ("tensorflow", "torch")
MODELS = ("rawnet", "fpm")
PLAIN_MODELS = ("fpm",)
PRECISIONS = ("float32", "mixed")
SIZES = {
    "full": {
        "batch": 128,
        "crops": {"rawnet": 59049, "fpm": 48240},  # RawNet: 3^10; FPM: 300 frames
        "steps": 20,
        "warmup": 3,
        "repeats": 10,
    },
    "tiny": {
        # RawNet's CNN divides by 3^7 = 2187: 6,561 samples leave 3 frames for the GRU.
        "batch": 2,
        "crops": {"rawnet": 6561, "fpm": 16000},
        "steps": 1,
        "warmup": 1,
        "repeats": 2,
    },
}
# Processes run cheapest first; each may use this share of the budget still left,
# so what one leaves over goes to the next.
RUN_ORDER = ("plain-torch", "torch", "tensorflow")
SHARES = {"plain-torch": 0.15, "torch": 0.35, "tensorflow": 0.5}
# A process still running this long after its share is stopped (the row it was in is
# lost); none runs past the budget by more than END_GRACE_S.
CHILD_GRACE_S = 60.0
END_GRACE_S = 20.0
SAMPLE_INTERVAL_S = 0.2
NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=utilization.gpu,memory.used",
    "--format=csv,noheader,nounits",
]


# === GPU sampling (no framework imports) ===


def _gpu_index():
    """The physical GPU the processes use first (CUDA_VISIBLE_DEVICES' first entry)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible if visible.isdigit() else "0"


def query_gpu():
    """`{"name", "driver", "memory_mib"}` of the GPU from nvidia-smi, or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "-i",
                _gpu_index(),
                "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 3:
        return None
    return {"name": fields[0], "driver": fields[1], "memory_mib": _number(fields[2])}


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


class GpuSampler:
    """Samples the GPU's busy fraction and memory in use from nvidia-smi in a background thread.

    `utilization.gpu` is the percentage of the driver's last sample period
    in which a kernel was running. Used as a context manager around a timed
    section; `summary()` gives the mean and peak busy fraction, the peak
    memory in use (the whole device's, every process included) and the
    number of samples, all None without nvidia-smi.
    """

    def __init__(self, interval=SAMPLE_INTERVAL_S):
        self.interval = interval
        self.available = shutil.which("nvidia-smi") is not None
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    def _read(self):
        try:
            out = subprocess.run(
                NVIDIA_SMI_QUERY + ["-i", _gpu_index()],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        fields = [f.strip() for f in out.stdout.strip().split(",")]
        if out.returncode != 0 or len(fields) != 2:
            return None
        busy, memory = _number(fields[0]), _number(fields[1])
        return None if busy is None or memory is None else (busy / 100.0, memory)

    def _run(self):
        while True:  # at least one sample, however short the section
            started = time.perf_counter()
            sample = self._read()
            if sample is not None:
                self.samples.append(sample)
            if self._stop.wait(max(0.0, self.interval - (time.perf_counter() - started))):
                return

    def __enter__(self):
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        return False

    def summary(self):
        if not self.samples:
            return {"gpu_busy_mean": None, "gpu_busy_peak": None, "gpu_mem_peak_mib": None,
                    "gpu_samples": 0}
        busy = [b for b, _ in self.samples]
        return {
            "gpu_busy_mean": statistics.fmean(busy),
            "gpu_busy_peak": max(busy),
            "gpu_mem_peak_mib": max(m for _, m in self.samples),
            "gpu_samples": len(self.samples),
        }


# === Plain PyTorch FPM system ===


def hamming_window(length):
    """The symmetric Hamming window of `LogMelFilterbank` (numpy float64)."""
    import numpy as np

    return np.hamming(length)


def mel_matrix(num_mel_bins=64, fft_length=512, sample_rate=SAMPLE_RATE, lower_edge_hertz=20.0):
    """HTK-mel triangles, `(fft_length // 2 + 1, num_mel_bins)`, as `LogMelFilterbank`'s.

    Written out here (not imported from keras_spk) so that the plain
    PyTorch rows run where Keras is not installed.
    """
    import numpy as np

    def mel(hertz):
        return 2595.0 * np.log10(1.0 + np.asarray(hertz, dtype="float64") / 700.0)

    nyquist = sample_rate / 2.0
    bins = mel(np.linspace(0.0, nyquist, fft_length // 2 + 1))[:, None]
    edges = np.linspace(mel(lower_edge_hertz), mel(nyquist), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype("float32")


def plain_fpm_model(
    num_speakers=NUM_SPEAKERS,
    num_mel_bins=64,
    stage_filters=(32, 64, 128, 256),
    stage_blocks=(3, 4, 6, 3),
    stage_strides=(1, 2, 2, 2),
    stem_filters=32,
    levels=(3, 4, 5),
    fpm_channels=32,
    embedding_dim=128,
):
    """`build_system("msea_fpm_tc", embedding_batch_norm=True)` as a plain `torch.nn.Module`.

    Waveforms `(batch, samples)` -> log-mel (25-ms frames every 10 ms, 512-point
    FFT, symmetric Hamming window, 300-frame sliding mean, in float32 as the
    Keras layer) -> ResNet-34 (bias-free convolutions, BN, ReLU, strided 1x1
    projection shortcuts) -> FPM-TC over C3-C5 (1x1 laterals, 3x3 stride-2
    transposed convolutions cropped or padded to the lateral's size, 3x3
    outputs) -> MSEA: per level a 1x1 convolution to 32 channels and the mean
    over time of each frame's frequency x channel vector, concatenated ->
    FC(128) -> BN (the embedding) -> FC(num_speakers) (the logits). NCHW
    layout: `(batch, channels, time, freq)`.

    `forward(waveforms)` returns the logits, `embed(waveforms)` the
    embeddings.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    window = torch.tensor(hamming_window(400), dtype=torch.float32)
    mel = torch.tensor(mel_matrix(num_mel_bins), dtype=torch.float32)

    class LogMel(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("window", window)
            self.register_buffer("mel", mel)

        def forward(self, waveforms):
            # FFTs in float32 whatever the autocast, as LogMelFilterbank does.
            with torch.autocast(waveforms.device.type, enabled=False):
                frames = waveforms.float().unfold(1, 400, 160) * self.window
                spectrum = torch.fft.rfft(frames, n=512)
                power = spectrum.real.square() + spectrum.imag.square()
                features = torch.log(power @ self.mel + 1e-6)
                return sliding_mean_normalization(features, 300)

    def sliding_mean_normalization(x, window_frames):
        x = x - x.mean(dim=1, keepdim=True)
        count = x.shape[1]
        t = torch.arange(count, device=x.device)
        start = torch.clamp(t - window_frames // 2, min=0).clamp(max=max(count - window_frames, 0))
        end = torch.clamp(start + window_frames, max=count)
        csum = F.pad(torch.cumsum(x, dim=1), (0, 0, 1, 0))
        window_sum = csum[:, end] - csum[:, start]
        return x - window_sum / (end - start).to(x.dtype)[None, :, None]

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))

    def crop_or_pad(x, height, width):
        x = x[:, :, :height, :width]
        return F.pad(x, (0, width - x.shape[3], 0, height - x.shape[2]))

    class FpmSystem(nn.Module):
        def __init__(self):
            super().__init__()
            self.front_end = LogMel()
            self.stem = nn.Sequential(
                nn.Conv2d(1, stem_filters, 7, 1, 3, bias=False),
                nn.BatchNorm2d(stem_filters),
                nn.ReLU(),
            )
            stages, cin = [], stem_filters
            for filters, blocks, stride in zip(stage_filters, stage_blocks, stage_strides):
                stages.append(
                    nn.Sequential(*[
                        BasicBlock(cin if i == 0 else filters, filters, stride if i == 0 else 1)
                        for i in range(blocks)
                    ])
                )
                cin = filters
            self.stages = nn.ModuleList(stages)
            self.levels = list(levels)
            channels = [stage_filters[level - 2] for level in self.levels]
            self.laterals = nn.ModuleList(nn.Conv2d(c, fpm_channels, 1) for c in channels)
            self.outputs = nn.ModuleList(
                nn.Conv2d(fpm_channels, fpm_channels, 3, 1, 1) for _ in self.levels
            )
            self.upsamples = nn.ModuleList(
                nn.ConvTranspose2d(fpm_channels, fpm_channels, 3, 2, padding=1, output_padding=1)
                for _ in self.levels[1:]
            )
            self.projections = nn.ModuleList(
                nn.Conv2d(fpm_channels, fpm_channels, 1) for _ in self.levels
            )
            freq = [num_mel_bins // 2 ** sum(s > 1 for s in stage_strides[: level - 1])
                    for level in self.levels]
            self.embedding = nn.Linear(sum(fpm_channels * f for f in freq), embedding_dim)
            self.embedding_bn = nn.BatchNorm1d(embedding_dim)
            self.output_layer = nn.Linear(embedding_dim, num_speakers)

        def embed(self, waveforms):
            x = self.stem(self.front_end(waveforms)[:, None])
            maps = {}
            for number, stage in enumerate(self.stages, start=2):
                x = stage(x)
                maps[number] = x
            laterals = [conv(maps[level]) for conv, level in zip(self.laterals, self.levels)]
            merged = laterals[:]
            for i in range(len(laterals) - 2, -1, -1):
                up = self.upsamples[i](merged[i + 1])
                merged[i] = laterals[i] + crop_or_pad(up, *laterals[i].shape[2:])
            pooled = []
            for output, projection, m in zip(self.outputs, self.projections, merged):
                p = projection(output(m))
                pooled.append(p.mean(dim=2).flatten(1))  # mean over time of each frame
            return self.embedding_bn(self.embedding(torch.cat(pooled, dim=1)))

        def forward(self, waveforms):
            return self.output_layer(self.embed(waveforms))

    return FpmSystem()


def count_parameters(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# === Child process: one backend ===


def _message(error):
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def _random_inputs(batch, samples, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal((batch, samples)).astype("float32")
    labels = rng.integers(0, NUM_SPEAKERS, batch).astype("int32")
    return x, labels


def _utterance():
    return _random_inputs(1, int(UTTERANCE_SECONDS * SAMPLE_RATE), seed=1)[0]


def backend_setup(backend, gpu_expected):
    """What the child runs on: `{"info": {...}, "device": "GPU" or "CPU", "skip": None}`."""
    info = {"python": sys.version.split()[0]}
    setup = {"info": info, "skip": None}
    if backend in KERAS_BACKENDS:
        import keras

        info["keras"] = keras.__version__
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        build = tf.sysconfig.get_build_info()
        info.update(
            tensorflow=tf.__version__,
            tf_built_with_cuda=bool(tf.test.is_built_with_cuda()),
            tf_cuda=build.get("cuda_version"),
            tf_gpus=[g.name for g in gpus],
        )
        setup["device"] = "GPU" if gpus else "CPU"
        if not gpus and gpu_expected:
            why = "CUDA libraries not found" if info["tf_built_with_cuda"] else "built without CUDA"
            info["note"] = f"TensorFlow {tf.__version__} sees no GPU ({why})"
    else:
        import torch

        cuda = torch.cuda.is_available()
        info.update(
            torch=torch.__version__,
            torch_cuda=torch.version.cuda,
            torch_cuda_available=cuda,
            cudnn=torch.backends.cudnn.version() if cuda else None,
            torch_device=torch.cuda.get_device_name(0) if cuda else "cpu",
        )
        torch.backends.cudnn.benchmark = True
        setup["device"] = "GPU" if cuda else "CPU"
        if not cuda and gpu_expected:
            info["note"] = f"PyTorch {torch.__version__} sees no CUDA device"
    return setup


def _framework_memory(backend, device, reset=False):
    """Peak bytes the framework allocated on the GPU since the last reset, or None."""
    if device != "GPU":
        return None
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if reset:
                tf.config.experimental.reset_memory_stats("GPU:0")
                return None
            return tf.config.experimental.get_memory_info("GPU:0")["peak"]
        import torch

        if reset:
            torch.cuda.reset_peak_memory_stats()
            return None
        return torch.cuda.max_memory_allocated()
    except Exception:  # a framework without the statistic: the column says n/a
        return None


def time_training(step, sync, warmup, steps, backend, device):
    """Runs `warmup` untimed and `steps` timed steps; returns the timing and sampling figures."""
    start = time.perf_counter()
    out = step()
    sync()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        out = step()
    sync()
    _framework_memory(backend, device, reset=True)
    with GpuSampler() as sampler:
        start = time.perf_counter()
        for _ in range(steps):
            out = step()
        sync()
        elapsed = time.perf_counter() - start
    peak = _framework_memory(backend, device)
    figures = {
        "first_step_s": first,
        "timed_s": elapsed,
        "step_ms": 1000.0 * elapsed / steps,
        "framework_peak_mib": None if peak is None else peak / 2**20,
        **sampler.summary(),
    }
    return figures, out


def time_embedding(embed, sync, repeats):
    """Median seconds of `embed()` over `repeats` calls after two untimed ones."""
    for _ in range(2):
        embed()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embed()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _keras_trainer(model):
    import keras

    sys.path.insert(0, ROOT)
    if model == "rawnet":
        from papers.rawnet.model import build_rawnet

        trainer, embedder = build_rawnet(NUM_SPEAKERS, recurrent_dropout=0.3)
        return trainer, embedder, lambda: keras.optimizers.Adam(1e-3, amsgrad=True)
    from papers.fpm.model import build_system

    trainer, embedder = build_system(
        FPM_SYSTEM, NUM_SPEAKERS, pooling="gap", embedding_batch_norm=True
    )
    return trainer, embedder, lambda: keras.optimizers.SGD(0.1, momentum=0.9)


def _keras_extraction_embedder(model, embedder):
    """RawNet rebuilt with recurrent dropout 0 (the GRU can use cuDNN), same weights."""
    if model != "rawnet":
        return embedder
    from papers.rawnet.model import build_rawnet

    _, extraction = build_rawnet(NUM_SPEAKERS, recurrent_dropout=0.0)
    extraction.set_weights(embedder.get_weights())
    return extraction


def _add_note(row, text):
    row["note"] = "; ".join(filter(None, [row.get("note"), text]))


def _first_value(out):
    import numpy as np

    value = out[0] if isinstance(out, (list, tuple)) else out
    return float(np.asarray(value, dtype="float64").reshape(-1)[0])


def keras_row(row, setup, config, jit_compile):
    import keras
    import numpy as np

    keras.utils.clear_session()
    policy = "float32"
    if row["precision"] == "mixed":
        policy = "mixed_float16" if setup["device"] == "GPU" else "mixed_bfloat16"
    row["policy"] = policy
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = row["model"]
        trainer, embedder, optimizer = _keras_trainer(model)
        trainer.compile(optimizer=optimizer(), loss=None, jit_compile=jit_compile)
        row["params"] = int(sum(np.prod(w.shape) for w in trainer.trainable_weights))
        x, labels = _random_inputs(config["batch"], row["crop_samples"])
        batch = [keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(labels)]

        def train():
            return time_training(
                lambda: trainer.train_on_batch(batch),  # returns numpy: waits for the step
                lambda: None,
                config["warmup"],
                config["steps"],
                row["backend"],
                setup["device"],
            )

        try:
            figures, out = train()
        except Exception as error:
            if jit_compile != "auto" or not trainer.jit_compile:
                raise
            # XLA does not compile every graph; without it is what Keras's "auto" needs then.
            trainer.compile(optimizer=optimizer(), loss=None, jit_compile=False)
            _add_note(row, f"training without XLA, which failed: {_message(error)}")
            figures, out = train()
        row.update(figures)
        row["jit_compile"] = bool(trainer.jit_compile)
        row["loss"] = _first_value(out)
        embedder = _keras_extraction_embedder(model, embedder)
        utterance = keras.ops.convert_to_tensor(_utterance())

        def embed_time():
            return time_embedding(
                lambda: embedder.predict_on_batch(utterance), lambda: None, config["repeats"]
            )

        try:
            row["embed_s"] = embed_time()
        except Exception as error:
            if jit_compile != "auto" or not embedder.jit_compile:
                raise
            embedder.jit_compile = False
            embedder.predict_function = None
            _add_note(row, f"RTF without XLA, which failed: {_message(error)}")
            row["embed_s"] = embed_time()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def plain_torch_row(row, setup, config):
    import torch
    from torch.nn import functional as F

    device = "cuda" if setup["device"] == "GPU" else "cpu"
    mixed = row["precision"] == "mixed"
    amp_dtype = torch.float16 if device == "cuda" else torch.bfloat16
    row["policy"] = f"autocast {str(amp_dtype).split('.')[-1]}" if mixed else "float32"
    torch.manual_seed(0)
    net = plain_fpm_model().to(device)
    row["params"] = count_parameters(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=mixed and amp_dtype == torch.float16)
    x, labels = _random_inputs(config["batch"], row["crop_samples"])
    x = torch.from_numpy(x).to(device)
    labels = torch.from_numpy(labels).long().to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=amp_dtype, enabled=mixed):
            loss = F.cross_entropy(net(x).float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

    net.train()
    figures, loss = time_training(
        step, sync, config["warmup"], config["steps"], "torch", setup["device"]
    )
    row.update(figures)
    row["loss"] = float(loss.item())
    net.eval()
    utterance = torch.from_numpy(_utterance()).to(device)

    def embed():
        with torch.inference_mode(), torch.autocast(device, dtype=amp_dtype, enabled=mixed):
            return net.embed(utterance)

    row["embed_s"] = time_embedding(embed, sync, config["repeats"])


def _free_memory(backend):
    import gc

    gc.collect()
    if backend != "tensorflow":
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def _child_rows(args):
    rows = []
    for precision in args.precisions:
        for model in args.models:
            if args.child == "plain-torch" and model not in PLAIN_MODELS:
                continue
            rows.append({
                "backend": args.child,
                "model": model,
                "precision": precision,
                "batch": args.batch,
                "crop_samples": args.crops[model],
                "steps": args.steps,
            })
    return rows


def child_main(args):
    """Runs one backend's rows, appending each as a JSON line to `--rows-file` as it ends."""
    config = {"batch": args.batch, "steps": args.steps, "warmup": args.warmup,
              "repeats": args.repeats}

    def write(record):
        with open(args.rows_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    setup = {}
    try:
        setup = backend_setup(args.child, args.gpu_expected)
        if "note" in setup["info"] and args.size == "full":
            setup["skip"] = (
                f"{setup['info']['note']}: full-size rows skipped (on the CPU they would not "
                "fit the budget; --size tiny times them there)"
            )
    except Exception as error:  # e.g. the backend is not installed: every row says so
        traceback.print_exc()
        setup["info"] = {"error": _message(error)}
        setup["skip"] = f"backend setup failed: {_message(error)}"
    write({"info": setup["info"]})
    for row in _child_rows(args):
        row["device"] = setup.get("device")
        if args.gpu_expected and row["device"] == "CPU":
            row["note"] = "ran on the CPU"
        if setup["skip"] is not None:
            row["skipped"] = setup["skip"]
        elif time.time() > args.deadline:
            row["skipped"] = (
                f"time budget: this process's share of --budget-s {args.budget_s:g} was spent"
            )
        else:
            try:
                if args.child == "plain-torch":
                    plain_torch_row(row, setup, config)
                else:
                    keras_row(row, setup, config, _jit_value(args.jit_compile))
            except Exception as error:  # recorded in the row; the next row still runs
                traceback.print_exc()
                row["error"] = _message(error)
            finally:
                _free_memory(args.child)
        _finish_row(row)
        write({"row": row})
        print(f"  {_row_line(row)}", flush=True)


def _jit_value(text):
    return {"auto": "auto", "true": True, "false": False}[text]


def _finish_row(row):
    if "timed_s" in row and row.get("timed_s", 0) > 0:
        row["utterances_per_s"] = row["batch"] * row["steps"] / row["timed_s"]
    if "embed_s" in row:
        row["rtf"] = row["embed_s"] / UTTERANCE_SECONDS
    if "loss" in row and not math.isfinite(row["loss"]):
        _add_note(row, f"training loss is {row['loss']}")


# === Parent process ===


def _child_env(backend, size):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow" if backend == "tensorflow" else "torch"
    # TensorFlow otherwise reserves nearly all GPU memory at start-up.
    env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONUNBUFFERED"] = "1"
    if size == "tiny":
        # PyTorch's OpenMP threads otherwise spin while they wait; on shared cores that
        # makes small CPU steps many times slower (bench/fpm.py).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_child(backend, args, deadline, hard_deadline, log_dir):
    """`(info, rows)` of one backend's process; rows it did not finish carry the reason."""
    rows_file = os.path.join(log_dir, f"{backend}.jsonl")
    stderr_path = os.path.join(log_dir, f"{backend}.stderr")
    command = [
        sys.executable, os.path.abspath(__file__), "--child", backend,
        "--rows-file", rows_file, "--deadline", repr(deadline),
        "--size", args.size, "--batch", str(args.batch), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--repeats", str(args.repeats),
        "--budget-s", repr(args.budget_s), "--jit-compile", args.jit_compile,
        "--models", *args.models, "--precisions", *args.precisions,
        "--crop-rawnet", str(args.crops["rawnet"]), "--crop-fpm", str(args.crops["fpm"]),
    ]
    command += ["--gpu-expected"] if args.gpu is not None else []
    stopped = None
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            command, env=_child_env(backend, args.size), cwd=ROOT, stderr=stderr,
            start_new_session=True,
        )
        try:
            process.wait(timeout=max(1.0, hard_deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            stopped = (
                f"time budget: the {backend} process was still running well past its share "
                f"of --budget-s {args.budget_s:g} and was stopped"
            )
        except BaseException:  # interrupted: its own session would outlive this one
            os.killpg(process.pid, signal.SIGKILL)
            raise
    info, done = {}, {}
    if os.path.exists(rows_file):
        with open(rows_file) as f:
            for line in f:
                record = json.loads(line)
                if "info" in record:
                    info = record["info"]
                else:
                    row = record["row"]
                    done[(row["model"], row["precision"])] = row
    reason = stopped
    if reason is None and process.returncode != 0:
        with open(stderr_path) as f:
            tail = [line.strip() for line in f if line.strip()]
        last = tail[-1] if tail else "no message"
        reason = f"the {backend} process exited with {process.returncode}: {last[:300]}"
    rows = []
    for planned in _planned_rows(backend, args):
        row = done.get((planned["model"], planned["precision"]))
        if row is None:
            row = dict(planned, error=reason or "row not reported")
            print(f"  {_row_line(row)}", flush=True)
        rows.append(row)
    return info, rows


def _planned_rows(backend, args):
    args.child = backend
    rows = _child_rows(args)
    args.child = None
    return rows


def _skipped_rows(backend, args, reason):
    return [dict(row, skipped=reason) for row in _planned_rows(backend, args)]


def _fmt(value, spec, scale=1.0):
    if value is None:
        return "n/a"
    return format(value * scale, spec)


def _row_line(row):
    cells = [
        f"{row['backend']:12s}",
        f"{row['model']:7s}",
        f"{row['precision']:9s}",
        f"{_fmt(row.get('utterances_per_s'), '9.1f'):>9s}",
        f"{_fmt(row.get('step_ms'), '8.1f'):>8s}",
        f"{_fmt(row.get('first_step_s'), '7.2f'):>7s}",
        f"{_fmt(row.get('gpu_busy_mean'), '5.0f', 100):>5s}",
        f"{_fmt(row.get('gpu_mem_peak_mib'), '8.0f'):>8s}",
        f"{_fmt(row.get('framework_peak_mib'), '8.0f'):>8s}",
        f"{_fmt(row.get('rtf'), '8.5f'):>8s}",
    ]
    notes = []
    if row.get("policy") and row["precision"] != "float32":
        notes.append(row["policy"])
    if row.get("jit_compile"):
        notes.append("XLA")
    for key in ("note", "skipped", "error"):
        if row.get(key):
            notes.append(("skipped: " if key == "skipped" else "") + str(row[key]))
    return " ".join(cells + ["; ".join(notes)]).rstrip()


TABLE_HEADER = (
    f"{'backend':12s} {'model':7s} {'precision':9s} {'utt/s':>9s} {'step ms':>8s} "
    f"{'1st s':>7s} {'busy%':>5s} {'smi MiB':>8s} {'peak MiB':>8s} {'RTF':>8s} note"
)


def _versions_line(backend, info):
    if "error" in info:
        return f"{backend}: {info['error']}"
    if backend == "tensorflow":
        gpus = ", ".join(info["tf_gpus"]) or "no GPU"
        return (
            f"{backend}: tensorflow {info['tensorflow']} (CUDA build: "
            f"{info['tf_built_with_cuda']}, sees: {gpus}), keras {info['keras']}"
        )
    cuda = f"CUDA {info['torch_cuda']}" if info["torch_cuda"] else "no CUDA build"
    keras = f", keras {info['keras']}" if "keras" in info else ""
    return f"{backend}: torch {info['torch']} ({cuda}, device: {info['torch_device']}){keras}"


def comparison_lines(rows):
    """Plain PyTorch's FPM throughput over each Keras backend's, per precision."""
    rates = {
        (r["backend"], r["precision"]): r["utterances_per_s"]
        for r in rows
        if r["model"] == "fpm" and r.get("utterances_per_s")
    }
    lines = []
    for precision in PRECISIONS:
        plain = rates.get(("plain-torch", precision))
        ratios = [
            f"{plain / rates[(b, precision)]:.2f} x keras-{b}"
            for b in KERAS_BACKENDS
            if plain and (b, precision) in rates
        ]
        if ratios:
            lines.append(f"FPM {precision}: plain PyTorch runs at " + ", ".join(ratios))
    return lines


def check_args(parser, args):
    for name in ("batch", "steps", "warmup", "repeats", "crop_rawnet", "crop_fpm"):
        value = getattr(args, name)
        if value is not None and value < 1:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} must be a positive integer. Received: {value}")
    if args.budget_s < 0:
        parser.error(f"--budget-s must be a number of seconds >= 0. Received: {args.budget_s}")
    if args.crop_rawnet is not None and args.crop_rawnet < 3**7:
        parser.error(
            "--crop-rawnet must hold one frame of RawNet's CNN (3^7 = 2187 samples). "
            f"Received: {args.crop_rawnet}"
        )
    if args.crop_fpm is not None and args.crop_fpm < 400:
        parser.error(
            "--crop-fpm must hold one 25-ms log-mel frame (400 samples). "
            f"Received: {args.crop_fpm}"
        )
    for name in ("backends", "models", "precisions"):
        setattr(args, name, list(dict.fromkeys(getattr(args, name))))


def resolve_size(args):
    """Fills the size-dependent settings the command line left out."""
    if args.child is None:
        args.gpu = query_gpu()
        if args.size == "auto":
            args.size = "full" if args.gpu is not None else "tiny"
    defaults = SIZES[args.size]
    for name in ("batch", "steps", "warmup", "repeats"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    args.crops = {
        "rawnet": args.crop_rawnet or defaults["crops"]["rawnet"],
        "fpm": args.crop_fpm or defaults["crops"]["fpm"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=("auto", "tiny", "full"), default="auto",
        help="full: batch 128, the papers' crops; tiny: batch 2, short crops, one step "
        "(auto: full when nvidia-smi lists a GPU)",
    )
    parser.add_argument("--batch", type=int, default=None, help="training batch of both models")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=None, help="timed 4-s embeddings")
    parser.add_argument("--crop-rawnet", type=int, default=None, help="RawNet crop, samples")
    parser.add_argument("--crop-fpm", type=int, default=None, help="FPM crop, samples")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument(
        "--jit-compile", choices=("auto", "true", "false"), default="auto",
        help="the Keras trainers' jit_compile (auto: XLA under TensorFlow on a GPU)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=450.0,
        help="seconds for all rows; rows left when it is spent are skipped",
    )
    parser.add_argument("--json", default=None, help="also write the rows and settings here")
    parser.add_argument("--child", choices=BACKENDS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gpu-expected", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_args(parser, args)
    resolve_size(args)
    if args.child is not None:
        child_main(args)
        return

    start = time.time()
    end = start + args.budget_s
    gpu = args.gpu
    print(
        "device: "
        + (f"{gpu['name']}, driver {gpu['driver']}, {_fmt(gpu['memory_mib'], '.0f')} MiB"
           if gpu else "no GPU (nvidia-smi not found or lists none); GPU columns n/a")
        + f"; {os.cpu_count()} CPU cores"
    )
    print(
        f"size {args.size}: batch {args.batch}; crops RawNet {args.crops['rawnet']}, "
        f"FPM ({FPM_SYSTEM}) {args.crops['fpm']} samples; {args.steps} timed steps after "
        f"{args.warmup} warm-up; RTF: median of {args.repeats} 4-s embeddings; "
        f"budget {args.budget_s:g} s",
        flush=True,
    )
    infos, rows = {}, {}
    order = [b for b in RUN_ORDER if b in args.backends and _planned_rows(b, args)]
    with tempfile.TemporaryDirectory(prefix="keras_spk_gpu_bench_") as log_dir:
        for index, backend in enumerate(order):
            now = time.time()
            remaining = end - now
            if remaining <= 0:
                rows[backend] = _skipped_rows(
                    backend, args, f"time budget: --budget-s {args.budget_s:g} spent"
                )
                for row in rows[backend]:
                    print(f"  {_row_line(row)}", flush=True)
                continue
            weights = [SHARES[b] for b in order[index:]]
            deadline = now + remaining * SHARES[backend] / sum(weights)
            hard = end + END_GRACE_S
            if index < len(order) - 1:
                hard = min(hard, deadline + CHILD_GRACE_S)
            print(f"{backend}: running (share until +{deadline - start:.0f} s)", flush=True)
            infos[backend], rows[backend] = run_child(backend, args, deadline, hard, log_dir)
    wall = time.time() - start

    print()
    for backend in BACKENDS:
        if infos.get(backend):
            print(_versions_line(backend, infos[backend]))
            if infos[backend].get("note"):
                print(f"{backend}: {infos[backend]['note']}")
    print(TABLE_HEADER)
    ordered = [
        row
        for backend in BACKENDS
        for row in sorted(
            rows.get(backend, []),
            key=lambda r: (MODELS.index(r["model"]), PRECISIONS.index(r["precision"])),
        )
    ]
    for row in ordered:
        print(_row_line(row))
    for line in comparison_lines(ordered):
        print(line)
    print(
        "utt/s: training utterances per second; 1st s: the first step (tracing, compiling); "
        "busy%: mean GPU utilization and smi MiB: peak device memory in use, from nvidia-smi "
        "during the timed steps; peak MiB: the framework's peak allocation; RTF: seconds per "
        "4-s utterance embedded / 4"
    )
    print(f"wall time {wall:.0f} s")
    if args.json:
        payload = {
            "settings": {
                "size": args.size, "batch": args.batch, "steps": args.steps,
                "warmup": args.warmup, "repeats": args.repeats, "crops": args.crops,
                "backends": args.backends, "models": args.models,
                "precisions": args.precisions, "jit_compile": args.jit_compile,
                "budget_s": args.budget_s, "fpm_system": FPM_SYSTEM,
                "num_speakers": NUM_SPEAKERS, "utterance_seconds": UTTERANCE_SECONDS,
            },
            "gpu": gpu,
            "cpu_count": os.cpu_count(),
            "versions": infos,
            "wall_s": wall,
            "rows": ordered,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2, allow_nan=True)


if __name__ == "__main__":
    main()
