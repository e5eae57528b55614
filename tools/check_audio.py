"""Lists every audio file of a corpus that keras_spk cannot use, with the reason.

Decodes each file once, in parallel, with the checks training and
evaluation apply (header bounds, corrupt or truncated streams, NaN/Inf or
out-of-range samples), and prints one line per bad file. Exits with 1 when
any file is bad, so it can gate a data preparation script.

    python tools/check_audio.py DATA_DIR [--layout voxceleb|librispeech|manifest]
                                [--sample-rate 16000]
    python tools/check_audio.py corpus.txt --layout manifest
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as a script: make `keras_spk` importable from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv):
    from keras_spk.data import READERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="corpus folder (or manifest file with --layout manifest)")
    parser.add_argument("--layout", default="voxceleb", choices=sorted(READERS),
                        help="how the corpus is laid out (default: voxceleb)")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="the rate training reads the audio at (default: 16000)")
    return parser.parse_args(argv)


def main(argv=None):
    """Returns the exit status: 0 when every file decodes, 1 otherwise."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from keras_spk.data import find_bad_audio
    from keras_spk.data import read_dataset

    corpus = read_dataset(args.layout, args.data)
    bad = find_bad_audio(corpus.paths, args.sample_rate)
    for _, message in bad:
        print(message)
    print(f"{len(corpus) - len(bad)} of {len(corpus)} files are usable; {len(bad)} are not.",
          file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
