"""keras_spk.scoring.multi_crop_scores: trials scored from the crop embeddings of both utterances."""

import numpy as np
import pytest

from keras_spk.scoring import multi_crop_scores


def unit(x):
    x = np.asarray(x, dtype="float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("reduce", ["mean_distance", "mean_embedding"])
def test_ten_identical_crops_give_the_single_crop_score(metric, reduce):
    rng = np.random.default_rng(0)
    e, t = rng.standard_normal((5, 1, 16)), rng.standard_normal((5, 1, 16))
    single = multi_crop_scores(e, t, metric=metric, reduce=reduce)
    ten = multi_crop_scores(np.repeat(e, 10, axis=1), np.repeat(t, 10, axis=1), metric=metric, reduce=reduce)
    np.testing.assert_allclose(ten, single, rtol=1e-12, atol=1e-12)
    # The single-crop score is minus the distance of the two unit embeddings.
    a, b = unit(e[:, 0]), unit(t[:, 0])
    expected = np.linalg.norm(a - b, axis=1) if metric == "euclidean" else 1.0 - (a * b).sum(1)
    np.testing.assert_allclose(single, -expected, rtol=1e-12, atol=1e-12)


def test_mean_distance_by_hand_on_two_crops():
    # Enrolment crops (3, 4) -> (0.6, 0.8) and (1, 0); test crops (0, 2) -> (0, 1) and (-1, 0).
    e = np.array([[[3.0, 4.0], [1.0, 0.0]]])
    t = np.array([[[0.0, 2.0], [-1.0, 0.0]]])
    # Pairs: (0.6, 0.8)-(0, 1): ||(0.6, -0.2)|| = sqrt(0.4); (0.6, 0.8)-(-1, 0): ||(1.6, 0.8)|| = sqrt(3.2);
    # (1, 0)-(0, 1): sqrt(2); (1, 0)-(-1, 0): 2.
    expected = -(np.sqrt(0.4) + np.sqrt(3.2) + np.sqrt(2.0) + 2.0) / 4
    np.testing.assert_allclose(multi_crop_scores(e, t), [expected], rtol=1e-12)
    # Cosines 0.8, -0.6, 0, -1: distances 0.2, 1.6, 1, 2.
    np.testing.assert_allclose(multi_crop_scores(e, t, metric="cosine"), [-(0.2 + 1.6 + 1.0 + 2.0) / 4], rtol=1e-12)
    # Mean crops (0.8, 0.4) and (-0.5, 0.5): euclidean ||(1.3, -0.1)||.
    np.testing.assert_allclose(
        multi_crop_scores(e, t, reduce="mean_embedding"), [-np.sqrt(1.3**2 + 0.1**2)], rtol=1e-12
    )
    # ... cosine 1 - (-0.4 + 0.2) / (sqrt(0.8) sqrt(0.5)).
    expected = -(1.0 + 0.2 / np.sqrt(0.8 * 0.5))
    np.testing.assert_allclose(
        multi_crop_scores(e, t, metric="cosine", reduce="mean_embedding"), [expected], rtol=1e-12
    )


def test_euclidean_and_cosine_distances_of_unit_vectors_agree():
    # ||a - b||^2 = 2 - 2 cos(a, b) for unit vectors: one crop a side gives the same order and values.
    rng = np.random.default_rng(1)
    e, t = rng.standard_normal((40, 1, 8)), rng.standard_normal((40, 1, 8))
    euclidean = multi_crop_scores(e, t, metric="euclidean")
    cosine = multi_crop_scores(e, t, metric="cosine")
    np.testing.assert_allclose(euclidean**2, 2.0 * -cosine, rtol=1e-10)
    # Over several crops, each pair's squared distance is twice its cosine distance.
    e, t = rng.standard_normal((6, 3, 8)), rng.standard_normal((6, 4, 8))
    pairs = unit(e)[:, :, None] - unit(t)[:, None]
    squared = -(np.linalg.norm(pairs, axis=-1) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(2.0 * multi_crop_scores(e, t, metric="cosine"), squared, rtol=1e-10)


def test_crops_are_length_normalised_and_their_order_does_not_matter():
    rng = np.random.default_rng(2)
    e, t = rng.standard_normal((4, 5, 6)), rng.standard_normal((4, 3, 6))
    scales = rng.uniform(0.1, 10.0, (4, 5, 1))
    for reduce in ("mean_distance", "mean_embedding"):
        reference = multi_crop_scores(e, t, reduce=reduce)
        np.testing.assert_allclose(multi_crop_scores(e * scales, t, reduce=reduce), reference, rtol=1e-10)
        np.testing.assert_allclose(multi_crop_scores(e[:, ::-1], t, reduce=reduce), reference, rtol=1e-10)
    # Mean distance >= distance of the means (the norm is convex), so the scores are lower or equal.
    assert (multi_crop_scores(e, t) <= multi_crop_scores(e, t, reduce="mean_embedding") + 1e-12).all()


def test_indexed_form_equals_gathered_trials_across_blocks():
    rng = np.random.default_rng(3)
    table = rng.standard_normal((30, 4, 5)).astype("float32")
    enroll_index = rng.integers(0, 30, 2500)  # more than one block of trials
    test_index = rng.integers(0, 30, 2500)
    for metric in ("euclidean", "cosine"):
        for reduce in ("mean_distance", "mean_embedding"):
            indexed = multi_crop_scores(table, table, metric, reduce, index=(enroll_index, test_index))
            gathered = multi_crop_scores(table[enroll_index], table[test_index], metric, reduce)
            assert indexed.dtype == np.float64 and indexed.shape == (2500,)
            np.testing.assert_allclose(indexed, gathered, rtol=1e-12, atol=1e-12)


def test_higher_scores_for_crops_of_the_same_speaker():
    rng = np.random.default_rng(4)
    speakers = rng.standard_normal((2, 32))
    a = speakers[0] + 0.3 * rng.standard_normal((1, 10, 32))
    b = speakers[0] + 0.3 * rng.standard_normal((1, 10, 32))
    c = speakers[1] + 0.3 * rng.standard_normal((1, 10, 32))
    for reduce in ("mean_distance", "mean_embedding"):
        assert multi_crop_scores(a, b, reduce=reduce)[0] > multi_crop_scores(a, c, reduce=reduce)[0]


def test_bad_arguments_are_clear_errors():
    good = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"`enroll` must be a numeric array \[trials, crops, dim\].*shape=\(2, 4\)"):
        multi_crop_scores(np.ones((2, 4)), good)
    with pytest.raises(ValueError, match=r"`test` must be .*shape=\(2, 0, 4\)"):
        multi_crop_scores(good, np.ones((2, 0, 4)))
    with pytest.raises(ValueError, match="same embedding size"):
        multi_crop_scores(good, np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match=r"one entry per trial each.*enroll.shape=\(2, 3, 4\), test.shape=\(3, 3, 4\)"):
        multi_crop_scores(good, np.ones((3, 3, 4)))
    nan = good.copy()
    nan[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"`test` holds NaN or Inf \(first in entry 1, crop 2\)"):
        multi_crop_scores(good, nan)
    zero = good.copy()
    zero[0, 1] = 0.0
    with pytest.raises(ValueError, match=r"`enroll` holds an all-zero crop embedding \(first in entry 0, crop 1\)"):
        multi_crop_scores(zero, good)
    with pytest.raises(ValueError, match=r"`metric` must be one of euclidean, cosine. Received: metric='l2'"):
        multi_crop_scores(good, good, metric="l2")
    with pytest.raises(ValueError, match=r"`reduce` must be one of mean_distance, mean_embedding"):
        multi_crop_scores(good, good, reduce="max")
    with pytest.raises(ValueError, match=r"`enroll_index` must index rows 0..1"):
        multi_crop_scores(good, good, index=([0, 2], [0, 1]))
    with pytest.raises(ValueError, match=r"`enroll` must be a numeric array .*dtype=<U1"):
        multi_crop_scores(np.full((1, 1, 2), "a"), good)


def test_opposite_crops_have_no_mean_direction_for_the_cosine():
    e = np.array([[[1.0, 0.0], [-1.0, 0.0]]])
    t = np.array([[[0.0, 1.0]]])
    with pytest.raises(ValueError, match=r"Trial 0: the crops of one side average to zero"):
        multi_crop_scores(e, t, metric="cosine", reduce="mean_embedding")
    # The euclidean distance of the means is defined: ||0 - (0, 1)|| = 1.
    np.testing.assert_allclose(multi_crop_scores(e, t, reduce="mean_embedding"), [-1.0])
