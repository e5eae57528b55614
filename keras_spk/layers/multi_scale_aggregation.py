import numbers

import keras
from keras import ops

from keras_spk.layers import _pyramid
from keras_spk.utils import _precision
from keras_spk.utils._initializers import fresh_initializer

MODES = ("msea", "msfa")
DESCRIPTORS = ("frames", "positions")
MSFA_UPSAMPLINGS = ("bilinear", "transposed")
AUTO = "auto"


# The pooling layers are imported when first used, so that this module
# does not depend on all of them being importable.
def _gap():
    from keras_spk.layers.temporal_average_pooling import TemporalAveragePooling

    return TemporalAveragePooling()


def _sap():
    from keras_spk.layers.self_attentive_pooling import SelfAttentivePooling

    return SelfAttentivePooling()


def _lde():
    from keras_spk.layers.learnable_dictionary_encoding import LearnableDictionaryEncoding

    # 64 codewords: FPM paper, section 4.2.
    return LearnableDictionaryEncoding(num_codewords=64)


POOLINGS = {"gap": _gap, "sap": _sap, "lde": _lde}

# What "auto" means, per pooling, following the FPM paper (section 4.2):
# LDE gets 1x1 convolution to 64 channels before it, L2-normalisation and
# an FC layer after it, and LDE and FC are shared by all stages; SAP layers
# are not shared. `descriptors` is how a [time, freq, channels] map becomes
# the [steps, features] sequence the pooling reads.
_PAPER_DEFAULTS = {
    "gap": {"descriptors": "positions", "share": True, "l2_normalize": False, "level_fc": False},
    "sap": {"descriptors": "frames", "share": False, "l2_normalize": False, "level_fc": False},
    "lde": {"descriptors": "positions", "share": True, "l2_normalize": True, "level_fc": True},
    None: {"descriptors": "frames", "share": True, "l2_normalize": False, "level_fc": False},
}
# Sections 3.1 and 4.2: MSEA adds a 1x1 convolution before pooling, to 64
# channels (the only count the paper gives, stated for LDE).
_PROJECTION_CHANNELS = 64


def _check_auto_or(name, value, check):
    if value == AUTO and isinstance(value, str):
        return value
    return check(name, value)


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool or 'auto'. Received: {name}={value!r}")
    return value


def _check_optional_units(name, value):
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer, None or 'auto'. Received: {name}={value!r}"
        )
    return int(value)


def _l2_normalize(x, epsilon=1e-12):
    # In float32 under a mixed policy: the squared norm of a pooled vector
    # overflows float16, and the epsilon underflows it.
    x32 = _precision.at_least_float32(x)
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x32), axis=-1, keepdims=True), epsilon))
    return ops.cast(x32 / norm, x.dtype)


@keras.saving.register_keras_serializable(package="keras_spk")
class MultiScaleAggregation(keras.layers.Layer):
    """Multi-scale aggregation (MSA) of pyramid feature maps into one embedding.

    Two ways to use feature maps `X_1..X_n` of several stages (e.g. the
    `P3, P4, P5` of a `FeaturePyramid`, or a backbone's `C3, C4, C5`):

    ```
    MSEA:  e = W [g_1(pool_1(conv1x1_1(X_1))); ...; g_n(pool_n(conv1x1_n(X_n)))] + b
    MSFA:  e = W g(pool(conv1x1([down(X_1); ...; X_r; ...; up(X_n)]))) + b
    ```

    Multi-scale embedding aggregation (MSEA, Seo et al. 2019) pools every
    stage on its own and concatenates the pooled vectors before a final FC
    layer. Multi-scale feature aggregation (MSFA, Gao et al. 2019) brings
    every map to the time-frequency resolution of stage `r` (lower stages by
    stride-2 3x3 convolutions, one per factor 2; higher stages by bilinear
    interpolation or stride-2 transposed convolutions), concatenates them on
    channels and pools once. `g` is the optional per-stage head after the
    pooling: L2-normalisation and an FC layer (used with LDE). No
    activation is applied anywhere (the paper names none).

    A 2D map `[batch, time, freq, channels]` is handed to the pooling, which
    reads `[batch, steps, features]`, as `descriptors`: `"frames"`
    (`[batch, time, freq * channels]`, one vector per frame) or
    `"positions"` (`[batch, time * freq, channels]`, one vector per
    time-frequency bin; GAP over them is the mean over time and frequency,
    and a stage-independent feature size lets LDE be shared by stages whose
    frequency resolutions differ).

    `"auto"` arguments follow the FPM paper (section 4.2) per pooling:

    | pooling | descriptors | share_pooling | l2_normalize | level_units   |
    |---------|-------------|---------------|--------------|---------------|
    | "gap"   | positions   | True (no weights) | False    | None          |
    | "sap"   | frames      | False         | False        | None          |
    | "lde"   | positions   | True          | True         | embedding_dim |
    | a Layer | frames      | True          | False        | None          |

    `projection_channels="auto"` is 64 in MSEA (section 3.1: 1x1
    convolutions before pooling; section 4.2: 64 channels before LDE) and,
    in MSFA, 64 for LDE and no projection otherwise. `share_dense="auto"`
    follows `share_pooling`.

    Args:
        mode: `"msea"` or `"msfa"`. Defaults to `"msea"`.
        pooling: `"gap"` (global average pooling), `"sap"` (self-attentive
            pooling), `"lde"` (learnable dictionary encoding, 64 codewords)
            or a Keras layer mapping `[batch, steps, features]` to
            `[batch, features']`. Defaults to `"gap"`.
        embedding_dim: positive int, the size of the embedding. Defaults to
            `128`.
        levels: `None` or a list of level numbers to aggregate from a dict
            input, e.g. `[3, 4, 5]` from `P2..P5`. `None`: every level.
        projection_channels: positive int, `None` (no 1x1 convolution) or
            `"auto"`.
        descriptors: `"frames"`, `"positions"` or `"auto"`.
        share_pooling: bool or `"auto"`; in MSEA, one pooling layer for all
            stages (needs equal descriptor sizes) or one per stage.
        l2_normalize: bool or `"auto"`: L2-normalise the pooled vectors.
        level_units: positive int, `None` or `"auto"`: units of the FC
            layer after each pooled vector (MSEA) or after the single
            pooled vector before the final FC layer (MSFA).
        share_dense: bool or `"auto"`; in MSEA, one such FC layer for all
            stages or one per stage.
        msfa_resolution: level number whose resolution MSFA fuses at, or
            `"auto"`: the middle level (the paper's `C4` of `C3..C5`).
        msfa_upsampling: `"bilinear"` (the paper's choice, section 5.1) or
            `"transposed"` (3x3, stride 2).
        kernel_initializer: initializer of all convolution and FC kernels.
        kernel_regularizer: optional regularizer of those kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: dict of 4D feature maps keyed by level (`"P3"`..`"P5"`,
            `"C3"`..; any name ending in the level number), or a list of
            them in bottom-up order.
        training: forwarded to the pooling layers.

    Input shape:
        Per level, 4D tensor `(batch_size, time_l, freq_l, channels_l)`;
        `time_l` may be `None`; `freq_l` must be known for
        `descriptors="frames"`. For MSFA, consecutive levels, each
        downsampled by 2 from the one below.

    Output shape:
        2D tensor `(batch_size, embedding_dim)`.

    Example:

    >>> p = {f"P{l}": np.zeros((2, 300 // 2 ** (l - 2), 64 // 2 ** (l - 2), 32),
    ...                        "float32") for l in (3, 4, 5)}
    >>> MultiScaleAggregation("msea", "gap", embedding_dim=128)(p).shape
    (2, 128)

    Reference:
        - [Jung et al., Improving Multi-Scale Aggregation Using Feature
          Pyramid Module for Robust Speaker Verification of Variable-Duration
          Utterances, Interspeech 2020, sections 2, 3.1, 4.2](
          https://arxiv.org/abs/2004.03194)
        - Gao et al., Improving Aggregation and Loss Function for Better
          Embedding Learning in End-to-End Speaker Verification System,
          Interspeech 2019 (MSFA).
        - Seo et al., Shortcut Connections Based Deep Speaker Embeddings for
          End-to-End Speaker Verification System, Interspeech 2019 (MSEA).
    """

    def __init__(
        self,
        mode="msea",
        pooling="gap",
        embedding_dim=128,
        levels=None,
        projection_channels=AUTO,
        descriptors=AUTO,
        share_pooling=AUTO,
        l2_normalize=AUTO,
        level_units=AUTO,
        share_dense=AUTO,
        msfa_resolution=AUTO,
        msfa_upsampling="bilinear",
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if isinstance(pooling, dict):
            # A pooling layer coming back from `get_config()`.
            pooling = keras.saving.deserialize_keras_object(pooling)
        if isinstance(pooling, str):
            if pooling not in POOLINGS:
                raise ValueError(
                    f"Unknown pooling. Valid names: {sorted(POOLINGS)}, or pass a Keras "
                    f"layer. Received: pooling={pooling!r}"
                )
        elif not isinstance(pooling, keras.layers.Layer):
            raise ValueError(
                f"`pooling` must be one of {sorted(POOLINGS)} or a Keras layer. "
                f"Received: pooling={pooling!r}"
            )
        self.mode = mode
        self.pooling = pooling
        self.embedding_dim = _check_optional_units("embedding_dim", embedding_dim)
        if self.embedding_dim is None:
            raise ValueError(
                "`embedding_dim` must be a positive integer. "
                f"Received: embedding_dim={embedding_dim!r}"
            )
        self.levels = _pyramid.check_levels(levels)
        self.projection_channels = _check_auto_or(
            "projection_channels", projection_channels, _check_optional_units
        )
        if descriptors != AUTO and descriptors not in DESCRIPTORS:
            raise ValueError(
                f"`descriptors` must be one of {DESCRIPTORS} or 'auto'. "
                f"Received: descriptors={descriptors!r}"
            )
        self.descriptors = descriptors
        self.share_pooling = _check_auto_or("share_pooling", share_pooling, _check_bool)
        self.l2_normalize = _check_auto_or("l2_normalize", l2_normalize, _check_bool)
        self.level_units = _check_auto_or("level_units", level_units, _check_optional_units)
        self.share_dense = _check_auto_or("share_dense", share_dense, _check_bool)
        if msfa_resolution != AUTO and (
            not isinstance(msfa_resolution, numbers.Integral) or isinstance(msfa_resolution, bool)
        ):
            raise ValueError(
                "`msfa_resolution` must be a level number or 'auto'. "
                f"Received: msfa_resolution={msfa_resolution!r}"
            )
        self.msfa_resolution = msfa_resolution
        if msfa_upsampling not in MSFA_UPSAMPLINGS:
            raise ValueError(
                f"`msfa_upsampling` must be one of {MSFA_UPSAMPLINGS}. "
                f"Received: msfa_upsampling={msfa_upsampling!r}"
            )
        self.msfa_upsampling = msfa_upsampling
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    # === Resolved "auto" settings ===

    def _defaults(self):
        return _PAPER_DEFAULTS[self.pooling if isinstance(self.pooling, str) else None]

    def _resolved(self, value, default):
        return default if isinstance(value, str) and value == AUTO else value

    def _resolve(self):
        defaults = self._defaults()
        if self.mode == "msea" or self.pooling == "lde":
            projection = _PROJECTION_CHANNELS
        else:
            projection = None
        self._projection = self._resolved(self.projection_channels, projection)
        self._descriptors = self._resolved(self.descriptors, defaults["descriptors"])
        self._share_pooling = self._resolved(self.share_pooling, defaults["share"])
        self._l2 = self._resolved(self.l2_normalize, defaults["l2_normalize"])
        self._level_units = self._resolved(
            self.level_units, self.embedding_dim if defaults["level_fc"] else None
        )
        self._share_dense = self._resolved(self.share_dense, self._share_pooling)

    # === Sub-layers ===

    def _conv(self, filters, kernel_size, name, strides=1, transposed=False):
        cls = keras.layers.Conv2DTranspose if transposed else keras.layers.Conv2D
        return cls(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _new_pooling(self, index):
        if isinstance(self.pooling, str):
            return POOLINGS[self.pooling]()
        if index == 0:
            return self.pooling
        config = self.pooling.get_config()
        config["name"] = f"{self.pooling.name}_{index}"
        return self.pooling.__class__.from_config(config)

    def _descriptor_shape(self, shape):
        batch, time, freq, channels = shape
        if self._descriptors == "positions":
            return (batch, None, channels)
        if freq is None:
            raise ValueError(
                "descriptors='frames' needs a known frequency size to flatten "
                f"[freq, channels] into one vector. Received: input_shape={tuple(shape)}"
            )
        return (batch, time, freq * channels)

    def _build_pooling(self, pooling, shape):
        if not pooling.built:
            pooling.build(shape)
        return pooling.compute_output_shape(shape)[-1]

    def build(self, input_shape):
        self._resolve()
        numbers_, shapes = _pyramid.select_levels(input_shape, self.levels, "inputs")
        shapes = [_pyramid.check_map_shape(self, shape) for shape in shapes]
        self._numbers = numbers_
        if self.mode == "msea":
            self._build_msea(shapes)
        else:
            self._build_msfa(numbers_, shapes)
        self.built = True

    def _build_msea(self, shapes):
        self.projections = []
        if self._projection is not None:
            for index, shape in enumerate(shapes):
                conv = self._conv(self._projection, 1, f"projection_{index}")
                conv.build(shape)
                self.projections.append(conv)
                shapes[index] = shape[:-1] + (self._projection,)
        descriptor_shapes = [self._descriptor_shape(shape) for shape in shapes]
        sizes = [shape[-1] for shape in descriptor_shapes]
        if self._share_pooling and len(set(sizes)) > 1:
            raise ValueError(
                "A shared pooling layer needs the same descriptor size at every "
                f"level, got {sizes} (descriptors={self._descriptors!r}). Use "
                "share_pooling=False, descriptors='positions' or projection_channels. "
                f"Received: share_pooling={self.share_pooling!r}"
            )
        count = 1 if self._share_pooling else len(shapes)
        self.poolings = [self._new_pooling(index) for index in range(count)]
        pooled = [
            self._build_pooling(self.poolings[min(index, count - 1)], shape)
            for index, shape in enumerate(descriptor_shapes)
        ]
        self.level_denses = []
        if self._level_units is not None:
            if self._share_dense and len(set(pooled)) > 1:
                raise ValueError(
                    "A shared per-level FC layer needs the same pooled size at every "
                    f"level, got {pooled}. Received: share_dense={self.share_dense!r}"
                )
            dense_count = 1 if self._share_dense else len(shapes)
            for index in range(dense_count):
                dense = self._dense(self._level_units, f"level_dense_{index}")
                dense.build((None, pooled[index]))
                self.level_denses.append(dense)
            pooled = [self._level_units] * len(shapes)
        self.embedding_dense = self._dense(self.embedding_dim, "embedding_dense")
        self.embedding_dense.build((None, sum(pooled)))

    def _build_msfa(self, numbers_, shapes):
        if numbers_ != list(range(numbers_[0], numbers_[0] + len(numbers_))):
            raise ValueError(
                "MSFA needs consecutive levels (each a factor 2 above the one below). "
                f"Received: levels={numbers_}"
            )
        target = numbers_[len(numbers_) // 2]
        if self.msfa_resolution != AUTO:
            target = self.msfa_resolution
        if target not in numbers_:
            raise ValueError(
                f"`msfa_resolution` must be one of the levels {numbers_}. "
                f"Received: msfa_resolution={self.msfa_resolution!r}"
            )
        self._target_index = numbers_.index(target)
        # One resampling convolution per factor 2 and level; a level keeps
        # its own channels, so the fused map has sum(channels) channels.
        self.resample_convs = []
        for index, shape in enumerate(shapes):
            channels = shape[-1]
            steps = []
            for step in range(abs(index - self._target_index)):
                if index < self._target_index:
                    steps.append(self._conv(channels, 3, f"down_{index}_{step}", strides=2))
                elif self.msfa_upsampling == "transposed":
                    steps.append(
                        self._conv(channels, 3, f"up_{index}_{step}", strides=2, transposed=True)
                    )
            for conv in steps:
                conv.build((None, None, None, channels))
            self.resample_convs.append(steps)
        fused = sum(shape[-1] for shape in shapes)
        fused_shape = shapes[self._target_index][:-1] + (fused,)
        self.projections = []
        if self._projection is not None:
            conv = self._conv(self._projection, 1, "projection_0")
            conv.build(fused_shape)
            self.projections.append(conv)
            fused_shape = fused_shape[:-1] + (self._projection,)
        self.poolings = [self._new_pooling(0)]
        pooled = self._build_pooling(self.poolings[0], self._descriptor_shape(fused_shape))
        self.level_denses = []
        if self._level_units is not None:
            dense = self._dense(self._level_units, "level_dense_0")
            dense.build((None, pooled))
            self.level_denses.append(dense)
            pooled = self._level_units
        self.embedding_dense = self._dense(self.embedding_dim, "embedding_dense")
        self.embedding_dense.build((None, pooled))

    # === Forward pass ===

    def _to_descriptors(self, x):
        shape = ops.shape(x)
        if self._descriptors == "positions":
            return ops.reshape(x, (shape[0], -1, x.shape[-1]))
        return ops.reshape(x, (shape[0], -1, x.shape[2] * x.shape[3]))

    def _pool(self, index, x, training):
        pooling = self.poolings[min(index, len(self.poolings) - 1)]
        pooled = pooling(self._to_descriptors(x), training=training)
        if self._l2:
            pooled = _l2_normalize(pooled)
        if self.level_denses:
            pooled = self.level_denses[min(index, len(self.level_denses) - 1)](pooled)
        return pooled

    def _resample(self, index, x, maps):
        """Brings map `index` to the resolution of the target map, one factor 2 at a time."""
        step = 1 if index < self._target_index else -1
        current = index
        convs = iter(self.resample_convs[index])
        if index > self._target_index and self.msfa_upsampling == "bilinear":
            shape = ops.shape(maps[self._target_index])
            return _pyramid.resize_bilinear(x, shape[1], shape[2])
        while current != self._target_index:
            current += step
            shape = ops.shape(maps[current])
            x = _pyramid.crop_or_pad(next(convs)(x), shape[1], shape[2])
        return x

    def call(self, inputs, training=None):
        _, maps = _pyramid.select_levels(inputs, self.levels, "inputs")
        if self.mode == "msea":
            pooled = []
            for index, x in enumerate(maps):
                if self.projections:
                    x = self.projections[index](x)
                pooled.append(self._pool(index, x, training))
            return self.embedding_dense(ops.concatenate(pooled, axis=-1))
        fused = ops.concatenate(
            [self._resample(index, x, maps) for index, x in enumerate(maps)], axis=-1
        )
        if self.projections:
            fused = self.projections[0](fused)
        return self.embedding_dense(self._pool(0, fused, training))

    def compute_output_shape(self, input_shape):
        _, shapes = _pyramid.select_levels(input_shape, self.levels, "inputs")
        return (shapes[0][0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        pooling = self.pooling
        if not isinstance(pooling, str):
            pooling = keras.saving.serialize_keras_object(pooling)
        config.update(
            {
                "mode": self.mode,
                "pooling": pooling,
                "embedding_dim": self.embedding_dim,
                "levels": self.levels,
                "projection_channels": self.projection_channels,
                "descriptors": self.descriptors,
                "share_pooling": self.share_pooling,
                "l2_normalize": self.l2_normalize,
                "level_units": self.level_units,
                "share_dense": self.share_dense,
                "msfa_resolution": self.msfa_resolution,
                "msfa_upsampling": self.msfa_upsampling,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
