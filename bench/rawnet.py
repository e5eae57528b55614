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

Ways of calling the extraction build are then compared with
`predict_on_batch` (the plain call), interleaved in one process so that a
change of machine load affects them alike; each row gives the median time,
its ratio to `predict_on_batch` (below 1 is faster) and the largest
absolute difference of its embeddings from `predict_on_batch`'s:

- TensorFlow: a direct (eager) call; a `tf.function` with a dynamic-length
  input signature (what `predict_on_batch` and the SavedModel run); a
  `tf.function` with `jit_compile=True` (XLA, compiled per input shape).
- PyTorch: a direct call under `torch.no_grad()` (what `predict_on_batch`
  does) and under `torch.inference_mode()`; with `--torch-compile`, the
  embedder compiled with `jit_compile=True` (Keras then wraps the predict
  step in `torch.compile`): compiling takes minutes, and Keras's CPU GRU is
  a Python loop over the frames, so every new number of frames
  (`samples // 3 ** 7`) compiles again; it pays off for fixed-length crops
  only.
- PyTorch in a second process with `OMP_WAIT_POLICY=PASSIVE` (OpenMP
  threads sleep instead of spinning while they wait), compared with the
  first process's `predict_on_batch`: on cores shared with other busy
  processes, spinning threads can make each call many times slower.

Each backend runs in its own process (a process has one backend).

    python bench/rawnet.py [--batch 4] [--steps 2] [--repeats 5] [--threads N] [--torch-compile]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _threads import set_threads  # bench/_threads.py (this script's folder)

CROP = 59049
UTTERANCE_SECONDS = 4.0
SAMPLE_RATE = 16000
NUM_SPEAKERS = 1211
PLAIN = "predict_on_batch"


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


def call_variants(embedder, recurrent_dropout, torch_compile):
    """`{name: function(numpy waveforms) -> numpy embeddings}`, the plain call first."""
    import keras

    variants = {PLAIN: embedder.predict_on_batch}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def call(x):
            return embedder(x, training=False)

        variants["direct call (eager)"] = lambda x: call(x).numpy()
        dynamic = tf.function(
            call, input_signature=[tf.TensorSpec([None, None], tf.float32)], reduce_retracing=True
        )
        variants["tf.function, dynamic length"] = lambda x: dynamic(x).numpy()
        xla = tf.function(call, jit_compile=True)
        variants["tf.function, jit_compile=True (XLA)"] = lambda x: xla(x).numpy()
    else:
        import torch

        def no_grad(x):
            with torch.no_grad():
                return embedder(x, training=False).numpy()

        def inference_mode(x):
            with torch.inference_mode():
                return embedder(x, training=False).numpy()

        variants["direct call, torch.no_grad()"] = no_grad
        variants["direct call, torch.inference_mode()"] = inference_mode
        if torch_compile:
            _, compiled = _build(recurrent_dropout=recurrent_dropout)
            compiled.set_weights(embedder.get_weights())
            compiled.compile(jit_compile=True)
            variants["jit_compile=True (torch.compile)"] = compiled.predict_on_batch
    return variants


def time_embedding(recurrent_dropout, repeats, variants=False, torch_compile=False):
    """`{name: (median seconds, max |embedding - predict_on_batch's|)}` for a 4-s utterance.

    With `variants`, every way of calling of `call_variants`; otherwise
    `predict_on_batch` only. Calls are interleaved, round by round.
    """
    import numpy as np

    _, embedder = _build(recurrent_dropout=recurrent_dropout)
    samples = int(UTTERANCE_SECONDS * SAMPLE_RATE)
    x = np.random.default_rng(1).standard_normal((1, samples)).astype("float32")
    calls = call_variants(embedder, recurrent_dropout, torch_compile)
    if not variants:
        calls = {PLAIN: calls[PLAIN]}
    reference = calls[PLAIN](x)
    differences = {}
    for name, call in calls.items():  # warm-up: tracing / compiling / first-call allocation
        differences[name] = float(np.max(np.abs(call(x) - reference)))
        call(x)
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), differences[name]) for name in calls}


def run_here(batch, steps, repeats, embed_only=False, torch_compile=False):
    import keras

    results = {"_backend": keras.backend.backend()}
    for dropout in (0.0,) if embed_only else (0.3, 0.0):
        variants = dropout == 0.0 and not embed_only
        timed = time_embedding(dropout, repeats, variants=variants, torch_compile=torch_compile)
        results[f"embed_s_rd{dropout}"] = timed[PLAIN][0]
        results[f"rtf_rd{dropout}"] = timed[PLAIN][0] / UTTERANCE_SECONDS
        if len(timed) > 1:
            results["variants"] = timed
    if steps > 0 and not embed_only:
        results["train_step_s"] = time_training_step(batch, steps)
    return results


def run_child(backend, args, embed_only=False, extra_env=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **(extra_env or {}))
    command = [sys.executable, __file__, "--child", "--batch", str(args.batch)]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    command += ["--embed-only"] if embed_only else []
    command += ["--torch-compile"] if args.torch_compile else []
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="training batch (paper: 102)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps; 0 skips")
    parser.add_argument("--repeats", type=int, default=5, help="timed embeddings")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads of each backend; 0 keeps its default"
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="also time the embedder compiled with jit_compile=True under PyTorch (minutes)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        set_threads(args.threads)
        results = run_here(args.batch, args.steps, args.repeats, args.embed_only, args.torch_compile)
        print(json.dumps(results))
        return
    results = {backend: run_child(backend, args) for backend in ("tensorflow", "torch")}
    passive = run_child("torch", args, embed_only=True, extra_env={"OMP_WAIT_POLICY": "PASSIVE"})
    tf_r, torch_r = results["tensorflow"], results["torch"]
    threads = f", {args.threads} threads" if args.threads > 0 else ""
    print(f"RawNet ({NUM_SPEAKERS} speakers), CPU ({os.cpu_count()} cores{threads})")
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

    print()
    print("Embedding a 4-s utterance, extraction build: ways of calling it")
    header = f"{'backend':11s} {'call':44s} {'median s':>9s} {'RTF':>7s} {'/ plain':>8s} {'max |diff|':>11s}"
    print(header)
    rows = []
    for backend, r in results.items():
        plain = r["variants"][PLAIN][0]
        for name, (seconds, difference) in r["variants"].items():
            rows.append((backend, name, seconds, seconds / plain, f"{difference:11.1e}"))
    seconds = passive["embed_s_rd0.0"]
    plain = torch_r["variants"][PLAIN][0]
    rows.append(("torch", f"{PLAIN}, OMP_WAIT_POLICY=PASSIVE *", seconds, seconds / plain, f"{'-':>11s}"))
    for backend, name, seconds, ratio, difference in rows:
        rtf = seconds / UTTERANCE_SECONDS
        print(f"{backend:11s} {name:44s} {seconds:9.3f} {rtf:7.4f} {ratio:8.2f} {difference}")
    print("* a separate process, so its ratio also reflects any change of machine load between the two")


if __name__ == "__main__":
    main()
