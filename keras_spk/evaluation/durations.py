"""Duration-limited evaluation: short test and enrolment utterances cut by the energy VAD.

The fpm paper (Jung et al., 2020, section 4.1 and Tables 5-6) evaluates on
test recordings "cut into four different durations: 1 s, 2 s, 3 s, and 5 s,
which is determined by the energy-based voice activity detection (VAD). If
the length of the utterance is less than the given duration, the entire
utterance is used", with 5-s or full-length enrolment. This module does that
for any embedder and trial list:

* `cut_to_speech(waveform, seconds)` keeps the first `seconds` of speech of
  one utterance;
* `duration_conditions(enroll_durations, test_durations)` checks and orders
  the (enrolment, test) conditions, e.g. to validate a config before training;
* `evaluate_durations(embedder, trials)` embeds every trial utterance once per
  duration it needs (full-length embeddings already computed can be passed
  in), scores every trial by cosine similarity under every condition and
  returns one result row per condition (EER and minDCF);
* `format_duration_table(rows)` prints them as the paper's tables (rows:
  enrolment condition; columns: test duration), and
  `write_duration_results(rows, directory)` saves them.

How an utterance is cut (`cut_to_speech`): `keras_spk.layers.EnergyVAD`
(its defaults: 25-ms frames every 10 ms, speech within 40 dB of the loudest
frame) marks the speech samples; the cut is the first
`round(seconds * sample_rate)` of them, in their original order, with the
non-speech removed in between: what `EnergyVAD(max_speech_seconds=seconds)`
returns. So a "2 s" condition always holds exactly 2 s of detected speech,
however many pauses the recording has; a contiguous stretch of audio would
hold less speech the more pauses it spans, and the paper names the amount of
speech, determined by the VAD, as the duration. An utterance with less
detected speech than asked for is used whole: the original recording, VAD not
applied, as the paper uses "the entire utterance". The full-length condition
(`None`) is always the original recording. Everything is deterministic.

The speech samples are the layer's own decision (`EnergyVAD.speech_mask`,
the one implementation of the rule), taken one utterance at a time, in
milliseconds each. Its frame energies are float32, so a frame whose energy
lies within float32 rounding (about 1e-4 dB) of the threshold may be decided
differently under the two backends: one frame (25 ms, 40 dB below the
loudest) more or less of speech, and the rest of the cut shifted by as much.
None of the demo corpus's 160 test utterances comes that close.

Example (the figures are the paper's "Proposed 1" row of Tables 5 and 6):

>>> trials = keras_spk.data.read_trials("veri_test.txt", "vox1_test/")  # doctest: +SKIP
>>> rows = evaluate_durations(embedder, trials)  # doctest: +SKIP
>>> print(format_duration_table(rows, metric="eer"))  # doctest: +SKIP
EER (%)
enrolment \\ test   1 s   2 s   3 s   5 s  full
----------------------------------------------
5 s               6.25  3.95  2.99  2.54  2.35
full              5.85  3.64  2.83  2.41  2.17
>>> write_duration_results(rows, "results/")  # doctest: +SKIP
['results/duration_table.txt', 'results/duration.json', 'results/duration.csv']
"""

import math
import os

import keras
import numpy as np

from keras_spk.utils import _checks
from keras_spk.utils.files import check_result_metadata
from keras_spk.utils.files import write_result_files

__all__ = [
    "cut_to_speech",
    "duration_conditions",
    "duration_label",
    "evaluate_durations",
    "format_duration_table",
    "write_duration_results",
]

FULL = "full"
_METRIC_TITLES = {"eer": "EER (%)"}
_CORNER = "enrolment \\ test"


def duration_label(seconds):
    """The column / row label of a duration: `"full"` for `None`, else e.g. `"5 s"`, `"1.5 s"`."""
    return FULL if seconds is None else f"{seconds:g} s"


def _as_seconds(value):
    """`value` as float seconds, `None` for full length, or `False` when it is not a duration."""
    if value is None or (isinstance(value, str) and value.strip().lower() == FULL):
        return None
    if _checks.is_real(value) and math.isfinite(value) and value > 0:
        return float(value)
    return False


def _check_durations(name, durations):
    """`durations` as a tuple of positive floats and `None` (full length), in the given order."""
    if isinstance(durations, (str, bytes)) or not hasattr(durations, "__iter__"):
        raise ValueError(
            f"`{name}` must be a list of durations in seconds, with None (or 'full') for the "
            f"whole utterance, e.g. [1, 2, 3, 5, None]. Received: {name}={durations!r}"
        )
    durations = list(durations)
    values = []
    for value in durations:
        seconds = _as_seconds(value)
        if seconds is False:
            raise ValueError(
                f"`{name}` holds {value!r}, which is not a duration: each entry must be a "
                "positive number of seconds of speech, or None (or 'full') for the whole "
                f"utterance. Received: {name}={durations!r}"
            )
        values.append(seconds)
    if not values:
        raise ValueError(
            f"`{name}` must hold at least one duration, e.g. [5, None]. Received: {name}={durations!r}"
        )
    labels = [duration_label(v) for v in values]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"`{name}` repeats {', '.join(repeated)}; list each duration once. "
            f"Received: {name}={durations!r}"
        )
    return tuple(values)


def duration_conditions(enroll_durations=(5, None), test_durations=(1, 2, 3, 5, None)):
    """The (enrolment, test) duration pairs of a duration table, checked.

    Call it on a recipe's settings before training, so that a bad value is
    reported before hours of work rather than after.

    Args:
        enroll_durations: seconds of speech kept of each enrolment utterance,
            one table row each; `None` (or `"full"`) means the whole
            utterance. Defaults to the paper's `(5, None)`.
        test_durations: the same for test utterances, one table column each.
            Defaults to the paper's `(1, 2, 3, 5, None)`.

    Returns:
        A list of `(enroll_seconds, test_seconds)` pairs (floats, `None` for
        full length), row by row in the order given.

    Raises:
        ValueError: a duration that is not a positive number or `None`, a
            repeated duration, or an empty list; the message names the
            argument.

    Example:

    >>> duration_conditions([5, "full"], [1, None])
    [(5.0, 1.0), (5.0, None), (None, 1.0), (None, None)]
    """
    enroll = _check_durations("enroll_durations", enroll_durations)
    test = _check_durations("test_durations", test_durations)
    return [(e, t) for e in enroll for t in test]


def _requested_samples(seconds, sample_rate, name="seconds"):
    samples = round(seconds * sample_rate)
    if samples < 1:
        raise ValueError(
            f"`{name}` asks for {seconds!r} s, less than one sample at {sample_rate} Hz. "
            f"Received: {name}={seconds!r}"
        )
    return samples


def _make_vad(vad, sample_rate):
    """The `EnergyVAD` to use: the given one (checked) or the default at `sample_rate`."""
    from keras_spk.layers import EnergyVAD

    if vad is None:
        return EnergyVAD(sample_rate=sample_rate)
    if not isinstance(vad, EnergyVAD):
        raise ValueError(
            "`vad` must be a keras_spk.layers.EnergyVAD (or None for the default one). "
            f"Received: vad={vad!r}"
        )
    if vad.sample_rate != sample_rate:
        raise ValueError(
            f"`vad` works at {vad.sample_rate} Hz but the audio is at sample_rate={sample_rate} Hz; "
            "build the EnergyVAD with the same sample_rate."
        )
    if vad.max_speech_seconds is not None:
        raise ValueError(
            "`vad` must not truncate (max_speech_seconds=None): the durations are cut here. "
            f"Received: vad with max_speech_seconds={vad.max_speech_seconds!r}"
        )
    return vad


def _check_waveform(waveform, name):
    waveform = np.asarray(waveform, dtype="float32")
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(
            f"{name}: expected a non-empty 1-D waveform [samples]. Received shape {waveform.shape}; "
            "remove empty utterances from the trial list."
        )
    if not np.isfinite(waveform).all():
        raise ValueError(f"{name}: the waveform holds NaN or Inf samples. Check the audio.")
    return waveform


def _speech_cuts(waveform, samples, vad):
    """`{n: cut}` for every requested speech length `n` (samples; `None`: whole), one VAD pass.

    Returns the cuts and, per `n`, whether the utterance was used whole
    because it holds less than `n` samples of speech.
    """
    cuts, short = {}, {}
    speech = None
    for n in samples:
        if n is None:
            cuts[n], short[n] = waveform, False
            continue
        if speech is None:
            # The layer's own decision, so that there is one implementation of the rule.
            speech = waveform[keras.ops.convert_to_numpy(vad.speech_mask(waveform[None]))[0]]
        if speech.shape[0] < n:
            cuts[n], short[n] = waveform, True
        else:
            cuts[n], short[n] = speech[:n], False
    return cuts, short


def cut_to_speech(waveform, seconds, sample_rate=16000, vad=None):
    """The first `seconds` of speech of an utterance, or the whole one when it has less.

    Speech is what `keras_spk.layers.EnergyVAD` detects; the cut is the
    first `round(seconds * sample_rate)` speech samples, in order, with the
    non-speech between them removed (see the module docstring for why). An
    utterance with less speech than that, including one with none, is
    returned whole and unchanged, as is every utterance for `seconds=None`.

    Args:
        waveform: 1-D float array `[samples]`.
        seconds: positive number of seconds of speech, or `None` (or
            `"full"`) for the whole utterance.
        sample_rate: int, the rate of `waveform` in Hz. Defaults to `16000`.
        vad: optional `keras_spk.layers.EnergyVAD` at `sample_rate` with
            `max_speech_seconds=None`, to change the detector's settings.
            Defaults to `EnergyVAD(sample_rate=sample_rate)`.

    Returns:
        float32 numpy array `[cut_samples]`.

    Raises:
        ValueError: an empty or non-1-D waveform, a duration that is not a
            positive number or `None`, or a `vad` that does not fit.

    Example:

    >>> x = np.zeros(48000, "float32")
    >>> x[16000:32000] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> cut_to_speech(x, 0.5).shape  # 0.5 s of the tone
    (8000,)
    >>> cut_to_speech(x, 2).shape  # about 1 s of speech only: the whole utterance
    (48000,)
    """
    sample_rate = _checks.check_positive_int("sample_rate", sample_rate)
    given, seconds = seconds, _as_seconds(seconds)
    if seconds is False:
        raise ValueError(
            "`seconds` must be a positive number of seconds of speech, or None (or 'full') for "
            f"the whole utterance. Received: seconds={given!r}"
        )
    waveform = _check_waveform(waveform, "waveform")
    n = None if seconds is None else _requested_samples(seconds, sample_rate)
    cuts, _ = _speech_cuts(waveform, [n], _make_vad(vad, sample_rate))
    return cuts[n]


def _trial_waveforms(trials, waveforms, sample_rate):
    """Yields `(name_for_messages, waveform)` in `trials.utterances` order."""
    names = list(trials.utterances)
    if waveforms is None:
        from keras_spk.inference import read_waveforms

        from keras_spk.utils.file_checks import check_files_exist

        paths = check_files_exist(
            [os.fspath(p) for p in trials.paths],
            "trial audio file",
            fix="Check the trial list and the evaluation data folder.",
        )
        yield from zip(paths, read_waveforms(paths, sample_rate))
        return
    if isinstance(waveforms, dict):
        absent = [n for n in names if n not in waveforms]
        if absent:
            raise ValueError(
                f"`waveforms` has no waveform for {len(absent)} trial utterance(s): "
                + ", ".join(map(repr, absent[:10]))
                + ". Give one per name in `trials.utterances`."
            )
        waveforms = [waveforms[n] for n in names]
    else:
        waveforms = list(waveforms)
        if len(waveforms) != len(names):
            raise ValueError(
                f"`waveforms` must hold one waveform per trial utterance, in `trials.utterances` "
                f"order. Received: {len(waveforms)} waveforms for {len(names)} utterances"
            )
    yield from zip(names, waveforms)


def _given_full_embeddings(full_embeddings, names, rows):
    """`full_embeddings` as float32 `[utterances, dim]`, checked on `rows` (NaN elsewhere for a dict)."""
    if isinstance(full_embeddings, dict):
        absent = [names[r] for r in sorted(rows) if names[r] not in full_embeddings]
        if absent:
            raise ValueError(
                f"`full_embeddings` has no embedding for {len(absent)} trial utterance(s) scored at "
                "full length: " + ", ".join(map(repr, absent[:10]))
                + (" ..." if len(absent) > 10 else "")
                + ". Give one per name in `trials.utterances`."
            )
        vectors = {r: np.asarray(full_embeddings[names[r]], "float32") for r in rows}
        sizes = sorted({v.shape for v in vectors.values()})
        if any(len(shape) != 1 for shape in sizes) or len(sizes) > 1:
            raise ValueError(
                "`full_embeddings` must map each name to one 1-D embedding [dim], all of one size. "
                f"Received shapes {sizes[:5]}"
            )
        dim = sizes[0][0] if sizes else 0
        table = np.full((len(names), dim), np.nan, "float32")
        for r, vector in vectors.items():
            table[r] = vector
    else:
        table = np.asarray(full_embeddings, "float32")
        if table.ndim != 2 or table.shape[0] != len(names):
            raise ValueError(
                "`full_embeddings` must be an array [utterances, dim] with one row per trial "
                f"utterance, in `trials.utterances` order ({len(names)} rows), or a dict name -> "
                f"embedding. Received shape {table.shape}"
            )
    for r in sorted(rows):
        if not np.isfinite(table[r]).all() or not table[r].any():
            raise ValueError(
                f"{names[r]}: its full-length embedding in `full_embeddings` holds NaN or Inf or "
                "is all zeros, which no cosine score can use."
            )
    return table


def evaluate_durations(
    embedder,
    trials,
    enroll_durations=(5, None),
    test_durations=(1, 2, 3, 5, None),
    sample_rate=16000,
    p_targets=(0.01, 0.05),
    waveforms=None,
    vad=None,
    min_samples=1,
    progress=False,
    full_embeddings=None,
):
    """EER and minDCF of cosine scoring under every (enrolment, test) duration condition.

    Each trial utterance is read once, cut with `cut_to_speech` to every
    duration its side of the trial list needs (an utterance used for
    enrolment and for test gets both sets), and each cut is embedded alone
    with `keras_spk.inference.embed_waveforms`; full-length embeddings
    already computed (e.g. for the back-end table) can be passed as
    `full_embeddings` instead of being computed again. Every trial is then scored by
    the cosine of its enrolment embedding at the row's duration and its test
    embedding at the column's duration
    (`keras_spk.metrics.cosine_trial_scores`), and the metrics come from
    `keras_spk.metrics.verification_metrics`.

    Args:
        embedder: a Keras model mapping waveforms `[1, samples]` to
            embeddings `[1, dim]` (called with `training=False`), or a callable
            mapping a float32 numpy array `[1, samples]` to `[1, dim]`.
        trials: `keras_spk.data.Trials`.
        enroll_durations: seconds of speech of the enrolment side, one
            condition each; `None` (or `"full"`) for whole utterances.
            Defaults to the paper's `(5, None)`.
        test_durations: the same for the test side. Defaults to the paper's
            `(1, 2, 3, 5, None)`.
        sample_rate: int, the rate the embedder expects; files at another
            rate are resampled.
        p_targets: target priors of the minDCF columns (C_miss = C_fa = 1).
        waveforms: optional audio already in memory, instead of reading
            `trials.paths`: a list of 1-D arrays in `trials.utterances`
            order, or a dict name -> array, at `sample_rate`.
        vad: optional `keras_spk.layers.EnergyVAD` (see `cut_to_speech`).
        min_samples: int, the shortest input the embedder accepts; a shorter
            cut is an error naming the utterance (ask for longer durations,
            or drop the utterance).
        progress: bool, show a `keras.utils.Progbar` over the utterances.
        full_embeddings: optional full-length embeddings of the trial
            utterances by the same embedder: an array `[utterances, dim]` in
            `trials.utterances` order (such as the trial embeddings of
            `keras_spk.recipe.extract_embeddings`), or a dict name ->
            `[dim]`. The full-length (`None`) conditions then use them and
            the embedder is called only on the cuts. Defaults to `None`:
            the whole utterances are embedded here.

    Returns:
        A list of result dicts, one per condition in `duration_conditions`
        order, with keys `enroll` and `test` (labels such as `"5 s"` and
        `"full"`), `enroll_seconds` and `test_seconds` (the durations,
        `None` for full length), `trials`, `eer` (a fraction),
        `min_dcf_<p>` per prior, and per side (`enroll_` / `test_`)
        `mean_seconds` (the mean length of the cuts over that side's distinct
        utterances) and `short` (how many of them hold less speech than
        asked for and were used whole).

    Raises:
        ValueError: bad durations (see `duration_conditions`), an empty
            utterance or a cut shorter than `min_samples` (named), a model
            output that is not one finite embedding per utterance, a
            `full_embeddings` that lacks an utterance, is not finite or
            differs in size from the model's embeddings, or a trial list
            without both target and non-target trials.
        FileNotFoundError, keras_spk.data.AudioError: unreadable audio
            (named), when reading files.
    """
    from keras_spk.inference import embedding_function
    from keras_spk.inference import embed_waveforms
    from keras_spk.metrics import cosine_trial_scores
    from keras_spk.metrics import verification_metrics

    enroll_durations = _check_durations("enroll_durations", enroll_durations)
    test_durations = _check_durations("test_durations", test_durations)
    sample_rate = _checks.check_positive_int("sample_rate", sample_rate)
    min_samples = _checks.check_positive_int("min_samples", min_samples)
    for p in p_targets:
        if not _checks.is_real(p) or not 0 < p < 1:
            raise ValueError(
                f"`p_targets` must hold priors strictly between 0 and 1. Received: p_targets={p_targets!r}"
            )
    labels = np.asarray(trials.labels)
    if not (np.any(labels == 1) and np.any(labels == 0)):
        # Checked before the embedding work rather than by the metrics after it.
        raise ValueError(
            "The trial list needs target (1) and non-target (0) trials for EER and minDCF. "
            f"Received: {int(np.sum(labels == 1))} target and {int(np.sum(labels == 0))} non-target trials"
        )
    vad = _make_vad(vad, sample_rate)
    samples = {}
    for name, durations in (("enroll_durations", enroll_durations), ("test_durations", test_durations)):
        for d in durations:
            samples[d] = None if d is None else _requested_samples(d, sample_rate, name)

    names = list(trials.utterances)
    enroll_index, test_index = trials.indices()
    enroll_rows, test_rows = set(enroll_index.tolist()), set(test_index.tolist())
    embed = embedding_function(embedder)  # once: a traced function is reused for every cut

    embeddings = {}  # duration -> [utterances, dim], NaN where not needed
    if full_embeddings is not None:
        full_rows = set()
        if None in enroll_durations:
            full_rows |= enroll_rows
        if None in test_durations:
            full_rows |= test_rows
        if full_rows:
            embeddings[None] = _given_full_embeddings(full_embeddings, names, full_rows)
    given_full = None in embeddings  # then the embedder sees only the cuts
    lengths = {d: np.full(len(names), np.nan) for d in samples}
    short = {d: np.zeros(len(names), bool) for d in samples}
    bar = keras.utils.Progbar(len(names), unit_name="utterance") if progress else None
    for row, (name, waveform) in enumerate(_trial_waveforms(trials, waveforms, sample_rate)):
        waveform = _check_waveform(waveform, name)
        needed = []
        if row in enroll_rows:
            needed.extend(enroll_durations)
        if row in test_rows:
            needed.extend(d for d in test_durations if d not in needed)
        cuts, was_short = _speech_cuts(waveform, [samples[d] for d in needed], vad)
        for d in needed:
            lengths[d][row] = cuts[samples[d]].shape[0] / sample_rate
            short[d][row] = was_short[samples[d]]
        if given_full:
            needed = [d for d in needed if d is not None]
        cut_list = [cuts[samples[d]] for d in needed]
        cut_names = [f"{name} ({duration_label(d)})" for d in needed]
        for cut, label in zip(cut_list, cut_names):
            if cut.shape[0] < min_samples:
                raise ValueError(
                    f"{label}: {cut.shape[0]} samples ({cut.shape[0] / sample_rate:.3f} s at "
                    f"{sample_rate} Hz), fewer than the embedder's minimum of {min_samples}. "
                    "Ask for longer durations or remove the utterance from the trial list."
                )
        vectors = embed_waveforms(embed, cut_list, names=cut_names) if cut_list else []
        for d, vector in zip(needed, vectors):
            if given_full and vector.shape[0] != embeddings[None].shape[1]:
                raise ValueError(
                    f"{name}: the model gives embeddings of size {vector.shape[0]}, but "
                    f"`full_embeddings` are of size {embeddings[None].shape[1]}; pass the "
                    "full-length embeddings of the same model."
                )
            if d not in embeddings:
                embeddings[d] = np.full((len(names), vector.shape[0]), np.nan, "float32")
            elif embeddings[d].shape[1] != vector.shape[0]:
                raise ValueError(
                    f"{name}: embedding of size {vector.shape[0]}, but the earlier ones have size "
                    f"{embeddings[d].shape[1]}; the model must give one embedding size."
                )
            embeddings[d][row] = vector
        if bar is not None:
            bar.add(1)

    enroll_unique = np.array(sorted(enroll_rows), np.int64)
    test_unique = np.array(sorted(test_rows), np.int64)
    enroll_position = np.searchsorted(enroll_unique, enroll_index)
    test_position = np.searchsorted(test_unique, test_index)
    dims = {embeddings[d].shape[1] for d in embeddings}
    if len(dims) > 1:
        raise ValueError(
            f"The model gave embeddings of sizes {sorted(dims)} for different durations; "
            "it must give one embedding size."
        )
    results = []
    for e, t in duration_conditions(enroll_durations, test_durations):
        # Only the rows each side needs (the others are NaN: never embedded).
        both = np.concatenate([embeddings[e][enroll_unique], embeddings[t][test_unique]])
        scores = cosine_trial_scores(both, enroll_position, len(enroll_unique) + test_position)
        metrics = verification_metrics(scores, labels, p_targets)
        results.append(
            {
                "enroll": duration_label(e),
                "test": duration_label(t),
                "enroll_seconds": e,
                "test_seconds": t,
                "trials": len(labels),
                **metrics,
                "enroll_mean_seconds": float(lengths[e][enroll_unique].mean()),
                "test_mean_seconds": float(lengths[t][test_unique].mean()),
                "enroll_short": int(short[e][enroll_unique].sum()),
                "test_short": int(short[t][test_unique].sum()),
            }
        )
    return results


def _metric_keys(rows):
    keys = ["eer"] if all("eer" in r for r in rows) else []
    for row in rows:
        keys.extend(k for k in row if k.startswith("min_dcf_") and k not in keys)
    return keys


def _one_table(rows, metric):
    enroll = list(dict.fromkeys(r["enroll"] for r in rows))
    test = list(dict.fromkeys(r["test"] for r in rows))
    cells = {(r["enroll"], r["test"]): r.get(metric) for r in rows}
    if metric == "eer":
        title = _METRIC_TITLES["eer"]

        def show(value):
            return f"{100 * value:.2f}"

    else:
        title = f"minDCF (p_target={metric[len('min_dcf_'):]})"

        def show(value):
            return f"{value:.4f}"

    body = [
        [e] + ["-" if cells.get((e, t)) is None else show(cells[(e, t)]) for t in test] for e in enroll
    ]
    header = [_CORNER] + test
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]

    def line(values):
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:])]
        return "  ".join([first] + rest).rstrip()

    head = line(header)
    return "\n".join([title, head, "-" * len(head)] + [line(values) for values in body])


def format_duration_table(rows, metric=None):
    """The duration results as the paper's tables: rows enrolment conditions, columns test durations.

    Args:
        rows: result dicts as returned by `evaluate_durations` (each with
            `enroll`, `test` and the metric keys).
        metric: `"eer"` (cells in %, 2 decimals), a `"min_dcf_<p>"` key
            (4 decimals), or `None` (default) for every metric the rows
            have, one table each, EER first, separated by blank lines.

    Returns:
        The table(s) as one string (per table: a title, the header, a rule,
        one line per enrolment condition), without a trailing newline.
        A condition missing from `rows` shows as `-`.

    Raises:
        ValueError: no rows, rows without `enroll`/`test`, or an unknown
            `metric` (the message lists the available ones).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("format_duration_table needs at least one result row. Received: rows=[]")
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or "enroll" not in r or "test" not in r]
    if bad:
        raise ValueError(
            f"Every row must be a dict with 'enroll' and 'test' labels, as from evaluate_durations. "
            f"Received rows without them at positions {bad[:10]}"
        )
    available = _metric_keys(rows)
    if metric is None:
        if not available:
            raise ValueError("The rows hold no metric ('eer' or 'min_dcf_<p>') to show.")
        return "\n\n".join(_one_table(rows, key) for key in available)
    if metric not in available:
        raise ValueError(
            f"`metric` must be one of {available} (the metrics the rows hold), or None for all. "
            f"Received: metric={metric!r}"
        )
    return _one_table(rows, metric)


def write_duration_results(rows, directory, metadata=None):
    """Writes the duration results into `directory`, every file atomically.

    Files:

    * `duration_table.txt`: `format_duration_table(rows)` (EER and every
      minDCF table);
    * `duration.json`: `{**metadata, "results": rows}`;
    * `duration.csv`: one line per condition, a column per row key (an
      empty cell for full length in `enroll_seconds` / `test_seconds`).

    Args:
        rows: result rows (`evaluate_durations`).
        directory: output folder (created if missing).
        metadata: optional JSON-serialisable dict stored beside the results
            (e.g. the backend, the model or the settings).

    Returns:
        The list of paths written, in the order of the list above.
    """
    # Checked before the rows, so that a bad `metadata` is the error reported.
    check_result_metadata(metadata)
    rows = list(rows)
    return write_result_files(
        directory,
        format_duration_table(rows),
        rows,
        table_stem="duration_table",
        results_stem="duration",
        metadata=metadata,
    )
