import numbers
import re

import keras
from keras import ops

UPSAMPLINGS = ("bilinear", "transposed")

_LEVEL_KEY = re.compile(r"^[A-Za-z_]*?(\d+)$")


def _level_number(key):
    """The level number of a pyramid key: "C3" -> 3, "P5" -> 5."""
    match = _LEVEL_KEY.match(str(key))
    if match is None:
        raise ValueError(
            "Pyramid levels must be keyed by a name ending in the level number, "
            f'such as "C2".."C5" or "P3".."P5". Received: key={key!r}'
        )
    return int(match.group(1))


def _check_levels(levels):
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


def _select_levels(structure, levels, what):
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
            by_number[_level_number(key)] = value
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


def _check_map_shape(layer, shape):
    if shape is None or len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            f"`{layer.__class__.__name__}` expects 4D feature maps "
            "(batch_size, time, freq, channels) with known channels. "
            f"Received: input_shape={None if shape is None else tuple(shape)}"
        )
    return tuple(shape)


def _is_int(value):
    return isinstance(value, numbers.Integral)


def _resize_axis_bilinear(x, out_size, axis):
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
    if _is_int(in_size) and _is_int(out_size) and in_size == out_size:
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


def _resize_bilinear(x, height, width):
    """Bilinear resize of `[batch, time, freq, channels]` to `(height, width)`.

    Same values as `keras.ops.image.resize(x, (height, width), "bilinear")`,
    but `height` may be a dynamic size (a scalar tensor of a traced graph):
    `keras.ops.image.resize` checks `size[0] <= 0` in Python, which a
    TensorFlow graph tensor cannot answer, so it fails for a variable time
    length inside `tf.function`.
    """
    x = _resize_axis_bilinear(x, height, axis=1)
    return _resize_axis_bilinear(x, width, axis=2)


def _crop_or_pad(x, height, width):
    """Crops or zero-pads (at the end) axes 1 and 2 of a 4D map to `(height, width)`.

    Used after a stride-2 transposed convolution (size exactly `2 n`) to
    line it up with the lateral map, whose size after a stride-2 'same'
    convolution may be `2 n - 1` (odd lengths), or after 'valid' pooling
    `2 n + 1`.
    """
    shape = ops.shape(x)
    if not (_is_int(shape[1]) and _is_int(height) and shape[1] <= height):
        x = x[:, :height]
    if not (_is_int(shape[2]) and _is_int(width) and shape[2] <= width):
        x = x[:, :, :width]
    shape = ops.shape(x)
    pad_height = height - shape[1]
    pad_width = width - shape[2]
    if _is_int(pad_height) and _is_int(pad_width) and pad_height == 0 and pad_width == 0:
        return x
    return ops.pad(x, [[0, 0], [0, pad_height], [0, pad_width], [0, 0]])


def _output_key(number):
    return f"P{number}"


@keras.saving.register_keras_serializable(package="keras_spk")
class FeaturePyramid(keras.layers.Layer):
    """Feature pyramid module (FPM): top-down pathway with lateral connections.

    Turns the bottom-up feature maps `C_l` of a CNN (one per stage, each
    half the time-frequency resolution of the one below) into maps `P_l` of
    the same resolutions that all carry the high-level (speaker
    discriminative) information of the top stage:

    ```
    L_l = conv1x1_l(C_l)                         lateral: C_l channels -> `channels`
    M_top = L_top
    M_l = L_l + up_l(M_{l+1})                    top-down, element-wise addition
    P_l = conv3x3_l(M_l)                         for every level, the top one too
    ```

    `up` doubles the time-frequency resolution ("bilinear": FPM-B, bilinear
    interpolation straight to the exact size of `L_l`; "transposed": FPM-TC,
    a learnt `transposed_kernel_size` x `transposed_kernel_size` transposed
    convolution with stride 2, one per merge, then cropped or zero-padded to
    the size of `L_l`). Both line up odd sizes produced by strided
    convolutions (time 7 -> 4 -> 2 -> 1 upsamples as 1 -> 2 -> 4 -> 7) and
    work with a variable (dynamic) time length. No normalisation or
    activation is applied, as in FPN (Lin et al., 2017).

    Trainable parameters, for input channels `c_l`, `K = channels`, `n`
    levels and transposed kernel size `k`:
    `sum_l (c_l K + K)` (laterals) `+ n (9 K^2 + K)` (3x3 convolutions)
    `+ [transposed] (n - 1) (k^2 K^2 + K)` (without biases, drop the `+ K`
    terms). For the FPM paper's ResNet-34 (`c = 32, 64, 128, 256`, `K = 32`):
    52,480 (FPM-B) and 80,224 (FPM-TC).

    Args:
        channels: positive int, the channels of every `P_l` (the paper uses
            32, the channels of the lowest stage). Defaults to `32`.
        upsampling: `"bilinear"` (FPM-B) or `"transposed"` (FPM-TC).
            Defaults to `"bilinear"`.
        levels: `None` or a list of level numbers, e.g. `[3, 4, 5]`, to use
            from a dict input (which may hold more); a list input must then
            have one map per level. `None` takes every level of a dict, or
            numbers a list's maps from 2 (`C2, C3, ...`). The levels must be
            consecutive (each a factor 2 above the one below).
        transposed_kernel_size: positive int, kernel size of the transposed
            convolutions of `upsampling="transposed"`. Defaults to `3`.
        use_bias: bool, whether the convolutions have biases. Defaults to
            `True`.
        kernel_initializer: initializer of all convolution kernels.
        kernel_regularizer: optional regularizer of all convolution kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: dict of 4D feature maps keyed by level (`"C2"`..`"C5"`; any
            name ending in the level number), or a list of them in
            bottom-up order.

    Input shape:
        Per level, 4D tensor `(batch_size, time_l, freq_l, channels_l)`;
        `time_l` may be `None`. Level `l + 1` must be level `l` downsampled
        by 2 (sizes `ceil(n / 2)` or `floor(n / 2)`).

    Output shape:
        dict `{"P2": ..., "P5": ...}` (one entry per input level, bottom-up),
        each `(batch_size, time_l, freq_l, channels)`.

    Example:

    >>> c = {f"C{l}": np.zeros((2, 300 // 2 ** (l - 2), 64 // 2 ** (l - 2), 2 ** (l + 3)),
    ...                        "float32") for l in range(2, 6)}
    >>> p = FeaturePyramid(channels=32)(c)
    >>> {k: tuple(v.shape) for k, v in p.items()}
    {'P2': (2, 300, 64, 32), 'P3': (2, 150, 32, 32), 'P4': (2, 75, 16, 32), 'P5': (2, 37, 8, 32)}

    Reference:
        - [Jung et al., Improving Multi-Scale Aggregation Using Feature
          Pyramid Module for Robust Speaker Verification of Variable-Duration
          Utterances, Interspeech 2020, section 3.2](https://arxiv.org/abs/2004.03194)
        - [Lin et al., Feature Pyramid Networks for Object Detection,
          CVPR 2017](https://arxiv.org/abs/1612.03144)
    """

    def __init__(
        self,
        channels=32,
        upsampling="bilinear",
        levels=None,
        transposed_kernel_size=3,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _is_int(channels) or isinstance(channels, bool) or channels <= 0:
            raise ValueError(
                f"`channels` must be a positive integer. Received: channels={channels!r}"
            )
        if upsampling not in UPSAMPLINGS:
            raise ValueError(
                f"`upsampling` must be one of {UPSAMPLINGS}. Received: upsampling={upsampling!r}"
            )
        if (
            not _is_int(transposed_kernel_size)
            or isinstance(transposed_kernel_size, bool)
            or transposed_kernel_size <= 0
        ):
            raise ValueError(
                "`transposed_kernel_size` must be a positive integer. "
                f"Received: transposed_kernel_size={transposed_kernel_size!r}"
            )
        if not isinstance(use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool. Received: use_bias={use_bias!r}")
        self.channels = int(channels)
        self.upsampling = upsampling
        self.levels = _check_levels(levels)
        self.transposed_kernel_size = int(transposed_kernel_size)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _conv_kwargs(self):
        return {
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "kernel_regularizer": self.kernel_regularizer,
            "dtype": self.dtype_policy,
        }

    def build(self, input_shape):
        numbers_, shapes = _select_levels(input_shape, self.levels, "inputs")
        shapes = [_check_map_shape(self, shape) for shape in shapes]
        if numbers_ != list(range(numbers_[0], numbers_[0] + len(numbers_))):
            raise ValueError(
                "FeaturePyramid needs consecutive levels (each a factor 2 above the "
                f"one below). Received: levels={numbers_}"
            )
        self._numbers = numbers_
        # Sub-layers are kept in lists, bottom-up; weights are created in
        # this order: laterals, 3x3 convolutions, transposed convolutions.
        self.lateral_convs = []
        self.output_convs = []
        self.upsample_convs = []
        for number, shape in zip(numbers_, shapes):
            lateral = keras.layers.Conv2D(
                self.channels, 1, name=f"lateral_C{number}", **self._conv_kwargs()
            )
            lateral.build((None, None, None, shape[-1]))
            self.lateral_convs.append(lateral)
        for number in numbers_:
            conv = keras.layers.Conv2D(
                self.channels, 3, padding="same", name=f"output_P{number}", **self._conv_kwargs()
            )
            conv.build((None, None, None, self.channels))
            self.output_convs.append(conv)
        if self.upsampling == "transposed":
            # One per merge, from level l + 1 down to level l.
            for number in numbers_[1:]:
                up = keras.layers.Conv2DTranspose(
                    self.channels,
                    self.transposed_kernel_size,
                    strides=2,
                    padding="same",
                    name=f"upsample_P{number}",
                    **self._conv_kwargs(),
                )
                up.build((None, None, None, self.channels))
                self.upsample_convs.append(up)
        self.built = True

    def _upsample(self, index, top_down, lateral):
        """Brings `top_down` (level `index + 1`) to the size of `lateral` (level `index`)."""
        shape = ops.shape(lateral)
        if self.upsampling == "bilinear":
            return _resize_bilinear(top_down, shape[1], shape[2])
        up = self.upsample_convs[index](top_down)
        return _crop_or_pad(up, shape[1], shape[2])

    def call(self, inputs):
        _, maps = _select_levels(inputs, self.levels, "inputs")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, maps)]
        merged = [None] * len(laterals)
        merged[-1] = laterals[-1]
        for index in range(len(laterals) - 2, -1, -1):
            merged[index] = laterals[index] + self._upsample(
                index, merged[index + 1], laterals[index]
            )
        return {
            _output_key(number): conv(m)
            for number, conv, m in zip(self._numbers, self.output_convs, merged)
        }

    def compute_output_shape(self, input_shape):
        numbers_, shapes = _select_levels(input_shape, self.levels, "inputs")
        return {
            _output_key(number): tuple(shape[:-1]) + (self.channels,)
            for number, shape in zip(numbers_, shapes)
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "upsampling": self.upsampling,
                "levels": self.levels,
                "transposed_kernel_size": self.transposed_kernel_size,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
