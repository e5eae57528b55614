"""Speaker centroids, their impostor cosines and the Fig. 1-2 plots (keras_spk.evaluation.centroids)."""

import numpy as np
import pytest

from keras_spk.evaluation import centroids


def test_centroids_are_the_per_speaker_means_in_sorted_speaker_order():
    X = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [0.0, 2.0]])
    speakers, c = centroids.speaker_centroids(X, ["b", "b", "a", "c", "a"])
    assert speakers.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(c, [[0.0, 3.0], [2.0, 1.0], [2.0, 2.0]])


def test_impostor_cosines_by_hand():
    # Rows e1, e2 and (e1 + e2): cos = 0, 1/sqrt(2), 1/sqrt(2) over the pairs (0,1), (0,2), (1,2).
    vectors = np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    np.testing.assert_allclose(centroids.impostor_cosines(vectors), [0.0, 2**-0.5, 2**-0.5])
    # n vectors give n (n - 1) / 2 cosines; identical directions give 1 whatever the norms.
    same = np.outer([1.0, 2.0, 3.0, 4.0], [0.6, 0.8])
    cosines = centroids.impostor_cosines(same)
    assert cosines.shape == (6,)
    np.testing.assert_allclose(cosines, 1.0)
    # A simplex of n unit vectors summing to zero has every cosine -1 / (n - 1).
    simplex = np.eye(4) - 0.25
    np.testing.assert_allclose(centroids.impostor_cosines(simplex), -1.0 / 3.0, atol=1e-12)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="one label per row"):
        centroids.speaker_centroids(np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        centroids.speaker_centroids(np.array([[np.nan, 0.0]]), ["a"])
    with pytest.raises(ValueError, match="n >= 2"):
        centroids.impostor_cosines(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="empty"):
        centroids.plot_centroid_cosines({}, "x.png")


def _clusters(num_speakers=6, per_speaker=8, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_speakers, dim)) * 3
    X = np.concatenate([m + rng.normal(size=(per_speaker, dim)) for m in means])
    labels = np.repeat([f"id{i:02d}" for i in range(num_speakers)], per_speaker)
    return X, labels, means


def test_plots_are_written_atomically(tmp_path):
    X, labels, means = _clusters()
    _, c = centroids.speaker_centroids(X, labels)
    path = centroids.plot_centroid_cosines(
        {"a": centroids.impostor_cosines(c), "b": centroids.impostor_cosines(means)}, tmp_path / "fig2.png"
    )
    bases = {speaker: means[i] for i, speaker in enumerate(sorted(set(labels)))}
    tsne, shown = centroids.plot_speaker_tsne(X, labels, tmp_path / "fig1.png", bases=bases, num_speakers=5)
    assert len(shown) == 5 and set(shown) <= set(labels)
    # The same seed draws the same speakers.
    assert centroids.plot_speaker_tsne(X, labels, tmp_path / "again.png", num_speakers=5)[1] == shown
    for image in (path, tsne):
        with open(image, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.png", "fig1.png", "fig2.png"]
    with pytest.raises(ValueError, match="unknown image type"):
        centroids.plot_centroid_cosines({"a": [0.1, 0.2]}, tmp_path / "fig.xyz")
