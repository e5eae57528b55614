import functools
import itertools

import keras
import numpy as np
from keras import ops

from keras_spk.utils import _precision

# K! permutations are enumerated: 8! = 40320 is the most that stays cheap.
MAX_SPEAKERS = 8


@functools.lru_cache(maxsize=None)
def _permutation_tables(num_speakers):
    """(permutations [K!, K] int32, assignment matrices [K * K, K!] float32)."""
    permutations = np.array(list(itertools.permutations(range(num_speakers))), dtype="int32")
    # assignment[i * K + j, p] = 1 when permutation p matches label i with estimate j.
    assignment = np.zeros((num_speakers, num_speakers, len(permutations)), dtype="float32")
    for p, permutation in enumerate(permutations):
        assignment[np.arange(num_speakers), permutation, p] = 1.0
    return permutations, assignment.reshape(num_speakers * num_speakers, -1)


def _resolve_loss(per_speaker_loss):
    """An unreduced `fn(y_true, y_pred) -> [n]` from a Keras loss identifier."""
    if per_speaker_loss is None:
        return functools.partial(keras.losses.sparse_categorical_crossentropy, from_logits=True)
    if isinstance(per_speaker_loss, keras.losses.Loss):
        # Loss.call is the per-sample loss, before reduction and weighting.
        return per_speaker_loss.call
    try:
        loss = keras.losses.get(per_speaker_loss)
    except ValueError as error:
        raise ValueError(
            "`per_speaker_loss` must be None, a keras.losses.Loss, a Keras loss name or "
            f"a callable. Received: per_speaker_loss={per_speaker_loss!r}"
        ) from error
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if not callable(loss):
        raise ValueError(
            f"`per_speaker_loss` must be callable. Received: per_speaker_loss={per_speaker_loss!r}"
        )
    return loss


def _num_speakers(y_true, y_pred):
    if len(y_pred.shape) < 2 or len(y_true.shape) < 2:
        raise ValueError(
            "PermutationInvariantLoss expects y_true (batch, K, ...) and y_pred (batch, K, ...). "
            f"Received: y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    num = y_pred.shape[1]
    if num is None or num < 2 or num > MAX_SPEAKERS or y_true.shape[1] not in (None, num):
        raise ValueError(
            f"PermutationInvariantLoss needs a static number of speakers K in [2, {MAX_SPEAKERS}] "
            "on axis 1 of both y_true and y_pred. "
            f"Received: y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    return int(num)


def pairwise_speaker_losses(y_true, y_pred, per_speaker_loss=None):
    """`[batch, K, K]` matrix `M[b, i, j] = loss(y_true[b, i], y_pred[b, j])`.

    All `K * K` pairs go through `per_speaker_loss` in one call (batch and
    pairs flattened together); axes of its output beyond the first are
    averaged (e.g. a per-frame loss).

    Args:
        y_true: tensor `[batch, K, ...]` (for the default loss: integer
            labels `[batch, K]`).
        y_pred: tensor `[batch, K, ...]` (default: logits
            `[batch, K, num_classes]`).
        per_speaker_loss: as for `PermutationInvariantLoss`.

    Returns:
        float tensor `[batch, K, K]`.
    """
    y_true = ops.convert_to_tensor(y_true)
    # float32 also for a mixed-precision model's half-precision estimates.
    y_pred = _precision.at_least_float32(y_pred)
    num = _num_speakers(y_true, y_pred)
    loss_fn = _resolve_loss(per_speaker_loss)
    # Label i is repeated along the estimate axis j and vice versa.
    labels = ops.repeat(ops.expand_dims(y_true, 2), num, axis=2)  # [b, i, j, ...]
    estimates = ops.repeat(ops.expand_dims(y_pred, 1), num, axis=1)  # [b, i, j, ...]
    flat_labels = ops.reshape(labels, (-1,) + tuple(y_true.shape[2:]))
    flat_estimates = ops.reshape(estimates, (-1,) + tuple(y_pred.shape[2:]))
    losses = ops.convert_to_tensor(loss_fn(flat_labels, flat_estimates))
    if len(losses.shape) > 1:
        losses = ops.mean(losses, axis=tuple(range(1, len(losses.shape))))
    return ops.reshape(losses, (-1, num, num))


def permutation_invariant_loss(y_true, y_pred, per_speaker_loss=None, return_permutation=False):
    """Minimum over speaker permutations of the summed per-speaker loss (Han et al. 2020, eq. 3-5).

    ```
    L = min_{pi in S_K} sum_{i=1}^K loss(y_true[:, i], y_pred[:, pi(i)])
    ```

    For K = 2 this is `min(L_1, L_2)` with `L_1 = CE(y_1, y_A) + CE(y_2, y_B)`
    and `L_2 = CE(y_2, y_A) + CE(y_1, y_B)`. The `[batch, K, K]` pair losses
    are computed once, the K! permutations (enumerated in Python) are scored
    with one matrix product, and the gradient flows through the best one.

    Args:
        y_true: tensor `[batch, K, ...]`, e.g. integer speaker labels
            `[batch, K]`.
        y_pred: tensor `[batch, K, ...]`, e.g. K sets of logits
            `[batch, K, num_classes]`; K must be static, 2 <= K <= 8.
        per_speaker_loss: see `PermutationInvariantLoss`; `None` is sparse
            categorical cross-entropy on logits.
        return_permutation: also return the best permutation.

    Returns:
        float tensor `[batch]`; with `return_permutation`, also an int32
        tensor `[batch, K]` where `permutation[b, i]` is the index of the
        estimate matched with label `i` (so
        `take_along_axis(y_pred, permutation[..., None], axis=1)` lines the
        estimates up with `y_true`).
    """
    pair_losses = pairwise_speaker_losses(y_true, y_pred, per_speaker_loss)
    num = pair_losses.shape[1]
    permutations, assignment = _permutation_tables(num)
    flat = ops.reshape(pair_losses, (-1, num * num))
    costs = ops.matmul(flat, ops.convert_to_tensor(assignment, dtype=flat.dtype))  # [b, K!]
    loss = ops.min(costs, axis=1)
    if not return_permutation:
        return loss
    best = ops.argmin(costs, axis=1)
    return loss, ops.take(ops.convert_to_tensor(permutations), best, axis=0)


@keras.saving.register_keras_serializable(package="keras_spk")
class PermutationInvariantLoss(keras.losses.Loss):
    """Permutation invariant training loss over K estimated speaker identities (MIRNet).

    ```
    L   = min(L_1, L_2)                                        (eq. 3)
    L_1 = L_CE(y_1, y_A) + L_CE(y_2, y_B)                      (eq. 4)
    L_2 = L_CE(y_2, y_A) + L_CE(y_1, y_B)                      (eq. 5)
    ```

    generalised to K speakers as the minimum over all K! assignments of
    estimates to labels of the summed per-speaker loss. A network that
    emits K identities from a mixture has no fixed order for them, so each
    example is scored under its best assignment. The `[batch, K, K]` matrix
    of pair losses is computed in one vectorised call and each permutation
    is a sum of K of its entries; `best_permutation` / `call_with_permutation`
    also return the chosen assignment. Per-example losses are averaged over
    the batch.

    Args:
        per_speaker_loss: the loss of one (label, estimate) pair: a
            `keras.losses.Loss` (its unreduced `call` is used), a Keras loss
            name or function returning one value per sample (extra axes are
            averaged), or `None` for sparse categorical cross-entropy on
            logits (MIRNet's classifier). Defaults to `None`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: `[batch, K, ...]`, e.g. integer speaker labels `[batch, K]`.
        y_pred: `[batch, K, ...]`, e.g. logits `[batch, K, num_classes]`;
            K static, 2 <= K <= 8.

    Example:

    >>> labels = np.array([[3, 1]])
    >>> logits = np.zeros((1, 2, 5)); logits[0, 0, 1] = logits[0, 1, 3] = 10.0
    >>> loss = PermutationInvariantLoss()
    >>> keras.ops.convert_to_numpy(loss.best_permutation(labels, logits))
    array([[1, 0]], dtype=int32)

    Reference:
        - Han et al., MIRNet: Learning multiple identities representations in
          overlapped speech, Interspeech 2020, section 3.4
        - Yu et al., Permutation invariant training of deep models for
          speaker-independent multi-talker speech separation, ICASSP 2017
    """

    def __init__(
        self,
        per_speaker_loss=None,
        reduction="sum_over_batch_size",
        name="permutation_invariant_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(per_speaker_loss, dict):
            per_speaker_loss = keras.losses.deserialize(per_speaker_loss)
        _resolve_loss(per_speaker_loss)  # fail early on a bad identifier
        self.per_speaker_loss = per_speaker_loss

    def call(self, y_true, y_pred):
        return permutation_invariant_loss(y_true, y_pred, self.per_speaker_loss)

    def call_with_permutation(self, y_true, y_pred):
        """(per-example loss `[batch]`, best permutation `[batch, K]` int32)."""
        return permutation_invariant_loss(
            y_true, y_pred, self.per_speaker_loss, return_permutation=True
        )

    def best_permutation(self, y_true, y_pred):
        """`[batch, K]` int32: the estimate index matched with each label."""
        return self.call_with_permutation(y_true, y_pred)[1]

    def get_config(self):
        config = super().get_config()
        loss = self.per_speaker_loss
        if loss is not None and not isinstance(loss, str):
            loss = keras.losses.serialize(loss)
        config.update({"per_speaker_loss": loss})
        return config
