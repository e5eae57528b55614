"""Embeddings, the back-end table, the saved and exported embedder; what the `evaluation` keys may be."""

import os

import numpy as np

from keras_spk.config import Constraint
from keras_spk.config import choice
from keras_spk.config import float_range
from keras_spk.config import get_key
from keras_spk.config import has_key
from keras_spk.config import int_range
from keras_spk.config import list_of

def select_per_speaker(train, per_speaker, seed=0):
    """Indices of at most `per_speaker` utterances of each speaker (all when `None`).

    The choice is random under `seed`, and sorted, so the same utterances
    are taken on every run.
    """
    if per_speaker is None:
        return np.arange(len(train))
    if per_speaker == 0:
        return np.arange(0)
    rng = np.random.default_rng(seed)
    speakers = np.asarray(train.speakers)
    keep = []
    for speaker in sorted(set(train.speakers)):
        rows = np.flatnonzero(speakers == speaker)
        keep.extend(rng.choice(rows, size=min(per_speaker, len(rows)), replace=False).tolist())
    return np.array(sorted(keep), dtype=np.int64)


def _union(trial_lists):
    """`(names, paths)` of every utterance of the trial lists, each once, sorted by name."""
    files = {}
    for trials in trial_lists:
        files.update(trials.files)
    names = sorted(set().union(*(trials.utterances for trials in trial_lists))) if trial_lists else []
    return names, [files[name] for name in names]


def extract_embeddings(
    run, embedder, train, trials, sample_rate, train_per_speaker=None, seed=0, min_samples=1,
    folder="embeddings",
):
    """Embeds the back-end training utterances and every trial utterance, once.

    Writes `<run>/<folder>/train.npz` (names relative to the training
    folder, with speakers) and `<run>/<folder>/trials.npz` (names as in the
    trial lists), the format of `keras_spk.scoring.save_embeddings` that
    `tools/score.py` reads. With several trial lists the union of their
    utterances is embedded once. A resumed run whose embedding step
    finished reads them back instead.

    Args:
        run: the `Run`.
        embedder: waveforms `[1, samples]` -> embeddings `[1, dim]` (or
            `[1, K, dim]` for a model that gives several identities).
        train: `keras_spk.data.UtteranceList` of the training data.
        trials: `keras_spk.data.Trials`, or a list of them (their names
            must resolve under the same folder).
        sample_rate: int.
        train_per_speaker: embed at most this many utterances per training
            speaker for the back-ends (`None`: all; `0`: none, when only
            back-ends that learn nothing are asked for).
        seed: int, which utterances when subsampling.
        min_samples: int, the shortest utterance the embedder accepts; a
            shorter file is an error naming it.
        folder: the folder of the run they go to (and its step's name).

    Returns:
        `(train_names, train_X, train_speakers, trial_names, trial_X)`;
        `trial_names` are sorted, and each list's `trial_indices` map into them.
    """
    from keras_spk.inference import embed_files
    from keras_spk.scoring import load_embeddings
    from keras_spk.scoring import save_embeddings

    trial_lists = list(trials) if isinstance(trials, (list, tuple)) else [trials]
    train_path = run.join(folder, "train.npz")
    trials_path = run.join(folder, "trials.npz")
    if run.stage_done(folder):
        names, X, speakers = [], None, []
        if os.path.exists(train_path):
            names, X, speakers = load_embeddings(train_path, with_speakers=True, multi_identity=True)
        trial_names, trial_X = load_embeddings(trials_path, multi_identity=True)
        return list(names), X, list(speakers), list(trial_names), trial_X
    run.makedirs(folder)
    subset = train.select(select_per_speaker(train, train_per_speaker, seed))
    names, speakers, X = subset.relative_paths(), list(subset.speakers), None
    if len(subset):
        print(f"Embedding {len(subset)} training utterances (back-end training data)...")
        X = embed_files(embedder, subset.paths, sample_rate=sample_rate, min_samples=min_samples)
        save_embeddings(train_path, names, X, speakers)
    trial_names, trial_paths = _union(trial_lists)
    print(f"Embedding {len(trial_names)} evaluation utterances...")
    trial_X = embed_files(embedder, trial_paths, sample_rate=sample_rate, min_samples=min_samples)
    save_embeddings(trials_path, trial_names, trial_X)
    run.mark_stage_done(folder)
    return names, X, speakers, trial_names, trial_X


def trial_indices(trials, trial_names):
    """`(enroll_index, test_index)` of each trial of `trials` into the rows of `trial_names`."""
    position = {name: i for i, name in enumerate(trial_names)}
    missing = sorted(set(trials.utterances) - set(position))
    if missing:
        raise ValueError(
            f"{len(missing)} trial utterance(s) have no embedding (e.g. {missing[0]}); embed the "
            "trial lists again."
        )
    enroll = np.array([position[n] for n in trials.enroll], dtype=np.int64)
    test = np.array([position[n] for n in trials.test], dtype=np.int64)
    return enroll, test


def backend_table(
    run, embeddings, trials, backends, settings=None, seed=0, verbose=0, directory=None,
    fitted=None, quiet=False,
):
    """Fits (or reuses) and scores every back-end on one trial list; saves the table and DET plot.

    Args:
        run: the `Run`; results go to `<run>/results/` (or `directory`).
        embeddings: the tuple returned by `extract_embeddings`.
        trials: `keras_spk.data.Trials`.
        backends: back-end names (`keras_spk.scoring.BACKENDS`), in table order.
        settings: keyword settings of the back-ends (see
            `keras_spk.scoring.evaluate_backends`).
        seed: int.
        verbose: int, training output of the DNN back-ends.
        directory: where the table goes (default `<run>/results/`).
        fitted: optional dict name -> back-end fitted already (on another
            trial list of the run): scored, not fitted again.
        quiet: do not print the table.

    The fitted back-ends are saved beside the table as
    `backend_<name>.npz` (`keras_spk.scoring.load_backend`), to score
    other trials with `tools/score.py` or in Python.

    Returns:
        `(rows, fitted)`: the table's rows (list of dicts) and the fitted
        back-ends (dict name -> back-end).
    """
    from keras_spk import metrics
    from keras_spk.scoring import evaluate_backends
    from keras_spk.scoring import format_table
    from keras_spk.scoring.backends import resolve_settings
    from keras_spk.scoring import save_backend
    from keras_spk.scoring import score_trials
    from keras_spk.scoring.backends import system_label
    from keras_spk.scoring import write_results

    _, X, speakers, trial_names, trial_X = embeddings
    enroll, test = trial_indices(trials, trial_names)
    labels = np.asarray(trials.labels)
    if fitted is None:
        result = evaluate_backends(
            backends,
            X,
            np.asarray(speakers) if X is not None else None,
            trial_X,
            enroll,
            test,
            labels,
            settings=settings,
            seed=seed,
            verbose=verbose,
        )
        rows, scores, fitted = result.rows, result.scores, result.backends
    else:
        rows, scores = [], {}
        resolved = resolve_settings(settings)
        for name in backends:
            scores[name] = score_trials(name, fitted[name], trial_X, enroll, test)
            rows.append(
                {
                    "backend": name,
                    "system": system_label(name, resolved),
                    **metrics.verification_metrics(scores[name], labels, p_targets=(0.01, 0.05)),
                    "n_trials": int(labels.shape[0]),
                }
            )
    results = directory or run.makedirs("results")
    import keras

    metadata = {"keras_backend": keras.backend.backend(), "run": os.path.abspath(run.path)}
    write_results(rows, scores, labels, results, metadata=metadata)
    for name, backend in fitted.items():
        save_backend(backend, os.path.join(results, f"backend_{name}.npz"))
    if not quiet:
        print("\n" + format_table(rows))
    return rows, fitted


def save_embedder(run, embedder, filename="embedder.keras"):
    """Saves `embedder` as `<run>/<filename>` (written under a temporary name, then renamed)."""
    path = run.join(filename)
    temporary = run.join(f".tmp-{os.getpid()}-{filename}")
    try:
        embedder.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def export_embedder(run, embedder, version=1):
    """The embedder as `<run>/embedder.keras` and a SavedModel in `<run>/export/<version>/`.

    Under TensorFlow the SavedModel is written in this process; under any
    other backend `embedder.keras` is re-loaded under TensorFlow in a
    subprocess and exported there (`keras_spk.export.export_from_model_file`).
    An existing version folder is replaced (a resumed run re-exports).

    Returns:
        `(keras_path, saved_model_path)`.
    """
    import keras

    from keras_spk import export

    keras_path = save_embedder(run, embedder)
    target = run.join("export", str(version))
    if keras.backend.backend() == "tensorflow":
        export.export_saved_model(embedder, target, overwrite=True)
    else:
        export.export_from_model_file(keras_path, target, overwrite=True)
    return keras_path, target


# `evaluation` config keys read here; every other key is a back-end setting
# (`keras_spk.scoring.evaluate_backends`).
EVALUATION_KEYS = (
    "protocols",
    "reference",
    "reference_mel_bins",
    "backends",
    "train_utterances_per_speaker",
    "verbose",
    "enroll_durations",
    "test_durations",
    "tsne_speakers",
    "multi_crop_num_crops",
    "multi_crop_seconds",
    "multi_crop_metric",
    "multi_crop_reduce",
)


def backend_settings(evaluation):
    """The back-end settings of an `evaluation` config section (the keys not in `EVALUATION_KEYS`)."""
    return {k: v for k, v in evaluation.items() if k not in EVALUATION_KEYS}


# === What the `evaluation` and `export` keys may be ===


def _backend_names():
    from keras_spk.scoring.backends import BACKENDS

    return sorted(BACKENDS)


def _learns(name):
    from keras_spk.scoring.backends import BACKENDS

    return BACKENDS[name].learns if name in BACKENDS else None


def _pair_classifiers():
    from keras_spk.scoring.backends import PAIR_CLASSIFIERS

    return list(PAIR_CLASSIFIERS)


def _per_speaker_test(value, config):
    if value is not None and not (int_range(min=0).problem(value, config) is None):
        return False
    backends = get_key(config, "evaluation.backends") if has_key(config, "evaluation.backends") else []
    backends = backends if isinstance(backends, list) else []
    learning = [b for b in backends if isinstance(b, str) and _learns(b) not in (None, "nothing")]
    if value == 0 and learning:
        return (
            f"Back-end(s) {', '.join(learning)} learn from training embeddings: use null (every "
            "utterance) or a positive number, or drop them from evaluation.backends."
        )
    lda = [b for b in backends if b in ("lda", "lda_plda")]
    if value == 1 and lda:
        return (
            f"{', '.join(lda)} need(s) several utterances of each speaker (LDA estimates "
            "within-speaker variability): use null (every utterance) or a number >= 2."
        )
    return True


def _embedding_dim(config):
    if has_key(config, "model.embedding_dim"):
        dim = get_key(config, "model.embedding_dim")
        return dim if isinstance(dim, int) and not isinstance(dim, bool) else None
    return None


def duration_list(min_samples=1):
    """The constraint of `evaluation.enroll_durations` / `test_durations`.

    A list (empty: no duration table) of distinct durations in seconds,
    `null` or `"full"` for the whole utterance; each duration must keep at
    least `min_samples` samples at `data.sample_rate` (an int, or a
    callable `config -> int`, e.g. a recipe's model minimum).
    """
    from keras_spk.evaluation import durations

    def shortest(config):
        samples = min_samples(config) if callable(min_samples) else min_samples
        rate = get_key(config, "data.sample_rate")
        return samples, rate, samples / rate

    def test(value, config):
        if not isinstance(value, list):
            return False
        samples, rate, seconds = shortest(config)
        for entry in value:
            parsed = durations._as_seconds(entry)
            if parsed is False:
                return f"{entry!r} is not a duration."
            if parsed is not None and round(parsed * rate) < samples:
                return f"{entry!r} s is {round(parsed * rate)} samples at {rate} Hz, fewer than {samples}."
        labels = [durations.duration_label(durations._as_seconds(entry)) for entry in value]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            return f"{', '.join(repeated)} appear(s) more than once."
        return True

    def describe(config):
        samples, rate, seconds = shortest(config)
        return (
            "a list (empty: no duration table) of distinct durations in seconds, each at least "
            f"{seconds:.4g} ({samples} samples at {rate} Hz), or null (or 'full') for the whole utterance"
        )

    return Constraint(test, describe, fix="For example [1, 2, 5, null], or [] for none.")


def crop_seconds(min_samples=1):
    """The constraint of `evaluation.multi_crop_seconds`: a crop length the embedder can embed.

    A number of seconds whose crop, `round(seconds * data.sample_rate)`
    samples, holds at least `min_samples` samples (an int, or a callable
    `config -> int`, e.g. a recipe's model minimum, as for `duration_list`).
    """

    def shortest(config):
        samples = min_samples(config) if callable(min_samples) else min_samples
        return samples, get_key(config, "data.sample_rate")

    def test(value, config):
        if float_range(min=0, include_min=False).problem(value, config) is not None:
            return False
        samples, rate = shortest(config)
        if round(value * rate) < samples:
            return (
                f"{value!r} s is {round(value * rate)} samples at {rate} Hz, fewer than the {samples} "
                "the embedder needs."
            )
        return True

    def describe(config):
        samples, rate = shortest(config)
        return f"a crop length in seconds of at least {samples / rate:.4g} ({samples} samples at {rate} Hz)"

    return Constraint(test, describe)


def _multi_crop_choices(name):
    def names():
        from keras_spk.scoring import multi_crop

        return list(getattr(multi_crop, name))

    return names


_optional_positive_int = int_range(min=1, allow_none=True)
_optional_learning_rate = float_range(min=0, include_min=False, allow_none=True)

# The `evaluation` and `export` keys every recipe shares (`recipe_constraints`).
CONSTRAINTS = {
    "evaluation.backends": list_of(
        choice(_backend_names), min_length=1, unique=True, noun="back-end names"
    ),
    "evaluation.train_utterances_per_speaker": Constraint(
        _per_speaker_test, "null (every utterance) or an int >= 0"
    ),
    "evaluation.verbose": choice([0, 1, 2]),
    "evaluation.reference": choice([True, False]),
    "evaluation.enroll_durations": duration_list(),
    "evaluation.test_durations": duration_list(),
    "evaluation.tsne_speakers": int_range(min=1),
    "evaluation.multi_crop_num_crops": int_range(min=1),
    "evaluation.multi_crop_seconds": crop_seconds(),
    "evaluation.multi_crop_metric": choice(_multi_crop_choices("METRICS")),
    "evaluation.multi_crop_reduce": list_of(
        choice(_multi_crop_choices("REDUCTIONS")), min_length=1, unique=True, noun="reductions"
    ),
    "evaluation.mixture_trials": int_range(min=1),
    "evaluation.mixture_seconds": crop_seconds(),
    "evaluation.lda_dim": int_range(min=1, max=_embedding_dim, allow_none=True),
    "evaluation.pair_classifier": choice(_pair_classifiers),
    "evaluation.n_pairs": int_range(min=2),
    "evaluation.dnn_hidden_units": list_of(
        int_range(min=1), min_length=1, allow_none=True, noun="layer sizes"
    ),
    "evaluation.dnn_epochs": _optional_positive_int,
    "evaluation.dnn_batch_size": _optional_positive_int,
    "evaluation.dnn_learning_rate": _optional_learning_rate,
    "evaluation.dcae_dim": _optional_positive_int,
    "evaluation.dcae_hidden_units": list_of(int_range(min=1), allow_none=True, noun="layer sizes"),
    "evaluation.dcae_epochs": _optional_positive_int,
    "evaluation.dcae_batch_size": _optional_positive_int,
    "evaluation.dcae_learning_rate": _optional_learning_rate,
    "evaluation.separation_source": choice(["eval_speakers", "wsj0_2mix"]),
    "evaluation.separation_subset": choice(["tr", "cv", "tt"]),
    "evaluation.separation_mixtures": int_range(min=1, allow_none=True),
    "evaluation.separation_seconds": float_range(
        min=0.25, fix="PESQ needs at least 0.25 s of speech; for example 1.0."
    ),
    "evaluation.separation_enrolment_seconds": float_range(
        min=0, include_min=False, allow_none=True
    ),
    "evaluation.separation_pesq": choice([True, False]),
    "export.version": int_range(min=0),
}
