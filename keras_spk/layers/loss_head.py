import math

import keras
from keras import ops

from keras_spk.layers import _heads
from keras_spk.utils import _precision


def _resolve_loss(loss):
    """A `keras.losses.Loss`, a callable or a Keras loss name -> a callable."""
    if isinstance(loss, keras.losses.Loss):
        return loss
    if isinstance(loss, str):
        try:
            resolved = keras.losses.get(loss)
        except (ValueError, TypeError):
            resolved = None
        if resolved is None:
            raise ValueError(
                "`loss` must be a keras.losses.Loss, a callable (y_true, y_pred) or the name of "
                f"a Keras loss. Received: loss={loss!r}"
            )
        return resolved() if isinstance(resolved, type) else resolved
    if isinstance(loss, dict):
        return _resolve_loss(keras.losses.deserialize(loss))
    if isinstance(loss, type) or not callable(loss):
        raise ValueError(
            "`loss` must be a keras.losses.Loss instance, a callable (y_true, y_pred) or the "
            f"name of a Keras loss. Received: loss={loss!r}"
        )
    return loss


def _check_weight(weight):
    ok = isinstance(weight, (int, float)) and not isinstance(weight, bool)
    if not ok or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"`weight` must be a finite number >= 0. Received: weight={weight!r}")
    return float(weight)


def _split(inputs):
    """`[y_pred, y_true]` or `[y_pred_1, ..., y_pred_n, y_true]` -> (y_pred, y_true)."""
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
        got = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
        raise ValueError(
            "LossHead expects inputs [y_pred, y_true] (y_pred a tensor or a list of tensors, "
            f"y_true last). Received: inputs={got!r}"
        )
    y_pred = inputs[0] if len(inputs) == 2 else list(inputs[:-1])
    return y_pred, inputs[-1]


@keras.saving.register_keras_serializable(package="keras_spk")
class LossHead(_heads.LossTerms, keras.layers.Layer):
    """Puts any loss function into a model as a weighted, logged term.

    Called on `[y_pred, y_true]`, the layer computes

    ```
    L = weight * loss(y_true, y_pred)
    ```

    adds `L` with `add_loss` and returns `y_pred` unchanged, so it can sit
    anywhere in a functional graph (e.g. on the embeddings, in front of a
    classification head). Several `LossHead`s and loss-adding layers
    (`SoftmaxHead(loss_weight=...)`, `CenterLoss`, ...) make a multi-term
    objective in a model compiled with `loss=None`; `model.fit` minimises
    their sum. `loss` returning per-sample values (a plain function, or a
    `Loss` with `reduction=None`) is averaged over them.

    `L` is logged as the metric `<name>_loss` (`loss_head_loss` by default;
    a name ending in `_loss` is kept as it is), so `fit`'s History, the
    progress bar, `CSVLogger` and TensorBoard show the term each epoch
    (weighted, as added: over an epoch the terms of all such layers sum to
    `loss`, less weight decay). With `weight=0` the column is there and
    reads 0, and nothing is added (for switching a term off without
    changing the model).

    Args:
        loss: a `keras.losses.Loss` instance (e.g.
            `keras_spk.losses.TripletLoss()`), a callable
            `(y_true, y_pred) -> scalar or per-sample values` (registered
            with `keras.saving.register_keras_serializable` for the model to
            be saved), or the name of a Keras loss (`"mse"`).
        weight: finite float >= 0, the term's weight. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: `[y_pred, y_true]`, where `y_pred` is a tensor or a list of
            tensors (several outputs, passed to `loss` as a list), or
            `[y_pred_1, ..., y_pred_n, y_true]`; `y_true` is always last.

    Input shape:
        any; `y_true`'s first axis is the batch.

    Output shape:
        that of `y_pred` (the same tensor, or list of tensors).

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> x = LossHead(keras_spk.losses.TripletLoss(), weight=0.5,
    ...              name="triplet")([embeddings, labels])
    >>> logits = SoftmaxHead(1211, loss_weight=0.1)([x, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="adam", loss=None)  # logs triplet_loss, softmax_head_loss
    """

    def __init__(self, loss, weight=1.0, **kwargs):
        super().__init__(**_precision.float32_policy(kwargs))
        self.loss = _resolve_loss(loss)
        self.weight = _check_weight(weight)
        # A name is kept as given, to be written back by get_config.
        self._loss_identifier = loss if isinstance(loss, str) else None
        self.track_loss_terms()

    def call(self, inputs):
        y_pred, y_true = _split(inputs)
        if self.weight != 0.0:
            value = ops.convert_to_tensor(self.loss(y_true, y_pred))
            if len(value.shape) > 0:
                value = ops.mean(value)
        else:
            value = ops.zeros((), dtype="float32")
        self.add_weighted_loss(value, y_true, self.weight)
        return y_pred

    def compute_output_spec(self, inputs, **kwargs):
        y_pred, _ = _split(inputs)
        return keras.tree.map_structure(
            lambda x: keras.KerasTensor(x.shape, dtype=x.dtype), y_pred
        )

    def compute_output_shape(self, input_shape):
        return input_shape[0] if len(input_shape) == 2 else list(input_shape[:-1])

    def get_config(self):
        config = super().get_config()
        if self._loss_identifier is not None:
            loss = self._loss_identifier
        else:
            loss = keras.saving.serialize_keras_object(self.loss)
        config.update({"loss": loss, "weight": self.weight})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        loss = config.pop("loss")
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        return cls(loss, **config)
