"""Back-ends by name: build one, fit it the way it learns, score trials with it.

The names are those of the registry `BACKENDS`
(`keras_spk.scoring.backend_registry`: the estimators, how each learns,
their settings and table labels). Comparing several back-ends on one trial
list is `keras_spk.scoring.comparison.evaluate_backends`; its tables and
files are `keras_spk.scoring.results`. Those names, and the registry's,
stay importable from here.

Example:

```python
from keras_spk.scoring.backends import build_backend, fit_backend, score_trials

plda = fit_backend("plda", build_backend("plda"), train_X, train_speakers)
scores = score_trials("plda", plda, trial_X, enroll_index, test_index)
```
"""

import numpy as np

from keras_spk.scoring.backend_registry import BACKENDS
from keras_spk.scoring.backend_registry import DEFAULT_SETTINGS
from keras_spk.scoring.backend_registry import LEARNS
from keras_spk.scoring.backend_registry import PAIR_CLASSIFIERS
from keras_spk.scoring.backend_registry import BackendSpec
from keras_spk.scoring.backend_registry import check_backend_name
from keras_spk.scoring.backend_registry import resolve_settings
from keras_spk.scoring.backend_registry import system_label
from keras_spk.utils._checks import is_int
from keras_spk.utils.lazy import lazy_module_exports

# The comparison and its reports import this module, so they are reached
# from here on first use rather than imported at the top.
__getattr__, __dir__, _LAZY_NAMES = lazy_module_exports(
    __name__,
    {
        "comparison": ("TIMING_KEYS", "BackendEvaluation", "evaluate_backends"),
        "results": ("format_table", "result_key", "write_results"),
    },
    package="keras_spk.scoring",
)

__all__ = [
    "BACKENDS",
    "DEFAULT_SETTINGS",
    "LEARNS",
    "PAIR_CLASSIFIERS",
    "BackendSpec",
    "build_backend",
    "check_backend_name",
    "check_embeddings",
    "fit_backend",
    "resolve_settings",
    "score_trials",
    "system_label",
    *_LAZY_NAMES,
]


def build_backend(name, seed=0, verbose=0, **settings):
    """The unfitted back-end `name`.

    Args:
        name: a key of `BACKENDS`.
        seed: int seed of the DNN / DCAE weights.
        verbose: Keras `fit` verbosity of the DNN / DCAE (0 = silent).
        **settings: settings (see `keras_spk.scoring.backend_registry`);
            those other back-ends use are accepted and ignored.

    Returns:
        A scikit-learn estimator (or `Pipeline`).
    """
    spec = BACKENDS[check_backend_name(name)]
    if not is_int(seed):
        raise ValueError(f"`seed` must be an integer. Received: seed={seed!r}")
    return spec.factory(resolve_settings(settings), int(seed), verbose)


def check_embeddings(name, X):
    """`X` as an array if it is a non-empty 2-D numeric array (one embedding per row), else ValueError naming `name`."""
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
    train_X = check_embeddings("train_X", train_X)
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
