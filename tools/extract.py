"""Computes speaker embeddings of audio files into an embedding file (.npz).

    python tools/extract.py --model MODEL --audio-root DIR
                            (--trials TRIALS | --list LIST | --voxceleb)
                            --output EMB.npz [--sample-rate 16000] [--min-samples 1]
                            [--overwrite] [--quiet]

MODEL is a `.keras` file (e.g. a run folder's `embedder.keras`), a run
folder (its `embedder.keras` is used), or a SavedModel folder (holding
`saved_model.pb`, e.g. a run folder's `export/1`), whose `serving_default`
signature is called through TensorFlow under either Keras backend.

What is embedded, each file as one whole utterance (resampled to
--sample-rate, mixed down to mono):

- --trials: every utterance of a VoxCeleb or Kaldi trial list; the names
  stored are the ones the list uses, so `tools/score.py --embeddings EMB.npz
  --trials TRIALS` scores it directly.
- --list: one path per line (relative to --audio-root; `#` comments and
  blank lines are skipped), stored as written.
- --voxceleb: every file under --audio-root in the VoxCeleb layout
  `<speaker>/<video>/<utterance>.wav`, stored with the speakers (the
  folder names), as `tools/score.py --train-embeddings` needs.

The output is written by `keras_spk.scoring.save_embeddings` under a
temporary name and renamed when complete.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUN_FOLDER_MODEL = "embedder.keras"


# === Model ===


def load_embedder(path):
    """(embedder, description) for a `.keras` file, a run folder or a SavedModel folder.

    The embedder is a Keras model, or for a SavedModel a function mapping a
    float32 numpy array `[1, samples]` to embeddings `[1, dim]`.
    """
    from keras_spk.utils.loading import load_model

    path = os.fspath(path)
    fix = (
        "Give a .keras model file, a run folder holding embedder.keras, or a SavedModel "
        "folder holding saved_model.pb (e.g. <run>/export/1)."
    )
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model {path} does not exist. {fix}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return load_saved_model(path), f"SavedModel {path}"
        model_file = os.path.join(path, RUN_FOLDER_MODEL)
        if os.path.isfile(model_file):
            return load_model(model_file), f"Keras model {model_file}"
        raise ValueError(
            f"--model {path} is a folder but neither a SavedModel (no saved_model.pb) nor a run "
            f"folder (no {RUN_FOLDER_MODEL}). {fix}"
        )
    if not path.endswith(".keras"):
        raise ValueError(
            f"--model {path} is not a .keras file. {fix} (A .weights.h5 file holds no architecture: "
            "load it into the model's builder and save it with model.save('embedder.keras').)"
        )
    return load_model(path), f"Keras model {path}"


def load_saved_model(path):
    """A numpy-in, numpy-out function calling the SavedModel's serving signature."""
    import tensorflow as tf

    from keras_spk.export.savedmodel import OUTPUT_KEY
    from keras_spk.export.savedmodel import SERVING_SIGNATURE

    loaded = tf.saved_model.load(path)
    if SERVING_SIGNATURE not in loaded.signatures:
        raise ValueError(
            f"SavedModel {path} has no {SERVING_SIGNATURE!r} signature (it has: "
            f"{', '.join(sorted(loaded.signatures)) or 'none'}). Export it with "
            "keras_spk.export.export_saved_model or tools/export.py."
        )
    signature = loaded.signatures[SERVING_SIGNATURE]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    output = OUTPUT_KEY if OUTPUT_KEY in outputs else next(iter(outputs)) if len(outputs) == 1 else None
    if len(inputs) != 1 or output is None:
        raise ValueError(
            f"SavedModel {path}: the {SERVING_SIGNATURE!r} signature must take one waveform input "
            f"and give {OUTPUT_KEY!r}. It takes {sorted(inputs)} and gives {sorted(outputs)}."
        )
    (input_name,) = inputs

    def embed(waveforms):
        result = signature(**{input_name: tf.constant(waveforms, tf.float32)})
        return result[output].numpy()

    # Keeps the loaded object (which owns the variables) alive with the function.
    embed.saved_model = loaded
    return embed


# === Inputs ===


def read_list(path, root):
    """(names, paths) of a list file: one path a line, relative to `root`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--list {path} does not exist.")
    names, missing, seen = [], [], {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            if name in seen:
                raise ValueError(
                    f"{path} line {number}: {name!r} is already listed on line {seen[name]}; "
                    "list each utterance once."
                )
            seen[name] = number
            if not os.path.isfile(os.path.join(root, name)):
                missing.append(f"line {number}: {name!r}")
            names.append(name)
    if not names:
        raise ValueError(f"--list {path} names no files (only blank or # lines).")
    if missing:
        raise FileNotFoundError(
            f"{path}: {len(missing)} listed file(s) not found under --audio-root {root}: "
            + "; ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + ". Paths in the list are relative to --audio-root."
        )
    return names, [os.path.join(root, name) for name in names]


def read_inputs(args):
    """(names, paths, speakers or None) of the utterances to embed."""
    from keras_spk import data

    root = os.path.abspath(args.audio_root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--audio-root {args.audio_root} is not a folder.")
    if args.trials:
        try:
            trials = data.read_trials(args.trials, root, args.trials_format)
        except FileNotFoundError as error:
            # Here the evaluation data folder is --audio-root.
            raise FileNotFoundError(str(error).replace("--eval-data", "--audio-root")) from None
        return trials.utterances, trials.paths, None
    if args.list:
        names, paths = read_list(args.list, root)
        return names, paths, None
    corpus = data.read_voxceleb(root, extensions=tuple(args.extensions))
    names = [name.replace(os.sep, "/") for name in corpus.relative_paths()]
    return names, corpus.paths, list(corpus.speakers)


# === Command line ===


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, help=".keras file, run folder (embedder.keras) or SavedModel folder"
    )
    parser.add_argument("--audio-root", required=True, help="folder the utterance names are relative to")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trials", help="embed every utterance of this trial list (VoxCeleb or Kaldi)")
    source.add_argument("--list", help="embed the files of this list, one path a line")
    source.add_argument(
        "--voxceleb",
        action="store_true",
        help="embed every file under --audio-root in VoxCeleb layout, with speakers",
    )
    parser.add_argument(
        "--trials-format", default="auto", choices=("auto", "voxceleb", "kaldi"), help="trial list format"
    )
    parser.add_argument(
        "--extensions", nargs="+", default=[".wav"], help="audio extensions for --voxceleb (default .wav)"
    )
    parser.add_argument("--output", required=True, help="embedding file to write (.npz)")
    parser.add_argument(
        "--sample-rate", type=int, default=16000, help="sample rate of the model (default 16000)"
    )
    parser.add_argument(
        "--min-samples", type=int, default=1, help="shortest utterance accepted, in samples (default 1)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.sample_rate <= 0:
        parser.error(f"--sample-rate must be a positive number of Hz, got {args.sample_rate}")
    if args.min_samples <= 0:
        parser.error(f"--min-samples must be at least 1, got {args.min_samples}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.path.isdir(args.output):
        raise ValueError(f"--output {args.output} is a folder; give a file name such as embeddings.npz.")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"--output {args.output} already exists. Pass --overwrite to replace it.")
    names, paths, speakers = read_inputs(args)
    embedder, description = load_embedder(args.model)

    from keras_spk.inference import embed_files
    from keras_spk.scoring.embeddings import save_embeddings

    if not args.quiet:
        print(f"{description}: embedding {len(paths)} utterances from {args.audio_root}")
    embeddings = embed_files(
        embedder, paths, sample_rate=args.sample_rate, progress=not args.quiet, min_samples=args.min_samples
    )
    save_embeddings(args.output, names, embeddings, speakers=speakers)
    if not args.quiet:
        print(f"{len(names)} embeddings of size {embeddings.shape[1]}: {args.output}")
    return names, embeddings, speakers


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"extract.py: error: {error}")
