import keras
from keras import ops

from keras_spk.layers import _pyramid
from keras_spk.utils import _checks
from keras_spk.utils._initializers import fresh_initializer

UPSAMPLINGS = ("bilinear", "transposed")


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
        _checks.check_positive_int("channels", channels)
        _checks.check_choice("upsampling", upsampling, UPSAMPLINGS)
        _checks.check_positive_int("transposed_kernel_size", transposed_kernel_size)
        if not isinstance(use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool. Received: use_bias={use_bias!r}")
        self.channels = int(channels)
        self.upsampling = upsampling
        self.levels = _pyramid.check_levels(levels)
        self.transposed_kernel_size = int(transposed_kernel_size)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _conv_kwargs(self):
        return {
            "use_bias": self.use_bias,
            "kernel_initializer": fresh_initializer(self.kernel_initializer),
            "kernel_regularizer": self.kernel_regularizer,
            "dtype": self.dtype_policy,
        }

    def build(self, input_shape):
        numbers_, shapes = _pyramid.select_levels(input_shape, self.levels, "inputs")
        shapes = [_pyramid.check_map_shape(self, shape) for shape in shapes]
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
            return _pyramid.resize_bilinear(top_down, shape[1], shape[2])
        up = self.upsample_convs[index](top_down)
        return _pyramid.crop_or_pad(up, shape[1], shape[2])

    def call(self, inputs):
        _, maps = _pyramid.select_levels(inputs, self.levels, "inputs")
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
        numbers_, shapes = _pyramid.select_levels(input_shape, self.levels, "inputs")
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
