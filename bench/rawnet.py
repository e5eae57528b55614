"""RawNet on CPU under each Keras backend: training-step time and embedding real-time factor.

Training step: one `train_on_batch` of the full RawNet trainer (paper
settings, 1,211 speakers, recurrent dropout 0.3, AMSGrad) on a batch of
59,049-sample crops (the paper trains with batches of 102; 32 is a common
single-device size). Real-time factor (RTF): seconds to embed one
4-second utterance (64,000 samples at 16 kHz) divided by 4 s, for the
embedder as built for training (recurrent dropout 0.3: Keras runs the
generic RNN loop) and as built for extraction (recurrent dropout 0: the
backend's fused GRU); the weights, and so the embeddings, are the same.
The issue's goal is RTF < 0.02.

Each backend runs in its own process (a process has one backend).

    python bench/rawnet.py [--batch 4] [--steps 2] [--repeats 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CROP = 59049
UTTERANCE_SECONDS = 4.0
SAMPLE_RATE = 16000
NUM_SPEAKERS = 1211


def _build(recurrent_dropout):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from papers.rawnet.model import build_rawnet

    return build_rawnet(NUM_SPEAKERS, recurrent_dropout=recurrent_dropout)


def time_training_step(batch, steps):
    import keras
    import numpy as np

    trainer, _ = _build(recurrent_dropout=0.3)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True), loss=None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, CROP)).astype("float32")
    labels = rng.integers(0, NUM_SPEAKERS, batch).astype("int32")
    trainer.train_on_batch([x, labels])  # warm-up: tracing / first-call allocation
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_on_batch([x, labels])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_embedding(recurrent_dropout, repeats):
    import numpy as np

    _, embedder = _build(recurrent_dropout=recurrent_dropout)
    samples = int(UTTERANCE_SECONDS * SAMPLE_RATE)
    x = np.random.default_rng(1).standard_normal((1, samples)).astype("float32")
    embedder.predict_on_batch(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_here(batch, steps, repeats):
    import keras

    results = {"_backend": keras.backend.backend()}
    for dropout in (0.3, 0.0):
        seconds = time_embedding(dropout, repeats)
        results[f"embed_s_rd{dropout}"] = seconds
        results[f"rtf_rd{dropout}"] = seconds / UTTERANCE_SECONDS
    if steps > 0:
        results["train_step_s"] = time_training_step(batch, steps)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="training batch (paper: 102)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps; 0 skips")
    parser.add_argument("--repeats", type=int, default=5, help="timed embeddings")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_here(args.batch, args.steps, args.repeats)))
        return
    results = {}
    for backend in ("tensorflow", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, __file__, "--child", "--batch", str(args.batch)]
        command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    tf_r, torch_r = results["tensorflow"], results["torch"]
    print(f"RawNet ({NUM_SPEAKERS} speakers), CPU ({os.cpu_count()} cores)")
    print(f"{'':52s} {'tensorflow':>11s} {'torch':>11s}")
    if args.steps > 0:
        label = f"training step, batch {args.batch} x {CROP} samples (s)"
        print(f"{label:52s} {tf_r['train_step_s']:11.2f} {torch_r['train_step_s']:11.2f}")
    for dropout, what in ((0.3, "training build"), (0.0, "extraction build")):
        label = f"embed 4-s utterance, {what} (s)"
        key = f"embed_s_rd{dropout}"
        print(f"{label:52s} {tf_r[key]:11.3f} {torch_r[key]:11.3f}")
        label = f"  real-time factor (goal < 0.02), recurrent_dropout={dropout}"
        key = f"rtf_rd{dropout}"
        print(f"{label:52s} {tf_r[key]:11.4f} {torch_r[key]:11.4f}")


if __name__ == "__main__":
    main()
