"""Evaluation protocols chosen in config, run after training, each resumable.

`evaluation.protocols` lists what a run reports, in order:

- `utterance`: whole-utterance embeddings of every trial list (the union
  embedded once), the back-end table (`evaluation.backends`: cosine, PLDA,
  LDA/PLDA, pair classifiers, ...), one column group per trial list, and a
  trivial reference row from the same data (`evaluation.reference`: the
  mean and standard deviation of log-mel frames, LDA-projected,
  cosine-scored), so a reader sees what the trained system adds;
- `multi_crop`: the multi-crop test of every trial list (Xu et al. 2020,
  section 4.6, after Chung et al. 2018): `evaluation.multi_crop_num_crops`
  crops of `multi_crop_seconds` per utterance (default ten of 3 s, spread
  evenly; `keras_spk.inference.embed_crops`), each trial scored by minus
  the mean `multi_crop_metric` distance of its crop pairs and of its mean
  crops (`multi_crop_reduce`; `keras_spk.scoring.multi_crop_scores`), in
  `results/multi_crop_table.txt`; recipes whose config lacks these keys get
  the defaults;
- `durations`: the duration-limited table of the first trial list
  (`keras_spk.evaluation.durations`; test and enrolment utterances cut by
  the energy VAD to `evaluation.test_durations` / `enroll_durations` of
  speech), reusing the full-length embeddings of `utterance`;
- `speaker_centroids`: the training speakers' centroids and how similar
  they are to each other (Heo et al. 2019, Fig. 2), with a t-SNE of a few
  speakers, their centroids and the model's speaker bases (Fig. 1); a run
  of several systems draws every system's histogram on one plot.

A protocol is a function `protocol(evaluation) -> rows` registered with
`register_protocol(name, needs_trials=...)`; it reads the run, the embedder
and the data from its `Evaluation` argument and writes its files through
`keras_spk.utils.files.write_result_files` (or a writer built on it) into
`<run>/results/`. Each finished protocol is recorded in the run's state with
its rows, so a resumed run does not compute it again. A recipe adds its own
protocols to the registry the same way. A protocol may also register a
`merge(run, systems)` that, after every system of a `systems:` run has
finished, combines their results in `<run>/results/` (`systems` is a list of
`(name, system_run, rows)`).
"""

import dataclasses
import json
import os

import numpy as np

from keras_spk.recipe.run import RunError
from keras_spk.utils.files import atomic_write_json


@dataclasses.dataclass
class ProtocolSpec:
    """A registered protocol: its function, and whether it reads trial lists."""

    function: object
    needs_trials: bool
    description: str
    merge: object = None


PROTOCOLS = {}


def register_protocol(name, needs_trials=True, description="", merge=None):
    """Decorator registering `function(evaluation) -> rows` as protocol `name`.

    Args:
        name: the name `evaluation.protocols` lists.
        needs_trials: whether the protocol reads trial lists (a run without
            `--trials` is refused when a listed protocol needs them).
        description: one line for listings (default: the docstring's first).
        merge: optional `merge(run, systems)`, run once after all systems
            of a `systems:` run, with `systems` a list of
            `(name, system_run, rows)`.
    """

    def register(function):
        PROTOCOLS[name] = ProtocolSpec(
            function, needs_trials, description or (function.__doc__ or "").split("\n")[0], merge
        )
        return function

    return register


def protocol_names():
    return sorted(PROTOCOLS)


def needs_trials(config):
    """Whether any protocol of `config["evaluation"]["protocols"]` reads trial lists."""
    names = config.get("evaluation", {}).get("protocols", [])
    return any(PROTOCOLS[name].needs_trials for name in names if name in PROTOCOLS)


class Evaluation:
    """What a protocol reads: the run, its embedder and data, and the embeddings, made once.

    Attributes:
        run: the (system's) `Run`.
        config: its config.
        embedder: the trained embedder (waveforms -> embeddings).
        data: the run's `RecipeData`.
        min_samples: the shortest input the embedder accepts.
        context: the `StageContext` of the training (its `models` and
            `shared`), or None.
    """

    def __init__(self, run, embedder, data, min_samples=1, context=None):
        self.run = run
        self.config = run.config
        self.embedder = embedder
        self.data = data
        self.min_samples = min_samples
        self.context = context
        self._embeddings = {}

    @property
    def settings(self):
        return self.config["evaluation"]

    def embeddings(self, embedder=None, folder="embeddings"):
        """Training (back-end) and trial-list embeddings of `embedder` (default: the run's), once.

        See `keras_spk.recipe.extract_embeddings`: saved in `<run>/<folder>/`,
        read back by a resumed run.
        """
        from keras_spk.recipe.evaluation import extract_embeddings

        if folder not in self._embeddings:
            self._embeddings[folder] = extract_embeddings(
                self.run,
                self.embedder if embedder is None else embedder,
                self.data.train,
                list(self.data.trial_lists.values()),
                self.config["data"]["sample_rate"],
                train_per_speaker=self.settings["train_utterances_per_speaker"],
                seed=self.config["seed"],
                min_samples=self.min_samples,
                folder=folder,
            )
        return self._embeddings[folder]


def samples_of(evaluation, key, seconds, noun):
    """`seconds` of audio at `data.sample_rate`, in samples, no fewer than the embedder needs.

    Args:
        evaluation: the protocol's `Evaluation` (its `config` and `min_samples`).
        key: the `evaluation` key the length came from (for the message).
        seconds: the length in seconds.
        noun: what the samples are cut into, plural (e.g. "crops").

    Raises:
        RunError: fewer samples than `evaluation.min_samples`, naming the key and a fix.
    """
    rate = evaluation.config["data"]["sample_rate"]
    samples = int(round(seconds * rate))
    if samples < evaluation.min_samples:
        shortest = evaluation.min_samples / rate
        raise RunError(
            f"evaluation.{key}={seconds:g} gives {noun} of {samples} samples at {rate} Hz, "
            f"shorter than the {evaluation.min_samples} samples ({shortest:.4g} s) the embedder "
            f"needs; use longer {noun}, e.g. --evaluation.{key}={max(seconds, 3.0):g}."
        )
    return samples


def _rows_path(run, name):
    return run.join("results", "protocols", f"{name}.json")


def finished_rows(run):
    """`{protocol: rows}` of the protocols a (system's) run finished, read back from its results."""
    rows = {}
    for name in run.config["evaluation"]["protocols"]:
        path = _rows_path(run, name)
        if run.stage_done(f"evaluation/{name}") and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                rows[name] = json.load(f)["rows"]
    return rows


def run_protocols(evaluation):
    """Runs every protocol of `evaluation.protocols` in order; returns `{name: rows}`.

    A protocol recorded as finished in the run's state is not run again:
    its rows are read back.
    """
    run = evaluation.run
    results = {}
    for name in evaluation.settings["protocols"]:
        if name not in PROTOCOLS:
            raise RunError(f"Unknown evaluation protocol {name!r}; registered: {', '.join(protocol_names())}.")
        step = f"evaluation/{name}"
        path = _rows_path(run, name)
        if run.stage_done(step) and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                results[name] = json.load(f)["rows"]
            print(f"[evaluation] {name}: finished earlier; its results are in {run.join('results')}.")
            continue
        rows = PROTOCOLS[name].function(evaluation)
        run.makedirs("results", "protocols")
        atomic_write_json(path, {"protocol": name, "rows": rows})
        run.mark_stage_done(step)
        results[name] = rows
    return results


def merge_protocols(run, systems):
    """Runs the `merge` of every protocol the systems ran, once all have finished.

    Args:
        run: the top-level `Run` (results go to `<run>/results/`).
        systems: list of `(name, system_run, {protocol: rows})`.
    """
    names = []
    for _, system_run, _ in systems:
        names.extend(n for n in system_run.config["evaluation"]["protocols"] if n not in names)
    for name in names:
        spec = PROTOCOLS.get(name)
        if spec is None or spec.merge is None:
            continue
        spec.merge(run, [(system, system_run, rows.get(name, [])) for system, system_run, rows in systems])


def evaluate_and_export(run, embedder, data, min_samples=1, context=None):
    """A recipe's last steps, after training: the protocols, then export; the run is finished.

    Reads the run config's sections:
    - `evaluation`: `protocols` (in order) and their settings;
    - `export`: `enabled`, `version`;
    - `data.sample_rate`, `seed`.

    Args:
        run: the `Run`.
        embedder: the trained embedder (waveforms -> embeddings).
        data: the run's `RecipeData`.
        min_samples: int, the shortest utterance the embedder accepts.
        context: the training's `StageContext`, for protocols that read the
            trained models (e.g. `speaker_centroids`'s speaker bases).

    Returns:
        `{protocol name: rows}`.
    """
    from keras_spk.recipe.evaluation import export_embedder
    from keras_spk.recipe.evaluation import save_embedder

    results = run_protocols(Evaluation(run, embedder, data, min_samples, context))
    config = run.config
    if config["export"]["enabled"]:
        keras_path, saved_model = export_embedder(run, embedder, config["export"]["version"])
        print(f"embedder: {keras_path}\nSavedModel for TF Serving: {saved_model}")
    else:
        save_embedder(run, embedder)
    run.mark_finished()
    return results


# === The protocols every recipe has ===

REFERENCE_BACKEND = "reference"
REFERENCE_LABEL = "log-mel mean+std, LDA, cosine (no training)"


def _reference_rows(evaluation):
    """The trivial reference system on every trial list: feature statistics, LDA, cosine.

    Embeds the same training and trial utterances as the trained system
    with `keras_spk.models.feature_statistics_embedder` (mean and standard
    deviation of each log-mel band over the utterance), fits LDA on the
    training speakers and scores by cosine: what an embedding that was
    never trained on speakers gives on the same data.
    """
    from keras_spk.models import feature_statistics_embedder

    settings = evaluation.settings
    config = evaluation.config
    reference = feature_statistics_embedder(
        sample_rate=config["data"]["sample_rate"], num_mel_bins=settings["reference_mel_bins"]
    )
    embeddings = evaluation.embeddings(reference, folder="embeddings/reference")
    _, X, speakers, _, _ = embeddings
    if X is None:
        print(
            "[evaluation] no reference row: it needs training embeddings "
            "(evaluation.train_utterances_per_speaker is 0)."
        )
        return []
    dim = min(X.shape[1], len(set(speakers)) - 1, settings.get("lda_dim") or X.shape[1])
    rows = _score_trial_lists(
        evaluation, embeddings, ["lda"], {"lda_dim": int(dim)}, ("results", "reference"), verbose=0
    )
    for row in rows:
        row.update(backend=REFERENCE_BACKEND, system=REFERENCE_LABEL)
    return rows


def _score_trial_lists(evaluation, embeddings, backends, settings, folder, verbose):
    """The back-ends fitted once and scored on every trial list; rows tagged with `trial_list`.

    Each list's table, DET plot and fitted back-ends go to `<run>/<folder>/`
    (`<folder>/<list>/` with several lists).
    """
    from keras_spk.recipe.evaluation import backend_table

    trial_lists = evaluation.data.trial_lists
    several = len(trial_lists) > 1
    rows, fitted = [], None
    for list_name, trials in trial_lists.items():
        list_rows, fitted = backend_table(
            evaluation.run,
            embeddings,
            trials,
            backends,
            settings=settings,
            seed=evaluation.config["seed"],
            verbose=verbose,
            directory=evaluation.run.makedirs(*folder, *([list_name] if several else [])),
            fitted=fitted,
            quiet=True,
        )
        for row in list_rows:
            row["trial_list"] = list_name
        rows.extend(list_rows)
    return rows


@register_protocol("utterance", needs_trials=True)
def utterance_protocol(evaluation):
    """Whole-utterance embeddings scored by every back-end, on every trial list, with a reference row."""
    from keras_spk.recipe.evaluation import backend_settings
    from keras_spk.scoring import format_table
    from keras_spk.utils.files import write_result_files

    settings = evaluation.settings
    rows = _score_trial_lists(
        evaluation,
        evaluation.embeddings(),
        settings["backends"],
        backend_settings(settings),
        ("results",),
        verbose=settings["verbose"],
    )
    if settings["reference"]:
        rows.extend(_reference_rows(evaluation))
    import keras

    metadata = {"keras_backend": keras.backend.backend(), "run": os.path.abspath(evaluation.run.path)}
    table = format_table(table_rows(rows))
    write_result_files(evaluation.run.makedirs("results"), table, rows, metadata=metadata)
    print("\n" + table)
    return rows


def table_rows(rows):
    """Rows as `format_table` shows them: without the list name when they are of one list."""
    if len({row.get("trial_list") for row in rows}) > 1:
        return rows
    return [{k: v for k, v in row.items() if k != "trial_list"} for row in rows]


@register_protocol("durations", needs_trials=True)
def durations_protocol(evaluation):
    """The duration-limited table of the first trial list (Jung et al., 2020, Tables 5-6)."""
    from keras_spk.evaluation import durations

    settings = evaluation.settings
    if not settings.get("test_durations"):
        return []  # no duration conditions asked for (evaluation.test_durations: [])
    config = evaluation.config
    trials = evaluation.data.trials
    _, _, _, trial_names, trial_X = evaluation.embeddings()
    position = {name: i for i, name in enumerate(trial_names)}
    full = {name: trial_X[position[name]] for name in trials.utterances}
    rows = durations.evaluate_durations(
        evaluation.embedder,
        trials,
        enroll_durations=settings.get("enroll_durations") or (None,),
        test_durations=settings["test_durations"],
        sample_rate=config["data"]["sample_rate"],
        min_samples=evaluation.min_samples,
        progress=True,
        full_embeddings=full,
    )
    durations.write_duration_results(rows, evaluation.run.makedirs("results"))
    print("\n" + durations.format_duration_table(rows))
    return rows


# === Multi-crop test (Chung et al. 2018; Xu et al. 2020, section 4.6) ===

CROPS_FILE = "crops.npz"
MULTI_CROP_TABLE = "multi_crop_table"
MULTI_CROP_RESULTS = "multi_crop_results"
# The protocol's `evaluation` keys and their values for a recipe whose config lacks them.
MULTI_CROP_DEFAULTS = {
    "multi_crop_num_crops": 10,
    "multi_crop_seconds": 3.0,
    "multi_crop_metric": "euclidean",
    "multi_crop_reduce": ["mean_distance", "mean_embedding"],
}


def multi_crop_settings(evaluation):
    """The multi-crop settings of a run: its `evaluation.multi_crop_*` keys, else the defaults.

    Returns:
        dict with `num_crops`, `crop_seconds`, `crop_samples` (the crop
        length at `data.sample_rate`), `metric` and `reduce` (a list).

    Raises:
        RunError: crops shorter than the embedder's shortest input
            (`evaluation.min_samples`).
    """
    settings = evaluation.settings
    values = {key: settings.get(key, default) for key, default in MULTI_CROP_DEFAULTS.items()}
    seconds = float(values["multi_crop_seconds"])
    crop_samples = samples_of(evaluation, "multi_crop_seconds", seconds, "crops")
    reduce = values["multi_crop_reduce"]
    return {
        "num_crops": int(values["multi_crop_num_crops"]),
        "crop_seconds": seconds,
        "crop_samples": crop_samples,
        "metric": values["multi_crop_metric"],
        "reduce": [reduce] if isinstance(reduce, str) else list(reduce),
    }


def crop_embeddings(run, embedder, trial_lists, num_crops, crop_samples, sample_rate, min_samples=1,
                    folder="embeddings"):
    """The crop embeddings of every trial utterance, made once and kept in `<run>/<folder>/crops.npz`.

    The union of the trial lists' utterances is embedded once
    (`keras_spk.inference.embed_crops`) and saved atomically with the
    settings it was made with. A resumed run reads the file back when its
    utterances and settings are the same; otherwise (e.g. a resumed run
    given another `evaluation.multi_crop_seconds`) it embeds them again.

    Args:
        run: the `Run`.
        embedder: waveforms `[batch, samples]` -> embeddings `[batch, dim]`.
        trial_lists: `keras_spk.data.Trials` objects (their names must
            resolve under the same folder).
        num_crops, crop_samples, sample_rate, min_samples: as for
            `embed_crops`.
        folder: the folder of the run the file goes to.

    Returns:
        `(names, crops)`: the sorted utterance names and float32 crop
        embeddings `[len(names), num_crops, dim]`.
    """
    from keras_spk.inference import embed_crops
    from keras_spk.recipe.evaluation import _union
    from keras_spk.utils.files import atomic_open

    names, paths = _union(list(trial_lists))
    path = run.join(folder, CROPS_FILE)
    made_with = {"num_crops": num_crops, "crop_samples": crop_samples, "sample_rate": sample_rate}
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as saved:
            same = saved["names"].tolist() == names and all(
                int(saved[key]) == value for key, value in made_with.items()
            )
            if same:
                print(f"[evaluation] multi_crop: crop embeddings read back from {path}.")
                return names, saved["crops"]
        print(f"[evaluation] multi_crop: {path} holds other utterances or settings; embedding again.")
    print(
        f"Embedding {num_crops} crops of {crop_samples} samples of each of {len(names)} "
        "evaluation utterances..."
    )
    crops = embed_crops(
        embedder, paths, num_crops=num_crops, crop_samples=crop_samples, sample_rate=sample_rate,
        min_samples=min_samples,
    )
    run.makedirs(folder)
    with atomic_open(path, "wb") as f:
        np.savez(f, names=np.array(names, dtype=str), crops=crops, **made_with)
    return names, crops


def _multi_crop_label(settings, reduce):
    crops = f"{settings['num_crops']} x {settings['crop_seconds']:g} s crops"
    if reduce == "mean_distance":
        pairs = settings["num_crops"] ** 2
        return f"{crops}, mean {settings['metric']} distance of {pairs} crop pair{'s' if pairs > 1 else ''}"
    return f"{crops}, {settings['metric']} distance of the mean crops"


def _write_multi_crop_results(run, rows, heading):
    import keras

    from keras_spk.scoring import format_table
    from keras_spk.utils.files import write_result_files

    table = format_table(table_rows(rows))
    metadata = {"keras_backend": keras.backend.backend(), "run": os.path.abspath(run.path)}
    write_result_files(
        run.makedirs("results"), table, rows, table_stem=MULTI_CROP_TABLE,
        results_stem=MULTI_CROP_RESULTS, metadata=metadata,
    )
    print(f"\n{heading}\n{table}")


@register_protocol(
    "multi_crop", needs_trials=True, merge=lambda run, systems: merge_multi_crop(run, systems)
)
def multi_crop_protocol(evaluation):
    """Crops of every trial utterance, each trial scored from its crop pairs (Xu et al. 2020, section 4.6)."""
    from keras_spk import metrics
    from keras_spk.recipe.evaluation import trial_indices
    from keras_spk.scoring.multi_crop import multi_crop_scores

    settings = multi_crop_settings(evaluation)
    trial_lists = evaluation.data.trial_lists
    names, crops = crop_embeddings(
        evaluation.run,
        evaluation.embedder,
        trial_lists.values(),
        settings["num_crops"],
        settings["crop_samples"],
        evaluation.config["data"]["sample_rate"],
        min_samples=evaluation.min_samples,
    )
    if crops.ndim != 3:
        raise RunError(
            f"The multi_crop protocol compares one embedding per crop, but the embedder gives "
            f"{crops.shape[2]} per input (crop embeddings of shape {crops.shape[1:]}); drop "
            "multi_crop from evaluation.protocols."
        )
    rows = []
    for list_name, trials in trial_lists.items():
        index = trial_indices(trials, names)
        labels = np.asarray(trials.labels)
        for reduce in settings["reduce"]:
            scores = multi_crop_scores(crops, crops, metric=settings["metric"], reduce=reduce, index=index)
            rows.append(
                {
                    "backend": reduce,
                    "system": _multi_crop_label(settings, reduce),
                    **metrics.verification_metrics(scores, labels, p_targets=(0.01, 0.05)),
                    "n_trials": int(labels.shape[0]),
                    "trial_list": list_name,
                    "metric": settings["metric"],
                    "num_crops": settings["num_crops"],
                    "crop_seconds": settings["crop_seconds"],
                }
            )
    _write_multi_crop_results(
        evaluation.run,
        rows,
        f"Multi-crop test ({settings['num_crops']} crops of {settings['crop_seconds']:g} s per utterance):",
    )
    return rows


def merge_multi_crop(run, systems):
    """Every system's multi-crop rows in one table, `<run>/results/multi_crop_table.txt`."""
    rows = [{"recipe_system": name, **row} for name, _, system_rows in systems for row in system_rows]
    if rows:
        _write_multi_crop_results(run, rows, f"Multi-crop test, all systems ({len(systems)}):")


# === Speaker centroids and bases (Heo et al. 2019, Figures 1-2) ===

CENTROIDS_FILE = "centroids.npz"
TSNE_FIGURE = "fig1_tsne.png"
CENTROID_FIGURE = "fig2_centroid_cosines.png"


def _speaker_bases(evaluation):
    """`{speaker: basis}` from the layer a recipe put in `context.shared["speaker_bases"]`, or None.

    The layer's `kernel` is `(dim, num_speakers)`, its columns in the
    order of the run's speaker map (the output layer of a classifier).
    """
    context = evaluation.context
    layer = None if context is None else context.shared.get("speaker_bases")
    if layer is None:
        return None
    import keras

    kernel = keras.ops.convert_to_numpy(layer.kernel)
    speakers = evaluation.data.speaker_map.speakers
    if kernel.ndim != 2 or kernel.shape[1] != len(speakers):
        raise RunError(
            f"The speaker-bases layer {layer.name!r} has a kernel of shape {kernel.shape}; expected "
            f"(embedding dim, {len(speakers)} training speakers)."
        )
    return {speaker: kernel[:, i] for i, speaker in enumerate(speakers)}


def _centroid_row(label, speakers, cosines, basis_cosines):
    row = {
        "system": label,
        "speakers": int(len(speakers)),
        "mean_centroid_cosine": float(np.mean(cosines)),
        "std_centroid_cosine": float(np.std(cosines)),
    }
    if basis_cosines is not None:
        row["mean_basis_cosine"] = float(np.mean(basis_cosines))
    return row


def _format_centroid_rows(rows):
    lines = [f"{'system':<32} {'speakers':>8} {'mean cos(c_i, c_j)':>19} {'std':>7} {'mean cos(W_i, W_j)':>19}"]
    for row in rows:
        basis = row.get("mean_basis_cosine")
        lines.append(
            f"{str(row.get('recipe_system') or row['system']):<32} {row['speakers']:>8} "
            f"{row['mean_centroid_cosine']:>19.4f} {row['std_centroid_cosine']:>7.4f} "
            f"{'-' if basis is None else f'{basis:.4f}':>19}"
        )
    return "\n".join(lines) + "\n"


@register_protocol("speaker_centroids", needs_trials=False, merge=lambda run, systems: merge_centroids(run, systems))
def speaker_centroids_protocol(evaluation):
    """Training speakers' centroids, their pairwise cosines (Fig. 2) and a t-SNE with the bases (Fig. 1)."""
    from keras_spk.evaluation import centroids

    settings = evaluation.settings
    _, X, speakers, _, _ = evaluation.embeddings()
    if X is None:
        raise RunError(
            "The speaker_centroids protocol needs training embeddings: set "
            "evaluation.train_utterances_per_speaker to null (every utterance) or a positive number."
        )
    labels, centres = centroids.speaker_centroids(X, np.asarray(speakers))
    cosines = centroids.impostor_cosines(centres)
    bases = _speaker_bases(evaluation)
    basis_cosines = None
    if bases is not None:
        basis_cosines = centroids.impostor_cosines(np.stack([bases[s] for s in labels]))
    folder = evaluation.run.makedirs("results")
    from keras_spk.utils.files import atomic_open

    with atomic_open(os.path.join(folder, CENTROIDS_FILE), "wb") as f:
        np.savez(
            f, speakers=labels, centroids=centres, cosines=cosines,
            **({} if bases is None else {"bases": np.stack([bases[s] for s in labels])}),
        )
    label = os.path.basename(os.path.normpath(evaluation.run.path))  # the system's name
    centroids.plot_centroid_cosines({label: cosines}, os.path.join(folder, CENTROID_FIGURE))
    centroids.plot_speaker_tsne(
        X, np.asarray(speakers), os.path.join(folder, TSNE_FIGURE), bases=bases,
        num_speakers=settings.get("tsne_speakers", 5), seed=evaluation.config["seed"],
        title=f"{label}: {settings.get('tsne_speakers', 5)} training speakers",
    )
    row = _centroid_row(label, labels, cosines, basis_cosines)
    print("\n" + _format_centroid_rows([row]) + f"figures: {folder}/{TSNE_FIGURE}, {CENTROID_FIGURE}")
    return [row]


def merge_centroids(run, systems):
    """Every system's centroid-cosine histogram on one plot (Fig. 2), and their table."""
    from keras_spk.evaluation import centroids
    from keras_spk.utils.files import atomic_write_text

    histograms, rows = {}, []
    for name, system_run, system_rows in systems:
        path = system_run.join("results", CENTROIDS_FILE)
        if not system_rows or not os.path.exists(path):
            continue
        with np.load(path) as saved:
            histograms[name] = saved["cosines"]
        rows.extend({"recipe_system": name, **row} for row in system_rows)
    if not histograms:
        return
    folder = run.makedirs("results")
    centroids.plot_centroid_cosines(histograms, os.path.join(folder, CENTROID_FIGURE))
    table = _format_centroid_rows(rows)
    atomic_write_text(os.path.join(folder, "centroids.txt"), table)
    print(f"\nTraining-speaker centroids (Fig. 2: {os.path.join(folder, CENTROID_FIGURE)}):\n{table}")

from keras_spk.recipe import mixture_protocols  # noqa: E402,F401  (registers mixture_verification)
from keras_spk.recipe import separation_protocols  # noqa: E402,F401  (registers separation)
