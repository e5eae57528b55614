"""The back-end registry: each standard back-end by name, and its settings.

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
separate arguments. Building, fitting and scoring by name is
`keras_spk.scoring.backends`.
"""

import dataclasses

from keras_spk.utils._checks import check_positive_int

__all__ = [
    "BACKENDS",
    "DEFAULT_SETTINGS",
    "LEARNS",
    "PAIR_CLASSIFIERS",
    "BackendSpec",
    "check_backend_name",
    "resolve_settings",
    "system_label",
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


# === Names and settings ===


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
