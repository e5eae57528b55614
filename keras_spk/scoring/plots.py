"""DET curves and score histograms (matplotlib, imported only when plotting).

Figures are drawn on an Agg canvas without pyplot (no global figure state, no
display needed) and written atomically: rendered to a temporary name beside
the destination, then renamed.
"""

import os

import numpy as np

from keras_spk import metrics
from keras_spk.utils.files import atomic_open

__all__ = ["det_coordinates", "plot_det", "plot_score_histograms", "DET_TICKS"]

# Tick positions of both DET axes, as error probabilities.
DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def _probit(p):
    from scipy.stats import norm

    return norm.ppf(p)


def det_coordinates(scores, labels):
    """The points a DET curve plots: probits of P_fa (x) and P_miss (y).

    Args:
        scores, labels: as for `keras_spk.metrics.det_curve`.

    Returns:
        `(x, y, eer)`: `x = norm.ppf(p_fa)`, `y = norm.ppf(p_miss)` over the
        operating points of `keras_spk.metrics.det_curve` (the end points,
        where an error rate is 0 or 1, are -inf / +inf and are not drawn),
        and the system's EER.
    """
    p_fa, p_miss, _ = metrics.det_curve(scores, labels)
    return _probit(p_fa), _probit(p_miss), metrics.eer(scores, labels)


def _percent(p):
    return f"{100 * p:g}"


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    supported = figure.canvas.get_supported_filetypes()
    if extension not in supported:
        raise ValueError(
            f"Cannot write a plot to {path}: unknown image type {extension!r}. "
            f"Use one of: {', '.join(sorted(supported))}."
        )
    with atomic_open(path, "wb") as f:
        figure.savefig(f, format=extension)
    return path


def plot_det(systems, path, title="DET curve", limits=(0.0005, 0.5), figsize=(6.0, 6.0), return_figure=False):
    """Draws the DET curves of one or more systems on normal-deviate axes.

    Both axes are probit-scaled (`scipy.stats.norm.ppf` of the error rate), so
    Gaussian target / non-target scores give straight lines; the tick labels
    are error rates in % (0.1, 0.5, 1, 2, 5, 10, 20, 40). Each system's EER
    point (where the curve crosses P_miss = P_fa) is marked and given in the
    legend.

    Args:
        systems: dict name -> `(scores, labels)` (as for
            `keras_spk.metrics.det_curve`); curves are drawn in dict order.
        path: image file; its extension picks the format (`.png`, `.pdf`,
            `.svg`, ...). Written atomically.
        title: figure title.
        limits: `(low, high)` error-rate range shown on both axes.
        figsize: figure size in inches.
        return_figure: also return the matplotlib `Figure` (whose line `i`
            holds the `det_coordinates` of system `i`).

    Returns:
        The path written (a str), or `(path, figure)` with `return_figure=True`.
    """
    if not systems:
        raise ValueError("plot_det needs at least one system. Received: systems={}")
    low, high = limits
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"`limits` must satisfy 0 < low < high < 1. Received: limits={limits!r}")
    figure = _new_figure(figsize)
    axes = figure.add_subplot()
    axis_range = _probit(np.array([low, high]))
    for name, (scores, labels) in systems.items():
        x, y, eer = det_coordinates(scores, labels)
        (line,) = axes.plot(x, y, label=f"{name} (EER {100 * eer:.2f}%)", linewidth=1.5)
        # An EER of 0 sits at -inf: mark it at the axis corner instead.
        point = np.clip(_probit(eer), axis_range[0], axis_range[1])
        axes.plot([point], [point], "o", color=line.get_color(), markersize=6, label="_eer")
    axes.plot(axis_range, axis_range, ":", color="0.6", linewidth=1, label="_diagonal")
    ticks = [t for t in DET_TICKS if low <= t <= high]
    tick_positions = _probit(np.array(ticks))
    for set_ticks, set_labels, set_limits in (
        (axes.set_xticks, axes.set_xticklabels, axes.set_xlim),
        (axes.set_yticks, axes.set_yticklabels, axes.set_ylim),
    ):
        set_ticks(tick_positions)
        set_labels([_percent(t) for t in ticks])
        set_limits(*axis_range)
    axes.set_xlabel("False alarm rate (%)")
    axes.set_ylabel("Miss rate (%)")
    axes.set_title(title)
    axes.grid(True, color="0.85")
    axes.legend(loc="upper right")
    axes.set_aspect("equal")
    path = _save(figure, path)
    return (path, figure) if return_figure else path


def plot_score_histograms(
    scores,
    labels,
    path,
    title="Score distributions",
    bins=50,
    threshold=None,
    figsize=(7.0, 4.0),
    return_figure=False,
):
    """Histograms of target and non-target scores on shared bins.

    Both are density-normalised, since non-targets usually outnumber targets
    by far; the legend gives the counts.

    Args:
        scores, labels: as for `keras_spk.metrics.eer` (1 = target).
        path: image file (format from the extension), written atomically.
        title: figure title.
        bins: number of bins spanning all scores.
        threshold: optional decision threshold drawn as a vertical line.
        figsize: figure size in inches.
        return_figure: also return the matplotlib `Figure`.

    Returns:
        The path written (a str), or `(path, figure)` with `return_figure=True`.
    """
    eer = metrics.eer(scores, labels)  # also validates scores and labels
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    edges = np.histogram_bin_edges(scores, bins=bins)
    figure = _new_figure(figsize)
    axes = figure.add_subplot()
    for mask, name, color in ((labels, "target", "tab:blue"), (~labels, "non-target", "tab:red")):
        axes.hist(
            scores[mask],
            bins=edges,
            density=True,
            alpha=0.5,
            color=color,
            label=f"{name} (n={int(mask.sum())})",
        )
    if threshold is not None:
        axes.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_xlabel("score")
    axes.set_ylabel("density")
    axes.set_title(f"{title} (EER {100 * eer:.2f}%)")
    axes.legend()
    path = _save(figure, path)
    return (path, figure) if return_figure else path
