import keras
from keras import ops

from keras_spk.layers import _heads
from keras_spk.utils import _precision


@keras.saving.register_keras_serializable(package="keras_spk")
class RingLoss(_heads.LossTerms, keras.layers.Layer):
    """Ring loss: soft normalisation of embedding norms to a learned radius.

    A pass-through layer: it returns the embeddings unchanged and adds

    ```
    L_R = weight / 2 * (1 / M) * sum_i (||e_i|| - R)^2
    ```

    where the radius `R` is a trainable scalar weight `radius`, learned
    jointly with the network (it receives the gradient of `L_R` and moves
    towards the embeddings' mean norm while pulling the norms towards it).
    Used together with a classification head's loss, e.g. A-softmax as in
    the fpm paper (Jung et al. 2020).

    The loss is added when `training` is true, or whenever labels are
    passed (`[embeddings, labels]`, labels unused) so that it is reported by
    `evaluate` like the heads' losses. Called with embeddings alone and
    `training=False` (inference) it adds nothing. A model compiled with
    `loss=None` trains on the added loss together with a head's. The term
    as added (`loss_weight * L_R`) is logged as the metric `<name>` if the
    layer's name ends in `_loss` (`ring_loss` by default), else
    `<name>_loss`.

    Args:
        weight: non-negative float, the loss weight `lambda`.
            Defaults to `0.01` (Zheng et al.'s setting for face recognition).
        initial_radius: float, initial value of `R`. Defaults to `1.0`.
        loss_weight: non-negative float, a further factor on `L_R` (the
            weight every loss layer takes); 0 adds nothing.
            Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: `embeddings`, or `[embeddings, labels]` (labels unused).
        training: bool; when true the loss is added.

    Input shape:
        `embeddings`: 2D tensor `(batch_size, embedding_dim)`.

    Output shape:
        2D tensor `(batch_size, embedding_dim)`, the embeddings unchanged.

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> x = RingLoss(weight=0.01)(embeddings)
    >>> logits = ASoftmax(1211, margin=4)([x, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="sgd", loss=None)

    Reference:
        - [Zheng et al., Ring loss: Convex Feature Normalization for Face
          Recognition, CVPR 2018](https://arxiv.org/abs/1803.00130)
        - [Jung et al., Improving multi-scale aggregation using feature
          pyramid module for robust speaker verification of
          variable-duration utterances, 2020](
            https://arxiv.org/abs/2004.03194)
    """

    def __init__(self, weight=0.01, initial_radius=1.0, loss_weight=1.0, **kwargs):
        super().__init__(**_precision.float32_policy(kwargs))
        self.weight = _heads.check_real("weight", weight, minimum=0.0)
        self.initial_radius = _heads.check_real("initial_radius", initial_radius)
        self.loss_weight = _heads.check_real("loss_weight", loss_weight, minimum=0.0)
        self.track_loss_terms()

    def build(self, input_shape):
        _heads.check_embedding_shape(self, _heads.embedding_shape(input_shape))
        self.radius = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_radius),
            name="radius",
        )

    def call(self, inputs, training=None):
        embeddings, labels = _heads.split_inputs(inputs)
        if training or labels is not None:
            norms = _heads.l2_norm(ops.cast(embeddings, "float32"), axis=-1, keepdims=False)
            radius = ops.cast(self.radius, "float32")
            loss = 0.5 * self.weight * ops.mean(ops.square(norms - radius))
            self.add_weighted_loss(loss, norms, self.loss_weight)
        return embeddings

    def compute_output_shape(self, input_shape):
        return _heads.embedding_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weight": self.weight,
                "initial_radius": self.initial_radius,
                "loss_weight": self.loss_weight,
            }
        )
        return config
