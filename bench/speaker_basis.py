"""Speaker-basis losses on CPU under each Keras backend: training-step time of each Table 2 loss.

One `train_on_batch` of each loss's trainer (`papers/speaker_basis/model.py`,
`build_speaker_basis_model`) on the Table 1 network (64 log-mel bands,
ResNet-34 with 16-128 channels and leaky ReLU, the 128-d pooled
embedding), 1,211 speakers (VoxCeleb1 dev), Adam(1e-3) as section 4.1,
with the loss's output layer and the weight decay section 4.1 gives it, on
a batch of random 3-s crops (48,240 samples) with labels of 20 speakers x
5 utterances (GE2E's batches; the other losses do not care).

The table gives each loss's trainable parameter count, the median time of
`--steps` steps after a warm-up step under each backend, that time as a
multiple of softmax's under the same backend (what the loss itself costs:
the network is the same), and the torch/tensorflow ratio. Each backend
runs in its own process, one after the other.

    python bench/speaker_basis.py [--batch 100] [--steps 2] [--crop-samples 48240]
                                  [--losses softmax center ...] [--backends tensorflow torch]
                                  [--threads N]
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
CROP = 48240  # 3 s at 16 kHz: 300 frames
LOSSES = ("softmax", "center", "am_softmax", "ge2e", "proposed_1", "proposed_2")
BASELINE = "softmax"
BACKENDS = ("tensorflow", "torch")
UTTERANCES_PER_SPEAKER = 5  # section 2.4: 20 speakers x 5 in a batch of 100


def time_training_step(loss, batch, crop, steps, warmup=1):
    """`(median seconds per train_on_batch, trainable parameter count)` of one loss."""
    import keras
    import numpy as np

    from papers.speaker_basis.model import build_speaker_basis_model

    keras.utils.clear_session()
    trainer, _ = build_speaker_basis_model(NUM_SPEAKERS, loss, num_hard=100)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal((batch, crop)).astype("float32")
    speakers = rng.choice(NUM_SPEAKERS, size=-(-batch // UTTERANCES_PER_SPEAKER), replace=False)
    labels = np.repeat(speakers, UTTERANCES_PER_SPEAKER)[:batch].astype("int32")
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

    results = {"_backend": keras.backend.backend()}
    for index, loss in enumerate(args.losses):
        # The process's first steps also start its thread pools: one more warm-up step.
        seconds, params = time_training_step(
            loss, args.batch, args.crop_samples, args.steps, warmup=2 if index == 0 else 1
        )
        results[loss] = {"ms": seconds * 1000.0, "params": params}
    return results


def run_child(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, os.path.abspath(__file__), "--child"]
    command += ["--batch", str(args.batch), "--steps", str(args.steps)]
    command += ["--crop-samples", str(args.crop_samples), "--threads", str(args.threads)]
    command += ["--losses", *args.losses]
    out = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench/speaker_basis.py: the {backend} process failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_table(results, losses, batch, crop):
    backends = list(results)
    header = f"{'loss':<12} {'params':>10}"
    for backend in backends:
        header += f" {backend + ' ms':>15} {'x ' + BASELINE:>10}"
    if len(backends) == 2:
        header += f" {backends[1] + '/' + backends[0]:>18}"
    lines = [
        f"Training step, Table 1 network, {NUM_SPEAKERS} speakers, batch {batch} of {crop} samples",
        header,
    ]
    for loss in losses:
        first = results[backends[0]][loss]
        line = f"{loss:<12} {first['params']:>10,}"
        for backend in backends:
            row = results[backend]
            base = row.get(BASELINE, {}).get("ms")
            ratio = f"{row[loss]['ms'] / base:.2f}" if base else "-"
            line += f" {row[loss]['ms']:>15.0f} {ratio:>10}"
        if len(backends) == 2:
            line += f" {results[backends[1]][loss]['ms'] / first['ms']:>18.2f}"
        lines.append(line)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="training batch (section 4.1: 100)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps, after a warm-up step")
    parser.add_argument("--crop-samples", type=int, default=CROP, help="samples per crop (3 s: 48240)")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of each backend; 0: default")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("batch", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer. Received: {getattr(args, name)}")
    if args.crop_samples < 400:
        parser.error(f"--crop-samples must hold one 25-ms frame (400 samples). Received: {args.crop_samples}")
    if "ge2e" in args.losses and args.batch < 2 * UTTERANCES_PER_SPEAKER:
        parser.error(f"GE2E compares speakers in a batch: --batch must be at least {2 * UTTERANCES_PER_SPEAKER}.")
    args.losses = list(dict.fromkeys(args.losses))
    sys.path.insert(0, ROOT)
    if args.child:
        set_threads(args.threads)
        print(json.dumps(run_here(args)))
        return
    results = {}
    for backend in dict.fromkeys(args.backends):
        print(f"timing {len(args.losses)} losses under {backend} ...", flush=True)
        results[backend] = run_child(backend, args)
    print(format_table(results, args.losses, args.batch, args.crop_samples))


if __name__ == "__main__":
    main()
