"""ResNet backbone for 2-D time-frequency inputs (log-mel spectrograms).

Axis convention: `[batch, time, freq, channels]`, channels last, the time
axis first so that it can stay `None` (variable-length utterances). This is
the layout `LogMelFilterbank` produces (`[batch, frames, mels]`, plus a
channel axis) and the one `FeaturePyramid` and `MultiScaleAggregation`
read, so the backbone's pyramid outputs feed them as they are. A paper's
"64 x T" input is `(T, 64, 1)` here.
"""

import keras

from keras_spk.layers.residual_attention import ResidualAttention
from keras_spk.layers.squeeze_excitation import SqueezeExcitation
from keras_spk.utils import _checks
from keras_spk.utils._initializers import fresh_initializer

BLOCK_TYPES = ("basic_block", "bottleneck_block")
# Output channels of a block per `stackwise_num_filters` entry.
_EXPANSION = {"basic_block": 1, "bottleneck_block": 4}
# PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 = Keras 0.9): the
# speaker-verification ResNets this backbone reproduces were trained with them.
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def _check_int_list(name, value, minimum=1):
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, (list, tuple))
        or not value
        or not all(_checks.is_int(v) and v >= minimum for v in value)
    ):
        raise ValueError(
            f"`{name}` must be a non-empty list of integers >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return [int(v) for v in value]


def _check_strides(name, value):
    """An int or a (time, freq) pair of positive ints, returned as a pair."""
    if _checks.is_int(value) and value > 0:
        return (int(value), int(value))
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(_checks.is_int(v) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(
        f"`{name}` must be a positive integer or a (time, freq) pair of them. "
        f"Received: {name}={value!r}"
    )


def _check_feature_shape(value):
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(v is None or (_checks.is_int(v) and v > 0) for v in value)
        or value[2] is None
    ):
        raise ValueError(
            "`feature_shape` must be (time, freq, channels) with positive sizes, `time` "
            "(and `freq`) possibly None and `channels` known, e.g. (None, 64, 1). "
            f"Received: feature_shape={value!r}"
        )
    return tuple(None if v is None else int(v) for v in value)


def _conv(filters, kernel_size, strides, name, kernel_initializer, kernel_regularizer):
    # No bias: every convolution is followed by batch normalisation.
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=fresh_initializer(kernel_initializer),
        kernel_regularizer=kernel_regularizer,
        name=name,
    )


def _projection_shortcut(x, filters, strides, name, kernel_initializer, kernel_regularizer):
    """BN(conv1x1_s(x)), the strided 1x1 convolution computed as subsampling + 1x1.

    A 1x1 convolution with stride `s` reads input position `s * i` (no padding
    is ever needed), so taking every `s`-th position first (a 1x1 max pooling
    with stride `s`) and then a stride-1 1x1 convolution gives the same outputs
    with the same kernel. It is written this way because the gradient of a
    strided 1x1 convolution corrupts memory in TensorFlow 2.17's oneDNN CPU
    kernels on some processors (a crash during `fit`).
    """
    if tuple(strides) != (1, 1):
        x = keras.layers.MaxPooling2D(
            pool_size=1, strides=strides, padding="same", name=f"{name}_0_subsample"
        )(x)
    x = _conv(filters, 1, 1, f"{name}_0_conv", kernel_initializer, kernel_regularizer)(x)
    return _batch_norm(f"{name}_0_bn")(x)


ACTIVATIONS = ("relu", "leaky_relu")
# `final_block_activation`: None keeps `activation` in the last block.
FINAL_BLOCK_ACTIVATIONS = (None, "prelu")
# PyTorch's nn.PReLU() initial slope, which the multi-metric paper's code keeps.
_PRELU_INIT = 0.25


def _activation(activation, negative_slope, name):
    """The block's nonlinearity as a layer.

    `activation` is `"relu"`, `"leaky_relu"` (with `negative_slope`) or a
    Keras layer instance, which is returned as it is: a block given one
    layer applies that same layer, with the same weights, at each of its
    activations.
    """
    if isinstance(activation, keras.layers.Layer):
        return activation
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=negative_slope, name=name)
    return keras.layers.ReLU(name=name)


def shared_prelu(name):
    """One PReLU with a single slope for a whole 4D map, initialised to 0.25.

    `shared_axes=[1, 2, 3]` shares the slope over time, frequency and
    channels, so the layer has 1 weight and can be applied to maps of any
    width (the 1x1, 3x3 and output activations of a bottleneck block).
    """
    return keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(_PRELU_INIT),
        shared_axes=[1, 2, 3],
        name=name,
    )


def _batch_norm(name):
    return keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name
    )


def apply_basic_block(
    x,
    filters,
    strides=(1, 1),
    use_squeeze_excitation=False,
    squeeze_excitation_ratio=16,
    kernel_initializer="he_normal",
    kernel_regularizer=None,
    activation="relu",
    negative_slope=0.3,
    name="block",
):
    """Two 3x3 convolutions with a residual connection (He et al., 2016, Fig. 2).

    ```
    y = relu(x' + SE(BN(conv3x3(relu(BN(conv3x3_s(x)))))))     (or leaky ReLU)
    x' = x, or BN(conv1x1_s(x)) when the stride or the channels change
    ```

    Args:
        x: 4D tensor `(batch, time, freq, channels)`.
        filters: positive int, the output channels.
        strides: (time, freq) strides of the first convolution (and of the
            projection shortcut).
        use_squeeze_excitation: bool, gate the residual branch's channels
            with `SqueezeExcitation` before the addition (SE-ResNet).
        squeeze_excitation_ratio: positive int, its reduction ratio.
        kernel_initializer: initializer of the convolution kernels.
        kernel_regularizer: optional regularizer of the convolution kernels.
        activation: `"relu"` or `"leaky_relu"`, the nonlinearity written
            `relu` above; or a Keras layer instance, applied at both
            activations of the block (one layer, shared weights, e.g.
            `shared_prelu(...)`).
        negative_slope: float >= 0, the leaky ReLU's slope.
        name: prefix of the layer names.

    Returns:
        4D tensor `(batch, ceil(time / s_t), ceil(freq / s_f), filters)`.
    """
    conv_kwargs = {
        "kernel_initializer": kernel_initializer,
        "kernel_regularizer": kernel_regularizer,
    }
    shortcut = x
    if tuple(strides) != (1, 1) or x.shape[-1] != filters:
        shortcut = _projection_shortcut(x, filters, strides, name, **conv_kwargs)
    x = _conv(filters, 3, strides, f"{name}_1_conv", **conv_kwargs)(x)
    x = _batch_norm(f"{name}_1_bn")(x)
    x = _activation(activation, negative_slope, f"{name}_1_relu")(x)
    x = _conv(filters, 3, 1, f"{name}_2_conv", **conv_kwargs)(x)
    x = _batch_norm(f"{name}_2_bn")(x)
    if use_squeeze_excitation:
        x = SqueezeExcitation(ratio=squeeze_excitation_ratio, name=f"{name}_se")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return _activation(activation, negative_slope, f"{name}_out")(x)


def apply_bottleneck_block(
    x,
    filters,
    strides=(1, 1),
    use_squeeze_excitation=False,
    squeeze_excitation_ratio=16,
    kernel_initializer="he_normal",
    kernel_regularizer=None,
    activation="relu",
    negative_slope=0.3,
    name="block",
):
    """1x1, 3x3 (strided), 1x1 convolutions with a residual connection (4x expansion).

    ```
    h = relu(BN(conv1x1(x)))                 filters channels
    h = relu(BN(conv3x3_s(h)))               filters channels, stride here
    y = relu(x' + SE(BN(conv1x1(h))))        4 * filters channels
    x' = x, or BN(conv1x1_s(x)) when the stride or the channels change
    ```

    The stride sits on the 3x3 convolution (ResNet "v1.5", as torchvision
    and keras-hub). Arguments as `apply_basic_block` (a layer instance given
    as `activation` serves all three activations); the output has
    `4 * filters` channels.
    """
    conv_kwargs = {
        "kernel_initializer": kernel_initializer,
        "kernel_regularizer": kernel_regularizer,
    }
    out_filters = _EXPANSION["bottleneck_block"] * filters
    shortcut = x
    if tuple(strides) != (1, 1) or x.shape[-1] != out_filters:
        shortcut = _projection_shortcut(x, out_filters, strides, name, **conv_kwargs)
    x = _conv(filters, 1, 1, f"{name}_1_conv", **conv_kwargs)(x)
    x = _batch_norm(f"{name}_1_bn")(x)
    x = _activation(activation, negative_slope, f"{name}_1_relu")(x)
    x = _conv(filters, 3, strides, f"{name}_2_conv", **conv_kwargs)(x)
    x = _batch_norm(f"{name}_2_bn")(x)
    x = _activation(activation, negative_slope, f"{name}_2_relu")(x)
    x = _conv(out_filters, 1, 1, f"{name}_3_conv", **conv_kwargs)(x)
    x = _batch_norm(f"{name}_3_bn")(x)
    if use_squeeze_excitation:
        x = SqueezeExcitation(ratio=squeeze_excitation_ratio, name=f"{name}_se")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return _activation(activation, negative_slope, f"{name}_out")(x)


_BLOCKS = {"basic_block": apply_basic_block, "bottleneck_block": apply_bottleneck_block}


def apply_stack(
    x, filters, blocks, strides, block_type, name, last_block_activation=None, **block_kwargs
):
    """`blocks` residual blocks; the first one carries the stage's `strides`.

    `last_block_activation`, if given, replaces `activation` in the last
    block only (a name or a layer instance, see `apply_basic_block`).
    """
    block = _BLOCKS[block_type]
    for index in range(blocks):
        kwargs = dict(block_kwargs)
        if last_block_activation is not None and index == blocks - 1:
            kwargs["activation"] = last_block_activation
        x = block(
            x,
            filters,
            strides=strides if index == 0 else (1, 1),
            name=f"{name}_block{index + 1}",
            **kwargs,
        )
    return x


def _check_attention_flags(value, num_stages):
    """`stackwise_attention` as a list of `num_stages` bools (`None`: all False)."""
    if value is None:
        return [False] * num_stages
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, (list, tuple))
        or len(value) != num_stages
        or not all(isinstance(flag, bool) for flag in value)
    ):
        raise ValueError(
            f"`stackwise_attention` must be None or a list of {num_stages} bools, one "
            f"per stage. Received: stackwise_attention={value!r}"
        )
    return list(value)


@keras.saving.register_keras_serializable(package="keras_spk")
class ResNetBackbone(keras.Model):
    """ResNet feature extractor over `[batch, time, freq, channels]` maps.

    A stem (`stem_kernel_size` x `stem_kernel_size` convolution, BN, ReLU (or leaky ReLU),
    optional 3x3 stride-2 max pooling) followed by one stage per entry of
    the `stackwise_*` lists, each a stack of residual blocks whose first
    block carries the stage's time-frequency stride. The model returns the
    output of every stage as a dict keyed `"C2"`, `"C3"`, ... (stage `i`,
    counted from 1, gives `C_{i+1}`, the FPN convention that the FPM paper
    follows: stage 1 is `conv2_x`), which `keras_spk.layers.FeaturePyramid`
    and `MultiScaleAggregation` take as they are. The same dict is the
    `pyramid_outputs` attribute (symbolic tensors), as in keras-hub.

    With "same" padding a stride of 2 maps a size `n` to `ceil(n / 2)`, so
    any time length works (e.g. `T = 7 -> 4 -> 2 -> 1`).

    The defaults build the ResNet-34 of the FPM paper (Jung et al., 2020,
    Table 1): a 64-mel input, conv1 7x7 with 32 filters and stride 1, no
    pooling, and stages of 3, 4, 6, 3 basic blocks with 32, 64, 128, 256
    channels, stride 2 in time and frequency at stages 2-4. For a
    `T x 64` input: `C2` is `(T, 64, 32)`, `C3` `(T/2, 32, 64)`, `C4`
    `(T/4, 16, 128)`, `C5` `(T/8, 8, 256)`; 5,324,640 trainable parameters.

    Trainable parameters, with no bias in any convolution (each is
    followed by BN, `2 c` trainable and `2 c` non-trainable weights):
    stem `k^2 c_in c_0 + 2 c_0`; basic block `c -> f`:
    `9 c f + 9 f^2 + 4 f (+ c f + 2 f` with a projection shortcut`)`;
    bottleneck block `c -> 4 f`: `c f + 9 f^2 + 4 f^2 + 12 f`
    `(+ 4 c f + 8 f` with a projection shortcut`)`; `SqueezeExcitation` adds `2 C B + B + C`
    (`B = max(1, C // ratio)`) per block; a stage's `ResidualAttention`
    adds `2 U C + U + C` (`U = attention_units`, `C` the stage's output
    channels); `final_block_activation="prelu"` adds 1.

    Two options build the network of the multi-metric paper (Xu et al.,
    2020, section 4.3, with the authors' code where the paper is silent):
    `stackwise_attention` applies a `ResidualAttention` block
    (`F + F * M`, eq. 6-7, `attention_units` squeeze channels) to the
    output of the flagged stages; the attended map is both that stage's
    pyramid output and what the next stage reads. With
    `final_block_activation="prelu"`, the last block of the last stage
    uses one `PReLU` with a single slope (initialised to 0.25) for all of
    its activations, in place of ReLU. Layer names: `stack{i}_attention`
    and `stack{n}_block{m}_prelu`; the names of every other layer do not
    depend on these options.

    Args:
        stackwise_num_filters: list of positive ints, the filters of each
            stage (the output channels of a basic block; a bottleneck block
            outputs 4 times as many). Defaults to `(32, 64, 128, 256)`.
        stackwise_num_blocks: list of positive ints, the blocks of each
            stage. Defaults to `(3, 4, 6, 3)`.
        stackwise_num_strides: list of ints or `(time, freq)` pairs, the
            stride of each stage's first block. Defaults to `(1, 2, 2, 2)`.
        block_type: `"basic_block"` (ResNet-18/34) or `"bottleneck_block"`
            (ResNet-50 and deeper). Defaults to `"basic_block"`.
        stem_filters: positive int, filters of the stem convolution.
            Defaults to `32`.
        stem_kernel_size: positive int, its kernel size. Defaults to `7`.
        stem_strides: int or `(time, freq)` pair, its stride.
            Defaults to `1`.
        stem_max_pooling: bool, add a 3x3 stride-2 max pooling after the
            stem (as the ImageNet ResNet). Defaults to `False`.
        use_squeeze_excitation: bool, squeeze-excitation gating of every
            block's residual branch (SE-ResNet). Defaults to `False`.
        squeeze_excitation_ratio: positive int, the SE reduction ratio.
            Defaults to `16`.
        feature_shape: `(time, freq, channels)` of one input; `time` may be
            `None` (variable length). Defaults to `(None, 64, 1)`.
        kernel_initializer: initializer of the convolution kernels.
            Defaults to `"he_normal"`.
        kernel_regularizer: optional regularizer of the convolution kernels.
        activation: `"relu"` (default) or `"leaky_relu"`, the nonlinearity
            of the stem and of every block (the speaker-basis paper's
            ResNet-34 uses leaky ReLU, Heo et al. 2019, section 4.1).
        negative_slope: float >= 0, the leaky ReLU's slope. Defaults to
            `0.3` (Keras's default, which the same group's Keras code uses).
        stackwise_attention: list of bools, one per stage: apply
            `ResidualAttention` to the stage's output. `None` (default) for
            no attention. The multi-metric paper uses
            `[True, True, True, False]` (C2-C4).
        attention_units: positive int, the squeeze channels of every
            attention block (an absolute width, not a ratio). Defaults to
            `16` (the multi-metric authors' code). Its 1x1 kernels keep
            `ResidualAttention`'s own initializers; `kernel_regularizer`
            applies to them too.
        final_block_activation: `None` (default: `activation`, as every
            other block) or `"prelu"`: one `PReLU` layer, shared by all the
            activations of the last block of the last stage, with a single
            slope initialised to `0.25` (1 trainable weight).
        **kwargs: `keras.Model` keyword arguments, such as `name`.

    Call arguments:
        inputs: 4D float tensor `(batch, time, freq, channels)`.
        training: bool, BN in training or inference mode.

    Returns:
        dict `{"C2": ..., "C<n+1>": ...}` for `n` stages, each
        `(batch, time_l, freq_l, channels_l)`.

    Example:

    >>> backbone = ResNetBackbone()  # FPM paper, Table 1
    >>> out = backbone(np.zeros((1, 300, 64, 1), "float32"))
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'C2': (1, 300, 64, 32), 'C3': (1, 150, 32, 64), 'C4': (1, 75, 16, 128), 'C5': (1, 38, 8, 256)}

    Reference:
        - [He et al., Deep Residual Learning for Image Recognition, CVPR
          2016](https://arxiv.org/abs/1512.03385)
        - [Jung et al., Improving Multi-Scale Aggregation Using Feature
          Pyramid Module for Robust Speaker Verification of Variable-Duration
          Utterances, Interspeech 2020, Table 1](https://arxiv.org/abs/2004.03194)
        - [Hu et al., Squeeze-and-Excitation Networks, CVPR 2018](
          https://arxiv.org/abs/1709.01507)
        - Xu, Wang, Feng and Liu, Deep multi-metric learning for
          text-independent speaker verification, Neurocomputing 2020,
          sections 3.2 and 4.3 (code: https://github.com/GreatJiweix/DamITiSV)
    """

    def __init__(
        self,
        stackwise_num_filters=(32, 64, 128, 256),
        stackwise_num_blocks=(3, 4, 6, 3),
        stackwise_num_strides=(1, 2, 2, 2),
        block_type="basic_block",
        stem_filters=32,
        stem_kernel_size=7,
        stem_strides=1,
        stem_max_pooling=False,
        use_squeeze_excitation=False,
        squeeze_excitation_ratio=16,
        feature_shape=(None, 64, 1),
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        activation="relu",
        negative_slope=0.3,
        stackwise_attention=None,
        attention_units=16,
        final_block_activation=None,
        **kwargs,
    ):
        filters = _check_int_list("stackwise_num_filters", stackwise_num_filters)
        blocks = _check_int_list("stackwise_num_blocks", stackwise_num_blocks)
        if isinstance(stackwise_num_strides, (str, bytes)) or not isinstance(
            stackwise_num_strides, (list, tuple)
        ):
            raise ValueError(
                "`stackwise_num_strides` must be a list of ints or (time, freq) pairs. "
                f"Received: stackwise_num_strides={stackwise_num_strides!r}"
            )
        strides = [
            _check_strides("stackwise_num_strides", s) for s in stackwise_num_strides
        ]
        if not len(filters) == len(blocks) == len(strides):
            raise ValueError(
                "`stackwise_num_filters`, `stackwise_num_blocks` and `stackwise_num_strides` "
                "must have one entry per stage. Received: lengths "
                f"{len(filters)}, {len(blocks)} and {len(strides)}"
            )
        _checks.check_choice("block_type", block_type, BLOCK_TYPES)
        stem_filters = _checks.check_positive_int("stem_filters", stem_filters)
        stem_kernel_size = _checks.check_positive_int("stem_kernel_size", stem_kernel_size)
        stem = _check_strides("stem_strides", stem_strides)
        for flag_name, flag in (
            ("stem_max_pooling", stem_max_pooling),
            ("use_squeeze_excitation", use_squeeze_excitation),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"`{flag_name}` must be a bool. Received: {flag_name}={flag!r}")
        squeeze_excitation_ratio = _checks.check_positive_int(
            "squeeze_excitation_ratio", squeeze_excitation_ratio
        )
        feature_shape = _check_feature_shape(feature_shape)
        _checks.check_choice("activation", activation, ACTIVATIONS)
        negative_slope = _checks.check_non_negative_real("negative_slope", negative_slope)
        attention = _check_attention_flags(stackwise_attention, len(filters))
        attention_units = _checks.check_positive_int("attention_units", attention_units)
        _checks.check_choice(
            "final_block_activation", final_block_activation, FINAL_BLOCK_ACTIVATIONS
        )
        initializer = keras.initializers.get(kernel_initializer)
        regularizer = keras.regularizers.get(kernel_regularizer)
        conv_kwargs = {"kernel_initializer": initializer, "kernel_regularizer": regularizer}

        # === Functional Model ===
        inputs = keras.Input(feature_shape, name="features")
        x = _conv(stem_filters, stem_kernel_size, stem, "stem_conv", **conv_kwargs)(inputs)
        x = _batch_norm("stem_bn")(x)
        x = _activation(activation, negative_slope, "stem_relu")(x)
        if stem_max_pooling:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        pyramid_outputs = {}
        last = len(filters) - 1
        for stage, (stage_filters, stage_blocks, stage_strides) in enumerate(
            zip(filters, blocks, strides)
        ):
            last_block_activation = None
            if stage == last and final_block_activation == "prelu":
                last_block_activation = shared_prelu(f"stack{stage + 1}_block{stage_blocks}_prelu")
            x = apply_stack(
                x,
                stage_filters,
                stage_blocks,
                stage_strides,
                block_type,
                name=f"stack{stage + 1}",
                last_block_activation=last_block_activation,
                use_squeeze_excitation=use_squeeze_excitation,
                squeeze_excitation_ratio=squeeze_excitation_ratio,
                activation=activation,
                negative_slope=negative_slope,
                **conv_kwargs,
            )
            if attention[stage]:
                # The attended map replaces the stage's output: the pyramid
                # level and the next stage's input are the same tensor.
                x = ResidualAttention(
                    bottleneck_units=attention_units,
                    kernel_regularizer=regularizer,
                    name=f"stack{stage + 1}_attention",
                )(x)
            pyramid_outputs[f"C{stage + 2}"] = x
        super().__init__(inputs=inputs, outputs=pyramid_outputs, **kwargs)

        # === Config ===
        self.stackwise_num_filters = filters
        self.stackwise_num_blocks = blocks
        self.stackwise_num_strides = [list(s) for s in strides]
        self.block_type = block_type
        self.stem_filters = stem_filters
        self.stem_kernel_size = stem_kernel_size
        self.stem_strides = list(stem)
        self.stem_max_pooling = stem_max_pooling
        self.use_squeeze_excitation = use_squeeze_excitation
        self.squeeze_excitation_ratio = squeeze_excitation_ratio
        self.feature_shape = feature_shape
        self.activation = activation
        self.negative_slope = negative_slope
        self.stackwise_attention = attention
        self.attention_units = attention_units
        self.final_block_activation = final_block_activation
        self.kernel_initializer = initializer
        self.kernel_regularizer = regularizer
        self.pyramid_outputs = pyramid_outputs

    @property
    def pyramid_levels(self):
        """The output keys, bottom-up: `["C2", ..., "C<n+1>"]`."""
        return [f"C{stage + 2}" for stage in range(len(self.stackwise_num_filters))]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "stackwise_num_filters": self.stackwise_num_filters,
            "stackwise_num_blocks": self.stackwise_num_blocks,
            "stackwise_num_strides": self.stackwise_num_strides,
            "block_type": self.block_type,
            "stem_filters": self.stem_filters,
            "stem_kernel_size": self.stem_kernel_size,
            "stem_strides": self.stem_strides,
            "stem_max_pooling": self.stem_max_pooling,
            "use_squeeze_excitation": self.use_squeeze_excitation,
            "squeeze_excitation_ratio": self.squeeze_excitation_ratio,
            "feature_shape": list(self.feature_shape),
            "activation": self.activation,
            "negative_slope": self.negative_slope,
            "stackwise_attention": list(self.stackwise_attention),
            "attention_units": self.attention_units,
            "final_block_activation": self.final_block_activation,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
