import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spk")
def hard_sigmoid_keras2(x):
    """Keras 2's `hard_sigmoid`: a piecewise-linear sigmoid of slope 0.2.

    ```
    hard_sigmoid_keras2(x) = clip(0.2 x + 0.5, 0, 1)
                           = 0 for x <= -2.5,  1 for x >= 2.5
    ```

    Keras 2 (and its TensorFlow backend, `K.hard_sigmoid`) used this as the
    default `recurrent_activation` of its GRU and LSTM layers. Keras 3's
    `keras.activations.hard_sigmoid` is another function,
    `relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)` (slope 1/6, saturating at
    +-3), so a model trained with Keras 2's gates needs this one to be
    reproduced. Registered as `"keras_spk>hard_sigmoid_keras2"`, so a layer
    using it survives `model.save()` / `keras.saving.load_model()`.

    Args:
        x: float tensor.

    Returns:
        float tensor of the same shape and dtype, in `[0, 1]`.

    Example:

    >>> hard_sigmoid_keras2(keras.ops.convert_to_tensor([-3.0, -1.0, 0.0, 2.0, 3.0]))
    [0.0, 0.3, 0.5, 0.9, 1.0]
    >>> keras.layers.GRU(1024, recurrent_activation=hard_sigmoid_keras2, reset_after=False)

    Reference:
        - Keras 2.x `keras/activations.py` and `keras/backend.py`
          (`hard_sigmoid`); Courbariaux et al., BinaryConnect, NeurIPS 2015
          (the "hard sigmoid")
    """
    x = ops.convert_to_tensor(x)
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)
