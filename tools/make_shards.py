"""Packs a corpus into TFRecord shards that train like the files (keras_spk.data.shards).

Every file is decoded first (the checks training applies), so a bad file
stops the packing before anything is written, named. Shards are written in
parallel, each under a temporary name and renamed when complete, and the
index last: a killed run is continued by running the same command again
(complete shards are kept as they are). An OUT_DIR holding the shards of
another corpus is refused, never overwritten. `--verify` then re-reads
every shard and record. Train on the result with `data.layout: shards`
and `data.train: OUT_DIR` (or `read_dataset("shards", OUT_DIR)`).

    python tools/make_shards.py --layout voxceleb DATA OUT_DIR [--shard-size 1000]
                                [--workers 4] [--seed 0] [--verify]
    python tools/make_shards.py --layout manifest corpus.txt OUT_DIR

Exit status: 0 when packed (and sound, with --verify), 1 when --verify
finds a damaged shard, 2 for any other error (missing folder, empty
corpus, bad audio, another corpus in OUT_DIR).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as a script: make `keras_spk` importable from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAYOUTS = ("librispeech", "manifest", "voxceleb")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA",
                        help="corpus folder (or manifest file with --layout manifest)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder of the shards and their index")
    parser.add_argument("--layout", default="voxceleb", choices=LAYOUTS,
                        help="how the corpus is laid out (default: voxceleb)")
    parser.add_argument("--shard-size", type=int, default=1000,
                        help="utterances per shard (default: 1000)")
    parser.add_argument("--workers", type=int, default=4,
                        help="shards written at once (default: 4)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the utterances' spread over the shards (default: 0)")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="the rate the audio check decodes at (default: 16000)")
    parser.add_argument("--no-audio-check", action="store_true",
                        help="skip decoding every file before packing")
    parser.add_argument("--verify", action="store_true",
                        help="then re-read every shard and record")
    args = parser.parse_args(argv)
    for name in ("shard_size", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _progress(done, total, name):
    print(f"[{done}/{total}] {name}", file=sys.stderr, flush=True)


def main(argv=None):
    """Returns the exit status (see the module docstring); errors raise."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from keras_spk.data import read_dataset
    from keras_spk.data.shards import verify_shards
    from keras_spk.data.shards import write_shards

    start = time.perf_counter()
    corpus = read_dataset(args.layout, args.data)
    summary = write_shards(
        corpus, args.out_dir, shard_size=args.shard_size, workers=args.workers, seed=args.seed,
        check_audio=not args.no_audio_check, sample_rate=args.sample_rate, progress=_progress,
    )
    kept = f", {summary.kept} kept from an earlier run" if summary.kept else ""
    print(
        f"{summary.folder}: {summary.utterances} utterances of {summary.speakers} speakers in "
        f"{summary.shards} shards ({summary.written} written{kept}), "
        f"{summary.bytes / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s"
    )
    if not args.verify:
        return 0
    problems = verify_shards(summary.folder)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found in {summary.folder}.", file=sys.stderr)
        return 1
    print(f"verified: {summary.utterances} records in {summary.shards} shards are sound")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
