"""Label masks, pairwise distances and embedding checks shared by the metric losses.

Private module. Every loss in `keras_spk.losses` reads a batch of integer
speaker labels `[batch]` and embeddings `[batch, dim]`; the helpers here turn
them into `[batch, batch]` label masks and distance matrices with `keras.ops`
only, so the losses work under every backend, with a dynamic batch size and
inside `model.fit`. Nothing here relies on the order of the rows: which rows
belong together is read from the labels.
"""

from keras import ops

from keras_spk.utils import _precision

# Rows are compared to at most this many other rows through masked min/max;
# a finite stand-in for infinity keeps `where` gradients free of inf * 0.
BIG = 1e9
_NORM_EPSILON = 1e-12

DISTANCES = ("euclidean", "squared", "cosine")


# --------------------------------------------------------------------------
# Tensor helpers (keras.ops only).
# --------------------------------------------------------------------------


def flat_labels(labels):
    """Integer labels as a `[batch]` tensor (accepts `[batch]` or `[batch, 1]`).

    `keras.losses.Loss.__call__` hands `y_true` over as floats; speaker ids
    are exact in float32 up to 2**24, so the cast back is lossless.
    """
    labels = ops.convert_to_tensor(labels)
    return ops.cast(ops.reshape(labels, (-1,)), "int32")


def same_label_mask(labels):
    """`[batch, batch]` bool: `mask[i, j]` is True where rows i and j share a label."""
    return ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))


def eye_like(matrix):
    """`[n, n]` bool identity for a square `[n, n]` tensor of dynamic size."""
    index = ops.arange(ops.shape(matrix)[0])
    return ops.equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0))


def positive_negative_masks(labels):
    """(positive, negative) `[batch, batch]` bool masks.

    positive[i, j]: same speaker and `i != j`; negative[i, j]: other speaker.
    """
    same = same_label_mask(labels)
    positive = ops.logical_and(same, ops.logical_not(eye_like(same)))
    return positive, ops.logical_not(same)


def l2_normalize(x, axis=-1):
    # Clamping the squared norm keeps an all-zero row finite (it stays zero).
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, _NORM_EPSILON))


def squared_distances(embeddings):
    """`[batch, batch]` squared Euclidean distances `||e_i - e_j||^2`.

    Uses `|a|^2 + |b|^2 - 2 a.b`, clamped at 0 against round-off, with an
    exact zero diagonal.
    """
    gram = ops.matmul(embeddings, ops.transpose(embeddings))
    norms = ops.diagonal(gram)
    squared = ops.expand_dims(norms, 1) + ops.expand_dims(norms, 0) - 2.0 * gram
    squared = ops.maximum(squared, 0.0)
    return ops.where(eye_like(squared), ops.zeros_like(squared), squared)


def pairwise_distances(embeddings, distance):
    """`[batch, batch]` distances between all rows.

    - `"squared"`: `||e_i - e_j||^2`;
    - `"euclidean"`: `||e_i - e_j||`, with a zero (not NaN) gradient where
      the distance is 0 (identical rows, the diagonal);
    - `"cosine"`: `1 - cos(e_i, e_j)`, in `[0, 2]`.
    """
    if distance == "cosine":
        unit = l2_normalize(embeddings)
        cosine = ops.matmul(unit, ops.transpose(unit))
        return ops.maximum(1.0 - cosine, 0.0)
    squared = squared_distances(embeddings)
    if distance == "squared":
        return squared
    # sqrt has an infinite derivative at 0: take it on a safe value there.
    zero = ops.less_equal(squared, 1e-16)
    safe = ops.where(zero, ops.ones_like(squared), squared)
    return ops.where(zero, ops.zeros_like(squared), ops.sqrt(safe))


def masked_max(values, mask, axis=-1):
    """Max of `values` where `mask`; `-BIG` where the mask is empty."""
    return ops.max(ops.where(mask, values, -BIG), axis=axis)


def masked_min(values, mask, axis=-1):
    """Min of `values` where `mask`; `BIG` where the mask is empty."""
    return ops.min(ops.where(mask, values, BIG), axis=axis)


def check_embeddings(embeddings, what):
    """Checks that `embeddings` is one `[batch, dim]` tensor; returns it as a tensor.

    Half-precision embeddings (a mixed-precision model's) come back as
    float32: the distances, the `BIG` fill of the masked min/max and the
    log-sum-exps are computed in float32.
    """
    if isinstance(embeddings, (dict, list, tuple)):
        raise ValueError(
            f"{what} expects the embeddings (`y_pred`) to be one tensor of shape "
            f"(batch, dim). Received: a {type(embeddings).__name__}"
        )
    embeddings = ops.convert_to_tensor(embeddings)
    if len(embeddings.shape) != 2:
        raise ValueError(
            f"{what} expects embeddings of shape (batch, dim). "
            f"Received: embeddings.shape={tuple(embeddings.shape)}"
        )
    return _precision.at_least_float32(embeddings)
