"""Result tables and files of back-end comparisons, on one trial list or several.

A result row is a dict as `evaluate_backends` gives: `backend` (name),
`system` (label), `eer`, `min_dcf_<p>` per prior, `n_trials`, and the
timings `fit_seconds`, `score_seconds`. Two optional keys place a row in a
larger table; a key is carried by every row or by none:

* `trial_list`: the name of the trial list it was scored on (e.g.
  `"vox1_o"`). With more than one list the table pivots: one line per
  system, one column group per list.
* `recipe_system`: the name of the trained system (embedder) it belongs to,
  when one recipe run trains several (the rows of a paper's table). It is
  the table's first column.

Example, two trial lists:

```python
from keras_spk.scoring import evaluate_backends, format_table, result_key, write_results

rows, scores, labels = [], {}, {}
for name, trials in {"vox1_o": vox1_o, "vox1_h": vox1_h}.items():
    enroll, test = trials.indices()
    result = evaluate_backends(["cosine", "plda"], train_X, train_speakers,
                               trial_X[name], enroll, test, trials.labels)
    for row in result.rows:
        row = {**row, "trial_list": name}
        rows.append(row)
        scores[result_key(row)] = result.scores[row["backend"]]  # key (name, back-end)
    labels[name] = trials.labels
print(format_table(rows))
write_results(rows, scores, labels, "results/")  # det_vox1_o.png, det_vox1_h.png
```
"""

import os
import re

from keras_spk.scoring.comparison import TIMING_KEYS
from keras_spk.utils.files import check_result_metadata
from keras_spk.utils.files import write_result_files

__all__ = ["format_table", "result_key", "write_results"]

# Optional row keys that place a row in a larger table.
_PLACEMENT_KEYS = ("recipe_system", "trial_list")
# Each column of the flat table is at least this wide when right-aligned.
_NUMBER_WIDTH = 7


def result_key(row):
    """The key of a result row's trial scores in `write_results`' `scores`.

    It is the row's back-end name when the row has neither `recipe_system`
    nor `trial_list`; otherwise the tuple of the row's `recipe_system`,
    `trial_list` (those it has, in this order) and `backend`, e.g.
    `("vox1_o", "plda")` or `("rawnet2", "vox1_o", "plda")`.
    """
    placement = tuple(row[key] for key in _PLACEMENT_KEYS if key in row)
    return (*placement, row["backend"]) if placement else row["backend"]


def _check_rows(rows):
    """`rows` as a list, with every placement key on all rows or none and every trial list a name."""
    if not rows:
        raise ValueError("format_table needs at least one result row. Received: rows=[]")
    rows = list(rows)
    bad = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
    if bad:
        raise ValueError(f"Result rows must be dicts. Received: non-dict rows at positions {bad[:10]}")
    for key in _PLACEMENT_KEYS:
        lacking = [i for i, row in enumerate(rows) if key not in row]
        if lacking and len(lacking) < len(rows):
            raise ValueError(
                f"Either every result row has a {key!r} key or none has. "
                f"Received: rows at positions {lacking[:10]} without it"
            )
    for row in rows:
        name = row.get("trial_list", "-")
        if not isinstance(name, str) or not name:
            raise ValueError(f"A row's `trial_list` must be a non-empty string. Received: trial_list={name!r}")
    return rows


def _trial_lists(rows):
    """The distinct `trial_list` values of the rows, in the order first seen (`[]` if none)."""
    return list(dict.fromkeys(row["trial_list"] for row in rows if "trial_list" in row))


def _dcf_columns(rows):
    keys = []
    for row in rows:
        keys.extend(key for key in row if key.startswith("min_dcf_") and key not in keys)
    return keys


def _dcf(row, key):
    return f"{row[key]:.4f}" if key in row else "-"


def _system_columns(rows):
    """(header, cell of a row) of the columns naming a line's system."""
    columns = []
    if "recipe_system" in rows[0]:
        columns.append(("recipe system", lambda r: str(r["recipe_system"])))
    columns.append(("back-end", lambda r: str(r["backend"])))
    if all("system" in r for r in rows):
        columns.append(("system", lambda r: str(r["system"])))
    return columns


def _score_columns(rows):
    """(header, cell of a row) of a trial list's columns: EER % and each minDCF."""
    columns = [("EER %", lambda r: f"{100 * r['eer']:.2f}")]
    for key in _dcf_columns(rows):
        columns.append((f"minDCF{key[len('min_dcf_'):]}", lambda r, key=key: _dcf(r, key)))
    return columns


def _render(headers, cells, right, groups=None):
    """Aligned lines: optional group line, header, rule, one line per cell list.

    `groups` is a list of `(name, first column, number of columns)`; each
    group's name is centred in a dashed span over its columns.
    """
    widths = [
        max([len(header), _NUMBER_WIDTH if is_right else 0] + [len(line[i]) for line in cells])
        for i, (header, is_right) in enumerate(zip(headers, right))
    ]
    for name, first, count in groups or ():
        span = sum(widths[first : first + count]) + 2 * (count - 1)
        shortfall = len(name) + 4 - span  # " name " and a dash at each end
        if shortfall > 0:
            widths[first] += shortfall

    def line(values):
        return "  ".join(
            value.rjust(width) if is_right else value.ljust(width)
            for value, width, is_right in zip(values, widths, right)
        ).rstrip()

    header = line(headers)
    lines = [header, "-" * len(header)] + [line(values) for values in cells]
    if groups:
        spans = [" " * width for width in widths[: groups[0][1]]]
        for name, first, count in groups:
            span = sum(widths[first : first + count]) + 2 * (count - 1)
            label = f" {name} "
            left = (span - len(label)) // 2
            spans.append("-" * left + label + "-" * (span - len(label) - left))
        lines.insert(0, "  ".join(spans).rstrip())
    return "\n".join(lines)


def format_table(rows):
    """An aligned text table of result rows (as from `evaluate_backends`).

    Rows on one trial list (or without a `trial_list` key) give one line
    each. Columns: the recipe system (when the rows have `recipe_system`),
    back-end name, system label (when every row has one), EER in % (2
    decimals), each `min_dcf_<p>` as minDCF<p> (4 decimals), and the fit
    and score seconds when every row has them:

    ```
    back-end  system    EER %  minDCF0.01
    -------------------------------------
    cosine    cosine     4.81      0.5123
    ```

    Rows on several trial lists give one line per system (recipe system,
    back-end and label, in the order first seen) and one column group per
    trial list (in the order first seen) with its EER % and minDCF columns
    under the list's name; a system not scored on a list shows `-` there,
    and the timings are left out:

    ```
                      ----- vox1_o ------  ----- vox1_h ------
    back-end  system    EER %  minDCF0.01    EER %  minDCF0.01
    ----------------------------------------------------------
    cosine    cosine     4.81      0.5123     7.20      0.6000
    plda      PLDA       3.10      0.4000        -           -
    ```

    Args:
        rows: list of result dicts (`backend`, `eer`, `min_dcf_*`, and
            optionally `system`, `trial_list`, `recipe_system`, the
            timings; see the module doc).

    Returns:
        The table as one string (header, a rule, one line per row or
        system, and the group line above them when pivoted), without a
        trailing newline.

    Raises:
        ValueError: no rows, a `trial_list` or `recipe_system` key on some
            rows only, a `trial_list` that is not a non-empty string, or
            two rows for one system on one trial list.
    """
    rows = _check_rows(rows)
    trial_lists = _trial_lists(rows)
    system_columns = _system_columns(rows)
    score_columns = _score_columns(rows)
    if len(trial_lists) <= 1:
        columns = [(h, cell, False) for h, cell in system_columns]
        columns += [(h, cell, True) for h, cell in score_columns]
        if all(all(k in r for k in TIMING_KEYS) for r in rows):
            columns.append(("fit s", lambda r: f"{r['fit_seconds']:.2f}", True))
            columns.append(("score s", lambda r: f"{r['score_seconds']:.2f}", True))
        cells = [[cell(r) for _, cell, _ in columns] for r in rows]
        return _render([h for h, _, _ in columns], cells, [right for _, _, right in columns])

    systems = {}  # line key -> {trial list: row}
    for row in rows:
        key = tuple(cell(row) for _, cell in system_columns)
        cell_rows = systems.setdefault(key, {})
        if row["trial_list"] in cell_rows:
            raise ValueError(
                f"Two result rows for {' / '.join(key)} on trial list {row['trial_list']!r}; "
                "give one row per system and trial list."
            )
        cell_rows[row["trial_list"]] = row
    headers = [h for h, _ in system_columns] + [h for h, _ in score_columns] * len(trial_lists)
    right = [False] * len(system_columns) + [True] * (len(score_columns) * len(trial_lists))
    cells = []
    for key, cell_rows in systems.items():
        values = list(key)
        for name in trial_lists:
            row = cell_rows.get(name)
            values += [cell(row) if row is not None else "-" for _, cell in score_columns]
        cells.append(values)
    groups = [
        (name, len(system_columns) + i * len(score_columns), len(score_columns))
        for i, name in enumerate(trial_lists)
    ]
    return _render(headers, cells, right, groups)


def _file_stem(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _curve_label(row, taken):
    label = str(row.get("system", row["backend"]))
    if "recipe_system" in row:
        label = f"{row['recipe_system']}: {label}"
    if label in taken:
        label = f"{label} [{row['backend']}]"
    return label


def _labels_of(trial_labels, trial_lists):
    """dict trial list (None for rows without one) -> labels; missing lists raise ValueError."""
    if not isinstance(trial_labels, dict):
        if len(trial_lists) > 1:
            raise ValueError(
                "The rows are on several trial lists: `trial_labels` must be a dict trial list "
                f"name -> labels. Received one array for the lists {', '.join(trial_lists)}"
            )
        return {name: trial_labels for name in trial_lists or [None]}
    if not trial_lists:
        raise ValueError(
            "The rows have no `trial_list` key: `trial_labels` must be the one list's labels "
            "(an array), not a dict."
        )
    missing = [name for name in trial_lists if name not in trial_labels]
    if missing:
        raise ValueError(f"`trial_labels` has no labels for the trial list(s) {', '.join(missing)}.")
    return {name: trial_labels[name] for name in trial_lists}


def write_results(rows, scores, trial_labels, directory, metadata=None, plot=True, title="DET curve"):
    """Writes a back-end comparison into `directory`, every file atomically.

    Files:

    * `table.txt`: `format_table(rows)`;
    * `results.json`: `{**metadata, "results": rows}`;
    * `results.csv`: one line per row, a column per row key;
    * when `plot`, the DET curves (`keras_spk.scoring.plots.plot_det`), one
      curve per row, labelled by system (`"<recipe_system>: <system>"` when
      rows have a recipe system): `det.png` for rows on one trial list (or
      without a `trial_list` key), else one `det_<list>.png` per trial list
      (the name with characters other than letters, digits, `.`, `_`, `-`
      replaced by `_`), titled `"<title>: <list>"`.

    Args:
        rows: result rows (`BackendEvaluation.rows`, possibly with
            `trial_list` and `recipe_system` keys; see the module doc).
        scores: dict `result_key(row)` -> that row's trial scores: the
            back-end name for rows without `trial_list` and
            `recipe_system` (`BackendEvaluation.scores` as it is), else a
            tuple such as `(trial_list, backend)`.
        trial_labels: `(n_trials,)` 1 target / 0 non-target; for rows with
            a `trial_list`, a dict trial list name -> labels (one array is
            also accepted when all rows are on one list).
        directory: output folder (created if missing).
        metadata: optional JSON-serialisable dict stored beside the results
            (e.g. the settings or the command-line arguments).
        plot: write the DET plots.
        title: title of the DET plots.

    Returns:
        The list of paths written, in the order of the list above (the
        DET plots in the order the trial lists are first seen).

    Raises:
        ValueError: bad `metadata`, rows `format_table` refuses, a row
            without scores, trial lists without labels, or two trial list
            names that give one file name. Nothing is written then.
    """
    # Checked before the scores, so that a bad `metadata` is the error reported.
    check_result_metadata(metadata)
    table = format_table(rows)
    rows = list(rows)
    missing = [result_key(r) for r in rows if result_key(r) not in scores]
    if missing:
        raise ValueError(
            f"No scores for back-end(s) {', '.join(k if isinstance(k, str) else repr(k) for k in missing)}: "
            "`scores` must map every row's key (`result_key(row)`: its back-end name, or a tuple "
            "with its recipe system and trial list) to its trial scores."
        )
    trial_lists = _trial_lists(rows)
    labels = _labels_of(trial_labels, trial_lists)
    plots = {}  # file name -> trial list (None: rows without one)
    for name in labels:
        file_name = "det.png" if len(labels) == 1 else f"det_{_file_stem(name)}.png"
        if file_name in plots:
            raise ValueError(
                f"Trial lists {plots[file_name]!r} and {name!r} would both be plotted to {file_name}; "
                "give them names that differ in letters, digits, '.', '_' or '-'."
            )
        plots[file_name] = name

    written = write_result_files(directory, table, rows, metadata=metadata)
    if plot:
        from keras_spk.scoring.plots import plot_det

        for file_name, name in plots.items():
            systems = {}
            for row in rows:
                if row.get("trial_list") == name:
                    systems[_curve_label(row, systems)] = (scores[result_key(row)], labels[name])
            plot_title = title if len(plots) == 1 else f"{title}: {name}"
            written.append(plot_det(systems, os.path.join(directory, file_name), title=plot_title))
    return written
