"""Generates the synthetic demo corpus (VoxCeleb layout) into a directory.

Usage:

    python tools/make_demo_corpus.py OUT_DIR [--seed N] [--force]

Prints one summary line: speakers, utterances, trials, size and time.
"""

import argparse
import json
import os
import sys
import time


def _size_mb(root):
    total = 0
    for dirpath, _, filenames in os.walk(root):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    return total / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Generate the keras_spk synthetic multi-speaker demo corpus."
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--force", action="store_true",
        help="replace an existing demo corpus at OUT_DIR",
    )
    args = parser.parse_args(argv)

    from keras_spk.data import demo_corpus

    start = time.perf_counter()
    try:
        path = demo_corpus.make_demo_corpus(args.out_dir, seed=args.seed, force=args.force)
    except (FileExistsError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    elapsed = time.perf_counter() - start

    with open(os.path.join(path, "corpus.json")) as f:
        info = json.load(f)
    num_speakers = info["num_train_speakers"] + info["num_test_speakers"]
    print(
        f"{path}: {num_speakers} speakers ({info['num_train_speakers']} train, "
        f"{info['num_test_speakers']} test), {info['num_utterances']} utterances, "
        f"{info['num_trials']} trials, {_size_mb(path):.1f} MB, {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
