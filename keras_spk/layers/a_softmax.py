import math

import keras
from keras import ops

from keras_spk.layers import _heads


def angular_margin_psi(cos_theta, margin):
    """SphereFace's monotonic margin function psi(theta), from cos(theta).

    ```
    psi(theta) = (-1)^k cos(m theta) - 2k,   theta in [k pi / m, (k + 1) pi / m]
    ```

    `cos(m theta)` is the Chebyshev polynomial `T_m(cos theta)`
    (`T_0 = 1`, `T_1 = c`, `T_{n+1} = 2 c T_n - T_{n-1}`), and
    `k = #{j in 1..m-1 : cos theta <= cos(j pi / m)}`, so no arccos is
    needed. `psi` decreases from 1 at `theta = 0` to `1 - 2m` at
    `theta = pi` and is continuous at the interval boundaries.

    Args:
        cos_theta: float tensor of cosines in `[-1, 1]`.
        margin: positive int, the angular margin `m`.

    Returns:
        float tensor of the same shape: `psi(arccos(cos_theta))`.
    """
    margin = _heads.check_int("margin", margin, 1)
    previous, chebyshev = ops.ones_like(cos_theta), cos_theta
    for _ in range(margin - 1):
        previous, chebyshev = chebyshev, 2.0 * cos_theta * chebyshev - previous
    k = ops.zeros_like(cos_theta)
    for j in range(1, margin):
        k = k + ops.cast(cos_theta <= math.cos(j * math.pi / margin), cos_theta.dtype)
    sign = 1.0 - 2.0 * ops.mod(k, 2.0)
    return sign * chebyshev - 2.0 * k


@keras.saving.register_keras_serializable(package="keras_spk")
class ASoftmax(_heads.ClassWeightHead):
    """Angular softmax (A-softmax / SphereFace) output layer with lambda annealing.

    Class vectors are L2-normalised (no bias); embeddings keep their norm.
    The target logit uses the multiplicative angular margin `m`, blended
    with the plain logit by an annealed `lambda` as in the SphereFace
    reference implementation:

    ```
    cos_ij = W_j^T e_i / (||W_j|| ||e_i||)
    psi(theta) = (-1)^k cos(m theta) - 2k,  theta in [k pi / m, (k + 1) pi / m]
    z_ij   = ||e_i|| (lambda cos_ij + psi(theta_ij)) / (1 + lambda)  if j == y_i
           = ||e_i|| cos_ij                                          otherwise
    lambda = max(lambda_min, lambda_base * (1 + lambda_gamma * t) ^ -lambda_power)
    L_A    = -(1 / M) * sum_i log(exp(z_{i,y_i}) / sum_j exp(z_ij))
    ```

    `t` is the layer's `iterations` counter (a non-trainable int64
    variable). Each training call with labels increments it first and uses
    the new value (as the Caffe layer does); calls with `training=False`
    use the current value unchanged. Large `lambda` early in training makes
    the loss close to plain softmax; it then decays to `lambda_min`.

    The layer returns the plain logits `||e_i|| cos_ij` (no margin), so
    accuracy metrics and inference see the same scores for every class.
    When labels are given it adds `loss_weight * L_A` with `add_loss`,
    so a model compiled with `loss=None` trains on it, and logs it as the
    metric `<name>_loss`.

    Defaults are those of the SphereFace reference prototxt (m = 4,
    base 1000, gamma 0.12, power 1, lambda_min 5). The fpm paper (Jung et
    al. 2020) trains with A-softmax plus ring loss "with the same settings
    as" its reference [16] without restating them; `lambda_min=0` gives
    the pure A-softmax loss of Liu et al. at the end of annealing.

    Args:
        num_classes: positive int, number of training speakers.
        margin: positive int, the angular margin `m`. Defaults to `4`.
        lambda_base: non-negative float. Defaults to `1000.0`.
        lambda_gamma: non-negative float. Defaults to `0.12`.
        lambda_power: non-negative float. Defaults to `1.0`.
        lambda_min: non-negative float, the final `lambda`.
            Defaults to `5.0`.
        kernel_initializer: initializer for `W`, shape
            `(embedding_dim, num_classes)`. Defaults to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer for `W` (weight decay).
        loss_weight: non-negative float multiplying `L_A` when it is
            added; 0 adds nothing. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`
            (`"float32"` when none is given, whatever the global policy).

    Call arguments:
        inputs: `[embeddings, labels]` (training) or `embeddings`
            (inference). `labels` are integer class indices of shape
            `(batch_size,)` or `(batch_size, 1)`.
        training: bool; when true (and labels are given) the `iterations`
            counter advances by one.

    Input shape:
        `embeddings`: 2D tensor `(batch_size, embedding_dim)`.

    Output shape:
        2D tensor `(batch_size, num_classes)`: `||e_i|| cos_ij`.

    Example:

    >>> embeddings = keras.Input((128,))
    >>> labels = keras.Input((), dtype="int32")
    >>> logits = ASoftmax(1211, margin=4)([embeddings, labels])
    >>> model = keras.Model([embeddings, labels], logits)
    >>> model.compile(optimizer="sgd", loss=None)

    Reference:
        - [Liu et al., SphereFace: Deep Hypersphere Embedding for Face
          Recognition, 2017](https://arxiv.org/abs/1704.08063), section 3
          and the reference `MarginInnerProduct` layer
          (https://github.com/wy1iu/sphereface)
        - [Jung et al., Improving multi-scale aggregation using feature
          pyramid module for robust speaker verification of
          variable-duration utterances, 2020](
            https://arxiv.org/abs/2004.03194)
    """

    def __init__(
        self,
        num_classes,
        margin=4,
        lambda_base=1000.0,
        lambda_gamma=0.12,
        lambda_power=1.0,
        lambda_min=5.0,
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
        self.margin = _heads.check_int("margin", margin, 1)
        self.lambda_base = _heads.check_real("lambda_base", lambda_base, minimum=0.0)
        self.lambda_gamma = _heads.check_real("lambda_gamma", lambda_gamma, minimum=0.0)
        self.lambda_power = _heads.check_real("lambda_power", lambda_power, minimum=0.0)
        self.lambda_min = _heads.check_real("lambda_min", lambda_min, minimum=0.0)

    def build(self, input_shape):
        super().build(input_shape)
        self.iterations = self.add_weight(
            shape=(), initializer="zeros", dtype="int64", trainable=False, name="iterations"
        )

    def annealed_lambda(self, iterations):
        """`max(lambda_min, lambda_base * (1 + lambda_gamma * t) ^ -lambda_power)`."""
        # Clamped at 0 so a counter set by hand can never make the base negative.
        t = ops.maximum(ops.cast(iterations, "float32"), 0.0)
        decayed = self.lambda_base * ops.power(1.0 + self.lambda_gamma * t, -self.lambda_power)
        return ops.maximum(decayed, self.lambda_min)

    def head_outputs(self, embeddings, labels, training):
        cosine = self.class_cosines(embeddings)
        norm = _heads.l2_norm(embeddings, axis=-1)
        logits = norm * cosine
        if labels is None:
            return logits, None
        iterations = self.iterations
        if training:
            iterations = iterations + 1
            self.iterations.assign_add(ops.ones((), dtype="int64"))
        lam = self.annealed_lambda(iterations)
        targets = _heads.one_hot(labels, self.num_classes)
        # psi is only needed at the target cosine, one per row.
        cos_target = ops.sum(targets * cosine, axis=-1, keepdims=True)
        target_logit = norm * (lam * cos_target + angular_margin_psi(cos_target, self.margin))
        target_logit = target_logit / (1.0 + lam)
        margin_logits = targets * target_logit + (1.0 - targets) * logits
        return logits, _heads.cross_entropy(margin_logits, targets)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "lambda_base": self.lambda_base,
                "lambda_gamma": self.lambda_gamma,
                "lambda_power": self.lambda_power,
                "lambda_min": self.lambda_min,
            }
        )
        return config
