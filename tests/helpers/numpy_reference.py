"""Numpy references of convolutions and resizing, straight from the definitions.

Used by tests/layers/{feature_pyramid,multi_scale_aggregation}_test.py.
"""

import numpy as np


def np_bilinear_axis(x, out_size, axis):
    """Half-pixel-centre linear interpolation, edges clamped (tf.image.resize / keras)."""
    x = np.moveaxis(np.asarray(x, "float64"), axis, 0)
    in_size = x.shape[0]
    out = np.empty((out_size,) + x.shape[1:])
    for i in range(out_size):
        s = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = min(int(np.floor(s)), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        w = s - lo
        out[i] = (1 - w) * x[lo] + w * x[hi]
    return np.moveaxis(out, 0, axis)


def np_bilinear(x, height, width):
    return np_bilinear_axis(np_bilinear_axis(x, height, 1), width, 2)


def np_conv(x, kernel, bias, stride=1):
    """2D convolution with TensorFlow 'same' padding on `[batch, time, freq, in]`."""
    x = np.asarray(x, "float64")
    k = kernel.shape[0]
    out_shape = []
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        out_shape.append(out)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    y = np.zeros((x.shape[0], out_shape[0], out_shape[1], kernel.shape[-1]))
    for i in range(out_shape[0]):
        for j in range(out_shape[1]):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            y[:, i, j] = np.einsum("bhwc,hwcd->bd", patch, kernel)
    return y + bias


def np_transposed_conv(x, kernel, bias):
    """Stride-2 'same' transposed convolution, kernel 3: the gradient of a stride-2 'same' conv.

    Full output `y[2 i + a] += x[i] w[a]` (size 2 n + 1), of which the first
    2 n samples are kept (the forward 'same' conv of a 2 n input pads 0
    before and 1 after). Keras kernels are `[k, k, out, in]`.
    """
    x = np.asarray(x, "float64")
    b, h, w, _ = x.shape
    full = np.zeros((b, 2 * h + 1, 2 * w + 1, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += np.einsum(
                "bc,hwdc->bhwd", x[:, i, j], kernel
            )
    return full[:, : 2 * h, : 2 * w] + bias


def np_crop_or_pad(x, height, width):
    x = x[:, :height, :width]
    return np.pad(x, ((0, 0), (0, height - x.shape[1]), (0, width - x.shape[2]), (0, 0)))
