"""RawNet (Jung et al., Interspeech 2019): speaker embeddings from raw waveforms.

The recipe's model builders, from Table 1 and sections 2 and 4.2 of the paper:

- `rawnet_frontend`: the frame-level CNN (pre-emphasis, strided convolution,
  six residual blocks), a `keras.Model` named `"rawnet_cnn"`;
- `build_rawnet_cnn`: the CNN pre-training model of section 2.2 (CNN, global
  average pooling, output layer);
- `build_rawnet`: RawNet itself (CNN, GRU(1024), FC(128) speaker embedding,
  output layer) trained with eq. 3, `L = L_CE + lambda L_C + L_BS`;
- `transfer_pretrained`: copies the pre-trained CNN into RawNet (section 2.2:
  "after training the CNN, only the global average pooling layer is
  removed").

Each builder returns `(trainer, embedder)`. The trainer takes
`[waveform, labels]`, returns the output layer's logits and adds its own
losses (output layer, center loss, L2 weight decay), so it is compiled with
`loss=None`. The embedder shares the trainer's layers and maps waveforms of
any length, `(batch, samples)`, to embeddings.

What the paper leaves open, and what is chosen here (the authors' Keras code,
github.com/Jungjee/RawNet `RawNet1/Keras/model_RawNet.py`,
`model_RawNet_pre_train.py`, `01-trn_RawNet.py/.yaml`, is the evidence where
it is used):

- Speaker embedding: Table 1 says only "FC(128)". The authors' code follows
  the Dense layer with BatchNormalization and LeakyReLU and reads the
  embedding after the LeakyReLU (layer `code_RawNet`); the same here.
- LeakyReLU slope: not given; Keras's default 0.3, which the code uses.
- Initialisation: `he_normal` for convolutions, FC and output layer (the
  code's `initializer: he_normal`); Keras defaults for the GRU (glorot /
  orthogonal, as in the code); center-loss centers uniform in
  [-0.05, 0.05] (the code's Keras-2 `'uniform'` initializer).
- Weight decay "applied to all layers": L2 of 1e-4 on every kernel
  (convolutions, GRU input and recurrent kernels, FC, output layer), not on
  biases or BN parameters, as in the code.
- GRU: Keras 3 defaults (sigmoid gates, `reset_after=True`), the cuDNN
  formulation, by default. The authors' code used Keras 2's GRU: gates
  through Keras 2's `hard_sigmoid`, `clip(0.2 x + 0.5, 0, 1)` (Keras 3's
  `hard_sigmoid` is `clip(x / 6 + 0.5, 0, 1)`), and `reset_after=False`
  (the reset gate applied before the recurrent projection, one bias per
  gate: 3 * 1024 fewer parameters, 5,785,984 in the embedder as the
  authors count); `build_rawnet(..., gru_reset_after=False,
  gru_gate_activation="hard_sigmoid_keras2")` builds that GRU exactly. Either
  setting keeps Keras off cuDNN (which needs sigmoid gates and
  `reset_after=True`), and the ONNX export of `keras_spk.export` handles
  only the default GRU with a dynamic time axis. With `recurrent_dropout > 0`
  (the paper's 0.3) Keras cannot use cuDNN and runs its per-gate RNN loop,
  also at inference; `keras_spk.layers.GRU` (Keras's GRU, same weights and
  dropout masks) then projects the inputs of all steps at once and runs a
  lighter loop. Build with `recurrent_dropout=0.0` and load the same
  weights to extract embeddings with cuDNN or export them to ONNX (the
  outputs are identical, since dropout is inactive at inference).
- Layers: the strided convolution, the batch normalizations and the GRU
  are `keras_spk.layers.Conv1D`, `BatchNormalization` and `GRU`, Keras's
  layers with the same configs and weights computed in fewer passes over
  the data (and `RawNetBlock` folds its convolutions' biases into its
  normalizations); `bench/rawnet.py` measures them against the same
  network in plain PyTorch and plain TensorFlow.
- Output layer and speaker basis loss: the output layer has no bias and its
  columns are the speaker bases (`SpeakerBasis`). Eq. 2 sums cosines over
  all pairs of the 1,211 bases; the authors' code computes instead
  `s * mean` over the N x N cosine matrix with a zero diagonal, `s = 5`, i.e.
  `5 (N - 1) / N` times the mean pairwise cosine, with unit weight in the
  total loss. The default here is that: `basis_reduction="mean"` and
  `basis_weight=5.0` (0.08 % away from the code's `5 (N - 1) / N` at
  N = 1211); `basis_reduction="sum", basis_weight=1.0` is eq. 2 literally.
- Center loss: `lambda = 1e-3` (section 4.2), summed over the mini-batch
  (eq. 1, and the code's `0.5 * K.sum`), centers moved by the alpha rule
  with alpha = 0.5 (the code's `c_alpha`).
- Pre-training model: the paper says the CNN is "connected to a global
  average pooling layer" and that only that layer is removed afterwards, so
  the pooled vector feeds the output layer directly (no FC, since a
  256-input FC could not be kept in front of the GRU either). The authors'
  code differs (a seventh block, a 1x1 convolution, dropout and an FC before
  the output, all dropped when expanding); the paper is followed. The
  pre-training loss is not stated; the code trains the CNN with the same
  objective as RawNet (softmax + speaker basis + center loss), which is the
  default here (the center loss on the pooled vector); `center_loss_weight=0`
  and `basis_weight=0` give plain softmax pre-training.
- Input: waveforms as given (the paper applies no normalisation), one
  channel. Frames: `samples // 3 ** 7` (`// 3` in the strided convolution
  and in each block's pooling); at least 3 ** 7 = 2,187 samples are needed
  for one frame.
"""

import keras

from keras_spk.activations import hard_sigmoid_keras2
from keras_spk.layers import BatchNormalization
from keras_spk.layers import CenterLoss
from keras_spk.layers import Conv1D
from keras_spk.layers import GRU
from keras_spk.layers import PreEmphasis
from keras_spk.layers import RawNetBlock
from keras_spk.layers import SpeakerBasis
from keras_spk.utils import _checks

FRONTEND_NAME = "rawnet_cnn"
# The GRU's gate (recurrent) activation, by name.
GRU_GATE_ACTIVATIONS = {"sigmoid": "sigmoid", "hard_sigmoid_keras2": hard_sigmoid_keras2}


def _regularizer(l2):
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _check_settings(stackwise_filters, l2, leaky_relu_slope):
    if (
        not isinstance(stackwise_filters, (list, tuple))
        or not stackwise_filters
        or not all(_checks.is_int(f) and f > 0 for f in stackwise_filters)
    ):
        raise ValueError(
            "`stackwise_filters` must be a non-empty list of positive integers. "
            f"Received: stackwise_filters={stackwise_filters!r}"
        )
    _checks.check_non_negative_real("l2", l2)
    _checks.check_non_negative_real("leaky_relu_slope", leaky_relu_slope)


def _center_loss(num_speakers, weight, alpha):
    return CenterLoss(
        num_speakers,
        alpha=alpha,
        weight=weight,
        reduction="sum",
        centers_initializer=keras.initializers.RandomUniform(-0.05, 0.05),
        name="center_loss",
    )


def _speaker_basis(num_speakers, basis_weight, basis_reduction, l2, kernel_initializer):
    return SpeakerBasis(
        num_speakers,
        basis_weight=basis_weight,
        basis_reduction=basis_reduction,
        softmax_weight=1.0,
        hard_weight=0.0,
        use_bias=False,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=_regularizer(l2),
        name="speaker_basis",
    )


def apply_strided_conv(x, filters, kernel_size, leaky_relu_slope, l2, kernel_initializer):
    """Table 1's first row: Conv(k, k, filters) ("valid") + BN + LeakyReLU."""
    x = Conv1D(
        filters,
        kernel_size,
        strides=kernel_size,
        padding="valid",
        kernel_initializer=kernel_initializer,
        kernel_regularizer=_regularizer(l2),
        name="strided_conv",
    )(x)
    x = BatchNormalization(name="strided_conv_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name="strided_conv_act")(x)


def apply_residual_block(x, filters, leaky_relu_slope, pool_size, l2, kernel_initializer, name):
    """One residual block of Table 1, max pooling included (`RawNetBlock`)."""
    return RawNetBlock(
        filters,
        kernel_size=3,
        pool_size=pool_size,
        negative_slope=leaky_relu_slope,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=_regularizer(l2),
        name=name,
    )(x)


def rawnet_frontend(
    stackwise_filters=(128, 128, 256, 256, 256, 256),
    strided_conv_filters=128,
    strided_conv_kernel_size=3,
    pool_size=3,
    leaky_relu_slope=0.3,
    pre_emphasis=0.97,
    l2=1e-4,
    kernel_initializer="he_normal",
    name=FRONTEND_NAME,
):
    """RawNet's frame-level CNN: waveforms `(batch, samples)` -> frames `(batch, T, C)`.

    Pre-emphasis, then Table 1: a strided convolution (filter length =
    stride = 3, 128 filters, "valid") with BN and LeakyReLU, then one
    residual block per entry of `stackwise_filters` (two of 128 and four of
    256 filters in the paper), each ending with a max pooling of 3. A
    59,049-sample crop gives 19,683 frames after the strided convolution
    and 27 frames of 256 features at the end.

    Args:
        stackwise_filters: list (or tuple) of positive ints, the filters of each
            residual block. Defaults to `(128, 128, 256, 256, 256, 256)`.
        strided_conv_filters: positive int, filters of the strided
            convolution. Defaults to `128`.
        strided_conv_kernel_size: positive int, its filter length and
            stride. Defaults to `3`.
        pool_size: positive int, the max pooling of each block.
            Defaults to `3`.
        leaky_relu_slope: float >= 0, slope of every LeakyReLU.
            Defaults to `0.3`.
        pre_emphasis: float in `[0, 1]`, the pre-emphasis coefficient.
            Defaults to `0.97`.
        l2: float >= 0, L2 weight decay of every convolution kernel; 0
            disables it. Defaults to `1e-4`.
        kernel_initializer: initializer of the convolution kernels.
            Defaults to `"he_normal"`.
        name: name of the returned model; `transfer_pretrained` finds the
            CNN by it. Defaults to `"rawnet_cnn"`.

    Returns:
        A `keras.Model` from `(batch, None)` waveforms to
        `(batch, None, stackwise_filters[-1])` frames.
    """
    _check_settings(stackwise_filters, l2, leaky_relu_slope)
    strided_conv_filters = _checks.check_positive_int("strided_conv_filters", strided_conv_filters)
    strided_conv_kernel_size = _checks.check_positive_int(
        "strided_conv_kernel_size", strided_conv_kernel_size
    )
    pool_size = _checks.check_positive_int("pool_size", pool_size)

    # === Functional Model ===
    waveform = keras.Input((None,), name="waveform")
    x = PreEmphasis(pre_emphasis, name="pre_emphasis")(waveform)
    x = keras.layers.Reshape((-1, 1), name="add_channel_axis")(x)
    x = apply_strided_conv(
        x,
        strided_conv_filters,
        strided_conv_kernel_size,
        leaky_relu_slope,
        l2,
        kernel_initializer,
    )
    for i, filters in enumerate(stackwise_filters):
        x = apply_residual_block(
            x,
            filters,
            leaky_relu_slope,
            pool_size,
            l2,
            kernel_initializer,
            name=f"res_block_{i + 1}",
        )
    return keras.Model(waveform, x, name=name)


def build_rawnet_cnn(
    num_speakers,
    stackwise_filters=(128, 128, 256, 256, 256, 256),
    strided_conv_filters=128,
    leaky_relu_slope=0.3,
    pre_emphasis=0.97,
    l2=1e-4,
    center_loss_weight=1e-3,
    center_loss_alpha=0.5,
    basis_weight=5.0,
    basis_reduction="mean",
    kernel_initializer="he_normal",
):
    """The CNN pre-training model of section 2.2.

    `rawnet_frontend` -> global average pooling over frames -> output layer
    over the training speakers (`SpeakerBasis`), with a `CenterLoss` on the
    pooled vector. The loss is eq. 3 on the pooled vector,
    `L_CE + center_loss_weight * L_C + basis_weight * L_BS`, plus weight
    decay; set `center_loss_weight=0` and `basis_weight=0` for softmax only.

    Args:
        num_speakers: int >= 2, the training speakers (1,211 for VoxCeleb1).
        stackwise_filters, strided_conv_filters, leaky_relu_slope,
            pre_emphasis, l2, kernel_initializer: the CNN's settings, see
            `rawnet_frontend` (`l2` also applies to the output layer).
        center_loss_weight: float >= 0, `lambda` of eq. 3; 0 leaves the
            center loss (and its centers) out. Defaults to `1e-3`.
        center_loss_alpha: float in `[0, 1]`, the centers' update rate.
            Defaults to `0.5`.
        basis_weight: float >= 0, weight of the speaker basis loss.
            Defaults to `5.0` (the authors' code, see the module docstring).
        basis_reduction: `"mean"` or `"sum"` over the pairs of bases.
            Defaults to `"mean"`.

    Returns:
        `(trainer, embedder)`: the trainer maps `[waveform, labels]`
        (`(batch, None)` floats, `(batch,)` ints) to logits
        `(batch, num_speakers)` and adds the losses (compile with
        `loss=None`); the embedder maps waveforms to the pooled
        `(batch, stackwise_filters[-1])` vectors.
    """
    center_loss_weight = _checks.check_non_negative_real("center_loss_weight", center_loss_weight)

    # === Layers ===
    frontend = rawnet_frontend(
        stackwise_filters=stackwise_filters,
        strided_conv_filters=strided_conv_filters,
        leaky_relu_slope=leaky_relu_slope,
        pre_emphasis=pre_emphasis,
        l2=l2,
        kernel_initializer=kernel_initializer,
    )
    pooling = keras.layers.GlobalAveragePooling1D(name="global_average_pooling")
    center_loss = (
        _center_loss(num_speakers, center_loss_weight, center_loss_alpha)
        if center_loss_weight > 0
        else None
    )
    head = _speaker_basis(num_speakers, basis_weight, basis_reduction, l2, kernel_initializer)

    # === Functional Model ===
    waveform = keras.Input((None,), name="waveform")
    labels = keras.Input((), dtype="int32", name="labels")
    pooled = pooling(frontend(waveform))
    embedder = keras.Model(waveform, pooled, name="rawnet_cnn_embedder")
    x = center_loss([pooled, labels]) if center_loss is not None else pooled
    logits = head([x, labels])
    trainer = keras.Model([waveform, labels], logits, name="rawnet_cnn_pretrain")
    return trainer, embedder


def build_rawnet(
    num_speakers,
    stackwise_filters=(128, 128, 256, 256, 256, 256),
    strided_conv_filters=128,
    gru_units=1024,
    recurrent_dropout=0.3,
    embedding_dim=128,
    leaky_relu_slope=0.3,
    pre_emphasis=0.97,
    l2=1e-4,
    center_loss_weight=1e-3,
    center_loss_alpha=0.5,
    basis_weight=5.0,
    basis_reduction="mean",
    kernel_initializer="he_normal",
    gru_reset_after=True,
    gru_gate_activation="sigmoid",
):
    """RawNet (Table 1) with its training objective, eq. 3.

    `rawnet_frontend` -> GRU (last state) -> FC + BN + LeakyReLU (the speaker
    embedding) -> `CenterLoss` (pass-through, `lambda L_C`) -> `SpeakerBasis`
    output layer (`L_CE + basis_weight * L_BS`). With weight decay the
    trainer minimises `L_CE + lambda L_C + L_BS + 1e-4 sum ||W||^2`.

    Args:
        num_speakers: int >= 2, the training speakers (1,211 for VoxCeleb1).
        stackwise_filters, strided_conv_filters, leaky_relu_slope,
            pre_emphasis, l2, kernel_initializer: the CNN's settings, see
            `rawnet_frontend` (`l2` also applies to the GRU, FC and output
            layer kernels).
        gru_units: positive int, GRU width. Defaults to `1024`.
        recurrent_dropout: float in `[0, 1)`, the GRU's recurrent dropout
            (training only). Defaults to `0.3`; 0 lets the GRU use cuDNN.
        embedding_dim: positive int, the speaker embedding size.
            Defaults to `128`.
        center_loss_weight: float >= 0, `lambda` of eq. 3; 0 leaves the
            center loss (and its centers) out. Defaults to `1e-3`.
        center_loss_alpha: float in `[0, 1]`, the centers' update rate.
            Defaults to `0.5`.
        basis_weight: float >= 0, weight of the speaker basis loss.
            Defaults to `5.0` (the authors' code, see the module docstring).
        basis_reduction: `"mean"` or `"sum"` over the pairs of bases.
            Defaults to `"mean"`.
        gru_reset_after: bool, the GRU's `reset_after`: `True` (default,
            Keras 3's and cuDNN's formulation, two biases per gate) or
            `False` (Keras 2's default and the authors' code: the reset
            gate multiplies the state before the recurrent projection, one
            bias per gate).
        gru_gate_activation: the GRU's gate (`recurrent_activation`)
            function, `"sigmoid"` (default) or `"hard_sigmoid_keras2"`
            (Keras 2's `clip(0.2 x + 0.5, 0, 1)`, the authors' code).

    Returns:
        `(trainer, embedder)`: the trainer maps `[waveform, labels]`
        (`(batch, None)` floats, `(batch,)` ints) to logits
        `(batch, num_speakers)` and adds the losses (compile with
        `loss=None`); the embedder maps waveforms `(batch, None)` to speaker
        embeddings `(batch, embedding_dim)`.

    Example:

    ```python
    trainer, embedder = build_rawnet(1211)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True), loss=None)
    trainer.fit(dataset)  # yields ((waveforms, labels),), 59,049-sample crops
    embeddings = embedder.predict_on_batch(utterance[None])  # a whole utterance
    # The authors' Keras 2 GRU:
    build_rawnet(1211, gru_reset_after=False, gru_gate_activation="hard_sigmoid_keras2")
    ```

    `fit` logs the objective's terms next to `loss`: `center_loss`
    (`lambda L_C`), `speaker_basis_softmax_loss` (`L_CE`),
    `speaker_basis_basis_loss` (`basis_weight L_BS`) and
    `speaker_basis_hard_negative_loss` (0: not used); `loss` also holds
    the weight decay.
    """
    gru_units = _checks.check_positive_int("gru_units", gru_units)
    embedding_dim = _checks.check_positive_int("embedding_dim", embedding_dim)
    if not _checks.is_real(recurrent_dropout) or not 0.0 <= recurrent_dropout < 1.0:
        raise ValueError(
            "`recurrent_dropout` must be a number in [0, 1). "
            f"Received: recurrent_dropout={recurrent_dropout!r}"
        )
    center_loss_weight = _checks.check_non_negative_real("center_loss_weight", center_loss_weight)
    if not isinstance(gru_reset_after, bool):
        raise ValueError(
            f"`gru_reset_after` must be True or False. Received: gru_reset_after={gru_reset_after!r}"
        )
    gate_activation = GRU_GATE_ACTIVATIONS[
        _checks.check_choice("gru_gate_activation", gru_gate_activation, tuple(GRU_GATE_ACTIVATIONS))
    ]

    # === Layers ===
    frontend = rawnet_frontend(
        stackwise_filters=stackwise_filters,
        strided_conv_filters=strided_conv_filters,
        leaky_relu_slope=leaky_relu_slope,
        pre_emphasis=pre_emphasis,
        l2=l2,
        kernel_initializer=kernel_initializer,
    )
    gru = GRU(
        gru_units,
        recurrent_activation=gate_activation,
        reset_after=gru_reset_after,
        recurrent_dropout=recurrent_dropout,
        kernel_regularizer=_regularizer(l2),
        recurrent_regularizer=_regularizer(l2),
        name="gru",
    )
    dense = keras.layers.Dense(
        embedding_dim,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=_regularizer(l2),
        name="embedding_dense",
    )
    dense_bn = BatchNormalization(name="embedding_bn")
    dense_act = keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name="embedding")
    center_loss = (
        _center_loss(num_speakers, center_loss_weight, center_loss_alpha)
        if center_loss_weight > 0
        else None
    )
    head = _speaker_basis(num_speakers, basis_weight, basis_reduction, l2, kernel_initializer)

    # === Functional Model ===
    waveform = keras.Input((None,), name="waveform")
    labels = keras.Input((), dtype="int32", name="labels")
    utterance = gru(frontend(waveform))
    embedding = dense_act(dense_bn(dense(utterance)))
    embedder = keras.Model(waveform, embedding, name="rawnet_embedder")
    x = center_loss([embedding, labels]) if center_loss is not None else embedding
    logits = head([x, labels])
    trainer = keras.Model([waveform, labels], logits, name="rawnet")
    return trainer, embedder


def transfer_pretrained(cnn_model, rawnet_model, frontend_name=FRONTEND_NAME):
    """Copies the pre-trained CNN into RawNet, layer by layer, by name (section 2.2).

    Every layer with weights of the CNN sub-model (strided convolution and
    its BN, the residual blocks with their BN statistics) is copied; the
    global average pooling and the pre-training output layer (and centers)
    are not part of it and are dropped; the GRU, FC and output layer of
    `rawnet_model` are left as they are.

    Args:
        cnn_model: a model from `build_rawnet_cnn` (trainer or embedder), or
            any model holding the CNN sub-model `frontend_name`.
        rawnet_model: a model from `build_rawnet` (trainer or embedder).
        frontend_name: name of the CNN sub-model. Defaults to `"rawnet_cnn"`.

    Returns:
        The names of the copied layers, in order.

    Raises:
        ValueError: a model has no CNN sub-model, or the two CNNs differ (a
            layer missing from RawNet's CNN, or weights of another shape).
    """
    source = _get_frontend(cnn_model, frontend_name, "cnn_model")
    target = _get_frontend(rawnet_model, frontend_name, "rawnet_model")
    pairs = []
    for layer in source.layers:
        if not layer.weights:
            continue
        try:
            other = target.get_layer(layer.name)
        except ValueError:
            raise ValueError(
                f"The pre-trained CNN's layer {layer.name!r} is not in RawNet's CNN; build both "
                f"with the same CNN settings. Received: RawNet CNN layers="
                f"{[lyr.name for lyr in target.layers]}"
            ) from None
        shapes = [tuple(w.shape) for w in layer.weights]
        other_shapes = [tuple(w.shape) for w in other.weights]
        if shapes != other_shapes:
            raise ValueError(
                f"Layer {layer.name!r} has weights of shapes {shapes} in the pre-trained CNN and "
                f"{other_shapes} in RawNet; build both with the same CNN settings."
            )
        pairs.append((layer, other))
    # Check everything first, so a mismatch leaves RawNet untouched.
    for layer, other in pairs:
        other.set_weights(layer.get_weights())
    return [layer.name for layer, _ in pairs]


def _get_frontend(model, name, what):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"`{what}` has no CNN sub-model named {name!r}. Received: {what} layers="
            f"{[layer.name for layer in model.layers]}"
        ) from None
