"""Comparing back-ends: build, fit and score several on one trial list, with EER and minDCF.

Example:

```python
from keras_spk.scoring import evaluate_backends, format_table

result = evaluate_backends(
    ["cosine", "lda", "plda", "concat_mul"], train_X, train_speakers,
    trial_X, enroll_index, test_index, trial_labels,
    settings={"pair_classifier": "dnn", "dnn_hidden_units": (256, 256)},
)
print(format_table(result.rows))
```
"""

import time
from typing import NamedTuple

import numpy as np

from keras_spk import metrics
from keras_spk.scoring.backend_registry import BACKENDS
from keras_spk.scoring.backend_registry import check_backend_name
from keras_spk.scoring.backend_registry import resolve_settings
from keras_spk.scoring.backend_registry import system_label
from keras_spk.scoring.backends import build_backend
from keras_spk.scoring.backends import check_embeddings
from keras_spk.scoring.backends import fit_backend
from keras_spk.scoring.backends import score_trials

__all__ = ["TIMING_KEYS", "BackendEvaluation", "evaluate_backends"]

# Keys of a result row that depend on the machine, not on the inputs.
TIMING_KEYS = ("fit_seconds", "score_seconds")


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
        settings: dict of settings (see `keras_spk.scoring.backend_registry`),
            or None.
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
    trial_X = check_embeddings("trial_X", trial_X)
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
        train_X = check_embeddings("train_X", train_X)
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
