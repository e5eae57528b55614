import keras
from keras import ops

from keras_spk.utils import _checks


@keras.saving.register_keras_serializable(package="keras_spk")
class ChannelExchange(keras.layers.Layer):
    """MIRNet's channel exchange: one view of the spectral embedding per speaker.

    The speech encoder emits `V_1` with `K * D` channels, block `j` of `D`
    channels meant for speaker `j`. The layer returns the `K` cyclic rolls
    of those blocks, `V_k` starting with block `k`:

    ```
    V_k = Concat(V_1[(k-1) D : K D], V_1[0 : (k-1) D])      k = 1, ..., K
    ```

    so `V_1` is the input itself and, for `K = 2`, `V_2 = Concat(V_1[D:2D],
    V_1[:D])` (eq. 2). A layer shared by the speakers (MIRNet's spectral
    attention) then sees speaker `k`'s block in the same place in `V_k`.

    The output is a Python list of `K` tensors, `V_1` first, rather than a
    stacked `[B, K, T, K D]` tensor: each shared layer downstream
    (`SpectralAttention`, which takes this list as it is and reads `V_1` at
    index 0, then the speaker-embedding network) is called once per
    speaker, so batch statistics (batch normalisation) are those of one
    speaker's view, as with `K` separate calls of a shared network.

    Every frame is processed alone, so a Keras mask passes through to each
    of the `K` outputs.

    Args:
        num_speakers: positive int `K`, the speakers in the mixture (the
            number of blocks). Defaults to `2` (the paper's setting).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor `V_1`, channels last.

    Input shape:
        `(batch_size, ..., K * D)` of rank >= 2 (`(batch_size, time, K * D)`
        in MIRNet); the channel axis must be known and divisible by `K`.

    Output shape:
        A list of `K` tensors of the input's shape.

    Example:

    >>> v1 = np.arange(6, dtype="float32").reshape(1, 1, 6)
    >>> views = ChannelExchange(3)(v1)  # D = 2
    >>> [keras.ops.convert_to_numpy(v)[0, 0].tolist() for v in views]
    [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 0.0, 1.0], [4.0, 5.0, 0.0, 1.0, 2.0, 3.0]]

    Reference:
        - Han, Chung and Kang, MIRNet: Learning multiple identities
          representations in overlapped speech, Interspeech 2020, section
          3.2, eq. 2
    """

    def __init__(self, num_speakers=2, **kwargs):
        super().__init__(**kwargs)
        self.num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
        self.supports_masking = True

    def _block_size(self, input_shape):
        channels = input_shape[-1] if len(input_shape) >= 2 else None
        if channels is None or channels % self.num_speakers != 0:
            raise ValueError(
                f"ChannelExchange expects inputs (batch_size, ..., K * D) of rank >= 2 with the "
                f"channel axis known and divisible by num_speakers={self.num_speakers}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        return channels // self.num_speakers

    def build(self, input_shape):
        self.block_size = self._block_size(input_shape)

    def call(self, inputs):
        size = self.block_size
        blocks = [
            inputs[..., k * size : (k + 1) * size] for k in range(self.num_speakers)
        ]
        views = [inputs]
        for k in range(1, self.num_speakers):
            views.append(ops.concatenate(blocks[k:] + blocks[:k], axis=-1))
        return views

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return [mask] * self.num_speakers

    def compute_output_shape(self, input_shape):
        self._block_size(input_shape)
        return [tuple(input_shape)] * self.num_speakers

    def get_config(self):
        config = super().get_config()
        config.update({"num_speakers": self.num_speakers})
        return config


@keras.saving.register_keras_serializable(package="keras_spk")
class SplitViews(keras.layers.Layer):
    """`[K * B, dim]` (K views stacked along the batch) -> `[B, K, dim]`.

    The inverse of concatenating K per-speaker tensors along the batch axis
    (so that one shared network, its batch normalisation included, sees
    all K views as one batch, e.g. MIRNet's ResNet on the K attended
    spectra): row `k * B + b` of the input becomes `[b, k]`.

    Args:
        num_views: int K >= 1.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Example:

    >>> x = np.arange(12, dtype="float32").reshape(4, 3)  # views of 2 examples, stacked
    >>> SplitViews(2)(x).shape
    (2, 2, 3)
    """

    def __init__(self, num_views, **kwargs):
        super().__init__(**kwargs)
        self.num_views = _checks.check_positive_int("num_views", num_views)

    def call(self, x):
        dim = x.shape[-1]
        x = keras.ops.reshape(x, (self.num_views, -1, dim))
        return keras.ops.transpose(x, (1, 0, 2))

    def compute_output_shape(self, input_shape):
        return (None, self.num_views, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_views": self.num_views}
