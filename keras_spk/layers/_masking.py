"""Valid-frame masks and masked reductions shared by the temporal pooling layers.

Private module: `TemporalAveragePooling`, `StatisticsPooling`,
`SelfAttentivePooling`, `AttentiveStatisticsPooling` and
`LearnableDictionaryEncoding` all accept padded `[batch, time, features]`
batches with a Keras `mask` and/or per-row `lengths`, and must give each row
exactly the result it would get alone. Keeping the mask logic here makes the
five layers agree on what a valid frame is. The statistics output and the
frame attention shared by two poolings each live here as well.

Everything that runs inside `call()` uses `keras.ops` only, so it works under
the TensorFlow and PyTorch backends with a static or dynamic time axis.
"""

from keras import ops


def check_frames_shape(layer, input_shape):
    """Pooling layers take `[batch, time, features]` with known `features`."""
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"`{layer.__class__.__name__}` expects inputs of shape "
            "(batch_size, time, features) with a known number of features. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return int(input_shape[-1])


def valid_frames(inputs, mask=None, lengths=None):
    """Boolean `[batch, time]` mask of the frames to pool, or `None` if all are.

    A frame is valid when the Keras `mask` is true there (if given) and its
    index is below the row's `lengths` entry (if given); with both, both
    must hold.
    """
    valid = None
    if mask is not None:
        valid = ops.cast(mask, "bool")
    if lengths is not None:
        lengths = ops.reshape(ops.cast(lengths, "int32"), (-1, 1))
        steps = ops.expand_dims(ops.arange(ops.shape(inputs)[1], dtype="int32"), 0)
        in_length = ops.less(steps, lengths)
        valid = in_length if valid is None else ops.logical_and(valid, in_length)
    return valid


def zero_invalid(inputs, valid):
    """Zeroes padded frames so that no value there (even inf/NaN) reaches the output.

    Multiplying by a 0/1 weight is not enough: `0 * inf` is NaN.
    """
    if valid is None:
        return inputs
    return ops.where(ops.expand_dims(valid, -1), inputs, ops.zeros_like(inputs))


def frame_counts(inputs, valid):
    """Number of valid frames per row as `[batch, 1]` in the inputs' dtype.

    Floored at 1 so that a row with no valid frame pools to zeros instead of
    NaN (0 / 0).
    """
    if valid is None:
        count = ops.cast(ops.shape(inputs)[1], inputs.dtype)
        return ops.ones((ops.shape(inputs)[0], 1), dtype=inputs.dtype) * count
    count = ops.sum(ops.cast(valid, inputs.dtype), axis=1, keepdims=True)
    return ops.maximum(count, ops.ones_like(count))


def masked_mean(inputs, valid):
    """Mean over time of the valid frames: `[batch, time, d] -> [batch, d]`."""
    inputs = zero_invalid(inputs, valid)
    return ops.sum(inputs, axis=1) / frame_counts(inputs, valid)


def masked_softmax_over_time(logits, valid):
    """Softmax over axis 1 of `logits [batch, time, ...]` restricted to valid frames.

    Padded frames get weight exactly 0. A row with no valid frame gets all
    weights 0 (instead of NaN), so its weighted sums are zeros.
    """
    if valid is None:
        # By hand rather than ops.softmax, which warns on a one-frame input
        # (a legitimate, if short, utterance here).
        weights = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=1, keepdims=True)))
        return weights / ops.sum(weights, axis=1, keepdims=True)
    for _ in range(len(logits.shape) - 2):
        valid = ops.expand_dims(valid, -1)
    # The usual max shift, taken over the valid frames only (padded ones are
    # replaced by the row's minimum, which is never above a valid logit). Not
    # a fill with -inf, which gives -inf - (-inf) = NaN on all-padded rows.
    row_min = ops.min(logits, axis=1, keepdims=True)
    valid_max = ops.max(ops.where(valid, logits, row_min), axis=1, keepdims=True)
    # Padded entries are set to 0 before exp: exp of a large padded logit
    # would be inf, and inf times the zero gradient of `where` is NaN.
    zeros = ops.zeros_like(logits)
    shifted = ops.where(valid, logits - ops.stop_gradient(valid_max), zeros)
    weights = ops.where(valid, ops.exp(shifted), zeros)
    total = ops.sum(weights, axis=1, keepdims=True)
    # A row with a valid frame has total >= 1 (its largest logit contributes
    # exp(0) = 1), so the floor only changes all-padded rows: 0 / 1 = 0.
    return weights / ops.maximum(total, ops.ones_like(total))


def concat_mean_std(mean, variance, eps):
    """`[mean, sqrt(max(variance, eps))]` on the last axis, the statistics poolings' output."""
    std = ops.sqrt(ops.maximum(variance, eps))
    return ops.concatenate([mean, std], axis=-1)


# --------------------------------------------------------------------------
# Frame attention of the attentive poolings.
# --------------------------------------------------------------------------


def build_frame_attention(layer, features, units):
    """Adds the frame scorer's weights to `layer`.

    `kernel` `[features, units]`, `bias` `[units]` and the context vector
    `context` `[units]`, from the layer's `kernel_initializer`,
    `bias_initializer` and `context_initializer`.
    """
    layer.kernel = layer.add_weight(
        name="kernel", shape=(features, units), initializer=layer.kernel_initializer
    )
    layer.bias = layer.add_weight(name="bias", shape=(units,), initializer=layer.bias_initializer)
    layer.context = layer.add_weight(
        name="context", shape=(units,), initializer=layer.context_initializer
    )


def frame_attention(layer, inputs, valid, activation):
    """Attention weights `[batch, time]` of the frames, summing to 1 over the valid ones.

    `softmax_t(context . activation(x_t kernel + bias))` over the valid
    frames; `inputs` must already have its padded frames zeroed.
    """
    hidden = activation(ops.matmul(inputs, layer.kernel) + layer.bias)
    scores = ops.sum(hidden * layer.context, axis=-1)  # [batch, time]
    return masked_softmax_over_time(scores, valid)
