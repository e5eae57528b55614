"""Shared pieces of the classification heads and embedding losses.

Private module used by `SoftmaxHead`, `AMSoftmax`, `ASoftmax`, `AAMSoftmax`,
`SpeakerBasis`, `CenterLoss`, `RingLoss`, `LossHead` and `GE2EHead`:

- argument validation that reports bad values the same way everywhere
  (`ValueError("... Received: arg=value")`), on top of the shared checks of
  `keras_spk.utils._checks`;
- splitting the call input `[embeddings, labels]` (or `embeddings` alone);
- label flattening, one-hot, cross-entropy and L2 normalisation with
  `keras.ops` only, so every head computes them identically on every backend;
- `ClassWeightHead`, the base layer that owns the class weight matrix
  `W` of shape `(embedding_dim, num_classes)` (column `j` is class `j`), and
  its two families: `LinearHead` (logits `W^T e + b`: `SoftmaxHead`,
  `SpeakerBasis`) and `CosineMarginHead` (logits `s * cos`, a margin on the
  target class in the loss: `AMSoftmax`, `AAMSoftmax`);
- `LossTerms`, the mix-in of every layer that adds a loss: it scales the
  loss by the layer's weight before `add_loss` and logs each term it adds
  as a metric (`<layer name>_loss`, or `<layer name>_<term>_loss`), so
  that `model.fit` reports one column per term.
"""

import math
import numbers
import threading
import weakref

import keras
from keras import ops

from keras_spk.utils import _checks
from keras_spk.utils import _precision

try:  # Shape inference (`compute_output_spec`) runs `call` in this scope.
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope
except ImportError:  # pragma: no cover - a Keras without it.

    def in_symbolic_scope():
        return False


# Floor under squared norms before a square root or a division: keeps the
# gradient finite for an all-zero embedding or class vector.
NORM_EPSILON = 1e-12


# --------------------------------------------------------------------------
# Argument validation (Python side, runs in __init__).
# --------------------------------------------------------------------------


def check_int(name, value, minimum):
    if not _checks.is_int(value) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def check_real(name, value, minimum=None, maximum=None, strict_minimum=False):
    """A finite number in [minimum, maximum] (or (minimum, ...] if strict)."""
    ok = _checks.is_real(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        bracket = "(" if strict_minimum or minimum is None else "["
        closing = ")" if maximum is None else "]"
        raise ValueError(
            f"`{name}` must be a finite number in {bracket}{low}, {high}{closing}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


# --------------------------------------------------------------------------
# Inputs.
# --------------------------------------------------------------------------


def split_inputs(inputs):
    """`[embeddings, labels]`, `[embeddings]` or `embeddings` -> (embeddings, labels or None)."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 1:
            return inputs[0], None
        if len(inputs) == 2:
            return inputs[0], inputs[1]
        raise ValueError(
            "Expected `embeddings` or `[embeddings, labels]`. "
            f"Received: a list of {len(inputs)} inputs"
        )
    return inputs, None


def is_shape(value):
    return isinstance(value, (list, tuple)) and all(
        d is None or isinstance(d, numbers.Integral) for d in value
    )


def embedding_shape(input_shape):
    """The embeddings' shape out of a single shape or a list of shapes."""
    if is_shape(input_shape):
        return tuple(input_shape)
    return tuple(input_shape[0])


def check_embedding_shape(layer, shape):
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"{layer.__class__.__name__} expects embeddings of shape "
            f"(batch_size, embedding_dim) with a known embedding_dim. Received: shape={shape}"
        )
    return int(shape[-1])


def flat_labels(labels):
    """Integer class indices of shape `(batch,)` from `(batch,)` or `(batch, 1)`."""
    return ops.reshape(ops.cast(labels, "int32"), (-1,))


def one_hot(labels, num_classes, dtype="float32"):
    return ops.one_hot(flat_labels(labels), num_classes, dtype=dtype)


# --------------------------------------------------------------------------
# Math, keras.ops only.
# --------------------------------------------------------------------------


def l2_norm(x, axis=-1, keepdims=True):
    return ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=keepdims), NORM_EPSILON))


def l2_normalize(x, axis=-1):
    return x / l2_norm(x, axis=axis)


def cosine_logits(embeddings, kernel):
    """cos(theta_ij) between embedding i and class vector j, clipped to [-1, 1]."""
    cosine = ops.matmul(l2_normalize(embeddings, axis=-1), l2_normalize(kernel, axis=0))
    # Rounding can put |cos| a hair above 1, which would break sqrt(1 - cos^2).
    return ops.clip(cosine, -1.0, 1.0)


def cross_entropy(logits, targets):
    """Mean over the batch of -log softmax(logits)[y], with one-hot `targets`."""
    logits = ops.cast(logits, "float32")
    log_probs = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    return -ops.mean(ops.sum(targets * log_probs, axis=-1))


# --------------------------------------------------------------------------
# Adding and logging losses.
# --------------------------------------------------------------------------


def loss_metric_name(layer_name, term=None):
    """The logged name of a layer's loss term: `<layer>[_<term>]`, ending in `_loss`.

    `("softmax_head", None)` -> `"softmax_head_loss"`, `("center_loss", None)`
    -> `"center_loss"`, `("speaker_basis", "basis")` -> `"speaker_basis_basis_loss"`.
    """
    name = layer_name if term is None else f"{layer_name}_{term}"
    return name if name.endswith("_loss") else f"{name}_loss"


_PENDING = threading.local()


class LossTerms:
    """Mix-in of the layers that add losses: weighting and per-term logging.

    A layer lists its terms with `track_loss_terms(*terms)` in `__init__`
    (`None` for a layer with a single term); each gets a float32
    `keras.metrics.Mean` named by `loss_metric_name`, tracked by the layer,
    so that `Model.metrics` collects it, `reset_metrics` clears it at each
    epoch (and before `evaluate`), and `fit` / `evaluate` report it, under
    `val_` for validation data, next to `loss`.

    `add_weighted_loss` adds `weight * loss` with `add_loss` (the loss as
    it is for weight 1, so that a model's training is unchanged; nothing
    for weight 0) and updates each term's metric with its value as added,
    weighted by the batch size as Keras weights `loss`: over an epoch the
    logged terms then sum to the logged `loss`, less regularisation
    penalties. The metrics read the terms through `stop_gradient` and draw
    no random numbers, so logging changes neither the loss, nor the
    gradients, nor the random stream. A term whose weight is 0 logs 0.

    The metrics are updated on every call that adds a loss, eager or
    compiled, training or not, except during shape inference. A layer
    nested inside a sub-model is not collected by the outer model's
    `metrics` (Keras skips the metrics of nested models).
    """

    # Pending losses per thread. `tf.distribute.MirroredStrategy` runs one thread per
    # replica over the same layer objects, and a cross-replica step inside a forward pass
    # (e.g. `CenterLoss`'s all-reduce, a batch-norm update) lets another replica run its
    # forward pass meanwhile: with Keras's single list per layer, that replica would clear
    # this one's pending losses and add its own to them.
    @property
    def _losses(self):
        table = getattr(_PENDING, "losses", None)
        if table is None:
            table = _PENDING.losses = weakref.WeakKeyDictionary()
        return table.setdefault(self, [])

    @_losses.setter
    def _losses(self, value):
        pending = self._losses
        pending[:] = list(value)

    def track_loss_terms(self, *terms):
        if not terms:
            terms = (None,)
        self._loss_term_names = [("" if term is None else term) for term in terms]
        for term in terms:
            metric = keras.metrics.Mean(name=loss_metric_name(self.name, term), dtype="float32")
            setattr(self, self._loss_metric_attribute(term), metric)

    @staticmethod
    def _loss_metric_attribute(term):
        return "term_metric" if not term else f"{term}_term_metric"

    def loss_metric(self, term=None):
        """The `keras.metrics.Mean` logging `term` (`None`: the single term)."""
        return getattr(self, self._loss_metric_attribute(term))

    def add_weighted_loss(self, loss, reference, weight, terms=None):
        """Adds `weight * loss` and logs it (or each of `terms` times `weight`).

        Args:
            loss: scalar float tensor, the layer's loss before `weight`.
            reference: a tensor whose first axis is the batch (the logged
                values are weighted by its size).
            weight: Python float >= 0.
            terms: optional dict `{term: scalar}` whose values add up to
                `loss`, for a layer logging several terms; every term
                given to `track_loss_terms` must be a key, or be absent
                (then it logs 0).
        """
        names = [name or None for name in self._loss_term_names]
        if terms is None:
            terms = {names[0]: loss}
        if weight == 0.0:
            terms = {}
        else:
            if weight != 1.0:
                loss = weight * loss
                terms = {name: weight * value for name, value in terms.items()}
            self.add_loss(loss)
        if in_symbolic_scope():
            return
        batch_size = ops.cast(ops.shape(reference)[0], "float32")
        for name in names:
            value = terms.get(name)
            value = ops.zeros((), "float32") if value is None else ops.stop_gradient(value)
            self.loss_metric(name).update_state(ops.cast(value, "float32"), batch_size)


# --------------------------------------------------------------------------
# Base layer.
# --------------------------------------------------------------------------


class ClassWeightHead(LossTerms, keras.layers.Layer):
    """Owns the class weight matrix `kernel` of shape `(embedding_dim, num_classes)`.

    Subclasses implement `head_outputs(embeddings, labels, training)`
    returning `(logits, loss or None)`. `call` splits the inputs, adds
    `loss_weight * loss` with `add_loss` when labels are given, logs it as
    `<layer name>_loss`, and returns the logits. A head adding several
    terms lists them in `LOSS_TERMS` and returns `loss` as a dict
    `{term: value}` (each value already carrying the head's own weight):
    the terms are added up in order, from 0, and each is logged as
    `<layer name>_<term>_loss`.

    Heads compute in float32 whatever the global dtype policy (margins on
    cosines near 1 and the annealed SphereFace blend lose too much in
    float16): a head takes the float32 policy unless given a `dtype`, so
    its weights are float32 and so are its logits under `mixed_float16` or
    `mixed_bfloat16`. With an explicit mixed `dtype` it still computes in
    float32: `head_outputs` receives float32 embeddings, reads the weights
    through `float32_weight`, and the logits are cast back to the compute
    dtype.
    """

    # The terms a head logs; `None`: one term, named after the layer.
    LOSS_TERMS = (None,)

    def __init__(
        self,
        num_classes,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        loss_weight=1.0,
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.loss_weight = check_real("loss_weight", loss_weight, minimum=0.0)
        self.track_loss_terms(*self.LOSS_TERMS)

    def build(self, input_shape):
        dim = check_embedding_shape(self, embedding_shape(input_shape))
        self.kernel = self.add_weight(
            shape=(dim, self.num_classes),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            name="kernel",
        )

    def call(self, inputs, training=None):
        embeddings, labels = split_inputs(inputs)
        embeddings = ops.cast(embeddings, "float32")
        logits, loss = self.head_outputs(embeddings, labels, bool(training))
        if loss is not None:
            terms = None
            if isinstance(loss, dict):
                terms, loss = loss, ops.zeros((), dtype="float32")
                for value in terms.values():
                    loss = loss + value
            self.add_weighted_loss(loss, embeddings, self.loss_weight, terms)
        return ops.cast(logits, self.compute_dtype)

    @staticmethod
    def float32_weight(variable):
        # Under an explicit mixed `dtype` the variable reads as float16 inside call().
        return ops.cast(variable, "float32")

    def class_cosines(self, embeddings):
        """`cos(theta_ij)` between embedding `i` and class vector `W_j`, `(batch, num_classes)`."""
        return cosine_logits(embeddings, self.float32_weight(self.kernel))

    def head_outputs(self, embeddings, labels, training):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return (embedding_shape(input_shape)[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "loss_weight": self.loss_weight,
            }
        )
        return config


class LinearHead(ClassWeightHead):
    """A head whose logits are `W^T e_i + b`, the bias `b` optional.

    Subclasses set `use_bias` and `bias_initializer` in `__init__` (where
    they validate their other arguments) and list both in `get_config`;
    this class adds the bias weight and computes the logits.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.num_classes,), initializer=self.bias_initializer, name="bias"
            )

    def linear_logits(self, embeddings):
        logits = ops.matmul(embeddings, self.float32_weight(self.kernel))
        if self.use_bias:
            logits = logits + self.float32_weight(self.bias)
        return logits


class CosineMarginHead(ClassWeightHead):
    """A head with scaled-cosine logits `s * cos_ij` and a margin on the target class.

    The layer returns `s * cos_ij` (no margin). With labels, the loss is the
    cross-entropy of `s * margin_cosine(cos, targets)`, where subclasses
    implement `margin_cosine`: the cosine matrix with the margin `m` applied
    to the target entries (`targets` is one-hot) and the others unchanged.
    """

    def __init__(
        self,
        num_classes,
        scale=30.0,
        margin=0.2,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        loss_weight=1.0,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            loss_weight=loss_weight,
            **kwargs,
        )
        self.scale = check_real("scale", scale, minimum=0.0, strict_minimum=True)
        self.margin = check_real("margin", margin, minimum=0.0)

    def head_outputs(self, embeddings, labels, training):
        cosine = self.class_cosines(embeddings)
        logits = self.scale * cosine
        if labels is None:
            return logits, None
        targets = one_hot(labels, self.num_classes)
        margin_logits = self.scale * self.margin_cosine(cosine, targets)
        return logits, cross_entropy(margin_logits, targets)

    def margin_cosine(self, cosine, targets):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "margin": self.margin})
        return config
