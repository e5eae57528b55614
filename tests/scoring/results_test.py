"""Result tables and files on one trial list or several (keras_spk.scoring.results)."""

import json
import os

import numpy as np
import pytest

from keras_spk.scoring import plots
from keras_spk.scoring.results import format_table
from keras_spk.scoring.results import result_key
from keras_spk.scoring.results import write_results

# Two recipe systems on two trial lists; ecapa_tdnn has no PLDA row and only
# rawnet2's cosine row on vox1_o has a minDCF0.05.
PAPER_ROWS = [
    {"recipe_system": "rawnet2", "backend": "cosine", "system": "cosine", "eer": 0.0481,
     "min_dcf_0.01": 0.51234, "min_dcf_0.05": 0.3, "trial_list": "vox1_o", "fit_seconds": 1.0,
     "score_seconds": 2.0},
    {"recipe_system": "rawnet2", "backend": "plda", "system": "PLDA", "eer": 0.031,
     "min_dcf_0.01": 0.4, "trial_list": "vox1_o", "fit_seconds": 1.0, "score_seconds": 2.0},
    {"recipe_system": "ecapa_tdnn", "backend": "cosine", "system": "cosine", "eer": 0.0125,
     "min_dcf_0.01": 0.2, "trial_list": "vox1_o", "fit_seconds": 1.0, "score_seconds": 2.0},
    {"recipe_system": "rawnet2", "backend": "cosine", "system": "cosine", "eer": 0.072,
     "min_dcf_0.01": 0.6, "trial_list": "vox1_hard_list", "fit_seconds": 1.0, "score_seconds": 2.0},
    {"recipe_system": "ecapa_tdnn", "backend": "cosine", "system": "cosine", "eer": 0.02,
     "min_dcf_0.01": 0.25, "trial_list": "vox1_hard_list", "fit_seconds": 1.0, "score_seconds": 2.0},
]  # fmt: skip


def test_several_trial_lists_pivot_into_column_groups():
    assert format_table(PAPER_ROWS).splitlines() == [
        " " * 33 + "----------- vox1_o ------------  ------- vox1_hard_list --------",
        "recipe system  back-end  system    EER %  minDCF0.01  minDCF0.05    EER %  minDCF0.01  minDCF0.05",
        "-" * 97,
        "rawnet2        cosine    cosine     4.81      0.5123      0.3000     7.20      0.6000           -",
        "rawnet2        plda      PLDA       3.10      0.4000           -        -           -           -",
        "ecapa_tdnn     cosine    cosine     1.25      0.2000           -     2.00      0.2500           -",
    ]


def test_a_long_list_name_widens_its_group():
    rows = [
        {"backend": "cosine", "eer": 0.1, "trial_list": "voxceleb1_extended"},
        {"backend": "cosine", "eer": 0.2, "trial_list": "b"},
    ]
    assert format_table(rows).splitlines() == [
        "          - voxceleb1_extended -  -- b --",
        "back-end" + " " * 19 + "EER %    EER %",  # the first EER column is 22 wide
        "-" * 41,
        "cosine" + " " * 21 + "10.00    20.00",
    ]


def test_one_trial_list_keeps_the_flat_table_with_the_recipe_system_first():
    rows = [
        {"recipe_system": "rawnet2", "backend": "cosine", "system": "cosine", "eer": 0.05,
         "min_dcf_0.01": 0.5, "trial_list": "vox1_o"},
        {"recipe_system": "ecapa", "backend": "cosine", "system": "cosine", "eer": 0.025,
         "min_dcf_0.01": 0.25, "trial_list": "vox1_o"},
    ]  # fmt: skip
    assert format_table(rows).splitlines() == [
        "recipe system  back-end  system    EER %  minDCF0.01",
        "-" * 52,
        "rawnet2        cosine    cosine     5.00      0.5000",
        "ecapa          cosine    cosine     2.50      0.2500",
    ]
    # A single trial list is not a column: the same table as without the key.
    plain = [{k: v for k, v in r.items() if k != "trial_list"} for r in rows]
    assert format_table(plain) == format_table(rows)


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="Either every result row has a 'trial_list' key or none"):
        format_table([PAPER_ROWS[0], {"backend": "cosine", "eer": 0.1, "recipe_system": "x"}])
    with pytest.raises(ValueError, match="Either every result row has a 'recipe_system' key"):
        format_table([PAPER_ROWS[0], {"backend": "cosine", "eer": 0.1, "trial_list": "vox1_o"}])
    with pytest.raises(ValueError, match="Two result rows for rawnet2 / cosine / cosine on trial list 'vox1_o'"):
        format_table(PAPER_ROWS + [PAPER_ROWS[0]])
    with pytest.raises(ValueError, match="non-empty string. Received: trial_list=3"):
        format_table([{"backend": "cosine", "eer": 0.1, "trial_list": 3}])


def test_result_key():
    assert result_key({"backend": "plda"}) == "plda"
    assert result_key({"backend": "plda", "trial_list": "vox1_o"}) == ("vox1_o", "plda")
    assert result_key(PAPER_ROWS[1]) == ("rawnet2", "vox1_o", "plda")


def test_write_results_plots_each_trial_list(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = {"vox1_o": np.array([1, 0, 1, 0]), "vox1_hard_list": np.array([1, 1, 0, 0, 0])}
    scores = {result_key(r): rng.standard_normal(labels[r["trial_list"]].size) for r in PAPER_ROWS}
    drawn = {}

    def record(systems, path, title):
        drawn[os.path.basename(path)] = (title, systems)
        with open(path, "wb") as f:
            f.write(b"png")
        return path

    monkeypatch.setattr(plots, "plot_det", record)
    written = write_results(PAPER_ROWS, scores, labels, tmp_path, metadata={"seed": 0}, title="DET")
    assert [os.path.basename(p) for p in written] == [
        "table.txt", "results.json", "results.csv", "det_vox1_o.png", "det_vox1_hard_list.png",
    ]  # fmt: skip
    assert (tmp_path / "table.txt").read_text() == format_table(PAPER_ROWS) + "\n"
    assert json.loads((tmp_path / "results.json").read_text()) == {"seed": 0, "results": PAPER_ROWS}
    title, systems = drawn["det_vox1_o.png"]
    assert title == "DET: vox1_o"
    assert list(systems) == ["rawnet2: cosine", "rawnet2: PLDA", "ecapa_tdnn: cosine"]
    assert systems["rawnet2: PLDA"][0] is scores[("rawnet2", "vox1_o", "plda")]
    assert systems["rawnet2: PLDA"][1] is labels["vox1_o"]
    title, systems = drawn["det_vox1_hard_list.png"]
    assert list(systems) == ["rawnet2: cosine", "ecapa_tdnn: cosine"]
    assert systems["ecapa_tdnn: cosine"][0] is scores[("ecapa_tdnn", "vox1_hard_list", "cosine")]


def test_write_results_on_one_list_writes_one_plot(tmp_path, monkeypatch):
    rows = [dict(r, trial_list="vox1/E") for r in PAPER_ROWS[:2]]
    scores = {result_key(r): np.array([0.5, -0.5]) for r in rows}
    drawn = {}

    def record(systems, path, title):
        drawn[path] = title
        return path

    monkeypatch.setattr(plots, "plot_det", record)
    written = write_results(rows, scores, np.array([1, 0]), tmp_path)
    assert drawn == {os.path.join(tmp_path, "det.png"): "DET curve"}
    assert written[-1] == os.path.join(tmp_path, "det.png")


def test_write_results_errors_write_nothing(tmp_path):
    labels = {"vox1_o": np.array([1, 0]), "vox1_hard_list": np.array([1, 0])}
    scores = {result_key(r): np.array([0.5, -0.5]) for r in PAPER_ROWS}
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"No scores for back-end\(s\) \('rawnet2', 'vox1_o', 'plda'\)"):
        write_results(PAPER_ROWS, {k: v for k, v in scores.items() if k[2] != "plda"}, labels, out)
    with pytest.raises(ValueError, match="no labels for the trial list\\(s\\) vox1_hard_list"):
        write_results(PAPER_ROWS, scores, {"vox1_o": labels["vox1_o"]}, out)
    with pytest.raises(ValueError, match="must be a dict trial list name -> labels"):
        write_results(PAPER_ROWS, scores, labels["vox1_o"], out)
    rows = [dict(r, trial_list=name) for r, name in zip(PAPER_ROWS[:2], ("a/b", "a b"))]
    with pytest.raises(ValueError, match="'a/b' and 'a b' would both be plotted to det_a_b.png"):
        write_results(rows, {result_key(r): np.array([0.5, -0.5]) for r in rows}, {"a/b": [1, 0], "a b": [1, 0]}, out)
    assert not out.exists()
