"""MIRNet recipe on CPU: the mixture pipeline's throughput and the separators' training-step time.

1. The mixture pipeline (`keras_spk.data.mixture_dataset`, two speakers,
   equal levels, a resumable stream) on the demo corpus' training folder:
   mixtures per second, after a warm-up batch, over `--batches` batches of
   32, for 2-s and 3-s segments, without and with `return_sources` (and
   with `return_enrolments` too, the enrolment separator's input, where
   `mixture_dataset` takes that keyword). The baseline is plain random
   crops of the same length from `keras_spk.data.training_dataset` (one
   file per example where a mixture reads two, or four with enrolments);
   "x crops" is each rate over the baseline's crops per second. tf.data
   only: this part runs once, under tensorflow. Each figure is the best of
   `--rounds` interleaved rounds (the machine may be shared).
2. The training step of Table 2's separators
   (`papers.mirnet.model.build_separator`) under each backend: "none"
   (uPIT, the baseline), "mirnet" (VoiceFilter on the identities of a
   frozen MIRNet embedder, in the graph) and "enrolment" (VoiceFilter on a
   frozen clean-speech embedder of an enrolment crop per source), each
   compiled with Adam(1e-3) and `loss=None` and fed random `(mixture [B,
   L], labels [B, 2], sources [B, 2, L])` (+ `enrolment [B, 2, L]`); and
   the MIRNet trainer's step (`build_mirnet`, `(mixture [B, L], labels [B,
   2])`). The table gives trainable parameters, the median ms of `--steps`
   `train_on_batch` calls after a warm-up step, that time as a multiple of
   uPIT's under the same backend, and the torch/tensorflow ratio. Each
   backend runs in its own process, one after the other.

Sizes (`--size`): `demo` is `papers/mirnet/configs/demo.yaml` (MIRNet
encoder_filters (128, 128, 128, 128, 256), resnet_filters (4, 8, 16, 32),
40 speakers; separator conv_filters 8, lstm_units 64, fc_units 128 on
1-s mixtures in batches of 16; the MIRNet trainer on 2-s mixtures in
batches of 32); `paper` is `mirnet.yaml`'s defaults (Table 1's MIRNet,
2,338 speakers, the paper's VoiceFilter; 3-s mixtures, separator batch 8,
MIRNet batch 32): slow on CPU.

    python bench/mirnet.py [--size demo|paper] [--steps 3] [--batches 20] [--rounds 2]
                           [--parts pipeline steps] [--backends tensorflow torch] [--threads N]

Example, on two CPU cores shared with other work (rough figures: from a
run before this one, uPIT took 2,120 ms under tensorflow and MIRNet's
trainer 1,204 ms; a 5-batch pipeline rate moves as much):

    $ python bench/mirnet.py --steps 2 --batches 5 --rounds 1
    Mixture pipeline, demo corpus train (480 files, 40 speakers), batch 32:
    5 batches, best of 1 round
    segment  pipeline                             per s  x crops
    2 s      random crops (baseline)               4901     1.00  crops/s
    2 s      mixtures                              2855     0.58  mixtures/s
    2 s      mixtures + sources                    3156     0.64  mixtures/s
    2 s      mixtures + sources + enrolments       1437     0.29  mixtures/s
    3 s      random crops (baseline)               5027     1.00  crops/s
    3 s      mixtures                              1878     0.37  mixtures/s
    3 s      mixtures + sources                    1871     0.37  mixtures/s
    3 s      mixtures + sources + enrolments        553     0.11  mixtures/s
    Training step, demo size, median of 2 steps after a warm-up:
    separators on 1-s mixtures, batch 16; MIRNet trainer on 2-s mixtures, batch 32
    model                params   tensorflow ms   x uPIT        torch ms   x uPIT  torch/tensorflow
    none (uPIT)       1,259,834            1289     1.00            2124     1.00              1.65
    mirnet (b)        1,160,761            2201     1.71            4062     1.91              1.85
    enrolment (a)     1,160,761            2232     1.73            2060     0.97              0.92
    MIRNet trainer      655,882             640        -            1372        -              2.14
"""

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time

from _threads import set_threads  # bench/_threads.py (this script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 16000
BACKENDS = ("tensorflow", "torch")
PARTS = ("pipeline", "steps")
CONDITIONS = ("none", "mirnet", "enrolment")  # "none" (uPIT) is the baseline
BASELINE = "none"
TRAINER = "mirnet_trainer"
ROW_NAMES = {
    "none": "none (uPIT)",
    "mirnet": "mirnet (b)",
    "enrolment": "enrolment (a)",
    TRAINER: "MIRNet trainer",
}
PIPELINE_BATCH = 32
PIPELINE_SECONDS = (2, 3)
SIZES = {
    "demo": {
        "num_speakers": 40,  # the demo corpus' training speakers
        "mirnet": {"encoder_filters": (128, 128, 128, 128, 256), "resnet_filters": (4, 8, 16, 32)},
        "separator": {"conv_filters": 8, "lstm_units": 64, "fc_units": 128},
        "separator_seconds": 1.0,
        "separator_batch": 16,
        "mirnet_seconds": 2.0,
        "mirnet_batch": 32,
    },
    "paper": {
        "num_speakers": 2338,  # LibriSpeech's training speakers
        "mirnet": {},
        "separator": {},
        "separator_seconds": 3.0,
        "separator_batch": 8,
        "mirnet_seconds": 3.0,
        "mirnet_batch": 32,
    },
}


# === Part 1: the mixture pipeline ===


def rate(dataset, batches, rows):
    """Rows (crops or mixtures) per second over `batches` batches, after a warm-up batch."""
    iterator = iter(dataset)
    next(iterator)  # warm-up: tracing, thread pools, page cache
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * rows / (time.perf_counter() - start)


def pipeline_figures(args):
    """Rows per second of each pipeline, best of `args.rounds` interleaved rounds."""
    from keras_spk.data import ensure_demo_corpus
    from keras_spk.data import mixture_dataset
    from keras_spk.data import read_voxceleb
    from keras_spk.data import training_dataset

    files = read_voxceleb(os.path.join(ensure_demo_corpus(), "train"))
    paths, labels = list(files.paths), files.labels()
    enrolments = "return_enrolments" in inspect.signature(mixture_dataset).parameters
    batch = PIPELINE_BATCH
    builders = {}
    for seconds in PIPELINE_SECONDS:
        length = seconds * SAMPLE_RATE

        def crops(length=length):
            return training_dataset(paths, labels, length, batch, start_epoch=0)

        def mixtures(length=length, **flags):
            return mixture_dataset(paths, labels, length, batch, start_epoch=0, **flags)

        builders[(seconds, "crops")] = crops
        builders[(seconds, "mixtures")] = mixtures
        builders[(seconds, "sources")] = lambda f=mixtures: f(return_sources=True)
        if enrolments:
            builders[(seconds, "enrolments")] = lambda f=mixtures: f(
                return_sources=True, return_enrolments=True
            )
    best = dict.fromkeys(builders, 0.0)
    for _ in range(args.rounds):
        for key, build in builders.items():
            best[key] = max(best[key], rate(build(), args.batches, batch))
    speakers = len(set(labels.tolist()))
    rows = [[seconds, kind, value] for (seconds, kind), value in best.items()]
    return {"files": len(paths), "speakers": speakers, "enrolments": enrolments, "rows": rows}


PIPELINE_NAMES = {
    "crops": "random crops (baseline)",
    "mixtures": "mixtures",
    "sources": "mixtures + sources",
    "enrolments": "mixtures + sources + enrolments",
}


def format_pipeline(figures, args):
    lines = [
        f"Mixture pipeline, demo corpus train ({figures['files']} files, {figures['speakers']} "
        f"speakers), batch {PIPELINE_BATCH}:",
        f"{args.batches} batches, best of {args.rounds} round{'s' if args.rounds > 1 else ''}",
        f"{'segment':<8} {'pipeline':<32} {'per s':>9} {'x crops':>8}",
    ]
    base = {seconds: value for seconds, kind, value in figures["rows"] if kind == "crops"}
    for seconds, kind, value in figures["rows"]:
        unit = "crops" if kind == "crops" else "mixtures"
        lines.append(
            f"{str(seconds) + ' s':<8} {PIPELINE_NAMES[kind]:<32} {value:>9.0f} "
            f"{value / base[seconds]:>8.2f}  {unit}/s"
        )
    if not figures["enrolments"]:
        lines.append("(mixture_dataset has no return_enrolments here: no enrolment row)")
    return "\n".join(lines)


# === Part 2: training steps ===


def random_batch(batch, length, num_speakers, enrolment, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    sources = 0.1 * rng.standard_normal((batch, 2, length)).astype("float32")
    mixture = sources.sum(axis=1)
    labels = np.stack(
        [rng.choice(num_speakers, size=2, replace=False) for _ in range(batch)]
    ).astype("int32")
    inputs = [mixture, labels, sources]
    if enrolment:
        inputs.append(0.1 * rng.standard_normal((batch, 2, length)).astype("float32"))
    return inputs


def build_trainer(name, size):
    """The trainer of a table row: a separator (`name` its condition) or MIRNet's."""
    from papers.mirnet import model as mirnet_model

    settings = SIZES[size]
    if name == TRAINER:
        return mirnet_model.build_mirnet(settings["num_speakers"], **settings["mirnet"])[0]
    identities = enrolment_embedder = None
    if name == "mirnet":
        identities = mirnet_model.build_mirnet(settings["num_speakers"], **settings["mirnet"])[1]
        identities.trainable = False
    elif name == "enrolment":
        resnet = {k: v for k, v in settings["mirnet"].items() if k == "resnet_filters"}
        enrolment_embedder = mirnet_model.build_clean_embedder(
            settings["num_speakers"], **resnet
        )[1]
        enrolment_embedder.trainable = False
    trainer, _ = mirnet_model.build_separator(
        name, identities=identities, enrolment_embedder=enrolment_embedder, **settings["separator"]
    )
    return trainer


def time_training_step(name, size, steps, warmup=1):
    """`(median seconds per train_on_batch, trainable parameter count)` of one row."""
    import keras
    import numpy as np

    settings = SIZES[size]
    keras.utils.clear_session()
    trainer = build_trainer(name, size)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    if name == TRAINER:
        length = int(settings["mirnet_seconds"] * SAMPLE_RATE)
        inputs = random_batch(settings["mirnet_batch"], length, settings["num_speakers"], False)[:2]
    else:
        length = int(settings["separator_seconds"] * SAMPLE_RATE)
        inputs = random_batch(
            settings["separator_batch"], length, settings["num_speakers"], name == "enrolment"
        )
    for _ in range(warmup):  # tracing / first-call allocation
        trainer.train_on_batch(inputs)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_on_batch(inputs)
        times.append(time.perf_counter() - start)
    params = sum(int(np.prod(w.shape)) for w in trainer.trainable_weights)
    return statistics.median(times), params


def step_figures(args):
    import keras

    results = {"_backend": keras.backend.backend()}
    for index, name in enumerate(args.rows):
        # The process's first steps also start its thread pools: one more warm-up step.
        seconds, params = time_training_step(
            name, args.size, args.steps, warmup=2 if index == 0 else 1
        )
        results[name] = {"ms": seconds * 1000.0, "params": params}
    return results


def format_steps(results, args):
    settings = SIZES[args.size]
    backends = list(results)
    header = f"{'model':<16} {'params':>10}"
    for backend in backends:
        header += f" {backend + ' ms':>15} {'x uPIT':>8}"
    if len(backends) == 2:
        header += f" {backends[1] + '/' + backends[0]:>17}"
    lines = [
        f"Training step, {args.size} size, median of {args.steps} steps after a warm-up:",
        f"separators on {settings['separator_seconds']:g}-s mixtures, batch "
        f"{settings['separator_batch']}; MIRNet trainer on {settings['mirnet_seconds']:g}-s "
        f"mixtures, batch {settings['mirnet_batch']}",
        header,
    ]
    for name in args.rows:
        first = results[backends[0]][name]
        line = f"{ROW_NAMES[name]:<16} {first['params']:>10,}"
        for backend in backends:
            row = results[backend]
            base = row.get(BASELINE, {}).get("ms")
            ratio = f"{row[name]['ms'] / base:.2f}" if base and name != TRAINER else "-"
            line += f" {row[name]['ms']:>15.0f} {ratio:>8}"
        if len(backends) == 2:
            line += f" {results[backends[1]][name]['ms'] / first['ms']:>17.2f}"
        lines.append(line)
    return "\n".join(lines)


# === Processes ===


def run_child(part, backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, os.path.abspath(__file__), "--child", part]
    command += ["--size", args.size, "--steps", str(args.steps), "--batches", str(args.batches)]
    command += ["--rounds", str(args.rounds), "--threads", str(args.threads)]
    command += ["--rows", *args.rows]
    out = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench/mirnet.py: the {part} process ({backend}) failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="demo", help="model sizes (paper: slow)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after a warm-up step")
    parser.add_argument("--batches", type=int, default=20, help="timed pipeline batches, after a warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the pipelines")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rows", nargs="+", choices=CONDITIONS + (TRAINER,),
                        default=list(CONDITIONS) + [TRAINER], help="training-step rows")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of each backend; 0: default")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("steps", "batches", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer. Received: {getattr(args, name)}")
    args.rows = list(dict.fromkeys(args.rows))
    sys.path.insert(0, ROOT)
    if args.child:
        set_threads(args.threads)
        figures = pipeline_figures(args) if args.child == "pipeline" else step_figures(args)
        print(json.dumps(figures))
        return
    print(f"cores: {os.cpu_count()}", flush=True)
    if "pipeline" in args.parts:
        print("timing the mixture pipeline (tf.data) ...", flush=True)
        figures = run_child("pipeline", "tensorflow", args)
        print(format_pipeline(figures, args), flush=True)
    if "steps" in args.parts:
        results = {}
        for backend in dict.fromkeys(args.backends):
            print(f"timing {len(args.rows)} training steps under {backend} ...", flush=True)
            results[backend] = run_child("steps", backend, args)
        print(format_steps(results, args))


if __name__ == "__main__":
    main()
