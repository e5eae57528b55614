import keras
from keras import ops

from keras_spk.utils._checks import is_int


@keras.saving.register_keras_serializable(package="keras_spk")
class SpecAugment(keras.layers.Layer):
    """SpecAugment frequency and time masking of features, in training only.

    For each example, `freq_masks` bands of bins and `time_masks` runs of
    frames are set to zero. A mask's width `w` is uniform in
    `{0, ..., width}` (capped at the axis' size) and its first index `f0`
    uniform in `{0, ..., size - w}`:

    ```
    y[b, t, f] = 0      if f in [f0, f0 + w) for a frequency mask of row b,
                        or t in [t0, t0 + w) for a time mask of row b
    y[b, t, f] = x[b, t, f]  otherwise
    ```

    Masks may overlap, so at most `freq_masks * freq_width` bins and
    `time_masks * time_width` frames of a row are masked. Outside training
    (`training=False` or unset) the layer returns its input unchanged and
    adds no random op to the graph (nothing to strip from an exported
    model). Random values come from the layer's `keras.random.SeedGenerator`.

    Args:
        freq_masks: int >= 0, frequency masks per example. Defaults to `2`.
        freq_width: int >= 0, the widest frequency mask, in bins.
            Defaults to `8`.
        time_masks: int >= 0, time masks per example. Defaults to `2`.
        time_width: int >= 0, the widest time mask, in frames. Defaults
            to `10`.
        seed: optional int, the seed of the layer's random generator.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of features (log-mel filterbanks, spectrograms).
        training: bool; masks are drawn only when true.

    Input shape:
        3D tensor `(batch_size, frames, bins)`; `frames` may be `None`.

    Output shape:
        3D tensor `(batch_size, frames, bins)`, same as the input.

    Example:

    >>> x = np.ones((2, 100, 40), dtype="float32")
    >>> layer = SpecAugment(freq_masks=1, freq_width=8, time_masks=1, time_width=10, seed=0)
    >>> y = keras.ops.convert_to_numpy(layer(x, training=True))
    >>> bool((y == 0).any()), bool((layer(x) == x).all())  # doctest: +SKIP
    (True, True)

    Reference:
        - [Park et al., 2019, SpecAugment: A Simple Data Augmentation Method
          for Automatic Speech Recognition](https://arxiv.org/abs/1904.08779)
    """

    def __init__(
        self, freq_masks=2, freq_width=8, time_masks=2, time_width=10, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            if not is_int(value) or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
        if seed is not None and not is_int(seed):
            raise ValueError(f"`seed` must be None or an integer. Received: seed={seed!r}")
        self.freq_masks = int(freq_masks)
        self.freq_width = int(freq_width)
        self.time_masks = int(time_masks)
        self.time_width = int(time_width)
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "`SpecAugment` expects inputs of shape (batch_size, frames, bins). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def _band_mask(self, batch, size, count, width):
        """Bool [batch, size]: `count` bands of width uniform in [0, min(width, size)] per row."""
        u = keras.random.uniform((batch, count, 2), seed=self.seed_generator)
        size_f = ops.cast(size, "float32")
        widths = ops.floor(u[..., 0] * (ops.minimum(float(width), size_f) + 1.0))
        starts = ops.floor(u[..., 1] * (size_f - widths + 1.0))
        position = ops.arange(size, dtype="float32")[None, None, :]
        inside = ops.logical_and(
            position >= starts[..., None], position < (starts + widths)[..., None]
        )
        return ops.any(inside, axis=1)

    def call(self, inputs, training=None):
        if not training or (self.freq_masks == 0 and self.time_masks == 0):
            return inputs
        shape = ops.shape(inputs)
        batch, frames, bins = shape[0], shape[1], shape[2]
        masked = None
        if self.freq_masks:
            masked = self._band_mask(batch, bins, self.freq_masks, self.freq_width)[:, None, :]
        if self.time_masks:
            time = self._band_mask(batch, frames, self.time_masks, self.time_width)[:, :, None]
            masked = time if masked is None else ops.logical_or(masked, time)
        return ops.where(masked, ops.zeros_like(inputs), inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "freq_masks": self.freq_masks,
                "freq_width": self.freq_width,
                "time_masks": self.time_masks,
                "time_width": self.time_width,
                "seed": self.seed,
            }
        )
        return config


def spec_augment_layer(settings, name="spec_augment"):
    """The `SpecAugment` layer of a model builder's `spec_augment` argument, or None for None.

    Args:
        settings: `None`, or a dict of `SpecAugment` arguments (`freq_masks`,
            `freq_width`, `time_masks`, `time_width`, `seed`), as
            `keras_spk.data.augment.spec_augment_settings` gives them.
        name: the layer's name.
    """
    if settings is None:
        return None
    if not isinstance(settings, dict) or "name" in settings:
        raise ValueError(
            "`spec_augment` must be None or a dict of SpecAugment arguments (freq_masks, "
            f"freq_width, time_masks, time_width, seed). Received: spec_augment={settings!r}"
        )
    return SpecAugment(name=name, **settings)
