import keras

from keras_spk.layers import _heads


@keras.saving.register_keras_serializable(package="keras_spk")
class SoftmaxHead(_heads.LinearHead):
    """Fully-connected output layer trained with softmax cross-entropy.

    Logits and loss (eq. 1 of Heo et al. 2019, averaged over the batch):

    ```
    logits[i, j] = W_j^T e_i + b_j
    L_S = -(1 / M) * sum_i log(exp(logits[i, y_i]) / sum_j exp(logits[i, j]))
    ```

    When labels are given the layer adds `loss_weight * L_S` with
    `add_loss`, so a model compiled with `loss=None` trains on it (and
    `evaluate` reports it), and logs it as the metric `<name>_loss`
    (`softmax_head_loss` by default).
    Called with embeddings alone (inference) it only returns the logits.

    Args:
        num_classes: positive int, number of training speakers.
        use_bias: bool, whether to add the bias `b`. Defaults to `True`.
        kernel_initializer: initializer for `W`, shape
            `(embedding_dim, num_classes)`. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer for `b`. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer for `W` (weight decay).
        loss_weight: non-negative float multiplying `L_S` when it is
            added; 0 adds nothing. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: `[embeddings, labels]` (training) or `embeddings`
            (inference). `labels` are integer class indices of shape
            `(batch_size,)` or `(batch_size, 1)`.
        training: bool; unused (the loss is added whenever labels are
            given), accepted for a uniform head interface.

    Input shape:
        `embeddings`: 2D tensor `(batch_size, embedding_dim)`.

    Output shape:
        2D tensor `(batch_size, num_classes)`, the logits.

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> logits = SoftmaxHead(1211)([embeddings, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="adam", loss=None)

    Reference:
        - [Heo et al., End-to-end losses based on speaker basis vectors and
          all-speaker hard negative mining for speaker verification, 2019](
            https://arxiv.org/abs/1902.02455), eq. 1
    """

    def __init__(
        self,
        num_classes,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
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
        self.use_bias = _heads.check_bool("use_bias", use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def head_outputs(self, embeddings, labels, training):
        logits = self.linear_logits(embeddings)
        if labels is None:
            return logits, None
        return logits, _heads.cross_entropy(logits, _heads.one_hot(labels, self.num_classes))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "use_bias": self.use_bias,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
