import keras
from keras import ops

from keras_spk.layers import _heads
from keras_spk.utils import _checks

BASIS_REDUCTIONS = ("mean", "sum")


@keras.saving.register_keras_serializable(package="keras_spk")
class SpeakerBasis(_heads.LinearHead):
    """Output layer whose class weight vectors are speaker bases, with the basis losses.

    The columns `W_1 .. W_N` of the output layer's weight matrix are read as
    one basis vector per training speaker (Heo et al. 2019, section 3). The
    layer adds, when labels are given:

    ```
    L = softmax_weight * L_S + basis_weight * L_BC + hard_weight * L_H

    L_S  = -(1 / M) sum_i log softmax(W^T e_i + b)[y_i]                 (eq. 1)
    L_BC = sum_{i=1..N} sum_{j != i} cos(W_i, W_j)                      (eq. 9)
    L_H  = (1 / M) sum_i sum_{h in H_i}
               log(1 + exp(cos(W_h, e_i) - cos(W_{y_i}, e_i)))          (eq. 10)
    ```

    `L_BC` runs over all ordered pairs of distinct classes (every pair
    counted twice), with the plain (not squared) cosine: minimising it
    spreads the bases over the embedding space regardless of which
    speakers are in the mini-batch. `H_i` is the set of the `num_hard`
    bases `h != y_i` with the largest `cos(W_h, e_i)`, mined among *all*
    speakers in every batch. Sums over utterances are averaged over the
    mini-batch (the paper sums over it); this keeps `L_S` and `L_H` on the
    same footing as in the paper and independent of the batch size.

    `L_BC` is computed without the `N x N` Gram matrix, from
    `sum_{i != j} cos(W_i, W_j) = ||sum_i w_i||^2 - sum_i ||w_i||^2` with
    `w_i = W_i / ||W_i||` (O(N d) time and memory for N speakers).

    With `basis_reduction="mean"` (default) `L_BC` is divided by the number
    of ordered pairs `N (N - 1)`, i.e. it is the mean pairwise cosine, a
    number in `[-1 / (N - 1), 1]` whose weight does not depend on the
    number of speakers. The authors' Keras code (RawNet) uses this mean
    (over `N^2` entries with a zero diagonal, times its scale `s = 5`) with
    unit weight; `"sum"` is eq. 9 literally.

    Settings of the paper: "Proposed 1" (Table 2, and RawNet eq. 3) is
    softmax + center loss + `L_BC` (`softmax_weight=1, basis_weight=1,
    hard_weight=0`, with a `CenterLoss` layer on the embeddings);
    "Proposed 2" is `L_H + L_BC` without softmax
    (`softmax_weight=0, basis_weight=1, hard_weight=1, num_hard=100`, or
    50 for VoxCeleb2).

    The layer returns the plain logits `W^T e_i + b`. When labels are given
    it adds `loss_weight * L` with `add_loss`, so a model compiled with
    `loss=None` trains on it, and logs its three terms, each as added
    (`loss_weight * softmax_weight * L_S`, ...), as the metrics
    `<name>_softmax_loss`, `<name>_basis_loss` and
    `<name>_hard_negative_loss` (a term of weight 0 logs 0).

    Args:
        num_classes: int >= 2, number of training speakers `N`.
        basis_weight: non-negative float, weight of `L_BC`. Defaults to `1.0`.
        hard_weight: non-negative float, weight of `L_H`; 0 skips it.
            Defaults to `0.0`.
        num_hard: int in `[1, num_classes - 1]`, the number `H` of hardest
            negative bases per utterance in `L_H`. Only checked when
            `hard_weight > 0`. Defaults to `100`.
        softmax_weight: non-negative float, weight of the softmax
            cross-entropy `L_S`; 0 skips it. Defaults to `1.0`.
        basis_reduction: `"mean"` (default) or `"sum"`, see above.
        use_bias: bool, whether the logits have a bias `b` (eq. 1 has one;
            the authors' code has none). Defaults to `False`.
        kernel_initializer: initializer for `W`, shape
            `(embedding_dim, num_classes)`. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer for `b`. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer for `W` (weight decay).
        loss_weight: non-negative float multiplying `L` (all three terms)
            when it is added; 0 adds nothing. Defaults to `1.0`.
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
        2D tensor `(batch_size, num_classes)`, the logits `W^T e_i + b`.

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> logits = SpeakerBasis(1211, softmax_weight=0.0, hard_weight=1.0,
    ...                       num_hard=100)([embeddings, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="adam", loss=None)

    Reference:
        - [Heo et al., End-to-end losses based on speaker basis vectors and
          all-speaker hard negative mining for speaker verification, 2019](
            https://arxiv.org/abs/1902.02455), eq. 1, 9, 10
        - [Jung et al., RawNet: Advanced end-to-end deep neural network
          using raw waveforms for text-independent speaker verification,
          2019](https://arxiv.org/abs/1904.08104), eq. 2-3
    """

    LOSS_TERMS = ("softmax", "basis", "hard_negative")

    def __init__(
        self,
        num_classes,
        basis_weight=1.0,
        hard_weight=0.0,
        num_hard=100,
        softmax_weight=1.0,
        basis_reduction="mean",
        use_bias=False,
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
        if self.num_classes < 2:
            raise ValueError(
                "`num_classes` must be an integer >= 2 (the basis loss needs pairs of "
                f"classes). Received: num_classes={num_classes!r}"
            )
        self.basis_weight = _heads.check_real("basis_weight", basis_weight, minimum=0.0)
        self.hard_weight = _heads.check_real("hard_weight", hard_weight, minimum=0.0)
        self.num_hard = _heads.check_int("num_hard", num_hard, 1)
        if self.hard_weight > 0 and self.num_hard > self.num_classes - 1:
            raise ValueError(
                "`num_hard` must be at most num_classes - 1 "
                f"({self.num_classes - 1}) when hard_weight > 0. Received: num_hard={num_hard!r}"
            )
        self.softmax_weight = _heads.check_real("softmax_weight", softmax_weight, minimum=0.0)
        self.basis_reduction = _checks.check_choice(
            "basis_reduction", basis_reduction, BASIS_REDUCTIONS
        )
        self.use_bias = _heads.check_bool("use_bias", use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def basis_loss(self):
        """`L_BC` (eq. 9) of the current bases, reduced by `basis_reduction`."""
        bases = _heads.l2_normalize(self.float32_weight(self.kernel), axis=0)
        # sum_{i != j} w_i.w_j = ||sum_i w_i||^2 - sum_i ||w_i||^2.
        total = ops.sum(ops.square(ops.sum(bases, axis=1))) - ops.sum(ops.square(bases))
        if self.basis_reduction == "mean":
            total = total / float(self.num_classes * (self.num_classes - 1))
        return total

    def hard_negative_loss(self, embeddings, labels):
        """`L_H` (eq. 10), averaged over the batch."""
        cosine = self.class_cosines(embeddings)
        targets = _heads.one_hot(labels, self.num_classes)
        positive = ops.sum(targets * cosine, axis=-1, keepdims=True)
        # Cosines are >= -1, so pushing the target down by 3 keeps it out of
        # the top num_hard <= N - 1 without an infinity in the graph.
        negatives, _ = ops.top_k(cosine - 3.0 * targets, self.num_hard)
        return ops.mean(ops.sum(ops.softplus(negatives - positive), axis=-1))

    def head_outputs(self, embeddings, labels, training):
        logits = self.linear_logits(embeddings)
        if labels is None:
            return logits, None
        # Summed in this order from 0 by the base class, then logged one by one.
        terms = {}
        if self.softmax_weight > 0:
            targets = _heads.one_hot(labels, self.num_classes)
            terms["softmax"] = self.softmax_weight * _heads.cross_entropy(logits, targets)
        if self.basis_weight > 0:
            terms["basis"] = self.basis_weight * self.basis_loss()
        if self.hard_weight > 0:
            terms["hard_negative"] = self.hard_weight * self.hard_negative_loss(embeddings, labels)
        return logits, terms

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "basis_weight": self.basis_weight,
                "hard_weight": self.hard_weight,
                "num_hard": self.num_hard,
                "softmax_weight": self.softmax_weight,
                "basis_reduction": self.basis_reduction,
                "use_bias": self.use_bias,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
