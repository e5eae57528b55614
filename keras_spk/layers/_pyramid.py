"""Pyramid-level selection and map resizing shared by the multi-scale layers.

Private module: `FeaturePyramid` and `MultiScaleAggregation` both take a
pyramid of `[batch, time, freq, channels]` maps as a dict keyed "C2".."C5"
(or "P3".., any prefix ending in the level number) or a bottom-up list, and
line maps of neighbouring levels up with the same bilinear resize and
crop/pad, so the two layers agree on which map is which level and on every
resampled value.

Everything that runs inside `call()` uses `keras.ops` only, so it works under
the TensorFlow and PyTorch backends with a static or dynamic time axis.
"""

import numbers
import re

from keras import ops

LEVEL_KEY = re.compile(r"^[A-Za-z_]*?(\d+)$")


def level_number(key):
    """The level number of a pyramid key: "C3" -> 3, "P5" -> 5."""
    match = LEVEL_KEY.match(str(key))
    if match is None:
        raise ValueError(
            "Pyramid levels must be keyed by a name ending in the level number, "
            f'such as "C2".."C5" or "P3".."P5". Received: key={key!r}'
        )
    return int(match.group(1))


def check_levels(levels):
    """`None` or a non-empty list of distinct positive ints, returned sorted."""
    if levels is None:
        return None
    if isinstance(levels, (str, bytes)) or not isinstance(levels, (list, tuple)) or not levels:
        raise ValueError(
            "`levels` must be None or a non-empty list of level numbers. "
            f"Received: levels={levels!r}"
        )
    for level in levels:
        if not isinstance(level, numbers.Integral) or isinstance(level, bool) or level < 0:
            raise ValueError(
                f"`levels` must hold non-negative integers. Received: levels={levels!r}"
            )
    if len(set(levels)) != len(levels):
        raise ValueError(f"`levels` must not repeat a level. Received: levels={levels!r}")
    return sorted(int(level) for level in levels)


def select_levels(structure, levels, what):
    """Orders pyramid inputs (or their shapes) bottom-up.

    `structure` is a dict keyed "C2".., "P3".. (any prefix, level number
    last) or a list in bottom-up order. Returns `(numbers, values)`: the
    level numbers and the matching entries, lowest level first. A dict may
    hold more levels than `levels` selects; a list must have exactly one
    entry per level (numbered from 2, as a ResNet's C2.., when `levels` is
    None).
    """
    if isinstance(structure, dict):
        by_number = {}
        for key, value in structure.items():
            by_number[level_number(key)] = value
        numbers_ = levels if levels is not None else sorted(by_number)
        missing = [n for n in numbers_ if n not in by_number]
        if missing:
            raise ValueError(
                f"`{what}` was given levels {sorted(by_number)} but needs {numbers_}. "
                f"Received: keys={list(structure)}"
            )
        return list(numbers_), [by_number[n] for n in numbers_]
    if isinstance(structure, (list, tuple)):
        values = list(structure)
        numbers_ = levels if levels is not None else list(range(2, 2 + len(values)))
        if len(numbers_) != len(values):
            raise ValueError(
                f"`{what}` got {len(values)} pyramid levels in a list but `levels` names "
                f"{len(numbers_)}. Received: levels={levels}"
            )
        return list(numbers_), values
    raise ValueError(
        f"`{what}` expects a dict of pyramid levels (e.g. keys 'C2'..'C5') or a "
        f"bottom-up list of 4D feature maps. Received: {type(structure).__name__}"
    )


def check_map_shape(layer, shape):
    if shape is None or len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            f"`{layer.__class__.__name__}` expects 4D feature maps "
            "(batch_size, time, freq, channels) with known channels. "
            f"Received: input_shape={None if shape is None else tuple(shape)}"
        )
    return tuple(shape)


def is_static_int(value):
    """True for a size known in Python, False for a traced (dynamic) one."""
    return isinstance(value, numbers.Integral)


def resize_axis_bilinear(x, out_size, axis):
    """Linear interpolation of axis 1 or 2 of a 4D map to `out_size` samples.

    Half-pixel centres, no antialiasing, edges clamped: the convention of
    `keras.ops.image.resize(..., interpolation="bilinear")` (TensorFlow's
    `tf.image.resize` and PyTorch's `interpolate(align_corners=False)`).
    Output sample `i` reads the input at

        s = max((i + 0.5) * in_size / out_size - 0.5, 0)
        lo = floor(s), hi = min(lo + 1, in_size - 1), w = s - lo
        y[i] = (1 - w) * x[lo] + w * x[hi]
    """
    in_size = ops.shape(x)[axis]
    if is_static_int(in_size) and is_static_int(out_size) and in_size == out_size:
        return x
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    position = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    position = ops.maximum(position, 0.0)
    lower = ops.cast(ops.floor(position), "int32")
    lower = ops.minimum(lower, ops.cast(in_size, "int32") - 1)
    upper = ops.minimum(lower + 1, ops.cast(in_size, "int32") - 1)
    weight = ops.cast(position - ops.cast(lower, "float32"), x.dtype)
    weight = ops.reshape(weight, (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))
    below = ops.take(x, lower, axis=axis)
    above = ops.take(x, upper, axis=axis)
    return below + weight * (above - below)


def resize_bilinear(x, height, width):
    """Bilinear resize of `[batch, time, freq, channels]` to `(height, width)`.

    Same values as `keras.ops.image.resize(x, (height, width), "bilinear")`,
    but `height` may be a dynamic size (a scalar tensor of a traced graph):
    `keras.ops.image.resize` checks `size[0] <= 0` in Python, which a
    TensorFlow graph tensor cannot answer, so it fails for a variable time
    length inside `tf.function`.
    """
    x = resize_axis_bilinear(x, height, axis=1)
    return resize_axis_bilinear(x, width, axis=2)


def crop_or_pad(x, height, width):
    """Crops or zero-pads (at the end) axes 1 and 2 of a 4D map to `(height, width)`.

    Used after a stride-2 transposed convolution (size exactly `2 n`) to
    line it up with the lateral map, whose size after a stride-2 'same'
    convolution may be `2 n - 1` (odd lengths), or after 'valid' pooling
    `2 n + 1`.
    """
    shape = ops.shape(x)
    if not (is_static_int(shape[1]) and is_static_int(height) and shape[1] <= height):
        x = x[:, :height]
    if not (is_static_int(shape[2]) and is_static_int(width) and shape[2] <= width):
        x = x[:, :, :width]
    shape = ops.shape(x)
    pad_height = height - shape[1]
    pad_width = width - shape[2]
    if (
        is_static_int(pad_height)
        and is_static_int(pad_width)
        and pad_height == 0
        and pad_width == 0
    ):
        return x
    return ops.pad(x, [[0, 0], [0, pad_height], [0, pad_width], [0, 0]])
