import keras
from keras import ops

from keras_spk.distribute.replicas import cross_replica_sum
from keras_spk.distribute.replicas import num_replicas
from keras_spk.layers import _heads
from keras_spk.utils import _checks
from keras_spk.utils import _precision

REDUCTIONS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="keras_spk")
class CenterLoss(_heads.LossTerms, keras.layers.Layer):
    """Center loss: pulls each embedding towards a running center of its class.

    A pass-through layer: it returns the embeddings unchanged and, when
    labels are given, adds (eq. 2 of Heo et al. 2019, eq. 1 of RawNet)

    ```
    L_C = weight * 1/2 * sum_i ||e_i - c_{y_i}||^2
    ```

    computed with the centers as they were before this call. The centers
    are not trained by gradient descent: on each training call with labels
    they move by the alpha rule (eq. 3),

    ```
    delta_c_k = sum_i [y_i == k] (c_k - e_i) / (1 + sum_i [y_i == k])
    c_k      <- c_k - alpha * delta_c_k
    ```

    so a class absent from the batch keeps its center. The centers are a
    non-trainable variable `centers` of shape `(num_classes, embedding_dim)`
    updated with `.assign()`; calls with `training=False` leave them alone.
    No gradient flows into the centers (only into the embeddings).

    `reduction="sum"` (default) sums over the mini-batch as eq. 2 does and
    as the authors' Keras code does (`0.5 * K.sum(...)`), so with
    `weight=1e-3` (RawNet, Heo et al. Table 2) and a batch of 100 the
    center loss weighs like a per-utterance weight of 0.1 next to a
    batch-averaged cross-entropy. `"mean"` divides by the batch size
    (Wen et al.'s Caffe layer).

    In data-parallel training (`tf.distribute`, or `torchrun` under
    PyTorch; see `keras_spk.distribute`) the centre update sums its counts
    and sums across the replicas, so every replica applies the update of
    the whole global batch, and the `"sum"` loss is scaled by the number
    of replicas, so the averaged gradients are those of the whole batch's
    sum: training matches one device on the global batch.

    A model compiled with `loss=None` trains on the added loss together
    with a head's (e.g. `SoftmaxHead` or `SpeakerBasis`). The term as added
    (`loss_weight * L_C`) is logged as the metric `<name>` if the layer's
    name ends in `_loss` (`center_loss` by default), else `<name>_loss`.

    Args:
        num_classes: positive int, number of training speakers.
        alpha: float in `[0, 1]`, the center learning rate. Defaults to `0.5`.
        weight: non-negative float, `lambda` multiplying the added loss.
            Defaults to `1e-3`.
        reduction: `"sum"` (default) or `"mean"` over the batch.
        centers_initializer: initializer for the centers.
            Defaults to `"zeros"`.
        loss_weight: non-negative float, a further factor on `L_C` (the
            weight every loss layer takes, for objectives assembled from
            several layers); 0 adds nothing. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: `[embeddings, labels]` (training) or `embeddings`
            (inference). `labels` are integer class indices of shape
            `(batch_size,)` or `(batch_size, 1)`.
        training: bool; when true (and labels are given) the centers are
            updated.

    Input shape:
        `embeddings`: 2D tensor `(batch_size, embedding_dim)`.

    Output shape:
        2D tensor `(batch_size, embedding_dim)`, the embeddings unchanged.

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> x = CenterLoss(1211, alpha=0.5, weight=1e-3)([embeddings, labels])
    >>> logits = SoftmaxHead(1211)([x, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="adam", loss=None)

    Reference:
        - [Wen et al., A Discriminative Feature Learning Approach for Deep
          Face Recognition, ECCV 2016](
            https://doi.org/10.1007/978-3-319-46478-7_31)
        - [Heo et al., End-to-end losses based on speaker basis vectors and
          all-speaker hard negative mining for speaker verification, 2019](
            https://arxiv.org/abs/1902.02455), eq. 2-3
    """

    def __init__(
        self,
        num_classes,
        alpha=0.5,
        weight=1e-3,
        reduction="sum",
        centers_initializer="zeros",
        loss_weight=1.0,
        **kwargs,
    ):
        super().__init__(**_precision.float32_policy(kwargs))
        self.num_classes = _heads.check_int("num_classes", num_classes, 1)
        self.alpha = _heads.check_real("alpha", alpha, minimum=0.0, maximum=1.0)
        self.weight = _heads.check_real("weight", weight, minimum=0.0)
        self.reduction = _checks.check_choice("reduction", reduction, REDUCTIONS)
        self.centers_initializer = keras.initializers.get(centers_initializer)
        self.loss_weight = _heads.check_real("loss_weight", loss_weight, minimum=0.0)
        self.track_loss_terms()

    def build(self, input_shape):
        dim = _heads.check_embedding_shape(self, _heads.embedding_shape(input_shape))
        self.centers = self.add_weight(
            shape=(self.num_classes, dim),
            initializer=self.centers_initializer,
            trainable=False,
            name="centers",
            # Every replica assigns the same value (the update is summed across replicas).
            aggregation="mean",
        )

    def call(self, inputs, training=None):
        embeddings, labels = _heads.split_inputs(inputs)
        if labels is None:
            return embeddings
        x = ops.cast(embeddings, "float32")
        centers = ops.cast(self.centers, "float32")
        targets = _heads.one_hot(labels, self.num_classes)
        squared = ops.sum(ops.square(x - ops.matmul(targets, centers)), axis=-1)
        if self.reduction == "sum":
            # Data-parallel training averages the replicas' gradients: a replica's sum over
            # its share of the batch, times the replicas, averages to the whole batch's sum.
            loss = 0.5 * ops.sum(squared) * float(num_replicas())
        else:
            loss = 0.5 * ops.mean(squared)
        self.add_weighted_loss(self.weight * loss, x, self.loss_weight)
        if training:
            # Summed over the data-parallel replicas: each updates with the whole batch.
            counts = cross_replica_sum(ops.expand_dims(ops.sum(targets, axis=0), -1))
            sums = cross_replica_sum(ops.matmul(ops.transpose(targets), ops.stop_gradient(x)))
            delta = (counts * centers - sums) / (1.0 + counts)
            self.centers.assign(
                ops.cast(ops.stop_gradient(centers - self.alpha * delta), self.centers.dtype)
            )
        return embeddings

    def compute_output_shape(self, input_shape):
        return _heads.embedding_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "alpha": self.alpha,
                "weight": self.weight,
                "reduction": self.reduction,
                "centers_initializer": keras.initializers.serialize(self.centers_initializer),
                "loss_weight": self.loss_weight,
            }
        )
        return config
