import keras

from keras_spk.layers import _heads


@keras.saving.register_keras_serializable(package="keras_spk")
class AMSoftmax(_heads.CosineMarginHead):
    """Additive margin softmax (AM-softmax / CosFace) output layer.

    Embeddings and class vectors are L2-normalised; the target class's
    cosine is lowered by an additive margin before the scaled softmax
    (eq. 4-5 of Heo et al. 2019, averaged over the batch):

    ```
    cos_ij = W_j^T e_i / (||W_j|| ||e_i||)
    z_ij   = s * (cos_ij - m * [j == y_i])
    L_AMS  = -(1 / M) * sum_i log(exp(z_{i,y_i}) / sum_j exp(z_ij))
    ```

    The layer returns the plain scaled cosines `s * cos_ij` (no margin), so
    accuracy metrics and inference see the same scores for every class.
    When labels are given it adds `loss_weight * L_AMS` with `add_loss`,
    so a model compiled with `loss=None` trains on it, and logs it as the
    metric `<name>_loss`.

    Args:
        num_classes: positive int, number of training speakers.
        scale: positive float, the scale `s`. Defaults to `30.0`.
        margin: non-negative float, the additive cosine margin `m`.
            Defaults to `0.2`.
        kernel_initializer: initializer for `W`, shape
            `(embedding_dim, num_classes)`. Defaults to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer for `W` (weight decay).
        loss_weight: non-negative float multiplying `L_AMS` when it is
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
        2D tensor `(batch_size, num_classes)`: `s * cos_ij`.

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> logits = AMSoftmax(1211, scale=30.0, margin=0.2)([embeddings, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="adam", loss=None)

    Reference:
        - [Wang et al., Additive Margin Softmax for Face Verification, 2018](
            https://arxiv.org/abs/1801.05599)
        - [Heo et al., End-to-end losses based on speaker basis vectors and
          all-speaker hard negative mining for speaker verification, 2019](
            https://arxiv.org/abs/1902.02455), eq. 4-5
    """

    def margin_cosine(self, cosine, targets):
        return cosine - self.margin * targets
