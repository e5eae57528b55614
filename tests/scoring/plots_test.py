import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from keras_spk.metrics import det_curve
from keras_spk.metrics import eer
from keras_spk.scoring.plots import det_coordinates
from keras_spk.scoring.plots import plot_det
from keras_spk.scoring.plots import plot_score_histograms

RNG = np.random.default_rng(3)
LABELS = np.r_[np.ones(150, int), np.zeros(600, int)]
GOOD = np.r_[RNG.normal(2.0, 1.0, 150), RNG.normal(0.0, 1.0, 600)]
WEAK = np.r_[RNG.normal(0.7, 1.0, 150), RNG.normal(0.0, 1.0, 600)]


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _is_pdf(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]


def test_det_coordinates_are_probits_of_det_curve():
    x, y, value = det_coordinates(GOOD, LABELS)
    p_fa, p_miss, _ = det_curve(GOOD, LABELS)
    np.testing.assert_array_equal(x, norm.ppf(p_fa))
    np.testing.assert_array_equal(y, norm.ppf(p_miss))
    assert value == eer(GOOD, LABELS)
    # The end points (accept all, reject all) are the infinite corners.
    assert (x[0], y[0], x[-1], y[-1]) == (np.inf, -np.inf, -np.inf, np.inf)


def test_plot_det_draws_each_system_at_its_probit_coordinates(tmp_path):
    systems = {"good": (GOOD, LABELS), "weak": (WEAK, LABELS)}
    path, figure = plot_det(systems, tmp_path / "det.png", title="test", return_figure=True)
    assert path == str(tmp_path / "det.png") and _is_png(path)
    axes = figure.axes[0]
    curves = [line for line in axes.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in curves] == [
        f"good (EER {100 * eer(GOOD, LABELS):.2f}%)",
        f"weak (EER {100 * eer(WEAK, LABELS):.2f}%)",
    ]
    for line, (scores, labels) in zip(curves, systems.values()):
        p_fa, p_miss, _ = det_curve(scores, labels)
        np.testing.assert_array_equal(line.get_xdata(), norm.ppf(p_fa))
        np.testing.assert_array_equal(line.get_ydata(), norm.ppf(p_miss))
    # Each EER point sits on the diagonal at probit(EER), in its curve's colour.
    markers = [line for line in axes.get_lines() if line.get_label() == "_eer"]
    for marker, curve, (scores, labels) in zip(markers, curves, systems.values()):
        expected = norm.ppf(eer(scores, labels))
        assert marker.get_xdata()[0] == pytest.approx(expected) and marker.get_ydata()[0] == pytest.approx(
            expected
        )
        assert marker.get_color() == curve.get_color()
    # Normal-deviate axes labelled in percent.
    assert [t.get_text() for t in axes.get_xticklabels()] == ["0.1", "0.5", "1", "2", "5", "10", "20", "40"]
    np.testing.assert_allclose(axes.get_yticks(), norm.ppf([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]))
    np.testing.assert_allclose(axes.get_xlim(), norm.ppf([0.0005, 0.5]))


def test_plot_det_marks_a_zero_eer_at_the_axis_corner(tmp_path):
    scores = np.r_[np.ones(5), np.zeros(5)]
    _, figure = plot_det({"perfect": (scores, scores)}, tmp_path / "p.png", return_figure=True)
    marker = [line for line in figure.axes[0].get_lines() if line.get_label() == "_eer"][0]
    assert marker.get_xdata()[0] == pytest.approx(norm.ppf(0.0005))


def test_plot_det_writes_pdf_and_refuses_unknown_types(tmp_path):
    path = plot_det({"good": (GOOD, LABELS)}, tmp_path / "sub" / "det.pdf")
    assert _is_pdf(path)
    with pytest.raises(ValueError, match=r"unknown image type 'xyz'"):
        plot_det({"good": (GOOD, LABELS)}, tmp_path / "det.xyz")
    assert not os.path.exists(tmp_path / "det.xyz")
    with pytest.raises(ValueError, match="at least one system"):
        plot_det({}, tmp_path / "det.png")


def test_failed_render_keeps_the_previous_file(tmp_path):
    path = plot_det({"good": (GOOD, LABELS)}, tmp_path / "det.png")
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match="at least one target and one non-target"):
        plot_det({"bad": (GOOD, np.ones_like(LABELS))}, path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["det.png"]


def test_score_histograms_counts_match_numpy(tmp_path):
    path, figure = plot_score_histograms(
        GOOD, LABELS, tmp_path / "h.png", bins=20, threshold=1.0, return_figure=True
    )
    assert _is_png(path)
    axes = figure.axes[0]
    edges = np.histogram_bin_edges(GOOD, bins=20)
    bars = axes.patches
    assert len(bars) == 40
    for group, mask in ((bars[:20], LABELS == 1), (bars[20:], LABELS == 0)):
        expected, _ = np.histogram(GOOD[mask], bins=edges, density=True)
        np.testing.assert_allclose([b.get_height() for b in group], expected)
        np.testing.assert_allclose([b.get_x() for b in group], edges[:-1])
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    assert labels == ["target (n=150)", "non-target (n=600)", "threshold 1"]
    assert f"EER {100 * eer(GOOD, LABELS):.2f}%" in axes.get_title()


def test_histograms_to_pdf(tmp_path):
    assert _is_pdf(plot_score_histograms(WEAK, LABELS, tmp_path / "h.pdf"))


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, keras_spk.scoring.plots; print('matplotlib' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
