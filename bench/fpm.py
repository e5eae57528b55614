"""FPM systems on CPU under each Keras backend: training-step time per system.

One `train_on_batch` of each system's trainer (`papers/fpm/model.py`,
`build_system`): 64 log-mel bands, the ResNet-34 of Table 1 (its stage and
stem filters times `--width`), the system's aggregation and FPM, the
chosen pooling, 1,211 speakers (VoxCeleb1 dev) with the system's output
layer and L2 weight decay, and SGD(0.1, momentum 0.9) as section 4.2, on a
batch of random 3-s crops (48,240 samples: 300 frames of 25 ms every
10 ms) with random labels. The paper trains with batches of 64; the
default here is 8 so that all seven systems of Table 2 run under both
backends in a few minutes on a small CPU.

For each system the table gives its trainable parameter count (what
Table 2 counts: the output layer included, BN running statistics not;
the same under both backends), the median time of `--steps`
steps after one warm-up step (tracing / first-call allocation) under each
backend, that time as a multiple of "single"'s under the same backend
(the cost of the multi-scale aggregation and of the FPM), and the
torch/tensorflow ratio (above 1: PyTorch is slower). The ResNet-34 does
most of the work, so the systems differ by only a few per cent; steps
vary by about as much from one to the next, so raise `--steps` to
resolve such differences.

Each backend runs in its own process (a process has one backend), one
after the other. On cores shared with other busy processes, PyTorch's
OpenMP threads spin while they wait and a step can take many times longer
than on idle cores; `OMP_WAIT_POLICY=PASSIVE` in the environment (passed on
to both processes) makes them sleep instead.

    python bench/fpm.py [--batch 8] [--steps 2] [--crop-samples 48240] [--width 1.0]
                        [--pooling gap|sap|lde] [--systems single msea ...] [--proposed]
                        [--backends tensorflow torch] [--threads N]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _threads import set_threads  # bench/_threads.py (this script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_SPEAKERS = 1211
CROP = 48240  # 3 s at 16 kHz: 300 frames of 400 samples every 160
BASELINE = "single"
# Tables 2 and 3 (the pooling is the bench's); Table 4's systems bring their own.
TABLE_SYSTEMS = (
    "single",
    "msfa",
    "msfa_fpm_b",
    "msfa_fpm_tc",
    "msea",
    "msea_fpm_b",
    "msea_fpm_tc",
)
PROPOSED_SYSTEMS = ("proposed_1", "proposed_2")
BACKENDS = ("tensorflow", "torch")
POOLINGS = ("gap", "sap", "lde")


def backbone_config(width):
    """Table 1's stage and stem filters times `width` (at least 1 filter each); `None` for 1."""
    if width == 1.0:
        return None
    from papers.fpm.model import PAPER_BACKBONE

    def scale(filters):
        return max(1, round(filters * width))

    return {
        "stackwise_num_filters": [scale(f) for f in PAPER_BACKBONE["stackwise_num_filters"]],
        "stem_filters": scale(PAPER_BACKBONE["stem_filters"]),
    }


def build(name, pooling, width):
    from papers.fpm.model import build_system

    overrides = {} if name in PROPOSED_SYSTEMS else {"pooling": pooling}
    config = backbone_config(width)
    if config is not None:
        overrides["backbone_config"] = config
    trainer, _ = build_system(name, NUM_SPEAKERS, **overrides)
    return trainer


def time_training_step(name, pooling, width, batch, crop, steps, warmup=1):
    """`(median seconds per train_on_batch, trainable parameter count)` of one system."""
    import keras
    import numpy as np

    keras.utils.clear_session()
    trainer = build(name, pooling, width)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=None)
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal((batch, crop)).astype("float32")
    labels = rng.integers(0, NUM_SPEAKERS, batch).astype("int32")
    for _ in range(warmup):  # tracing / first-call allocation
        trainer.train_on_batch([x, labels])
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_on_batch([x, labels])
        times.append(time.perf_counter() - start)
    params = sum(int(np.prod(w.shape)) for w in trainer.trainable_weights)
    return statistics.median(times), params


def run_here(args):
    import keras

    from papers.fpm.model import SYSTEMS

    results = {"_backend": keras.backend.backend()}
    for index, name in enumerate(args.systems):
        # The process's first steps also start its thread pools and grow its
        # allocator, so the first system gets a second warm-up step.
        seconds, params = time_training_step(
            name,
            args.pooling,
            args.width,
            args.batch,
            args.crop_samples,
            args.steps,
            warmup=2 if index == 0 else 1,
        )
        pooling = SYSTEMS[name].get("pooling", args.pooling)
        results[name] = {"ms": seconds * 1000.0, "params": params, "pooling": pooling}
    return results


def run_child(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, os.path.abspath(__file__), "--child"]
    command += ["--batch", str(args.batch), "--steps", str(args.steps)]
    command += ["--crop-samples", str(args.crop_samples), "--width", repr(args.width)]
    command += ["--pooling", args.pooling, "--threads", str(args.threads)]
    command += ["--systems", *args.systems]
    out = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench/fpm.py: the {backend} process failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_args(parser, args):
    for name in ("batch", "steps", "crop_samples"):
        if getattr(args, name) < 1:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} must be a positive integer. Received: {getattr(args, name)}")
    if not args.width > 0:
        parser.error(f"--width must be a positive number (1.0 is Table 1). Received: {args.width}")
    if args.crop_samples < 400:
        parser.error(
            "--crop-samples must hold at least one 25-ms frame (400 samples at 16 kHz). "
            f"Received: {args.crop_samples}"
        )
    if args.systems is None:
        args.systems = list(TABLE_SYSTEMS) + (list(PROPOSED_SYSTEMS) if args.proposed else [])
    elif args.proposed:
        args.systems += [s for s in PROPOSED_SYSTEMS if s not in args.systems]
    args.systems = list(dict.fromkeys(args.systems))  # drop repeats, keep the order
    args.backends = list(dict.fromkeys(args.backends))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="training batch (paper: 64)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps, after one warm-up step")
    parser.add_argument(
        "--crop-samples", type=int, default=CROP, help="samples per crop (3 s at 16 kHz: 48240)"
    )
    parser.add_argument(
        "--width",
        type=float,
        default=1.0,
        help="multiplier of Table 1's stage and stem filters (1.0: 32, 64, 128, 256)",
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="gap",
        help="pooling of the Table 2-3 systems (Table 2: gap); the proposed ones keep theirs",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=TABLE_SYSTEMS + PROPOSED_SYSTEMS,
        default=None,
        help="systems to time (default: the seven of Table 2)",
    )
    parser.add_argument(
        "--proposed", action="store_true", help="also time Table 4's proposed_1 and proposed_2"
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads of each backend; 0 keeps its default"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_args(parser, args)
    if args.child:
        sys.path.insert(0, ROOT)
        set_threads(args.threads)
        print(json.dumps(run_here(args)))
        return

    results = {backend: run_child(backend, args) for backend in args.backends}
    first = results[args.backends[0]]
    threads = f", {args.threads} threads" if args.threads > 0 else ""
    width = f", width x{args.width:g}" if args.width != 1.0 else ""
    print(
        f"FPM systems ({NUM_SPEAKERS} speakers, {args.pooling.upper()} pooling{width}), "
        f"training step, batch {args.batch} x {args.crop_samples} samples, "
        f"median of {args.steps}, CPU ({os.cpu_count()} cores{threads})"
    )
    header = f"{'system':18s} {'params':>11s}"
    for backend in args.backends:
        header += f" {backend + ' ms':>15s} {'/ ' + BASELINE:>9s}"
    both = all(backend in results for backend in BACKENDS)
    if both:
        header += f" {'torch/tf':>9s}"
    print(header)
    for name in args.systems:
        pooling = first[name]["pooling"]
        label = name if pooling == args.pooling else f"{name} ({pooling})"
        row = f"{label:18s} {first[name]['params']:11,d}"
        for backend in args.backends:
            ms = results[backend][name]["ms"]
            baseline = results[backend].get(BASELINE)
            ratio = f"{ms / baseline['ms']:9.2f}" if baseline else f"{'-':>9s}"
            row += f" {ms:15.0f} {ratio}"
        if both:
            row += f" {results['torch'][name]['ms'] / results['tensorflow'][name]['ms']:9.2f}"
        print(row)
    counts = {b: {n: results[b][n]["params"] for n in args.systems} for b in results}
    if len({json.dumps(c, sort_keys=True) for c in counts.values()}) > 1:
        print(f"parameter counts differ between backends: {counts}")


if __name__ == "__main__":
    main()
