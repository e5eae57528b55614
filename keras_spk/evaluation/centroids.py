"""Speaker centroids, speaker bases and how far apart they are (Heo et al. 2019, Figures 1-2).

A model trained to tell training speakers apart should place their
utterances in tight clusters far from each other. These diagnostics read
that off the training data after training:

- `speaker_centroids`: each speaker's centroid `c_k`, the mean of its
  utterances' embeddings (eq. 7 over all of them, the paper's "ideal"
  centroids of section 3);
- `impostor_cosines`: `cos(c_i, c_j)` for every pair `i < j` of speakers,
  the "impostor scores" of the paper's Fig. 2; the lower, the larger the
  between-speaker variation;
- `plot_centroid_cosines`: their histograms (density) for one or several
  systems on one plot (Fig. 2);
- `plot_speaker_tsne`: a 2-D t-SNE of a few speakers' embeddings with their
  centroids and, when the model has them, their speaker bases (the output
  layer's weight columns; Fig. 1).

Figures are drawn without pyplot and written atomically
(`keras_spk.scoring.plots`).
"""

import numpy as np

from keras_spk.scoring.plots import _new_figure
from keras_spk.scoring.plots import _save

__all__ = [
    "impostor_cosines",
    "plot_centroid_cosines",
    "plot_speaker_tsne",
    "speaker_centroids",
    "unit_rows",
]


def unit_rows(x):
    """`x` with each row scaled to unit L2 norm (a zero row stays zero)."""
    x = np.asarray(x, dtype="float64")
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _check_embeddings(embeddings, labels):
    embeddings = np.asarray(embeddings, dtype="float64")
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or labels.ndim != 1 or len(labels) != len(embeddings):
        raise ValueError(
            "`embeddings` must be (n, dim) and `labels` (n,), one label per row. Received shapes "
            f"{embeddings.shape} and {labels.shape}."
        )
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("`embeddings` holds NaN or infinite values; the model that made them is broken.")
    return embeddings, labels


def speaker_centroids(embeddings, labels):
    """Each speaker's centroid: the mean of its embeddings.

    Args:
        embeddings: array `(n, dim)`.
        labels: array `(n,)` of speaker labels (any sortable type).

    Returns:
        `(speakers, centroids)`: the sorted distinct labels and the
        `(len(speakers), dim)` means, in that order.

    Example:

    >>> speaker_centroids([[1., 0.], [3., 0.], [0., 2.]], ["a", "a", "b"])
    (array(['a', 'b'], dtype='<U1'), array([[2., 0.],
           [0., 2.]]))
    """
    embeddings, labels = _check_embeddings(embeddings, labels)
    speakers, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(speakers), embeddings.shape[1]))
    np.add.at(sums, index, embeddings)
    return speakers, sums / np.bincount(index, minlength=len(speakers))[:, None]


def impostor_cosines(vectors):
    """`cos(v_i, v_j)` for every pair `i < j` of rows (Fig. 2's impostor scores of centroids).

    Args:
        vectors: array `(n, dim)`, `n >= 2` (centroids, or speaker bases).

    Returns:
        float64 array of the `n (n - 1) / 2` cosines, row-major over `i < j`.
    """
    vectors = np.asarray(vectors, dtype="float64")
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"`vectors` must be (n, dim) with n >= 2. Received shape {vectors.shape}.")
    unit = unit_rows(vectors)
    upper = np.triu_indices(len(unit), k=1)
    return (unit @ unit.T)[upper]


def plot_centroid_cosines(systems, path, bins=50, title=None, figsize=(6.0, 4.0)):
    """Histograms (densities) of the centroids' impostor cosines of one or several systems (Fig. 2).

    Args:
        systems: dict label -> 1-D array of cosines (`impostor_cosines`).
        path: image file (format from the extension), written atomically.
        bins: number of bins over the range of all systems' cosines.
        title: optional figure title.

    Returns:
        `path`.
    """
    if not systems:
        raise ValueError("`systems` is empty: give at least one label -> cosines.")
    values = {label: np.asarray(c, dtype="float64").ravel() for label, c in systems.items()}
    everything = np.concatenate(list(values.values()))
    edges = np.histogram_bin_edges(everything, bins=bins, range=(everything.min(), everything.max() + 1e-9))
    figure = _new_figure(figsize)
    axes = figure.add_subplot()
    for label, cosines in values.items():
        axes.hist(
            cosines, bins=edges, density=True, histtype="stepfilled", alpha=0.45,
            label=f"{label} (mean {cosines.mean():.3f})",
        )
    axes.set_xlabel(r"$\cos(\hat c_i, \hat c_j)$, $i \neq j$ (training speakers)")
    axes.set_ylabel("density")
    axes.legend(fontsize="small")
    if title:
        axes.set_title(title)
    return _save(figure, path)


def plot_speaker_tsne(
    embeddings, labels, path, bases=None, num_speakers=5, seed=0, title=None, figsize=(6.0, 5.0)
):
    """t-SNE of a few speakers' embeddings, their centroids and their bases (Fig. 1).

    `num_speakers` speakers are drawn at random (seeded); their embeddings
    (dots), centroids (triangles) and, if given, bases (crosses) are
    L2-normalised (so that the map shows directions, which cosine scoring
    compares, and the bases' norm does not matter) and embedded together
    with scikit-learn's `TSNE`.

    Args:
        embeddings: array `(n, dim)` of training embeddings.
        labels: array `(n,)` of their speakers.
        path: image file, written atomically.
        bases: optional dict speaker label -> basis vector `(dim,)`.
        num_speakers: speakers to show (at most those present).
        seed: seeds the draw of speakers and t-SNE.
        title: optional figure title.

    Returns:
        `(path, speakers)`: the file and the speakers shown.
    """
    from sklearn.manifold import TSNE

    embeddings, labels = _check_embeddings(embeddings, labels)
    present = np.unique(labels)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(present, size=min(int(num_speakers), len(present)), replace=False))
    mask = np.isin(labels, chosen)
    points, point_labels = embeddings[mask], labels[mask]
    speakers, centroids = speaker_centroids(points, point_labels)
    parts = [unit_rows(points), unit_rows(centroids)]
    shown_bases = [] if bases is None else [s for s in speakers if s in bases]
    if shown_bases:
        parts.append(unit_rows(np.stack([np.asarray(bases[s], dtype="float64") for s in shown_bases])))
    stacked = np.concatenate(parts)
    perplexity = float(min(30.0, max(2.0, (len(stacked) - 1) / 3.0)))
    projected = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=int(seed)
    ).fit_transform(stacked)
    n, k = len(points), len(speakers)
    figure = _new_figure(figsize)
    axes = figure.add_subplot()
    colors = [f"C{i % 10}" for i in range(k)]
    for i, speaker in enumerate(speakers):
        rows = projected[:n][point_labels == speaker]
        axes.scatter(rows[:, 0], rows[:, 1], s=12, color=colors[i], alpha=0.6, label=str(speaker))
        axes.scatter(*projected[n + i], marker="^", s=120, color=colors[i], edgecolors="black")
    for j, speaker in enumerate(shown_bases):
        i = list(speakers).index(speaker)
        axes.scatter(*projected[n + k + j], marker="x", s=120, color=colors[i], linewidths=3)
    axes.set_xticks([])
    axes.set_yticks([])
    note = "dots: utterances, triangles: centroids" + (", crosses: speaker bases" if shown_bases else "")
    axes.set_xlabel(note, fontsize="small")
    axes.legend(fontsize="small", loc="best")
    if title:
        axes.set_title(title)
    return _save(figure, path), list(speakers)
