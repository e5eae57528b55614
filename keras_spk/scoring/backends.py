"""Back-ends by name: build, fit, score and compare them on one trial list.

The registry `BACKENDS` maps a name to a `BackendSpec`: a factory of the
(unfitted) estimator, how it learns, and the system label used in result
tables (the wording of the RawNet paper's Tables 2 and 4):

| name              | label                    | learns   | estimator                                  |
|-------------------|--------------------------|----------|--------------------------------------------|
| `cosine`          | cosine                   | nothing  | `CosineScorer(center=False)`               |
| `cosine_centered` | cosine (centred)         | speakers | `CosineScorer(center=True)`                |
| `lda`             | LDA + cosine             | speakers | `LDA` -> `CosineScorer(center=False)`      |
| `dcae`            | DCAE + cosine            | speakers | `DCAE` -> `CosineScorer(center=True)`      |
| `plda`            | PLDA                     | speakers | `PLDA`                                     |
| `lda_plda`        | LDA/PLDA                 | speakers | `LDA` -> `PLDA`                            |
| `bvector`         | b-vector                 | pairs    | `BVector` -> pair classifier               |
| `rbvector`        | rb-vector                | pairs    | `RBVector` -> pair classifier              |
| `concat_mul`      | concat&mul               | pairs    | `ConcatMul` -> pair classifier             |

How a back-end learns:

* `"nothing"`: `fit` only records the embedding size;
* `"speakers"`: `fit(train_X, train_speakers)`; trials are scored with
  `keras_spk.scoring.score_pairs` (each embedding goes through the
  front-end once);
* `"pairs"`: a `Pipeline` (pair features -> classifier) fitted on
  `n_pairs` trial rows `[enroll | test]` sampled from the training speakers
  (`sample_pairs`, half of them targets); a trial's score is the
  classifier's `decision_function`.

Settings (keyword arguments of `build_backend`, the `settings` dict of
`evaluate_backends`; one flat namespace, each back-end reads the ones it
needs, an unknown name is an error):

* `lda_dim`: LDA output size for `lda` / `lda_plda` (`None`: speakers - 1).
* `pair_classifier`: `"logistic"` (scikit-learn `LogisticRegression`,
  fast) or `"dnn"` (`DNNPairClassifier`, the paper's DNN, needs Keras).
  With `"logistic"` the system label says so (e.g. "b-vector (logistic)"),
  since the paper's pair back-ends are DNNs.
* `n_pairs`: training pairs sampled for the pair back-ends (20000).
* `dnn_hidden_units`, `dnn_epochs`, `dnn_batch_size`,
  `dnn_learning_rate`: `DNNPairClassifier` arguments (`None`: its
  defaults, i.e. the paper's four layers of 1024 units).
* `dcae_dim` (the code size `n_components`), `dcae_hidden_units`,
  `dcae_epochs`, `dcae_batch_size`, `dcae_learning_rate`: `DCAE`
  arguments (`None`: its defaults).

The seed (pair sampling, DNN and DCAE weights) and the Keras verbosity are
separate arguments.

Example:

```python
from keras_spk.scoring.backends import evaluate_backends, format_table, write_results

result = evaluate_backends(
    ["cosine", "lda", "plda", "concat_mul"], train_X, train_speakers,
    trial_X, enroll_index, test_index, trial_labels,
    settings={"pair_classifier": "dnn", "dnn_hidden_units": (256, 256)},
)
print(format_table(result.rows))
write_results(result.rows, result.scores, trial_labels, "results/")
```
"""

import dataclasses
import os
import time
from typing import NamedTuple

import numpy as np

from keras_spk import metrics
from keras_spk.utils._checks import check_positive_int
from keras_spk.utils._checks import is_int
from keras_spk.utils.files import check_result_metadata
from keras_spk.utils.files import write_result_files

__all__ = [
    "BACKENDS",
    "DEFAULT_SETTINGS",
    "TIMING_KEYS",
    "BackendEvaluation",
    "BackendSpec",
    "build_backend",
    "check_backend_name",
    "evaluate_backends",
    "fit_backend",
    "format_table",
    "resolve_settings",
    "score_trials",
    "system_label",
    "write_results",
]

LEARNS = ("nothing", "speakers", "pairs")
PAIR_CLASSIFIERS = ("logistic", "dnn")

DEFAULT_SETTINGS = {
    "lda_dim": None,
    "pair_classifier": "logistic",
    "n_pairs": 20000,
    "dnn_hidden_units": None,
    "dnn_epochs": None,
    "dnn_batch_size": None,
    "dnn_learning_rate": None,
    "dcae_dim": None,
    "dcae_hidden_units": None,
    "dcae_epochs": None,
    "dcae_batch_size": None,
    "dcae_learning_rate": None,
}

# Setting name -> estimator argument, for the settings passed on only when set.
_DNN_ARGUMENTS = {
    "dnn_hidden_units": "hidden_units",
    "dnn_epochs": "epochs",
    "dnn_batch_size": "batch_size",
    "dnn_learning_rate": "learning_rate",
}
_DCAE_ARGUMENTS = {
    "dcae_dim": "n_components",
    "dcae_hidden_units": "hidden_units",
    "dcae_epochs": "epochs",
    "dcae_batch_size": "batch_size",
    "dcae_learning_rate": "learning_rate",
}

# Keys of a result row that depend on the machine, not on the inputs.
TIMING_KEYS = ("fit_seconds", "score_seconds")


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """One registry entry.

    Attributes:
        factory: `factory(settings, seed, verbose)` -> the unfitted estimator
            (`settings` complete, as from `resolve_settings`).
        learns: `"nothing"`, `"speakers"` or `"pairs"` (see the module doc).
        label: the system's name in result tables and plots.
    """

    factory: object
    learns: str
    label: str


def _passed_on(settings, arguments):
    return {arg: settings[key] for key, arg in arguments.items() if settings[key] is not None}


# === Factories ===


def _cosine(settings, seed, verbose):
    from keras_spk.scoring.cosine import CosineScorer

    return CosineScorer(center=False)


def _cosine_centered(settings, seed, verbose):
    from keras_spk.scoring.cosine import CosineScorer

    return CosineScorer(center=True)


def _lda(settings, seed, verbose):
    from sklearn.pipeline import Pipeline

    from keras_spk.scoring.cosine import CosineScorer
    from keras_spk.scoring.lda import LDA

    return Pipeline(
        [("lda", LDA(n_components=settings["lda_dim"])), ("cosine", CosineScorer(center=False))]
    )


def _dcae(settings, seed, verbose):
    from sklearn.pipeline import Pipeline

    from keras_spk.scoring.cosine import CosineScorer
    from keras_spk.scoring.dcae import DCAE

    dcae = DCAE(seed=seed, verbose=verbose, **_passed_on(settings, _DCAE_ARGUMENTS))
    # Centred: the code layer's bias puts an offset on every code.
    return Pipeline([("dcae", dcae), ("cosine", CosineScorer(center=True))])


def _plda(settings, seed, verbose):
    from keras_spk.scoring.plda import PLDA

    return PLDA()


def _lda_plda(settings, seed, verbose):
    from sklearn.pipeline import Pipeline

    from keras_spk.scoring.lda import LDA
    from keras_spk.scoring.plda import PLDA

    return Pipeline([("lda", LDA(n_components=settings["lda_dim"])), ("plda", PLDA())])


def _pair_classifier(settings, seed, verbose):
    if settings["pair_classifier"] == "dnn":
        from keras_spk.scoring.dnn import DNNPairClassifier

        return DNNPairClassifier(seed=seed, verbose=verbose, **_passed_on(settings, _DNN_ARGUMENTS))
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def _pair_backend(transformer_name):
    def factory(settings, seed, verbose):
        from sklearn.pipeline import Pipeline

        from keras_spk.scoring import pairs

        transformer = getattr(pairs, transformer_name)()
        classifier = _pair_classifier(settings, seed, verbose)
        return Pipeline([(transformer_name.lower(), transformer), ("classifier", classifier)])

    return factory


BACKENDS = {
    "cosine": BackendSpec(_cosine, "nothing", "cosine"),
    "cosine_centered": BackendSpec(_cosine_centered, "speakers", "cosine (centred)"),
    "lda": BackendSpec(_lda, "speakers", "LDA + cosine"),
    "dcae": BackendSpec(_dcae, "speakers", "DCAE + cosine"),
    "plda": BackendSpec(_plda, "speakers", "PLDA"),
    "lda_plda": BackendSpec(_lda_plda, "speakers", "LDA/PLDA"),
    "bvector": BackendSpec(_pair_backend("BVector"), "pairs", "b-vector"),
    "rbvector": BackendSpec(_pair_backend("RBVector"), "pairs", "rb-vector"),
    "concat_mul": BackendSpec(_pair_backend("ConcatMul"), "pairs", "concat&mul"),
}


# === Building, fitting, scoring ===


def check_backend_name(name):
    """`name` if it is in `BACKENDS`, else a ValueError listing the valid names."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"Unknown back-end {name!r}. Valid back-ends: {', '.join(sorted(BACKENDS))}.")
    return name


def resolve_settings(settings=None):
    """`DEFAULT_SETTINGS` updated with `settings`; unknown names raise ValueError.

    Args:
        settings: dict of setting name -> value (see the module doc), or None.

    Returns:
        A new dict with every setting.
    """
    settings = {} if settings is None else dict(settings)
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(
            f"Unknown back-end setting(s) {', '.join(map(repr, unknown))}. "
            f"Valid settings: {', '.join(DEFAULT_SETTINGS)}."
        )
    resolved = {**DEFAULT_SETTINGS, **settings}
    if resolved["pair_classifier"] not in PAIR_CLASSIFIERS:
        raise ValueError(
            f"`pair_classifier` must be one of {PAIR_CLASSIFIERS}. "
            f"Received: pair_classifier={resolved['pair_classifier']!r}"
        )
    check_positive_int("n_pairs", resolved["n_pairs"])
    return resolved


def system_label(name, settings=None):
    """The label of back-end `name` in result tables, for these settings.

    It is `BACKENDS[name].label`; a pair back-end with the logistic
    classifier gets " (logistic)" appended, since the paper's are DNNs.
    """
    spec = BACKENDS[check_backend_name(name)]
    if spec.learns == "pairs" and resolve_settings(settings)["pair_classifier"] == "logistic":
        return f"{spec.label} (logistic)"
    return spec.label


def build_backend(name, seed=0, verbose=0, **settings):
    """The unfitted back-end `name`.

    Args:
        name: a key of `BACKENDS`.
        seed: int seed of the DNN / DCAE weights.
        verbose: Keras `fit` verbosity of the DNN / DCAE (0 = silent).
        **settings: settings (see the module doc); those other back-ends use
            are accepted and ignored.

    Returns:
        A scikit-learn estimator (or `Pipeline`).
    """
    spec = BACKENDS[check_backend_name(name)]
    if not is_int(seed):
        raise ValueError(f"`seed` must be an integer. Received: seed={seed!r}")
    return spec.factory(resolve_settings(settings), int(seed), verbose)


def _check_matrix(name, X):
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(
            f"`{name}` must be a non-empty 2-D array of embeddings (one per row). "
            f"Received: {name} of shape {X.shape} and dtype {X.dtype}"
        )
    return X


def fit_backend(name, backend, train_X, train_speakers=None, n_pairs=20000, seed=0):
    """Fits a back-end built by `build_backend(name, ...)` the way `name` learns.

    Args:
        name: the back-end's name in `BACKENDS`.
        backend: the estimator `build_backend(name, ...)` returned.
        train_X: `(n, dim)` training embeddings. A back-end that learns
            nothing only reads their size (any embeddings will do).
        train_speakers: `(n,)` speaker labels of `train_X`; needed unless
            the back-end learns nothing.
        n_pairs: number of training pairs of a pair back-end.
        seed: int seed of the pair sampling.

    Returns:
        The fitted `backend`.
    """
    learns = BACKENDS[check_backend_name(name)].learns
    train_X = _check_matrix("train_X", train_X)
    if learns == "nothing":
        return backend.fit(train_X)
    if train_speakers is None:
        raise ValueError(
            f"Back-end {name!r} learns from speaker-labelled embeddings: give train_speakers "
            "(one label per row of train_X)."
        )
    train_speakers = np.asarray(train_speakers)
    if train_speakers.shape != (train_X.shape[0],):
        raise ValueError(
            "`train_speakers` must hold one label per row of `train_X`. Received: "
            f"train_speakers.shape={train_speakers.shape}, train_X.shape={train_X.shape}"
        )
    if learns == "speakers":
        return backend.fit(train_X, train_speakers)

    from keras_spk.scoring.pairs import sample_pairs
    from keras_spk.scoring.pairs import stack_pairs

    a, b, same = sample_pairs(train_speakers, n_pairs=n_pairs, seed=seed)
    fit_params = {}
    if name == "rbvector":  # representatives from every training embedding, not only the paired ones
        fit_params[f"{backend.steps[0][0]}__embeddings"] = train_X
    return backend.fit(stack_pairs(train_X[a], train_X[b]), same, **fit_params)


def score_trials(name, backend, X, enroll_index, test_index):
    """Scores of the trials `X[enroll_index[k]]` vs `X[test_index[k]]`.

    Args:
        name: the back-end's name in `BACKENDS`.
        backend: the fitted back-end.
        X: `(n, dim)` embeddings of the trial utterances.
        enroll_index, test_index: `(n_trials,)` integer rows of `X`.

    Returns:
        `(n_trials,)` float64 scores (higher: more likely the same speaker).
    """
    if BACKENDS[check_backend_name(name)].learns == "pairs":
        from keras_spk.scoring.pairs import stack_pairs

        X = np.asarray(X)
        scores = backend.decision_function(stack_pairs(X[enroll_index], X[test_index]))
    else:
        from keras_spk.scoring.plda import score_pairs

        # Index form: each embedding goes through the back-end's front-end once.
        scores = score_pairs(backend, X, X, index=(enroll_index, test_index))
    return np.asarray(scores, dtype=np.float64)


# === Comparing back-ends ===


class BackendEvaluation(NamedTuple):
    """What `evaluate_backends` returns.

    Attributes:
        rows: one dict per back-end, in the order asked: `backend` (name),
            `system` (label), `eer`, `min_dcf_<p>` per prior, `n_trials`,
            `fit_seconds`, `score_seconds`.
        scores: dict name -> `(n_trials,)` float64 trial scores (for DET
            plots, `write_results`).
        backends: dict name -> the fitted back-end (for `save_backend`).
    """

    rows: list
    scores: dict
    backends: dict


def _check_names(names):
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(f"Give at least one back-end. Valid back-ends: {', '.join(sorted(BACKENDS))}.")
    for name in names:
        check_backend_name(name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Back-end(s) {', '.join(repeated)} listed more than once. Received: {names}")
    return names


def _check_trials(trial_X, enroll_index, test_index, trial_labels):
    n = trial_X.shape[0]
    indices = []
    for name, index in (("enroll_index", enroll_index), ("test_index", test_index)):
        index = np.asarray(index)
        if index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
            raise ValueError(
                f"`{name}` must be a 1-D array of integer rows of trial_X. "
                f"Received: shape {index.shape}, dtype {index.dtype}"
            )
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(
                f"`{name}` refers to rows outside trial_X, which has {n} rows. "
                f"Received: values from {index.min()} to {index.max()}"
            )
        indices.append(index.astype(np.int64))
    labels = np.asarray(trial_labels)
    if not indices[0].shape == indices[1].shape == labels.shape or labels.size == 0:
        raise ValueError(
            "`enroll_index`, `test_index` and `trial_labels` must be 1-D, non-empty and of "
            f"one length (one entry per trial). Received lengths {indices[0].shape}, "
            f"{indices[1].shape}, {labels.shape}"
        )
    return indices[0], indices[1], labels


def evaluate_backends(
    names,
    train_X,
    train_speakers,
    trial_X,
    enroll_index,
    test_index,
    trial_labels,
    settings=None,
    seed=0,
    p_targets=(0.01, 0.05),
    verbose=0,
):
    """Builds, fits and scores each back-end; EER and minDCF of each.

    Args:
        names: back-end names (keys of `BACKENDS`), each at most once.
        train_X: `(n, dim)` training embeddings; may be None when every
            back-end learns nothing (`cosine`).
        train_speakers: `(n,)` speaker labels of `train_X` (or None, as
            `train_X`).
        trial_X: `(m, dim)` embeddings of the trial utterances.
        enroll_index, test_index: `(n_trials,)` rows of `trial_X` of each
            trial's two sides (e.g. `Trials.indices()`).
        trial_labels: `(n_trials,)` 1 for target, 0 for non-target trials.
        settings: dict of settings (see the module doc), or None.
        seed: int seed of pair sampling and of the DNN / DCAE weights.
        p_targets: target priors of the minDCF columns.
        verbose: 0 silent; 1 prints one line per back-end; 2 also the
            Keras training log of the DNN / DCAE (one line per epoch).

    Returns:
        A `BackendEvaluation` `(rows, scores, backends)`.

    Raises:
        ValueError: an unknown or repeated back-end, an unknown setting,
            missing training data for a back-end that learns, embeddings of
            different sizes, bad trial indices, or non-finite scores.
    """
    names = _check_names(names)
    settings = resolve_settings(settings)
    trial_X = _check_matrix("trial_X", trial_X)
    enroll_index, test_index, trial_labels = _check_trials(
        trial_X, enroll_index, test_index, trial_labels
    )
    learning = [name for name in names if BACKENDS[name].learns != "nothing"]
    if train_X is None:
        if learning:
            raise ValueError(
                f"Back-end(s) {', '.join(learning)} learn from data: give train_X and "
                "train_speakers (embeddings of training speakers and their labels)."
            )
        train_X = trial_X  # only its size is read
    else:
        train_X = _check_matrix("train_X", train_X)
        if train_X.shape[1] != trial_X.shape[1]:
            raise ValueError(
                f"train_X has {train_X.shape[1]}-dimensional embeddings but trial_X "
                f"{trial_X.shape[1]}-dimensional; they must come from the same extractor."
            )
    keras_verbose = 2 if verbose >= 2 else 0

    rows, all_scores, backends = [], {}, {}
    for name in names:
        started = time.perf_counter()
        backend = build_backend(name, seed=seed, verbose=keras_verbose, **settings)
        backend = fit_backend(
            name, backend, train_X, train_speakers, n_pairs=settings["n_pairs"], seed=seed
        )
        fitted = time.perf_counter()
        scores = score_trials(name, backend, trial_X, enroll_index, test_index)
        scored = time.perf_counter()
        if scores.shape != trial_labels.shape or not np.isfinite(scores).all():
            raise ValueError(
                f"Back-end {name!r} gave {scores.shape} scores, not {trial_labels.shape[0]} "
                "finite ones."
            )
        row = {
            "backend": name,
            "system": system_label(name, settings),
            **metrics.verification_metrics(scores, trial_labels, p_targets=p_targets),
            "n_trials": int(trial_labels.shape[0]),
            "fit_seconds": fitted - started,
            "score_seconds": scored - fitted,
        }
        rows.append(row)
        all_scores[name] = scores
        backends[name] = backend
        if verbose:
            print(
                f"{name}: EER {100 * row['eer']:.2f}% "
                f"(fit {row['fit_seconds']:.1f} s, score {row['score_seconds']:.1f} s)",
                flush=True,
            )
    return BackendEvaluation(rows, all_scores, backends)


# === Reporting ===


def _dcf_columns(rows):
    keys = []
    for row in rows:
        keys.extend(key for key in row if key.startswith("min_dcf_") and key not in keys)
    return keys


def format_table(rows):
    """An aligned text table of result rows (as from `evaluate_backends`).

    Columns: back-end name, system label (when the rows have one), EER in %
    (2 decimals), each `min_dcf_<p>` as minDCF<p> (4 decimals), and the fit
    and score seconds when every row has them.

    Args:
        rows: list of result dicts (`backend`, `eer`, `min_dcf_*`, ...).

    Returns:
        The table as one string (header, a rule, one line per row), without
        a trailing newline.
    """
    if not rows:
        raise ValueError("format_table needs at least one result row. Received: rows=[]")
    # (header, cell of a row, right-aligned)
    columns = [("back-end", lambda r: str(r["backend"]), False)]
    if all("system" in r for r in rows):
        columns.append(("system", lambda r: str(r["system"]), False))
    columns.append(("EER %", lambda r: f"{100 * r['eer']:.2f}", True))
    for key in _dcf_columns(rows):
        columns.append(
            (f"minDCF{key[len('min_dcf_'):]}", lambda r, key=key: f"{r[key]:.4f}", True)
        )
    if all(all(k in r for k in TIMING_KEYS) for r in rows):
        columns.append(("fit s", lambda r: f"{r['fit_seconds']:.2f}", True))
        columns.append(("score s", lambda r: f"{r['score_seconds']:.2f}", True))

    cells = [[cell(r) for _, cell, _ in columns] for r in rows]
    widths = [
        max([len(header), 7 if right else 0] + [len(line[i]) for line in cells])
        for i, (header, _, right) in enumerate(columns)
    ]

    def line(values):
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, (_, _, right) in zip(values, widths, columns)
        ).rstrip()

    header = line([header for header, _, _ in columns])
    return "\n".join([header, "-" * len(header)] + [line(values) for values in cells])


def write_results(rows, scores, trial_labels, directory, metadata=None, plot=True, title="DET curve"):
    """Writes a back-end comparison into `directory`, every file atomically.

    Files:

    * `table.txt`: `format_table(rows)`;
    * `results.json`: `{**metadata, "results": rows}`;
    * `results.csv`: one line per row, a column per row key;
    * `det.png` (when `plot`): the DET curves of all back-ends
      (`keras_spk.scoring.plots.plot_det`), labelled by system.

    Args:
        rows: result rows (`BackendEvaluation.rows`).
        scores: dict back-end name -> trial scores (`BackendEvaluation.scores`).
        trial_labels: `(n_trials,)` 1 target / 0 non-target.
        directory: output folder (created if missing).
        metadata: optional JSON-serialisable dict stored beside the results
            (e.g. the settings or the command-line arguments).
        plot: write `det.png`.
        title: title of the DET plot.

    Returns:
        The list of paths written, in the order of the list above.
    """
    # Checked before the scores, so that a bad `metadata` is the error reported.
    check_result_metadata(metadata)
    missing = [r["backend"] for r in rows if r["backend"] not in scores]
    if missing:
        raise ValueError(
            f"No scores for back-end(s) {', '.join(missing)}: `scores` must map every row's "
            "back-end name to its trial scores."
        )
    written = write_result_files(directory, format_table(rows), rows, metadata=metadata)

    if plot:
        from keras_spk.scoring.plots import plot_det

        systems = {r.get("system", r["backend"]): (scores[r["backend"]], trial_labels) for r in rows}
        written.append(plot_det(systems, os.path.join(directory, "det.png"), title=title))
    return written
