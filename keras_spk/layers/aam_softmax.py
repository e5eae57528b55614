import math

import keras
from keras import ops

from keras_spk.layers import _heads


@keras.saving.register_keras_serializable(package="keras_spk")
class AAMSoftmax(_heads.CosineMarginHead):
    """Additive angular margin softmax (AAM-softmax / ArcFace) output layer.

    Embeddings and class vectors are L2-normalised; the margin is added to
    the target angle:

    ```
    cos_ij = W_j^T e_i / (||W_j|| ||e_i||),   theta_ij = arccos(cos_ij)
    phi_i  = cos(theta_{i,y_i} + m)                if theta_{i,y_i} + m < pi
           = cos_{i,y_i} - m * sin(m)              otherwise
    z_ij   = s * phi_i     if j == y_i,   s * cos_ij otherwise
    L_AAM  = -(1 / M) * sum_i log(exp(z_{i,y_i}) / sum_j exp(z_ij))
    ```

    `cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)` is computed
    from the cosine directly (no arccos). The fallback beyond `pi - m`
    (from the ArcFace reference implementation) keeps the target logit
    decreasing in `theta` where `cos(theta + m)` would turn back up. With
    `easy_margin=True` the margin is applied only where `cos > 0` and
    `phi = cos` elsewhere.

    The layer returns the plain scaled cosines `s * cos_ij` (no margin), so
    accuracy metrics and inference see the same scores for every class.
    When labels are given it adds `loss_weight * L_AAM` with `add_loss`,
    so a model compiled with `loss=None` trains on it, and logs it as the
    metric `<name>_loss`.

    Args:
        num_classes: positive int, number of training speakers.
        scale: positive float, the scale `s`. Defaults to `30.0`.
        margin: float in `[0, pi / 2)`, the additive angular margin `m`
            in radians. Defaults to `0.2`.
        easy_margin: bool, use the `cos > 0` rule instead of the
            `theta + m > pi` fallback. Defaults to `False`.
        kernel_initializer: initializer for `W`, shape
            `(embedding_dim, num_classes)`. Defaults to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer for `W` (weight decay).
        loss_weight: non-negative float multiplying `L_AAM` when it is
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

    >>> embeddings = keras.Input((256,))
    >>> labels = keras.Input((), dtype="int32")
    >>> logits = AAMSoftmax(5994, scale=30.0, margin=0.2)([embeddings, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="adam", loss=None)

    Reference:
        - [Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face
          Recognition, 2019](https://arxiv.org/abs/1801.07698)
    """

    def __init__(
        self,
        num_classes,
        scale=30.0,
        margin=0.2,
        easy_margin=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        loss_weight=1.0,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            scale=scale,
            margin=margin,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            loss_weight=loss_weight,
            **kwargs,
        )
        if self.margin >= math.pi / 2:
            raise ValueError(f"`margin` must be in [0, pi / 2). Received: margin={margin!r}")
        self.easy_margin = _heads.check_bool("easy_margin", easy_margin)

    def margin_cosine(self, cosine, targets):
        # The floor keeps d sqrt / d cos finite at cos = +-1 (sine = 0).
        sine = ops.sqrt(ops.maximum(1.0 - ops.square(cosine), _heads.NORM_EPSILON))
        phi = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        if self.easy_margin:
            phi = ops.where(cosine > 0.0, phi, cosine)
        else:
            # theta + m < pi  <=>  cos(theta) > cos(pi - m).
            phi = ops.where(
                cosine > math.cos(math.pi - self.margin),
                phi,
                cosine - self.margin * math.sin(self.margin),
            )
        return targets * phi + (1.0 - targets) * cosine

    def get_config(self):
        config = super().get_config()
        config.update({"easy_margin": self.easy_margin})
        return config
