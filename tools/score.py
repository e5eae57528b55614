"""Scores a trial list from an embedding file with one or more back-ends.

Prints EER, minDCF(0.01) and minDCF(0.05) per back-end; with --output also
writes them as results.json and results.csv, the score of every trial
(scores_<backend>.txt), with --plot a DET curve (det.png), and with
--save-backends the fitted back-ends (backend_<name>.npz, see
keras_spk.scoring.persistence).

    python tools/score.py --embeddings EMB.npz --trials TRIALS
                          [--backend cosine plda ...]
                          [--train-embeddings TRAIN.npz [--train-speakers stored|from-names]]
                          [--output DIR] [--plot] [--save-backends]

Back-ends (BACKENDS): cosine (nothing to learn); cosine_centered, lda,
plda, lda_plda (trained on speaker-labelled embeddings); bvector, rbvector,
concat_mul (pair features + a classifier, --pair-classifier logistic|dnn,
trained on --n-pairs pairs sampled from the training speakers).

Embedding files are written by `keras_spk.scoring.embeddings.save_embeddings`
(e.g. by tools/extract.py); every name in the trial list must be in
--embeddings. Back-ends that learn are fitted on --train-embeddings, whose
file must hold a `speakers` array (or use --train-speakers from-names for
VoxCeleb-style names `speaker/...`).
"""

import argparse
import csv
import os
import sys
import time

import numpy as np

# === Back-end registry ===
#
# A back-end is built by a factory from the parsed arguments and trained in
# one of three ways ("learns"):
#   "nothing":  nothing to learn (fit only records the embedding size);
#   "speakers": fit(train embeddings, train speakers), then scores
#               embeddings (a scorer, or a Pipeline ending in one);
#   "pairs":    a Pipeline (pair features -> classifier) fitted on trial
#               rows [enroll | test] sampled from the training speakers;
#               decision_function of a trial row is its score.


def _cosine(args):
    from keras_spk.scoring.cosine import CosineScorer

    return CosineScorer(center=False)


def _cosine_centered(args):
    from keras_spk.scoring.cosine import CosineScorer

    return CosineScorer(center=True)


def _lda(args):
    from sklearn.pipeline import Pipeline

    from keras_spk.scoring.cosine import CosineScorer
    from keras_spk.scoring.lda import LDA

    return Pipeline([("lda", LDA(n_components=args.lda_dim)), ("cosine", CosineScorer(center=False))])


def _plda(args):
    from keras_spk.scoring.plda import PLDA

    return PLDA()


def _lda_plda(args):
    from sklearn.pipeline import Pipeline

    from keras_spk.scoring.lda import LDA
    from keras_spk.scoring.plda import PLDA

    return Pipeline([("lda", LDA(n_components=args.lda_dim)), ("plda", PLDA())])


def _pair_classifier(args):
    if args.pair_classifier == "dnn":
        from keras_spk.scoring.dnn import DNNPairClassifier

        return DNNPairClassifier(seed=args.seed)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def _pair_backend(transformer_name):
    def factory(args):
        from sklearn.pipeline import Pipeline

        from keras_spk.scoring import pairs

        transformer = getattr(pairs, transformer_name)()
        return Pipeline([(transformer_name.lower(), transformer), ("classifier", _pair_classifier(args))])

    return factory


# name -> (factory, how it learns)
BACKENDS = {
    "cosine": (_cosine, "nothing"),
    "cosine_centered": (_cosine_centered, "speakers"),
    "lda": (_lda, "speakers"),
    "plda": (_plda, "speakers"),
    "lda_plda": (_lda_plda, "speakers"),
    "bvector": (_pair_backend("BVector"), "pairs"),
    "rbvector": (_pair_backend("RBVector"), "pairs"),
    "concat_mul": (_pair_backend("ConcatMul"), "pairs"),
}


def check_backend_name(name):
    if name not in BACKENDS:
        raise ValueError(f"Unknown back-end {name!r}. Valid back-ends: {', '.join(sorted(BACKENDS))}.")
    return name


def fit_backend(name, args, X_eval, training):
    """The back-end `name`, built and fitted; `training` is (names, X, speakers) or None."""
    factory, learns = BACKENDS[check_backend_name(name)]
    backend = factory(args)
    if learns == "nothing":
        return backend.fit(X_eval)
    _, X, speakers = training
    if learns == "speakers":
        return backend.fit(X, speakers)
    from keras_spk.scoring.pairs import sample_pairs
    from keras_spk.scoring.pairs import stack_pairs

    a, b, same = sample_pairs(speakers, n_pairs=args.n_pairs, seed=args.seed)
    fit_params = {}
    if name == "rbvector":  # representatives from every training embedding, not only the paired ones
        fit_params[f"{backend.steps[0][0]}__embeddings"] = X
    return backend.fit(stack_pairs(X[a], X[b]), same, **fit_params)


def score_trials(name, backend, X, enroll, test):
    """Scores of the trials (rows `enroll[k]` vs `test[k]` of `X`)."""
    if BACKENDS[name][1] == "pairs":
        from keras_spk.scoring.pairs import stack_pairs

        scores = backend.decision_function(stack_pairs(X[enroll], X[test]))
    else:
        from keras_spk.scoring.plda import score_pairs

        # Index form: each embedding goes through the back-end's front-end once.
        scores = score_pairs(backend, X, X, index=(enroll, test))
    return np.asarray(scores, dtype=np.float64)


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
    parser.add_argument("--seed", type=int, default=0, help="seed of pair sampling and the DNN")
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
    learning = [name for name in args.backend if BACKENDS[name][1] != "nothing"]
    if learning and not args.train_embeddings:
        raise ValueError(
            f"Back-end(s) {', '.join(learning)} learn from data: give --train-embeddings TRAIN.npz "
            "(embeddings of training speakers, with a `speakers` array)."
        )
    if (args.plot or args.save_backends) and not args.output:
        option = "--plot" if args.plot else "--save-backends"
        raise ValueError(f"{option} writes into the output folder: give --output DIR as well.")


def format_table(rows):
    header = f"{'back-end':16s} {'EER %':>7s} {'minDCF0.01':>11s} {'minDCF0.05':>11s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['backend']:16s} {100 * r['eer']:7.2f} {r['min_dcf_0.01']:11.4f} {r['min_dcf_0.05']:11.4f}"
        )
    return "\n".join(lines)


def write_outputs(output, args, rows, trials, all_scores):
    from keras_spk.utils.files import atomic_open
    from keras_spk.utils.files import atomic_write_json

    os.makedirs(output, exist_ok=True)
    atomic_write_json(os.path.join(output, "results.json"), {"arguments": vars(args), "results": rows})
    with atomic_open(os.path.join(output, "results.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["backend", "eer", "min_dcf_0.01", "min_dcf_0.05", "n_trials"])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r[k] for k in writer.fieldnames})
    for name, scores in all_scores.items():
        with atomic_open(os.path.join(output, f"scores_{name}.txt"), "w", encoding="utf-8") as f:
            for e, t, label, s in zip(trials.enroll, trials.test, trials.labels, scores):
                f.write(f"{e} {t} {int(label)} {float(s)!r}\n")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    check_args(args)

    from keras_spk import metrics
    from keras_spk.data.trials import read_trials
    from keras_spk.scoring.embeddings import load_embeddings

    started = time.time()
    names, X = load_embeddings(args.embeddings)
    trials = read_trials(
        args.trials, os.path.dirname(os.path.abspath(args.trials)), args.trials_format, check_files=False
    )
    enroll, test = trial_indices(trials, args.trials, names, args.embeddings)
    training = None
    if any(BACKENDS[name][1] != "nothing" for name in args.backend):
        training = load_training_set(args)
        if training[1].shape[1] != X.shape[1]:
            raise ValueError(
                f"--train-embeddings has {training[1].shape[1]}-dimensional embeddings but "
                f"--embeddings {X.shape[1]}-dimensional; they must come from the same extractor."
            )
        shared = set(training[0]) & set(trials.utterances)
        if shared:
            print(f"warning: {len(shared)} trial utterance(s) are also in the training set.", file=sys.stderr)

    rows, all_scores, backends = [], {}, {}
    for name in args.backend:
        backend = fit_backend(name, args, X, training)
        scores = score_trials(name, backend, X, enroll, test)
        if scores.shape != (len(trials),) or not np.isfinite(scores).all():
            raise ValueError(f"Back-end {name!r} gave {scores.shape} scores, not {len(trials)} finite ones.")
        rows.append(
            {"backend": name, **metrics.verification_metrics(scores, trials.labels), "n_trials": len(trials)}
        )
        all_scores[name] = scores
        backends[name] = backend
    print(format_table(rows) + f"\n\n{len(trials)} trials, {time.time() - started:.1f} s")

    if args.output:
        write_outputs(args.output, args, rows, trials, all_scores)
        if args.plot:
            from keras_spk.scoring.plots import plot_det

            systems = {name: (scores, trials.labels) for name, scores in all_scores.items()}
            plot_det(systems, os.path.join(args.output, "det.png"), title=os.path.basename(args.trials))
        if args.save_backends:
            from keras_spk.scoring.persistence import save_backend

            for name, backend in backends.items():
                save_backend(backend, os.path.join(args.output, f"backend_{name}.npz"))
        print(f"results: {args.output}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"score.py: error: {error}")
