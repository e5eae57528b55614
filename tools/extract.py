"""Computes speaker embeddings of audio files into an embedding file (.npz).

    python tools/extract.py --model MODEL --audio-root DIR
                            (--trials TRIALS | --list LIST | --voxceleb)
                            --output EMB.npz [--sample-rate HZ] [--min-samples N]
                            [--overwrite] [--quiet]

MODEL is a `.keras` file (e.g. a run folder's `embedder.keras`), a run
folder (its `embedder.keras` is used), or a SavedModel folder (holding
`saved_model.pb`, e.g. a run folder's `export/1`), whose `serving_default`
signature is called through TensorFlow under either Keras backend.
A SavedModel is a program, not data: loading and calling it runs whatever
TensorFlow operations it holds (files can be read and written), and a
`.keras` file naming custom classes runs their code. Load only models
from a trusted source.

The model's sample rate comes from its run folder (`config.yaml`,
`data.sample_rate`: for a run folder, the `embedder.keras` in one, or a
SavedModel at `<run>/export/<version>`) or from its front-end layers
(e.g. `LogMelFilterbank(sample_rate=...)`); --sample-rate may only repeat
it, and is required when the model declares none (e.g. a SavedModel
copied out of its run). The shortest utterance the model embeds is found
by probing it on short inputs (`keras_spk.inference.find_min_samples`);
a shorter file stops extraction with an error naming it, and so does an
all-zero or NaN embedding: none is ever written.

What is embedded, each file as one whole utterance (resampled to the
model's sample rate, mixed down to mono):

- --trials: every utterance of a VoxCeleb or Kaldi trial list; the names
  stored are the ones the list uses, so `tools/score.py --embeddings EMB.npz
  --trials TRIALS` scores it directly.
- --list: one path per line (relative to --audio-root; `#` comments and
  blank lines are skipped), stored as written.
- --voxceleb: every audio file (WAV, FLAC, Ogg Vorbis, MP3; --extensions
  restricts) under --audio-root in the VoxCeleb layout
  `<speaker>/<video>/<utterance>.<ext>`, stored with the speakers (the
  folder names), as `tools/score.py --train-embeddings` needs.

The output is written by `keras_spk.scoring.save_embeddings` under a
temporary name and renamed when complete. A multi-identity model (one
embedding per speaker of a mixture: `[batch, K, dim]` outputs, as a Keras
model or a SavedModel) gives `[n, K, dim]` embeddings, stored as such; read
them with `load_embeddings(path, multi_identity=True)`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUN_FOLDER_MODEL = "embedder.keras"
RUN_FOLDER_FILES = ("run.json", "config.yaml")


# === Model ===


def load_embedder(path):
    """(embedder, description) for a `.keras` file, a run folder or a SavedModel folder.

    The embedder is a Keras model, or for a SavedModel a function mapping a
    float32 numpy array `[1, samples]` to embeddings `[1, dim]` (or
    `[1, K, dim]` for a multi-identity model).
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
    """A numpy-in, numpy-out function calling the SavedModel's serving signature.

    A SavedModel is a program: `tf.saved_model.load` and every call run the
    TensorFlow graph it holds, whatever its operations do (read or write
    files, for one). Load only SavedModels from a trusted source.
    """
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


def _run_folder_of(model_path):
    """The run folder `--model` belongs to, or None.

    A run folder itself, the folder of its `embedder.keras`, or
    `<run>/export/<version>` for its SavedModel.
    """
    path = os.path.abspath(model_path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    candidates = [folder]
    if os.path.isfile(os.path.join(folder, "saved_model.pb")):
        candidates.append(os.path.dirname(os.path.dirname(folder)))
    for candidate in candidates:
        if all(os.path.isfile(os.path.join(candidate, name)) for name in RUN_FOLDER_FILES):
            return candidate
    return None


def model_sample_rate(model_path, embedder):
    """(rate, where it was read) for the model, or (None, None) when it declares none.

    Sources: the run folder's `config.yaml` (`data.sample_rate`) and the
    sample rate its front-end layers store; they must agree.
    """
    from keras_spk.config import read_yaml
    from keras_spk.inference import model_sample_rate as layers_sample_rate

    found = []
    run = _run_folder_of(model_path)
    if run is not None:
        config_path = os.path.join(run, "config.yaml")
        try:
            config = read_yaml(config_path)
        except Exception as error:  # a broken config names itself in the message
            raise ValueError(f"{config_path}: cannot read the run's config ({error}).") from None
        data = config.get("data") if isinstance(config, dict) else None
        rate = data.get("sample_rate") if isinstance(data, dict) else None
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
                raise ValueError(
                    f"{config_path}: data.sample_rate is {rate!r}, not a positive number of Hz. "
                    "Give the model's rate with --sample-rate."
                )
            found.append((rate, f"data.sample_rate in {config_path}"))
    try:
        rate = layers_sample_rate(embedder)
    except ValueError as error:
        raise ValueError(f"--model {model_path}: {error}") from None
    if rate is not None:
        found.append((rate, "its front-end layers"))
    if len({rate for rate, _ in found}) > 1:
        raise ValueError(
            f"--model {model_path} declares two sample rates: "
            + " and ".join(f"{rate} Hz ({where})" for rate, where in found)
            + ". Fix the run's config or re-export the model."
        )
    return found[0] if found else (None, None)


def resolve_sample_rate(args, embedder):
    """The sample rate to embed at: the model's, which --sample-rate may only repeat."""
    rate, where = model_sample_rate(args.model, embedder)
    if rate is None:
        if args.sample_rate is None:
            raise ValueError(
                f"--model {args.model} does not say its sample rate (no run folder config.yaml "
                "beside it, no front-end layer storing one): give --sample-rate, the rate the "
                "model was trained at (data.sample_rate in its run's config.yaml)."
            )
        return args.sample_rate
    if args.sample_rate is not None and args.sample_rate != rate:
        raise ValueError(
            f"--sample-rate {args.sample_rate} is not the model's sample rate: {rate} Hz "
            f"({where}). --sample-rate is the model's rate, not the audio's: files at any rate "
            f"are resampled to the model's, so leave --sample-rate out or give --sample-rate {rate}."
        )
    return rate


def resolve_min_samples(args, embed, sample_rate):
    """The shortest utterance accepted: the model's minimum, found by probing, or more."""
    from keras_spk.inference import find_min_samples

    try:
        minimum = find_min_samples(embed)
    except ValueError as error:
        raise ValueError(f"--model {args.model}: {error}") from None
    if args.min_samples is None:
        return minimum
    if args.min_samples < minimum:
        raise ValueError(
            f"--min-samples {args.min_samples} is below the model's minimum of {minimum} samples "
            f"({minimum / sample_rate:.3f} s at {sample_rate} Hz): shorter input gives it nothing "
            f"to embed (its output no longer depends on the audio). Give --min-samples {minimum} "
            "or more, or leave it out."
        )
    return args.min_samples


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
        from keras_spk.utils.file_checks import files_not_found_error

        raise files_not_found_error(
            missing,
            "listed file",
            root=f"--audio-root {root}",
            source=path,
            fix="Paths in the list are relative to --audio-root.",
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
    corpus = data.read_voxceleb(root, extensions=args.extensions)
    names = [name.replace(os.sep, "/") for name in corpus.relative_paths()]
    return names, corpus.paths, list(corpus.speakers)


# === Command line ===


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        help=".keras file, run folder (embedder.keras) or SavedModel folder. A SavedModel is a "
        "program (loading it runs its TensorFlow operations, which can read and write files) "
        "and a .keras file with custom classes runs their code: use only models from a "
        "trusted source",
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
        "--extensions",
        nargs="+",
        default=None,
        help="audio extensions for --voxceleb (default: every supported one, .wav .flac .ogg .mp3)",
    )
    parser.add_argument("--output", required=True, help="embedding file to write (.npz)")
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=None,
        help="the model's sample rate in Hz (default: the one its run folder or front-end "
        "declares, which this may only repeat; required when it declares none)",
    )
    parser.add_argument(
        "--min-samples",
        type=int,
        default=None,
        help="shortest utterance accepted, in samples (default: the model's minimum, found by "
        "probing it; may only be raised)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.sample_rate is not None and args.sample_rate <= 0:
        parser.error(f"--sample-rate must be a positive number of Hz, got {args.sample_rate}")
    if args.min_samples is not None and args.min_samples <= 0:
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
    from keras_spk.inference import embedding_function
    from keras_spk.scoring.embeddings import save_embeddings

    sample_rate = resolve_sample_rate(args, embedder)
    embed = embedding_function(embedder)  # built once, for the probe and the files
    min_samples = resolve_min_samples(args, embed, sample_rate)
    if not args.quiet:
        print(
            f"{description} ({sample_rate} Hz, utterances of at least {min_samples} samples): "
            f"embedding {len(paths)} utterances from {args.audio_root}"
        )
    embeddings = embed_files(
        embed, paths, sample_rate=sample_rate, progress=not args.quiet, min_samples=min_samples
    )
    save_embeddings(args.output, names, embeddings, speakers=speakers)
    if not args.quiet:
        if embeddings.ndim == 3:
            print(
                f"{len(names)} utterances, {embeddings.shape[1]} embeddings of size "
                f"{embeddings.shape[2]} each: {args.output}"
            )
        else:
            print(f"{len(names)} embeddings of size {embeddings.shape[1]}: {args.output}")
    return names, embeddings, speakers


def cli(argv=None):
    """`main`, with its errors as a one-line message and exit status 1."""
    try:
        return main(argv)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"extract.py: error: {error}")


if __name__ == "__main__":
    cli()
