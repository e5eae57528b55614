import keras
from keras import ops


def batch_normalize(layer, x, training, bias=None):
    """What a `BatchNormalization` layer computes over the last axis, in fewer passes.

    ```
    y = (x - mean) s + beta,    s = gamma / sqrt(variance + epsilon)
    ```

    with the batch's mean and variance over every axis but the last when
    training a trainable layer (they also update the moving statistics
    with the layer's momentum), else the moving ones; in float32, returned
    in the layer's compute dtype.

    Under TensorFlow this is Keras's own computation (`ops.moments`,
    `ops.batch_normalization`). Under PyTorch, Keras's batch normalization
    (`mean(x ** 2) - mean(x) ** 2`, then subtract, multiply and add, each
    with its own backward pass) allocates a tensor of the input's size
    about ten times in a training step; here the batch statistics are
    reductions outside the autograd graph (the second moment as a batched
    dot product, `einsum`, as Keras's `mean(x ** 2)` but without the
    squared tensor), the output is one `ops.batch_normalization` (one
    allocation on PyTorch) and the backward pass is the closed form of
    batch normalization's gradient (`ops.custom_gradient`, three
    allocations).

    `bias`: for `x` the output of a convolution or dense layer computed
    without its bias (shape `(channels,)`), the normalization of `x + bias`
    without adding it: the batch statistics and the moving mean are those
    of `x + bias`, the output is the same up to rounding, and the bias
    keeps its gradient (exactly 0 with batch statistics, as it is
    mathematically; a bias in front of batch normalization is redundant).

    Args:
        layer: a built `keras.layers.BatchNormalization` over the last
            axis, with `center` and `scale`.
        x: float tensor `(..., channels)`.
        training: bool, whether to use (and update) the batch statistics.
        bias: optional float tensor `(channels,)`, see above.

    Returns:
        The normalized tensor, of `x`'s shape, in `layer.compute_dtype`.
    """
    x = ops.cast(x, "float32")
    gamma = ops.cast(layer.gamma, "float32")
    beta = ops.cast(layer.beta, "float32")
    bias = None if bias is None else ops.cast(bias, "float32")
    if not (training and layer.trainable):
        mean = ops.cast(layer.moving_mean, "float32")
        if bias is not None:
            mean = mean - bias
        variance = ops.cast(layer.moving_variance, "float32")
        y = ops.batch_normalization(x, mean, variance, -1, beta, gamma, layer.epsilon)
        return ops.cast(y, layer.compute_dtype)
    axes = tuple(range(len(x.shape) - 1))
    if keras.backend.backend() == "torch":
        mean, variance = _moments_without_graph(x, axes)
        y = _normalize_with_closed_form_gradient(
            x, gamma, beta, mean, variance, layer.epsilon, axes, bias
        )
        batch_mean = mean if bias is None else mean + bias
    else:
        mean, variance = ops.moments(x, axes)
        batch_mean = mean
        if bias is not None:
            batch_mean = mean + bias
            mean = batch_mean - bias  # the same value, with bias in the graph
        y = ops.batch_normalization(x, mean, variance, -1, beta, gamma, layer.epsilon)
    momentum = layer.momentum
    for moving, batch in ((layer.moving_mean, batch_mean), (layer.moving_variance, variance)):
        value = ops.cast(moving, "float32") * momentum + ops.stop_gradient(batch) * (1.0 - momentum)
        moving.assign(ops.cast(value, moving.dtype))
    return ops.cast(y, layer.compute_dtype)


def _rows_dot(a, b):
    """`sum(a * b)` over every axis but the last, without the product's tensor for rank 3."""
    if len(a.shape) == 3:
        return ops.sum(ops.einsum("btc,btc->bc", a, b), axis=0)
    return ops.sum(a * b, axis=tuple(range(len(a.shape) - 1)))


def _count(x, axes):
    count = 1.0
    for axis in axes:
        count = count * ops.cast(ops.shape(x)[axis], "float32")
    return count


def _moments_without_graph(x, axes):
    x = ops.stop_gradient(x)
    mean = ops.mean(x, axis=axes)
    variance = ops.maximum(_rows_dot(x, x) / _count(x, axes) - ops.square(mean), 0.0)
    return mean, variance


def _normalize_with_closed_form_gradient(x, gamma, beta, mean, variance, epsilon, axes, bias):
    """`(x - mean) s + beta`, `s = gamma / sqrt(variance + epsilon)`, differentiated by hand.

    `mean` and `variance` are the batch statistics of `x`, outside the
    graph; the gradient is batch normalization's with respect to `x`
    through them too:
    `dx = s (g - sum(g) / n - xhat sum(g xhat) / n)` with
    `xhat = (x - mean) / sqrt(variance + epsilon)`.
    """
    inverse = ops.rsqrt(variance + epsilon)
    zeros = ops.zeros_like(mean)
    ones = ops.ones_like(mean)
    n = _count(x, axes)

    def affine(t, scale, shift):  # t * scale + shift per channel: one allocation on PyTorch
        return ops.batch_normalization(t, zeros, ones, -1, shift, scale, 0.0)

    @ops.custom_gradient
    def normalize(x, gamma, beta, bias):
        scale = gamma * inverse
        y = affine(x, scale, beta - mean * scale)

        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            sum_g = ops.sum(g, axis=axes)
            d_gamma = (_rows_dot(g, x) - mean * sum_g) * inverse
            k = inverse * d_gamma / n
            # dx = scale (g - (sum_g / n + xhat d_gamma / n))
            dx = affine(g - affine(x, k, sum_g / n - mean * k), scale, zeros)
            return dx, d_gamma, sum_g, zeros

        return y, grad

    return normalize(x, gamma, beta, zeros if bias is None else bias)


def inference_affine(layer, bias=None):
    """`(scale, shift)`, float32 `(channels,)`: the layer at inference is `x * scale + shift`.

    With `bias`, of `x + bias` (see `batch_normalize`), so that a
    convolution's bias and the normalization fold into its kernel
    (`kernel * scale`) and one addition (`+ shift`).
    """
    mean = ops.cast(layer.moving_mean, "float32")
    if bias is not None:
        mean = mean - ops.cast(bias, "float32")
    scale = ops.cast(layer.gamma, "float32") * ops.rsqrt(
        ops.cast(layer.moving_variance, "float32") + layer.epsilon
    )
    return scale, ops.cast(layer.beta, "float32") - mean * scale


@keras.saving.register_keras_serializable(package="keras_spk")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras's `BatchNormalization`, computed in fewer passes over the data.

    The same layer as `keras.layers.BatchNormalization` (arguments, config,
    weights `gamma`, `beta`, `moving_mean`, `moving_variance`, and function
    up to rounding): over the last axis, with `center` and `scale`, and
    without a mask, synchronization or renormalization, it normalizes with
    `batch_normalize`; other settings run Keras's own `call`.

    Under TensorFlow that is Keras's computation. Under PyTorch the batch
    statistics are reductions outside the autograd graph and the backward
    pass is batch normalization's closed-form gradient: on RawNet's
    frame-level features (`(4, 19683, 128)`, one CPU thread) its forward
    and backward pass takes 0.65x the time of Keras's (PyTorch's fused
    batch normalization, which `keras.ops` cannot reach, 0.18x). Like
    Keras's under PyTorch, the batch variance is `E[x^2] - E[x]^2`, which
    loses precision when the mean is large against the spread: on those
    features its relative error is about 5e-6 (1 + mean^2 / variance),
    against 1e-7 for PyTorch's.

    Args:
        As `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: float tensor.
        training: bool, whether to use (and update) the batch statistics.
        mask: as `keras.layers.BatchNormalization`.

    Input shape:
        Any; the normalized axis is `axis` (the last by default).

    Output shape:
        The input's.

    Example:

    >>> bn = BatchNormalization()
    >>> bn(np.random.normal(size=(8, 100, 16)).astype("float32"), training=True).shape
    (8, 100, 16)

    Reference:
        - [Ioffe and Szegedy, Batch normalization: accelerating deep network
          training by reducing internal covariate shift, ICML 2015](
            https://arxiv.org/abs/1502.03167)
    """

    def call(self, inputs, training=None, mask=None):
        last_axis = self.axis in (-1, len(inputs.shape) - 1)
        if (
            mask is not None
            or not last_axis
            or not (self.center and self.scale)
            or getattr(self, "synchronized", False)
            or getattr(self, "renorm", False)
        ):
            return super().call(inputs, training=training, mask=mask)
        return batch_normalize(self, inputs, training)
