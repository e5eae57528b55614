"""The `mixture_verification` evaluation protocol (Han, Chung and Kang, 2020, section 4.1.2).

An embedder of two-speaker mixtures (`[batch, samples] -> [batch, K, dim]`)
scored on triples of mixtures A+B, A'+C, C'+D by the smallest distance
between identity pairs (`keras_spk.evaluation.mixtures`), in two
conditions:

- `seen`: the held-out utterances of the training speakers
  (`RecipeData.holdout`, `data.holdout_per_speaker >= 2`);
- `unseen`: the utterances of the evaluation folder (`--eval-data`, read in
  the layout `data.layout`), whose speakers must not be training speakers
  unless `data.allow_speaker_overlap`.

Each condition gives the rows `mixture` (the paper's number) and `clean`
(pairs of single-speaker segments of the same speakers, the same embedder),
and the same two rows for a trivial reference embedder
(`keras_spk.models.feature_statistics_embedder`, `evaluation.reference_mel_bins`
log-mel bands, one embedding per input) unless `evaluation.reference` is
false, so a reader can judge the numbers.

Settings (`evaluation.*`, with these defaults when a config lacks them):
`mixture_trials` (200 triples: 200 target and 200 non-target trials per
row) and `mixture_seconds` (3.0 s segments); the level of the second
speaker from `data.mixture.sir_db` (`[0, 0]`, equal RMS, when absent).

Files in `<run>/results/`: `mixture_verification_table.txt`,
`mixture_verification_results.{json,csv}` and the scores,
`mixture_verification_scores.npz`. A run of several systems also writes
all systems' rows into the top-level `<run>/results/mixture_verification_table.txt`.
"""

import os

import numpy as np

from keras_spk.recipe.protocols import register_protocol
from keras_spk.recipe.protocols import samples_of
from keras_spk.recipe.run import RunError

MIXTURE_TABLE = "mixture_verification_table"
MIXTURE_RESULTS = "mixture_verification_results"
MIXTURE_SCORES = "mixture_verification_scores.npz"
# The protocol's `evaluation` keys and their values for a recipe whose config lacks them.
MIXTURE_DEFAULTS = {"mixture_trials": 200, "mixture_seconds": 3.0}
# Waveforms per embedder call.
MIXTURE_BATCH_SIZE = 16


def mixture_settings(evaluation):
    """The mixture-verification settings of a run: its config keys, else the defaults.

    Returns:
        dict with `num_trials`, `seconds`, `segment_samples` (at
        `data.sample_rate`) and `sir_db` (`[lo, hi]`).

    Raises:
        RunError: segments shorter than the embedder's shortest input
            (`evaluation.min_samples`).
    """
    settings = evaluation.settings
    values = {key: settings.get(key, default) for key, default in MIXTURE_DEFAULTS.items()}
    seconds = float(values["mixture_seconds"])
    segment_samples = samples_of(evaluation, "mixture_seconds", seconds, "segments")
    mixture = evaluation.config["data"].get("mixture") or {}
    sir_db = mixture.get("sir_db", [0.0, 0.0])
    return {
        "num_trials": int(values["mixture_trials"]),
        "seconds": seconds,
        "segment_samples": segment_samples,
        "sir_db": [float(v) for v in sir_db],
    }


def _usable(utterances):
    """Why `utterances` cannot give triples (a sentence), or None when they can."""
    from keras_spk.evaluation.mixtures import mixture_triples

    if utterances is None or len(utterances) == 0:
        return "no utterances"
    try:
        mixture_triples(utterances.speakers, 1)
    except ValueError as error:
        return str(error)
    return None


def _unseen_utterances(evaluation):
    """The evaluation folder's utterances, checked against the training speakers; None without a folder."""
    data = evaluation.data
    if not data.eval_dir:
        return None
    try:
        utterances = data.eval_utterances()
    except RunError as error:
        raise RunError(f"mixture_verification, unseen speakers: {error}") from None
    return utterances


def _conditions(evaluation):
    """`[(condition, utterances)]` of the conditions the data allows; a note printed for the others."""
    data = evaluation.data
    conditions = []
    if data.holdout is None:
        print(
            "[evaluation] mixture_verification: no seen condition; it needs held-out utterances "
            "of the training speakers: set data.holdout_per_speaker >= 2."
        )
    else:
        problem = _usable(data.holdout)
        if problem is None:
            conditions.append(("seen", data.holdout))
        else:
            print(
                "[evaluation] mixture_verification: no seen condition from the held-out utterances "
                f"({problem}); it needs data.holdout_per_speaker >= 2 and at least 4 training speakers."
            )
    unseen = _unseen_utterances(evaluation)
    if unseen is None:
        print("[evaluation] mixture_verification: no unseen condition; there is no evaluation folder.")
    else:
        problem = _usable(unseen)
        if problem is None:
            conditions.append(("unseen", unseen))
        else:
            print(
                f"[evaluation] mixture_verification: no unseen condition from {data.eval_dir}: {problem}"
            )
    return conditions


def format_mixture_table(rows):
    """The rows as an aligned text table: condition, input, system, EER %, minDCF0.01, trials.

    A first column names the recipe system when the rows have `recipe_system`.
    """
    columns = []
    if rows and "recipe_system" in rows[0]:
        columns.append(("recipe system", lambda r: str(r["recipe_system"]), False))
    columns += [
        ("condition", lambda r: str(r["condition"]), False),
        ("input", lambda r: str(r["input"]), False),
        ("system", lambda r: str(r["system"]), False),
        ("EER %", lambda r: f"{100 * r['eer']:.2f}", True),
        ("minDCF0.01", lambda r: f"{r['min_dcf_0.01']:.4f}", True),
        ("trials", lambda r: f"{r['n_positive']} + {r['n_negative']}", True),
    ]
    cells = [[cell(row) for _, cell, _ in columns] for row in rows]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, (header, _, _) in enumerate(columns)]

    def line(values):
        parts = [v.rjust(w) if right else v.ljust(w) for v, w, (_, _, right) in zip(values, widths, columns)]
        return "  ".join(parts).rstrip()

    lines = [line([header for header, _, _ in columns]), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    return "\n".join(lines + [line(values) for values in cells])


def _write_mixture_results(run, rows, heading, metadata=None):
    import keras

    from keras_spk.utils.files import write_result_files

    table = format_mixture_table(rows)
    metadata = {
        "keras_backend": keras.backend.backend(),
        "run": os.path.abspath(run.path),
        **(metadata or {}),
    }
    write_result_files(
        run.makedirs("results"), table, rows, table_stem=MIXTURE_TABLE,
        results_stem=MIXTURE_RESULTS, metadata=metadata,
    )
    print(f"\n{heading}\n{table}")


@register_protocol(
    "mixture_verification",
    needs_trials=False,
    merge=lambda run, systems: merge_mixture_verification(run, systems),
)
def mixture_verification_protocol(evaluation):
    """EER on mixtures of two speakers, seen and unseen, with clean and reference rows (Han et al. 2020, 4.1.2)."""
    from keras_spk.evaluation.mixtures import mixture_verification
    from keras_spk.utils.files import atomic_open

    settings = mixture_settings(evaluation)
    config = evaluation.config
    rate = config["data"]["sample_rate"]
    reference = None
    if evaluation.settings.get("reference", True):
        from keras_spk.models import feature_statistics_embedder

        reference = feature_statistics_embedder(
            sample_rate=rate, num_mel_bins=evaluation.settings.get("reference_mel_bins", 40)
        )
    rows, saved = [], {}
    for condition, utterances in _conditions(evaluation):
        print(
            f"[evaluation] mixture_verification, {condition}: {settings['num_trials']} triples of "
            f"{settings['seconds']:g}-s mixtures from {len(utterances)} utterances of "
            f"{len(utterances.speaker_ids)} speakers..."
        )
        try:
            condition_rows, scores = mixture_verification(
                evaluation.embedder,
                utterances,
                num_trials=settings["num_trials"],
                segment_samples=settings["segment_samples"],
                sample_rate=rate,
                sir_db=settings["sir_db"],
                seed=config["seed"],
                batch_size=MIXTURE_BATCH_SIZE,
                min_samples=evaluation.min_samples,
                reference=reference,
            )
        except ValueError as error:  # including keras_spk.data.AudioError
            raise RunError(f"mixture_verification, {condition} speakers: {error}") from None
        for row in condition_rows:
            rows.append({"condition": condition, **row, "segment_seconds": settings["seconds"]})
        names = np.array(utterances.relative_paths() if utterances.root else utterances.paths, dtype=str)
        saved[f"{condition}_utterances"] = names
        saved.update({f"{condition}_{key}": value for key, value in scores.items()})
    if not rows:
        print("[evaluation] mixture_verification: no condition to score; no results written.")
        return []
    folder = evaluation.run.makedirs("results")
    with atomic_open(os.path.join(folder, MIXTURE_SCORES), "wb") as f:
        np.savez(f, **saved)
    _write_mixture_results(
        evaluation.run,
        rows,
        f"Mixture verification ({settings['num_trials']} + {settings['num_trials']} trials of "
        f"{settings['seconds']:g}-s two-speaker mixtures per row; scores in {MIXTURE_SCORES}):",
        metadata={"sir_db": settings["sir_db"], "seed": config["seed"]},
    )
    return rows


def merge_mixture_verification(run, systems):
    """Every system's mixture-verification rows in one table, `<run>/results/mixture_verification_table.txt`."""
    rows = [{"recipe_system": name, **row} for name, _, system_rows in systems for row in system_rows]
    if rows:
        _write_mixture_results(run, rows, f"Mixture verification, all systems ({len(systems)}):")
