import math
import numbers

import keras
from keras import ops

from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class PreEmphasis(keras.layers.Layer):
    """First-order pre-emphasis (high-pass) filter on raw waveforms.

    Boosts high frequencies before spectral analysis:

    ```
    y[t] = x[t] - coefficient * x[t - 1]    for t >= 1
    y[0] = x[0]
    ```

    Each row is filtered independently; the first sample is passed through
    unchanged (no implicit zero or reflected sample before it).

    Args:
        coefficient: float in `[0, 1]`, the filter coefficient `a`. 0 is the
            identity. Defaults to `0.97`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: float tensor of waveforms.

    Input shape:
        2D tensor `(batch_size, samples)`; `samples` may be `None`.

    Output shape:
        2D tensor `(batch_size, samples)`, same as the input.

    Example:

    >>> x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype="float32")
    >>> keras.ops.convert_to_numpy(PreEmphasis(0.5)(x))
    array([[1. , 1.5, 2. , 2.5]], dtype=float32)

    Reference:
        - [Young et al., The HTK Book, section 5.2](https://htk.eng.cam.ac.uk/)
    """

    def __init__(self, coefficient=0.97, **kwargs):
        # float32 under a mixed policy too: the difference of two nearly equal
        # samples loses most of float16's 11 bits.
        super().__init__(**_precision.float32_policy(kwargs))
        if (
            not isinstance(coefficient, numbers.Real)
            or isinstance(coefficient, bool)
            or not math.isfinite(coefficient)
            or not 0.0 <= coefficient <= 1.0
        ):
            raise ValueError(
                "`coefficient` must be a number in [0, 1]. "
                f"Received: coefficient={coefficient!r}"
            )
        self.coefficient = float(coefficient)

    def call(self, inputs):
        # Slicing keeps this valid for empty inputs (0 samples -> 0 samples).
        return ops.concatenate(
            [inputs[:, :1], inputs[:, 1:] - self.coefficient * inputs[:, :-1]],
            axis=1,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"coefficient": self.coefficient})
        return config
