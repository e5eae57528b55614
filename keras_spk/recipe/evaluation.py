"""A recipe's last steps: embeddings, the back-end table, the saved and exported embedder."""

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


def extract_embeddings(
    run, embedder, train, trials, sample_rate, train_per_speaker=None, seed=0, min_samples=1
):
    """Embeds the back-end training utterances and every trial utterance, once.

    Writes `<run>/embeddings/train.npz` (names relative to the training
    folder, with speakers) and `<run>/embeddings/trials.npz` (names as in
    the trial list), the format of `keras_spk.scoring.save_embeddings`
    that `tools/score.py` reads. A resumed run whose embedding stage
    finished reads them back instead.

    Args:
        run: the `Run`.
        embedder: waveforms `[1, samples]` -> embeddings `[1, dim]`.
        train: `keras_spk.data.UtteranceList` of the training data.
        trials: `keras_spk.data.Trials` of the evaluation.
        sample_rate: int.
        train_per_speaker: embed at most this many utterances per training
            speaker for the back-ends (`None`: all; `0`: none, when only
            back-ends that learn nothing are asked for).
        seed: int, which utterances when subsampling.
        min_samples: int, the shortest utterance the embedder accepts; a
            shorter file is an error naming it.

    Returns:
        `(train_names, train_X, train_speakers, trial_names, trial_X)`.
    """
    from keras_spk.inference import embed_files
    from keras_spk.scoring import load_embeddings
    from keras_spk.scoring import save_embeddings

    train_path = run.join("embeddings", "train.npz")
    trials_path = run.join("embeddings", "trials.npz")
    if run.stage_done("embeddings"):
        names, X, speakers = [], None, []
        if os.path.exists(train_path):
            names, X, speakers = load_embeddings(train_path, with_speakers=True)
        trial_names, trial_X = load_embeddings(trials_path)
        return list(names), X, list(speakers), list(trial_names), trial_X
    run.makedirs("embeddings")
    subset = train.select(select_per_speaker(train, train_per_speaker, seed))
    names, speakers, X = subset.relative_paths(), list(subset.speakers), None
    if len(subset):
        print(f"Embedding {len(subset)} training utterances (back-end training data)...")
        X = embed_files(embedder, subset.paths, sample_rate=sample_rate, min_samples=min_samples)
        save_embeddings(train_path, names, X, speakers)
    print(f"Embedding {len(trials.utterances)} evaluation utterances...")
    trial_X = embed_files(embedder, trials.paths, sample_rate=sample_rate, min_samples=min_samples)
    trial_names = list(trials.utterances)
    save_embeddings(trials_path, trial_names, trial_X)
    run.mark_stage_done("embeddings")
    return names, X, speakers, trial_names, trial_X


def backend_table(run, embeddings, trials, backends, settings=None, seed=0, verbose=0):
    """Fits and scores every back-end; prints and saves the table and DET plot.

    Args:
        run: the `Run`; results go to `<run>/results/`.
        embeddings: the tuple returned by `extract_embeddings`.
        trials: `keras_spk.data.Trials`.
        backends: back-end names (`keras_spk.scoring.BACKENDS`), in table order.
        settings: keyword settings of the back-ends (see
            `keras_spk.scoring.evaluate_backends`).
        seed: int.
        verbose: int, training output of the DNN back-ends.

    The fitted back-ends are saved beside the table as
    `results/backend_<name>.npz` (`keras_spk.scoring.load_backend`), to
    score other trials with `tools/score.py` or in Python.

    Returns:
        The table's rows (list of dicts).
    """
    from keras_spk.scoring import evaluate_backends
    from keras_spk.scoring import format_table
    from keras_spk.scoring import save_backend
    from keras_spk.scoring import write_results

    _, X, speakers, trial_names, trial_X = embeddings
    enroll, test = trials.indices()
    result = evaluate_backends(
        backends,
        X,
        np.asarray(speakers) if X is not None else None,
        trial_X,
        enroll,
        test,
        np.asarray(trials.labels),
        settings=settings,
        seed=seed,
        verbose=verbose,
    )
    results = run.makedirs("results")
    import keras

    metadata = {"keras_backend": keras.backend.backend(), "run": os.path.abspath(run.path)}
    write_results(result.rows, result.scores, np.asarray(trials.labels), results, metadata=metadata)
    for name, backend in result.backends.items():
        save_backend(backend, os.path.join(results, f"backend_{name}.npz"))
    print("\n" + format_table(result.rows))
    return result.rows


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
    "backends",
    "train_utterances_per_speaker",
    "verbose",
    "enroll_durations",
    "test_durations",
)


def backend_settings(evaluation):
    """The back-end settings of an `evaluation` config section (the keys not in `EVALUATION_KEYS`)."""
    return {k: v for k, v in evaluation.items() if k not in EVALUATION_KEYS}


def evaluate_and_export(run, embedder, data, min_samples=1):
    """A recipe's last steps, after training: embeddings, tables, export; then the run is finished.

    Reads the run config's sections:
    - `evaluation`: `backends` (table order), `train_utterances_per_speaker`
      (`null`: all; `0`: none, for back-ends that learn nothing), `verbose`,
      optionally `enroll_durations` and `test_durations` (the
      duration-limited table, `keras_spk.recipe.durations`; omitted or
      empty: not run), and the back-end settings;
    - `export`: `enabled`, `version`;
    - `data.sample_rate`, `seed`.

    Args:
        run: the `Run`.
        embedder: the trained embedder (waveforms -> embeddings).
        data: the run's `RecipeData`.
        min_samples: int, the shortest utterance the embedder accepts.

    Returns:
        The back-end table's rows.
    """
    config = run.config
    evaluation = config["evaluation"]
    sample_rate = config["data"]["sample_rate"]
    per_speaker = evaluation["train_utterances_per_speaker"]
    embeddings = extract_embeddings(
        run,
        embedder,
        data.train,
        data.trials,
        sample_rate,
        train_per_speaker=per_speaker,
        seed=config["seed"],
        min_samples=min_samples,
    )
    rows = backend_table(
        run,
        embeddings,
        data.trials,
        evaluation["backends"],
        settings=backend_settings(evaluation),
        seed=config["seed"],
        verbose=evaluation["verbose"],
    )
    if evaluation.get("test_durations"):
        from keras_spk.evaluation import durations

        duration_rows = durations.evaluate_durations(
            embedder,
            data.trials,
            enroll_durations=evaluation.get("enroll_durations") or (None,),
            test_durations=evaluation["test_durations"],
            sample_rate=sample_rate,
            min_samples=min_samples,
            progress=True,
        )
        durations.write_duration_results(duration_rows, run.makedirs("results"))
        print("\n" + durations.format_duration_table(duration_rows))
    if config["export"]["enabled"]:
        keras_path, saved_model = export_embedder(run, embedder, config["export"]["version"])
        print(f"embedder: {keras_path}\nSavedModel for TF Serving: {saved_model}")
    else:
        save_embedder(run, embedder)
    run.mark_finished()
    return rows


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
    "evaluation.enroll_durations": duration_list(),
    "evaluation.test_durations": duration_list(),
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
    "export.version": int_range(min=0),
}
