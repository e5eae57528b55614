"""Scores a trial list from an embedding file with one or more back-ends.

Prints EER, minDCF(0.01) and minDCF(0.05) per back-end; with --output also
writes them as table.txt, results.json and results.csv, the score of every
trial (scores_<backend>.txt), with --plot a DET curve (det.png), and with
--save-backends the fitted back-ends (backend_<name>.npz, see
keras_spk.scoring.persistence).

    python tools/score.py --embeddings EMB.npz --trials TRIALS
                          [--backend cosine plda ...]
                          [--train-embeddings TRAIN.npz [--train-speakers stored|from-names]]
                          [--output DIR] [--plot] [--save-backends]

Back-ends (the registry keras_spk.scoring.backends.BACKENDS, shared with the
recipes): cosine (nothing to learn); cosine_centered, lda, dcae, plda,
lda_plda (trained on speaker-labelled embeddings; dcae is a discriminative
auto-encoder, needs Keras); bvector, rbvector, concat_mul (pair features + a
classifier, --pair-classifier logistic|dnn, trained on --n-pairs pairs
sampled from the training speakers).

Embedding files are written by `keras_spk.scoring.embeddings.save_embeddings`
(e.g. by tools/extract.py); every name in the trial list must be in
--embeddings. Back-ends that learn are fitted on --train-embeddings, whose
file must hold a `speakers` array (or use --train-speakers from-names for
VoxCeleb-style names `speaker/...`).
"""

import argparse
import os
import sys
import time

import numpy as np

from keras_spk.scoring.backends import BACKENDS
from keras_spk.scoring.backends import TIMING_KEYS
from keras_spk.scoring.backends import check_backend_name
from keras_spk.scoring.backends import evaluate_backends
from keras_spk.scoring.backends import format_table
from keras_spk.scoring.backends import score_trials  # noqa: F401 (part of this tool's API)
from keras_spk.scoring.backends import write_results


# === Inputs ===


def trial_line_numbers(path):
    """Line number of every trial, in the order `read_trials` returns them."""
    with open(path, encoding="utf-8") as f:
        return [n for n, line in enumerate(f, 1) if line.split() and not line.split()[0].startswith("#")]


def trial_indices(trials, trials_path, names, embeddings_path):
    """(enroll rows, test rows) of each trial in the embedding matrix, or an error naming lines."""
    position = {name: i for i, name in enumerate(names)}
    unknown = [
        (number, side, name)
        for number, pair in zip(trial_line_numbers(trials_path), zip(trials.enroll, trials.test))
        for side, name in zip(("enrolment", "test"), pair)
        if name not in position
    ]
    if unknown:
        listed = "; ".join(f"line {n}: {side} {name!r}" for n, side, name in unknown[:10])
        raise ValueError(
            f"{trials_path}: {len(unknown)} trial name(s) are not in {embeddings_path}: {listed}"
            f"{' ...' if len(unknown) > 10 else ''}. Embed those utterances, or check that the "
            f"names match (e.g. {names[0]!r} in the embedding file)."
        )
    enroll = np.array([position[n] for n in trials.enroll], dtype=np.int64)
    test = np.array([position[n] for n in trials.test], dtype=np.int64)
    return enroll, test


def load_training_set(args):
    from keras_spk.scoring.embeddings import load_embeddings

    names, X, speakers = load_embeddings(args.train_embeddings, with_speakers=True)
    if args.train_speakers == "from-names":
        speakers = [name.replace("\\", "/").split("/")[0] for name in names]
    elif speakers is None:
        raise ValueError(
            f"{args.train_embeddings} has no `speakers` array, which back-ends that learn need. "
            "Write it with save_embeddings(..., speakers=...), or pass --train-speakers from-names "
            "when names start with the speaker (VoxCeleb layout: speaker/video/utt.wav)."
        )
    if len(set(speakers)) < 2:
        raise ValueError(
            f"{args.train_embeddings}: training needs at least 2 speakers, found {len(set(speakers))}."
        )
    return names, X, np.asarray(speakers)


# === Command line ===


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", required=True, help="embeddings of the trial utterances (.npz)")
    parser.add_argument("--trials", required=True, help="trial list (VoxCeleb or Kaldi format)")
    parser.add_argument(
        "--trials-format", default="auto", choices=("auto", "voxceleb", "kaldi"), help="trial list format"
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["cosine"],
        metavar="NAME",
        help=f"one or more of: {', '.join(BACKENDS)} (default: cosine)",
    )
    parser.add_argument(
        "--train-embeddings", help="training embeddings with speakers (.npz), for back-ends that learn"
    )
    parser.add_argument(
        "--train-speakers",
        default="stored",
        choices=("stored", "from-names"),
        help="speakers of the training embeddings: the file's `speakers` array, "
        "or each name's first path component",
    )
    parser.add_argument(
        "--lda-dim", type=int, help="LDA output size for lda / lda_plda (default: speakers - 1)"
    )
    parser.add_argument(
        "--pair-classifier",
        default="logistic",
        choices=("logistic", "dnn"),
        help="classifier of the pair back-ends (bvector, rbvector, concat_mul): logistic regression, "
        "or the RawNet DNN (DNNPairClassifier, needs Keras)",
    )
    parser.add_argument(
        "--n-pairs", type=int, default=20000, help="training pairs sampled for pair back-ends"
    )
    parser.add_argument(
        "--dcae-dim", type=int, help="code (enhanced embedding) size of dcae (default: 128)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of pair sampling, the DNN and the DCAE")
    parser.add_argument("--output", help="folder for results.json, results.csv, scores and plots")
    parser.add_argument("--plot", action="store_true", help="write a DET plot (det.png) into --output")
    parser.add_argument(
        "--save-backends",
        action="store_true",
        help="save fitted back-ends as backend_<name>.npz into --output",
    )
    return parser.parse_args(argv)


def check_args(args):
    for name in args.backend:
        check_backend_name(name)
    if len(set(args.backend)) != len(args.backend):
        raise ValueError(f"--backend lists a back-end twice: {args.backend}.")
    learning = [name for name in args.backend if BACKENDS[name].learns != "nothing"]
    if learning and not args.train_embeddings:
        raise ValueError(
            f"Back-end(s) {', '.join(learning)} learn from data: give --train-embeddings TRAIN.npz "
            "(embeddings of training speakers, with a `speakers` array)."
        )
    if (args.plot or args.save_backends) and not args.output:
        option = "--plot" if args.plot else "--save-backends"
        raise ValueError(f"{option} writes into the output folder: give --output DIR as well.")


def backend_settings(args):
    """The keras_spk.scoring.backends settings given on the command line."""
    return {
        "lda_dim": args.lda_dim,
        "pair_classifier": args.pair_classifier,
        "n_pairs": args.n_pairs,
        "dcae_dim": args.dcae_dim,
    }


def write_scores(output, trials, all_scores):
    from keras_spk.utils.files import atomic_open

    for name, scores in all_scores.items():
        with atomic_open(os.path.join(output, f"scores_{name}.txt"), "w", encoding="utf-8") as f:
            for e, t, label, s in zip(trials.enroll, trials.test, trials.labels, scores):
                f.write(f"{e} {t} {int(label)} {float(s)!r}\n")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    check_args(args)

    from keras_spk.data.trials import read_trials
    from keras_spk.scoring.embeddings import load_embeddings

    started = time.time()
    names, X = load_embeddings(args.embeddings)
    trials = read_trials(
        args.trials, os.path.dirname(os.path.abspath(args.trials)), args.trials_format, check_files=False
    )
    enroll, test = trial_indices(trials, args.trials, names, args.embeddings)
    train_X = train_speakers = None
    if any(BACKENDS[name].learns != "nothing" for name in args.backend):
        train_names, train_X, train_speakers = load_training_set(args)
        if train_X.shape[1] != X.shape[1]:
            raise ValueError(
                f"--train-embeddings has {train_X.shape[1]}-dimensional embeddings but "
                f"--embeddings {X.shape[1]}-dimensional; they must come from the same extractor."
            )
        shared = set(train_names) & set(trials.utterances)
        if shared:
            print(f"warning: {len(shared)} trial utterance(s) are also in the training set.", file=sys.stderr)

    evaluation = evaluate_backends(
        args.backend,
        train_X,
        train_speakers,
        X,
        enroll,
        test,
        np.asarray(trials.labels),
        settings=backend_settings(args),
        seed=args.seed,
    )
    # Rows hold what the inputs determine (no timings), so two runs compare equal.
    rows = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in evaluation.rows]
    print(format_table(rows) + f"\n\n{len(trials)} trials, {time.time() - started:.1f} s")

    if args.output:
        write_results(
            rows,
            evaluation.scores,
            trials.labels,
            args.output,
            metadata={"arguments": vars(args)},
            plot=args.plot,
            title=os.path.basename(args.trials),
        )
        write_scores(args.output, trials, evaluation.scores)
        if args.save_backends:
            from keras_spk.scoring.persistence import save_backend

            for name, backend in evaluation.backends.items():
                save_backend(backend, os.path.join(args.output, f"backend_{name}.npz"))
        print(f"results: {args.output}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"score.py: error: {error}")
