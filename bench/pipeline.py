"""Training-pipeline throughput: 3-s crops per second from WAV files.

Compares `keras_spk.data.training_dataset` (read, decode, crop, batch,
prefetch) against a plain per-file Python loop (`wave` + numpy) doing the
same work, and prints both rates and their ratio.

    python bench/pipeline.py [--files 512] [--batches 60] [--batch-size 64]
"""

import argparse
import os
import tempfile
import time
import wave

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_files(folder, count, sample_rate, seed=0):
    from keras_spk.data import write_wav

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        seconds = rng.uniform(4.0, 10.0)  # VoxCeleb 1 utterances are 4-20 s, mostly short
        path = os.path.join(folder, f"id{i % 32:05d}", "vid", f"{i:05d}.wav")
        write_wav(path, 0.1 * rng.standard_normal(int(seconds * sample_rate)), sample_rate)
        paths.append(path)
    return paths


def python_loop(paths, labels, crop, batch_size, batches, seed=0):
    """Baseline: read each file with `wave`, decode with numpy, crop, stack."""
    rng = np.random.default_rng(seed)
    done = 0
    start = time.perf_counter()
    while done < batches:
        order = rng.permutation(len(paths))
        for b in range(len(paths) // batch_size):
            rows = []
            for i in order[b * batch_size : (b + 1) * batch_size]:
                with wave.open(paths[i], "rb") as w:
                    x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
                x /= 32768.0
                if len(x) < crop:
                    x = np.tile(x, -(-crop // len(x)))
                offset = rng.integers(0, len(x) - crop + 1)
                rows.append(x[offset : offset + crop])
            np.stack(rows)
            labels[order[b * batch_size : (b + 1) * batch_size]]
            done += 1
            if done == batches:
                break
    return batches * batch_size / (time.perf_counter() - start)


def pipeline(paths, labels, crop, batch_size, batches, seed=0):
    from keras_spk.data import training_dataset

    dataset = training_dataset(paths, labels, crop, batch_size, seed=seed).repeat()
    iterator = iter(dataset)
    for _ in range(5):  # warm-up: tracing, thread pools, page cache
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=512)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()

    crop = int(args.seconds * args.sample_rate)
    with tempfile.TemporaryDirectory() as folder:
        paths = make_files(folder, args.files, args.sample_rate)
        labels = np.arange(len(paths)) % 32
        python_loop(paths, labels, crop, args.batch_size, 2)  # page cache warm-up
        base = python_loop(paths, labels, crop, args.batch_size, args.batches)
        fast = pipeline(paths, labels, crop, args.batch_size, args.batches)
    print(f"files: {args.files} WAV (16-bit, 4-10 s), crop {args.seconds:g} s, batch {args.batch_size}")
    print(f"cores: {os.cpu_count()}")
    print(f"python loop (wave + numpy): {base:8.0f} crops/s")
    print(f"keras_spk tf.data pipeline: {fast:8.0f} crops/s  ({fast / base:.1f}x the loop)")


if __name__ == "__main__":
    main()
