"""Trial scores from the crop embeddings of both utterances (the multi-crop test protocol).

Each utterance of a trial is represented by `C` fixed-length crops
(`keras_spk.inference.embed_crops`), each embedded and L2-normalised. Two
ways of comparing the crop sets:

* `"mean_distance"`: the mean of the distances of every enrolment crop to
  every test crop (`C x C` pairs; Chung et al. 2018's "average distance",
  used by Xu et al. 2020, section 4.6, with ten 3-s crops, 100 distances);
* `"mean_embedding"`: the distance of the two sides' mean crops (Chung et
  al.'s "mean embedding").

The distance is euclidean `||a - b||`, or cosine `1 - cos(a, b)`; the score
is minus the distance, so a higher score means the same speaker.
"""

import numpy as np

from keras_spk.scoring.cosine import check_pair_index

__all__ = ["METRICS", "REDUCTIONS", "multi_crop_scores"]

METRICS = ("euclidean", "cosine")
REDUCTIONS = ("mean_distance", "mean_embedding")
# Trials per block: the gathered float64 crops of a block (2 x 1024 x C x dim) stay small.
_BLOCK = 1024


def multi_crop_scores(enroll, test, metric="euclidean", reduce="mean_distance", index=None):
    """Scores trials by the crop embeddings of their enrolment and test utterances.

    Every crop embedding is first scaled to unit length. With
    `reduce="mean_distance"` the score of a trial is

        -1 / (C_e C_t) * sum_i sum_j d(e_i, t_j)

    over its `C_e` enrolment crops `e_i` and `C_t` test crops `t_j`; with
    `reduce="mean_embedding"` it is `-d(mean_i e_i, mean_j t_j)`, the means
    of the unit crops taken as they are (not scaled to unit length again;
    the cosine distance does not depend on their lengths anyway). The
    distance `d` is euclidean, `d(a, b) = ||a - b||`, or cosine,
    `d(a, b) = 1 - a.b / (||a|| ||b||)`; for unit vectors
    `||a - b||^2 = 2 - 2 cos(a, b)`. A single crop per side gives minus the
    distance of the two unit embeddings under both reductions, and so do
    `C` identical crops.

    Args:
        enroll: float array `[trials, C_e, dim]`: the crop embeddings of
            each trial's enrolment utterance; with `index`, a table
            `[n_enroll, C_e, dim]` of utterances.
        test: float array `[trials, C_t, dim]` (or a table
            `[n_test, C_t, dim]` with `index`) of the test utterances.
            `C_t` may differ from `C_e`; `dim` may not.
        metric: `"euclidean"` (default) or `"cosine"`.
        reduce: `"mean_distance"` (default) or `"mean_embedding"`.
        index: optional pair `(enroll_index, test_index)` of 1-D integer
            arrays, one entry per trial: trial `k` compares
            `enroll[enroll_index[k]]` with `test[test_index[k]]` (e.g.
            `Trials.indices()` with one table of every utterance given as
            both `enroll` and `test`), scored in blocks without gathering
            all the trials' crops at once.

    Returns:
        float64 numpy array `[trials]`, higher for the same speaker.

    Raises:
        ValueError: an unknown `metric` or `reduce`; `enroll` or `test` not
            a 3-D numeric array with at least one crop and one dimension,
            holding NaN or Inf or an all-zero crop embedding (which has no
            direction); a different `dim` on the two sides; a different
            number of trials on the two sides (without `index`); a bad
            `index`; or, for the cosine of mean embeddings, crops whose mean
            is zero.

    Example:

    >>> e = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # one trial, 2 crops a side
    >>> t = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    >>> multi_crop_scores(e, t)  # -(0 + 0 + sqrt(2) + sqrt(2)) / 4
    array([-0.70710678])
    >>> multi_crop_scores(e, t, reduce="mean_embedding")  # -||(0.5, 0.5) - (1, 0)||
    array([-0.70710678])
    >>> multi_crop_scores(e, t, metric="cosine")  # -(0 + 0 + 1 + 1) / 4
    array([-0.5])
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {', '.join(METRICS)}. Received: metric={metric!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {', '.join(REDUCTIONS)}. Received: reduce={reduce!r}")
    enroll = _check_crops("enroll", enroll)
    test = _check_crops("test", test)
    if enroll.shape[2] != test.shape[2]:
        raise ValueError(
            "`enroll` and `test` must have the same embedding size (their last axis). Received: "
            f"enroll.shape={enroll.shape}, test.shape={test.shape}"
        )
    if index is None:
        if enroll.shape[0] != test.shape[0]:
            raise ValueError(
                "`enroll` and `test` must have one entry per trial each, the same number (or give "
                "`index=(enroll_index, test_index)` to score tables of utterances). Received: "
                f"enroll.shape={enroll.shape}, test.shape={test.shape}"
            )
        enroll_index = test_index = np.arange(enroll.shape[0])
    else:
        enroll_index, test_index = check_pair_index(index, enroll.shape[0], test.shape[0])
    scores = np.empty(enroll_index.shape[0], dtype=np.float64)
    for start in range(0, scores.shape[0], _BLOCK):
        stop = start + _BLOCK
        e = _unit(np.take(enroll, enroll_index[start:stop], axis=0))
        t = _unit(np.take(test, test_index[start:stop], axis=0))
        if reduce == "mean_distance":
            cosines = np.einsum("tid,tjd->tij", e, t)
            scores[start:stop] = -_distance_from_cosine(cosines, metric).mean(axis=(1, 2))
        else:
            scores[start:stop] = -_mean_embedding_distance(e.mean(axis=1), t.mean(axis=1), metric, start)
    return scores


def _check_crops(name, crops):
    """`crops` as an array `[n, C, dim]` of finite, non-zero crop embeddings, or a clear error."""
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.shape[1] == 0 or crops.shape[2] == 0 or crops.dtype.kind not in "fiu":
        raise ValueError(
            f"`{name}` must be a numeric array [trials, crops, dim] of crop embeddings, with at "
            f"least one crop and one dimension. Received: {name} with shape={crops.shape}, "
            f"dtype={crops.dtype}"
        )
    bad = ~np.isfinite(crops).all(axis=2)
    if bad.any():
        row, crop = np.argwhere(bad)[0]
        raise ValueError(
            f"`{name}` holds NaN or Inf (first in entry {row}, crop {crop}). Check the embedder's "
            "output for that utterance."
        )
    zero = ~crops.any(axis=2)
    if zero.any():
        row, crop = np.argwhere(zero)[0]
        raise ValueError(
            f"`{name}` holds an all-zero crop embedding (first in entry {row}, crop {crop}), which "
            "has no direction to compare. Check the embedder's output for that utterance."
        )
    return crops


def _unit(crops):
    crops = crops.astype(np.float64)
    return crops / np.linalg.norm(crops, axis=-1, keepdims=True)


def _distance_from_cosine(cosines, metric):
    """The distance of unit vectors from their cosine: euclidean `sqrt(2 - 2 cos)` or `1 - cos`."""
    if metric == "cosine":
        return 1.0 - cosines
    # Rounding can take the cosine of equal unit vectors a little above 1.
    return np.sqrt(np.maximum(2.0 - 2.0 * cosines, 0.0))


def _mean_embedding_distance(e, t, metric, first_trial):
    """The distance of each trial's mean enrolment crop `e [B, dim]` and mean test crop `t`."""
    if metric == "euclidean":
        return np.linalg.norm(e - t, axis=1)
    norms = np.linalg.norm(e, axis=1) * np.linalg.norm(t, axis=1)
    if not norms.all():
        trial = first_trial + int(np.flatnonzero(norms == 0)[0])
        raise ValueError(
            f"Trial {trial}: the crops of one side average to zero, so the cosine of the mean "
            "embeddings is undefined. Use metric='euclidean' or reduce='mean_distance'."
        )
    return 1.0 - np.einsum("td,td->t", e, t) / norms
