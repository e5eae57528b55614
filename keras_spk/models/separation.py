"""Speech-separation networks: VoiceFilter's mask network, conditioned or with K outputs.

* `build_voicefilter`: a speaker-conditioned mask network (Wang et al.
  2019): the mixture's magnitude spectrogram and a speaker embedding give
  the mask of that speaker.
* `build_upit`: the same network without a condition, emitting one mask
  per source, trained with utterance-level permutation invariant training
  (uPIT: `keras_spk.losses.PermutationInvariantLoss` over `spectral_mse`).
* `apply_mask`: masked magnitude + mixture phase -> waveform
  (`keras_spk.layers.InverseSTFT`).

Both networks share the convolution stack and the BLSTM-FC head, built by
the `apply_*` functions below.
"""

import keras
from keras import layers
from keras import ops

from keras_spk.layers.stft import InverseSTFT
from keras_spk.utils import _checks

# VoiceFilter's convolutions after 1x7 and 7x1: 5x5 without dilation, then
# with time dilation 2, 4, 8, 16.
DEFAULT_DILATIONS = (1, 2, 4, 8, 16)


# --------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------


def _check_dilations(dilations):
    values = () if isinstance(dilations, (str, bytes)) else dilations
    values = tuple(values) if hasattr(values, "__iter__") else ()
    if not values or not all(_checks.is_int(d) and d > 0 for d in values):
        raise ValueError(
            "`dilations` must be a non-empty sequence of positive integers (the time "
            f"dilation of each 5x5 convolution). Received: dilations={dilations!r}"
        )
    return tuple(int(d) for d in values)


def _check_common(num_bins, conv_filters, output_channels, dilations, lstm_units, fc_units):
    for name, value in (
        ("num_bins", num_bins),
        ("conv_filters", conv_filters),
        ("output_channels", output_channels),
        ("lstm_units", lstm_units),
        ("fc_units", fc_units),
    ):
        _checks.check_positive_int(name, value)
    return _check_dilations(dilations)


# --------------------------------------------------------------------------
# Layers and blocks.
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_spk")
class ConcatenateToFrames(keras.layers.Layer):
    """Appends one vector per example to every frame of a sequence.

    ```
    out[b, t] = concat(frames[b, t], condition[b])
    ```

    How VoiceFilter conditions its BLSTM on the target speaker's embedding.

    Call arguments:
        inputs: a list `[frames, condition]`, `frames` `[batch, T, D]`
            (`T` may be unknown), `condition` `[batch, E]`.

    Output shape:
        `(batch, T, D + E)`.

    Example:

    >>> frames, condition = np.zeros((2, 5, 3)), np.ones((2, 4))
    >>> tuple(ConcatenateToFrames()([frames, condition]).shape)
    (2, 5, 7)
    """

    def call(self, inputs):
        frames, condition = inputs
        condition = ops.cast(condition, frames.dtype)
        # zeros [B, T, 1] + condition [B, 1, E] broadcasts to [B, T, E]
        # whatever T is, eager or symbolic, on every backend.
        tiled = ops.zeros_like(frames[..., :1]) + ops.expand_dims(condition, 1)
        return ops.concatenate([frames, tiled], axis=-1)

    def compute_output_shape(self, input_shapes):
        frames, condition = input_shapes
        if len(frames) != 3 or len(condition) != 2:
            raise ValueError(
                "ConcatenateToFrames expects [frames [batch, T, D], condition [batch, E]]. "
                f"Received: shapes {input_shapes}"
            )
        depth = None if frames[2] is None or condition[1] is None else frames[2] + condition[1]
        return (frames[0], frames[1], depth)


def apply_voicefilter_convolutions(
    magnitude, num_bins, conv_filters, output_channels, dilations, name
):
    """`[B, T, F]` -> `[B, T, output_channels * F]`: VoiceFilter's 2-D convolutions.

    1x7, 7x1, then 5x5 with the given time dilations (`conv_filters`
    each), and a 1x1 to `output_channels`; each followed by batch
    normalisation and ReLU. Kernels are (time, frequency); "same" padding
    keeps T and F. The channels are flattened per frame, frequency-major.
    """
    x = layers.Reshape((-1, num_bins, 1), name=f"{name}_expand")(magnitude)
    specs = [((1, 7), (1, 1), conv_filters), ((7, 1), (1, 1), conv_filters)]
    specs += [((5, 5), (d, 1), conv_filters) for d in dilations]
    specs.append(((1, 1), (1, 1), output_channels))
    for i, (kernel, dilation, filters) in enumerate(specs, 1):
        x = layers.Conv2D(
            filters, kernel, dilation_rate=dilation, padding="same", name=f"{name}_conv{i}"
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return layers.Reshape((-1, num_bins * output_channels), name=f"{name}_flatten")(x)


def apply_blstm_head(x, lstm_units, fc_units, outputs, name):
    """`[B, T, D]` -> `[B, T, outputs]` in (0, 1): BLSTM, fc1 (ReLU), fc2 (sigmoid)."""
    x = layers.Bidirectional(
        layers.LSTM(lstm_units, return_sequences=True, name=f"{name}_lstm"),
        name=f"{name}_blstm",
    )(x)
    x = layers.Dense(fc_units, activation="relu", name=f"{name}_fc1")(x)
    return layers.Dense(outputs, activation="sigmoid", name=f"{name}_fc2")(x)


# --------------------------------------------------------------------------
# Builders.
# --------------------------------------------------------------------------


def build_voicefilter(
    condition_dim=512,
    num_bins=257,
    conv_filters=64,
    lstm_units=400,
    fc_units=600,
    output_channels=8,
    dilations=DEFAULT_DILATIONS,
    name="voicefilter",
):
    """VoiceFilter's speaker-conditioned mask network (Wang et al. 2019).

    ```
    conv 1x7, 7x1, 5x5 (dilation 1, 2, 4, 8, 16 in time), 1x1 -> 8   # BN + ReLU each
    reshape [T, 8 F]; concatenate the condition to every frame
    BLSTM (lstm_units per direction); fc1 (fc_units, ReLU); fc2 (F, sigmoid)
    ```

    The mask multiplies the mixture's magnitude; with the mixture's phase,
    `apply_mask` turns it into a waveform. MIRNet's Table 2 conditions it
    on the identities MIRNet extracts from the mixture (or, for the
    baseline, on an enrolled utterance's embedding).

    Trainable parameters at the defaults (Keras's LSTM has one bias per
    gate; PyTorch's two give 2 * 4 * 400 = 3,200 more):

    | part | derivation | parameters |
    |---|---|---|
    | convolutions | 7*64 + 64 + 7*64*64 + 64 + 5 * (25*64*64 + 64) + 64*8 + 8 | 542,088 |
    | batch normalisation | 2 * (7 * 64 + 8) | 912 |
    | BLSTM | 2 * 4 * 400 * (8 * 257 + E + 400 + 1) | 9,500,800 at E = 512 |
    | fc1 | 800 * 600 + 600 | 480,600 |
    | fc2 | 600 * 257 + 257 | 154,457 |
    | total | E = 512 / E = 256 | 10,678,857 / 9,859,657 |

    Args:
        condition_dim: positive int E, the speaker embedding's size.
            Defaults to `512`.
        num_bins: positive int F, frequency bins of the spectrogram.
            Defaults to `257` (FFT 512).
        conv_filters: positive int, filters of every convolution but the
            last. Defaults to `64`.
        lstm_units: positive int, LSTM units per direction. Defaults to
            `400`.
        fc_units: positive int, units of fc1. Defaults to `600`.
        output_channels: positive int, filters of the last (1x1)
            convolution. Defaults to `8`.
        dilations: the time dilations of the 5x5 convolutions. Defaults to
            `(1, 2, 4, 8, 16)`.
        name: the model's name; layer names start with it.

    Returns:
        A functional `keras.Model` with inputs `magnitude` `[batch, T, F]`
        (T may vary) and `condition` `[batch, E]`, and output the mask
        `[batch, T, F]` in (0, 1).

    Example:

    >>> model = build_voicefilter(condition_dim=16, conv_filters=4, lstm_units=8, fc_units=8)
    >>> mask = model([np.ones((2, 30, 257)), np.ones((2, 16))])
    >>> tuple(mask.shape)
    (2, 30, 257)

    Reference:
        - Wang et al., VoiceFilter: targeted voice separation by
          speaker-conditioned spectrogram masking, Interspeech 2019, Table 1
        - Han, Chung and Kang, MIRNet, Interspeech 2020, section 4.2
    """
    dilations = _check_common(
        num_bins, conv_filters, output_channels, dilations, lstm_units, fc_units
    )
    _checks.check_positive_int("condition_dim", condition_dim)

    # === Functional Model ===
    magnitude = keras.Input((None, num_bins), name="magnitude")
    condition = keras.Input((condition_dim,), name="condition")
    x = apply_voicefilter_convolutions(
        magnitude, num_bins, conv_filters, output_channels, dilations, name
    )
    x = ConcatenateToFrames(name=f"{name}_condition")([x, condition])
    mask = apply_blstm_head(x, lstm_units, fc_units, num_bins, name)
    return keras.Model([magnitude, condition], mask, name=name)


def build_upit(
    num_sources=2,
    num_bins=257,
    conv_filters=64,
    lstm_units=400,
    fc_units=1200,
    output_channels=8,
    dilations=DEFAULT_DILATIONS,
    name="upit",
):
    """Unconditioned mask network with one mask per source, for uPIT training.

    VoiceFilter's network (`build_voicefilter`) without the condition,
    with fc1 doubled and fc2 emitting `num_sources * F` sigmoids, as the
    MIRNet paper describes its uPIT baseline ("a BLSTM structure identical
    to VoiceFilter while doubling the dimension of the fully-connected
    layer and output"). The masks come in no particular order: train with
    `PermutationInvariantLoss(per_speaker_loss=spectral_mse())` on
    `masks * magnitude[:, None]` against the sources' magnitudes.

    Trainable parameters at the defaults: convolutions 542,088, batch
    normalisation 912, BLSTM 2 * 4 * 400 * (8 * 257 + 400 + 1) = 7,862,400,
    fc1 800 * 1,200 + 1,200 = 961,200, fc2 1,200 * 514 + 514 = 617,314;
    9,983,914 in all.

    Args:
        num_sources: int >= 2, masks to emit. Defaults to `2`.
        num_bins, conv_filters, lstm_units, output_channels, dilations:
            as for `build_voicefilter`.
        fc_units: positive int, units of fc1. Defaults to `1200`.
        name: the model's name; layer names start with it.

    Returns:
        A functional `keras.Model` from `magnitude` `[batch, T, F]` to the
        masks `[batch, num_sources, T, F]` in (0, 1).

    Example:

    >>> model = build_upit(conv_filters=4, lstm_units=8, fc_units=8)
    >>> tuple(model(np.ones((2, 30, 257))).shape)
    (2, 2, 30, 257)

    Reference:
        - Kolbaek, Yu, Tan and Jensen, Multitalker speech separation with
          utterance-level permutation invariant training of deep recurrent
          neural networks, IEEE/ACM TASLP 2017
        - Han, Chung and Kang, MIRNet, Interspeech 2020, section 4.2.2
    """
    dilations = _check_common(
        num_bins, conv_filters, output_channels, dilations, lstm_units, fc_units
    )
    if not _checks.is_int(num_sources) or num_sources < 2:
        raise ValueError(
            f"`num_sources` must be an integer >= 2. Received: num_sources={num_sources!r}"
        )

    # === Functional Model ===
    magnitude = keras.Input((None, num_bins), name="magnitude")
    x = apply_voicefilter_convolutions(
        magnitude, num_bins, conv_filters, output_channels, dilations, name
    )
    x = apply_blstm_head(x, lstm_units, fc_units, num_sources * num_bins, name)
    x = layers.Reshape((-1, num_sources, num_bins), name=f"{name}_split")(x)
    masks = layers.Permute((2, 1, 3), name=f"{name}_masks")(x)
    return keras.Model(magnitude, masks, name=name)


# --------------------------------------------------------------------------
# Loss and resynthesis.
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_spk")
class SpectralMSE(keras.losses.Loss):
    """Mean squared error between power-law compressed magnitude spectrograms.

    ```
    L = mean_{t, k} (max(|S|, eps)^p - max(|S_hat|, eps)^p)^2
    ```

    per example (every axis after the first is averaged), as VoiceFilter
    trains its masks: `S_hat = mask * |mixture|`. The compression
    (p = 0.3) keeps the quiet bins from being ignored next to the loud
    ones; `eps` keeps its gradient finite at 0. The loss of one source,
    so it can be the `per_speaker_loss` of `PermutationInvariantLoss` (uPIT).

    Args:
        power: positive float p; `1` is a plain MSE on magnitudes.
            Defaults to `0.3`.
        epsilon: positive float, the floor on magnitudes before the
            compression. Defaults to `1e-8`.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Call arguments:
        y_true: clean magnitudes `[batch, ...]` (e.g. `[batch, T, F]`).
        y_pred: estimated magnitudes of the same shape.

    Example:

    >>> loss = SpectralMSE(power=0.5)
    >>> round(float(loss(np.array([[4.0, 1.0]]), np.array([[1.0, 1.0]]))), 3)  # (2 - 1)^2 / 2
    0.5

    Reference:
        - Wang et al., VoiceFilter, Interspeech 2019 (power-law compression)
        - Wilson et al., Exploring tradeoffs in models for low-latency
          speech enhancement, IWAENC 2018 (p = 0.3)
    """

    def __init__(
        self,
        power=0.3,
        epsilon=1e-8,
        reduction="sum_over_batch_size",
        name="spectral_mse",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.power = float(_checks.check_positive_real("power", power))
        self.epsilon = float(_checks.check_positive_real("epsilon", epsilon))

    def _compress(self, magnitude):
        if self.power == 1.0:
            return magnitude
        return ops.power(ops.maximum(magnitude, self.epsilon), self.power)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
        error = ops.square(self._compress(y_true) - self._compress(y_pred))
        if len(error.shape) < 2:
            return error
        return ops.mean(error, axis=tuple(range(1, len(error.shape))))

    def get_config(self):
        config = super().get_config()
        config.update({"power": self.power, "epsilon": self.epsilon})
        return config


def spectral_mse(power=0.3):
    """The per-source loss of VoiceFilter and uPIT: a `SpectralMSE(power)`.

    Usable alone (one conditioned output) or as
    `PermutationInvariantLoss(per_speaker_loss=spectral_mse())` for K
    unordered outputs `[batch, K, T, F]`.

    Args:
        power: positive float, the power-law compression. Defaults to `0.3`.

    Returns:
        A `SpectralMSE` loss.

    Example:

    >>> from keras_spk.losses import PermutationInvariantLoss
    >>> upit = PermutationInvariantLoss(per_speaker_loss=spectral_mse())
    """
    return SpectralMSE(power=power)


def apply_mask(mask, magnitude, phase, length=None, inverse_stft=None):
    """Masked magnitude with the mixture's phase -> waveform(s).

    ```
    waveform = InverseSTFT([mask * magnitude, phase])
    ```

    Args:
        mask: `[batch, T, F]` (one target) or `[batch, K, T, F]` (K
            sources, e.g. `build_upit`'s output).
        magnitude: the mixture's magnitude `[batch, T, F]` (from `STFT`).
        phase: the mixture's phase `[batch, T, F]`.
        length: optional positive int, output samples (the mixture's
            length); see `InverseSTFT`.
        inverse_stft: the `InverseSTFT` layer matching the analysis;
            defaults to `InverseSTFT()` (32-ms Hann frames every 10 ms,
            FFT 512, 16 kHz).

    Returns:
        Waveforms `[batch, samples]`, or `[batch, K, samples]` for a
        4-D mask. Eager tensors or arrays give tensors; symbolic inputs
        (`keras.Input` and what follows it) give a symbolic output, so a
        separator from waveforms to waveforms can be one functional model.

    Example:

    >>> from keras_spk.layers import STFT
    >>> mixture = np.random.uniform(-1, 1, (1, 16000)).astype("float32")
    >>> magnitude, phase = STFT()(mixture)
    >>> tuple(apply_mask(np.ones((1, 2, 101, 257)), magnitude, phase, length=16000).shape)
    (1, 2, 16000)

    Reference:
        - Wang et al., VoiceFilter, Interspeech 2019
    """
    inverse_stft = InverseSTFT() if inverse_stft is None else inverse_stft
    if not isinstance(inverse_stft, InverseSTFT):
        raise ValueError(
            "`inverse_stft` must be an InverseSTFT layer (or None for the default). "
            f"Received: inverse_stft={inverse_stft!r}"
        )
    # Symbolic inputs (inside a functional model) are left as they are.
    mask, magnitude, phase = (
        x if keras.backend.is_keras_tensor(x) else ops.convert_to_tensor(x)
        for x in (mask, magnitude, phase)
    )
    if len(magnitude.shape) != 3 or tuple(phase.shape) != tuple(magnitude.shape):
        raise ValueError(
            "`magnitude` and `phase` must both be [batch, T, F]. "
            f"Received: magnitude.shape={tuple(magnitude.shape)}, phase.shape={tuple(phase.shape)}"
        )
    if len(mask.shape) not in (3, 4) or tuple(mask.shape[-2:]) != tuple(magnitude.shape[-2:]):
        raise ValueError(
            "`mask` must be [batch, T, F] or [batch, K, T, F] with the magnitude's T and F. "
            f"Received: mask.shape={tuple(mask.shape)}, magnitude.shape={tuple(magnitude.shape)}"
        )
    mask = ops.cast(mask, magnitude.dtype)
    if len(mask.shape) == 3:
        return inverse_stft([mask * magnitude, phase], length=length)
    waveforms = [
        inverse_stft([mask[:, k] * magnitude, phase], length=length) for k in range(mask.shape[1])
    ]
    return ops.stack(waveforms, axis=1)
