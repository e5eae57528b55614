"""Evaluation protocols chosen in config, run after training, each resumable.

`evaluation.protocols` lists what a run reports, in order:

- `utterance`: whole-utterance embeddings of every trial list (the union
  embedded once), the back-end table (`evaluation.backends`: cosine, PLDA,
  LDA/PLDA, pair classifiers, ...), one column group per trial list, and a
  trivial reference row from the same data (`evaluation.reference`: the
  mean and standard deviation of log-mel frames, LDA-projected,
  cosine-scored), so a reader sees what the trained system adds;
- `durations`: the duration-limited table of the first trial list
  (`keras_spk.evaluation.durations`; test and enrolment utterances cut by
  the energy VAD to `evaluation.test_durations` / `enroll_durations` of
  speech), reusing the full-length embeddings of `utterance`.

A protocol is a function `protocol(evaluation) -> rows` registered with
`register_protocol(name, needs_trials=...)`; it reads the run, the embedder
and the data from its `Evaluation` argument and writes its files through
`keras_spk.utils.files.write_result_files` (or a writer built on it) into
`<run>/results/`. Each finished protocol is recorded in the run's state with
its rows, so a resumed run does not compute it again. A recipe adds its own
protocols to the registry the same way.
"""

import dataclasses
import json
import os

from keras_spk.recipe.run import RunError
from keras_spk.utils.files import atomic_write_json


@dataclasses.dataclass
class ProtocolSpec:
    """A registered protocol: its function, and whether it reads trial lists."""

    function: object
    needs_trials: bool
    description: str


PROTOCOLS = {}


def register_protocol(name, needs_trials=True, description=""):
    """Decorator registering `function(evaluation) -> rows` as protocol `name`."""

    def register(function):
        PROTOCOLS[name] = ProtocolSpec(function, needs_trials, description or (function.__doc__ or "").split("\n")[0])
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
    """

    def __init__(self, run, embedder, data, min_samples=1):
        self.run = run
        self.config = run.config
        self.embedder = embedder
        self.data = data
        self.min_samples = min_samples
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


def evaluate_and_export(run, embedder, data, min_samples=1):
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

    Returns:
        `{protocol name: rows}`.
    """
    from keras_spk.recipe.evaluation import export_embedder
    from keras_spk.recipe.evaluation import save_embedder

    results = run_protocols(Evaluation(run, embedder, data, min_samples))
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
