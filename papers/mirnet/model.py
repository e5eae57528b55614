"""MIRNet (Han, Chung and Kang, Interspeech 2020): K speaker embeddings from one mixture.

The recipe's model builder, from section 3 and Table 1 of the paper:

    mixture waveform [B, samples]
      -> LogSpectrogram (32-ms frames every 10 ms, FFT 512)        S      [B, T, 257]
      -> speech encoder conv1..conv6 (Conv1D over time, the bins
         as channels; 512, 512, 512, 512, 1500, K * 257 channels;
         kernels 5, 3, 3, 1, 1, 1; leaky ReLU 0.2)                 V_1    [B, T, K * 257]
      -> ChannelExchange (eq. 2)                                   V_1, ..., V_K
      -> SpectralAttention, shared by the K speakers               W_k [B, T, 1], Z_k [B, T, 257]
      -> ResNet-18, shared, on each Z_k as [T, 257, 1]             C5_k   [B, T', F', 512]
      -> temporal average pooling                                  I_k    [B, 512]
      = the embeddings                                                    [B, K, 512]
      -> classifier, shared (FC 512 -> speakers, with bias)                [B, K, speakers]
      -> permutation invariant cross-entropy (eq. 3-5)

`build_mirnet` returns `(trainer, embedder)`. The embedder maps a mixture
`(batch, samples)` of any length to the K identities' embeddings
`(batch, K, 512)`, in no particular order (that is what PIT trains for).
The trainer takes `[mixture, labels]` (`labels` `(batch, K)` integer
speaker indices, in any order) and returns the logits `(batch, K,
num_speakers)`; a `LossHead` named `pit` adds the loss

    L = min over permutations pi of sum_i CE(logits[:, pi(i)], labels[:, i])

(for K = 2: min(L_1, L_2) of eq. 3-5, averaged over the batch) and logs it
as `pit_loss`; compile with `loss=None`. The classifier is a plain `Dense`
layer: it adds no loss of its own, which would fix the order of the
identities.

What the paper leaves open, and what is chosen here:

- Training speakers: "LibriSpeech ... 2,238 speakers" (section 4.1.1) is
  read as a typo for 2,338, the speakers of train-clean-100,
  train-clean-360 and train-other-500 (251 + 921 + 1,166,
  `LIBRISPEECH_TRAIN_SPEAKERS`); `num_speakers` is an argument.
- Front-end: log of the magnitude (`log(|X| + 1e-6)`), 32-ms Hamming frames
  (the window is not given) every 10 ms, FFT 512: 257 bins; no
  normalisation, no centre padding, so a 3-s segment gives 297 frames.
- SpecAugment (`spec_augment`; not in the paper, off unless a config's
  `data.augment.spec_augment` masks something): a `SpecAugment` layer
  named "spec_augment" on the log spectrum S, right after the front-end
  (after its normalisation): with `normalization="mean_variance"` a masked
  cell holds 0, the bin's mean over the mixture; with the paper's
  `normalization=None` it holds log|X| = 0 (|X| = 1), not the mean, so
  masking is best paired with `"mean_variance"`. It masks in training only
  and has no weights: the embedder computes the same identities at
  inference, from the same parameters, as without it. The separators'
  STFT magnitudes are never masked, and the separator conditioned on a
  frozen MIRNet (`build_separator("mirnet")`) reads the identities through
  a view of the embedder without the layer: a frozen model inside a
  trainer is still called in training mode.
- Encoder activations: Table 1 gives "Leaky ReLU (alpha = 0.2)" in a single
  cell, read as covering all six convolutions, conv6 included (so V_1 is
  the output of a leaky ReLU).
- Encoder convolutions: "same" padding (the frame count is kept), biases,
  no batch normalisation, no dilation, stride 1 (none of them stated).
- conv6 has `K * 257` channels (514 for K = 2: "two times that of the
  input spectrum dimension"), D = 257 per speaker.
- Channel exchange for K speakers: V_k is V_1 with its D-channel blocks
  rolled so that block k comes first (eq. 2 for K = 2).
- Spectral attention: W_k = sigmoid(fc2(tanh(fc1(V_k)))) per frame (fc1
  with 64 units, fc2 with 1: Table 1), and Z_k = act(FC_{K D -> 257}(W_k *
  V_1)): both weights multiply V_1, as the text says twice ("They are each
  multiplied with the spectral embedding V_1"). `attend="own"` multiplies
  V_k instead. The FC's activation is only called "non-linear": leaky
  ReLU with slope 0.2, the encoder's.
- Speaker embedding: "ResNet-18" (the citation, Inception-v4, is wrong)
  is He et al.'s: basic blocks 2, 2, 2, 2 with 64, 128, 256, 512 channels,
  the ImageNet stem (7x7 convolution with stride 2, 3x3 max pooling with
  stride 2; not stated), BN and ReLU, on Z_k as a one-channel image
  `[T, 257, 1]` (time, frequency). One network, shared by the speakers,
  run once on the K views stacked along the batch, so that its batch
  normalisation pools both identities in training as at inference
  (per-view batch statistics left the inference-mode network at chance).
- TAP: the mean of C5 over frequency, then over time (all positions equally
  weighted, so `GlobalAveragePooling2D`): a 512-d embedding with no FC
  layer after it (none is mentioned).
- Classifier: one FC layer 512 -> speakers with a bias, shared by the
  speakers (the paper says "a classifier").
- Loss: eq. 3-5, cross-entropy summed over the speakers under the best
  assignment, averaged over the batch (`PermutationInvariantLoss`, any K
  up to 8).

Parameter counts (K = 2, 2,338 speakers), all trainable except the
ResNet's 9,600 BN moving statistics: encoder 4,035,990 (658,432 + 2 x
786,944 + 262,656 + 769,500 + 771,514), attention fc1 + fc2 33,025, FC to
257 132,355, ResNet-18 with one input channel 11,170,240 (torchvision's
11,689,512 less its fc layer, 513,000, and 6,272 for one input channel
instead of three), classifier 1,199,394; embedder 15,371,610, trainer
16,571,004. `tests/papers/mirnet_model_test.py` derives each.
"""

import keras

from keras_spk.layers import ChannelExchange
from keras_spk.layers import LogSpectrogram
from keras_spk.layers import LossHead
from keras_spk.layers import MatchLength
from keras_spk.layers import SpecAugment
from keras_spk.layers.spec_augment import spec_augment_layer
from keras_spk.layers import SpectralAttention
from keras_spk.layers import SplitViews
from keras_spk.losses import PermutationInvariantLoss
from keras_spk.losses.permutation_invariant_loss import MAX_SPEAKERS
from keras_spk.models import ResNetBackbone
from keras_spk.utils import _checks

# train-clean-100 + train-clean-360 + train-other-500 (the paper's "2,238" is a typo).
LIBRISPEECH_TRAIN_SPEAKERS = 251 + 921 + 1166
FFT_LENGTH = 512
NUM_BINS = FFT_LENGTH // 2 + 1  # D, the spectrum's bins and each speaker's channels
# Table 1: conv1-conv5 (conv6 has K * NUM_BINS channels) and the six kernels.
PAPER_ENCODER_FILTERS = (512, 512, 512, 512, 1500)
PAPER_ENCODER_KERNELS = (5, 3, 3, 1, 1, 1)
ENCODER_NEGATIVE_SLOPE = 0.2
ATTENDS = ("v1", "own")


def _front_end(sample_rate, name, normalization=None):
    """log |STFT|: 32-ms frames every 10 ms, FFT 512 (257 bins), no centre padding."""
    return LogSpectrogram(
        sample_rate=sample_rate,
        frame_length_ms=32,
        frame_step_ms=10,
        fft_length=FFT_LENGTH,
        normalization=normalization,
        name=name,
    )


def _resnet(filters, blocks, name):
    """He et al.'s ResNet (basic blocks, ImageNet stem) on a one-channel `[T, 257, 1]` image."""
    return ResNetBackbone(
        stackwise_num_filters=filters,
        stackwise_num_blocks=blocks,
        stackwise_num_strides=[1] + [2] * (len(filters) - 1),
        block_type="basic_block",
        stem_filters=filters[0],
        stem_kernel_size=7,
        stem_strides=2,
        stem_max_pooling=True,
        feature_shape=(None, NUM_BINS, 1),
        name=name,
    )


def _without_spec_augment(embedder):
    """`embedder` on the same layers (same weights) with its `SpecAugment` layers skipped."""
    if not any(isinstance(layer, SpecAugment) for layer in embedder.layers):
        return embedder

    def call(layer, *args, **kwargs):
        return args[0] if isinstance(layer, SpecAugment) else layer(*args, **kwargs)

    return keras.models.clone_model(embedder, clone_function=lambda layer: layer, call_function=call)


def _check_int_list(name, value, length=None):
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, (list, tuple))
        or not value
        or not all(_checks.is_int(v) and v > 0 for v in value)
        or (length is not None and len(value) != length)
    ):
        wanted = "a non-empty list of positive integers"
        if length is not None:
            wanted = f"a list of {length} positive integers"
        raise ValueError(f"`{name}` must be {wanted}. Received: {name}={value!r}")
    return [int(v) for v in value]


def build_mirnet(
    num_speakers,
    num_identities=2,
    encoder_filters=PAPER_ENCODER_FILTERS,
    encoder_kernels=PAPER_ENCODER_KERNELS,
    attention_units=64,
    attend="v1",
    resnet_filters=(64, 128, 256, 512),
    resnet_blocks=(2, 2, 2, 2),
    sample_rate=16000,
    normalization=None,
    encoder_batch_norm=False,
    spec_augment=None,
):
    """MIRNet of section 3 and Table 1: the embedder and its PIT trainer.

    Args:
        num_speakers: int >= 2, the classifier's training speakers
            (`LIBRISPEECH_TRAIN_SPEAKERS` = 2,338 for the paper's data).
        num_identities: int K in [2, 8], the speakers in each mixture and
            the embeddings the network returns. Defaults to `2` (the paper).
        encoder_filters: the channels of conv1 to conv5 (conv6 has
            `num_identities * 257`). Defaults to `(512, 512, 512, 512, 1500)`.
        encoder_kernels: the kernel sizes of conv1 to conv6, one more entry
            than `encoder_filters`. Defaults to `(5, 3, 3, 1, 1, 1)`.
        attention_units: positive int, the width of the attention's fc1.
            Defaults to `64`.
        attend: `"v1"` (the paper's text: every W_k multiplies V_1) or
            `"own"` (W_k multiplies V_k). Defaults to `"v1"`.
        resnet_filters: the widths of the ResNet's stages; the stem has the
            first stage's width. Defaults to ResNet-18's `(64, 128, 256, 512)`,
            whose last entry is the embedding size.
        resnet_blocks: basic blocks per stage, one entry per stage.
            Defaults to ResNet-18's `(2, 2, 2, 2)`.
        sample_rate: positive int, the waveforms' rate; a 32-ms frame must
            fit the 512-point FFT (at most 16 kHz). Defaults to `16000`.
        normalization: `None` (the paper states none) or `"mean_variance"`:
            each bin of the log spectrum standardised over the input's
            frames (`LogSpectrogram`). Defaults to `None`.
        encoder_batch_norm: bool, batch normalisation after each encoder
            convolution, before its leaky ReLU (Table 1 has none; it speeds
            up training of the un-normalised encoder on log magnitudes).
            Defaults to `False`.
        spec_augment: `None` or a dict of `keras_spk.layers.SpecAugment`
            arguments (`freq_masks`, `freq_width`, `time_masks`,
            `time_width`, `seed`): frequency and time masking of the log
            spectrum before the encoder, in training only (layer
            "spec_augment", no weights; see the module docstring for what
            a masked cell holds). Not in the paper. Defaults to `None`.

    Returns:
        `(trainer, embedder)`, sharing their layers. The embedder maps
        `(batch, samples)` to `(batch, num_identities, resnet_filters[-1])`.
        The trainer maps `[mixture (batch, samples), labels (batch,
        num_identities) int]` to logits `(batch, num_identities,
        num_speakers)` and adds the PIT cross-entropy, logged as `pit_loss`
        (compile with `loss=None`).

    Example:

    ```python
    trainer, embedder = build_mirnet(LIBRISPEECH_TRAIN_SPEAKERS)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    trainer.fit(dataset)  # yields ((mixtures [B, 48000], labels [B, 2]),)
    identities = embedder.predict_on_batch(mixture[None])  # (1, 2, 512)
    ```
    """
    num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
    if num_speakers < 2:
        raise ValueError(
            f"`num_speakers` must be at least 2. Received: num_speakers={num_speakers}"
        )
    num_identities = _checks.check_positive_int("num_identities", num_identities)
    if not 2 <= num_identities <= MAX_SPEAKERS:
        raise ValueError(
            f"`num_identities` must be in [2, {MAX_SPEAKERS}] (the permutation invariant loss "
            f"enumerates K! assignments). Received: num_identities={num_identities}"
        )
    encoder_filters = _check_int_list("encoder_filters", encoder_filters)
    encoder_kernels = _check_int_list(
        "encoder_kernels", encoder_kernels, length=len(encoder_filters) + 1
    )
    _checks.check_choice("attend", attend, ATTENDS)
    resnet_filters = _check_int_list("resnet_filters", resnet_filters)
    resnet_blocks = _check_int_list("resnet_blocks", resnet_blocks, length=len(resnet_filters))

    # === Layers ===
    frontend = _front_end(sample_rate, "log_spectrogram", normalization)
    augment = spec_augment_layer(spec_augment)
    channels = encoder_filters + [num_identities * NUM_BINS]
    encoder = []
    for index, (filters, kernel) in enumerate(zip(channels, encoder_kernels)):
        number = index + 1
        encoder.append(
            keras.layers.Conv1D(filters, kernel, padding="same", name=f"conv{number}")
        )
        if encoder_batch_norm:
            encoder.append(
                keras.layers.BatchNormalization(momentum=0.9, name=f"conv{number}_bn")
            )
        encoder.append(
            keras.layers.LeakyReLU(
                negative_slope=ENCODER_NEGATIVE_SLOPE, name=f"conv{number}_leaky_relu"
            )
        )
    exchange = ChannelExchange(num_identities, name="channel_exchange")
    attention = SpectralAttention(
        units=attention_units,
        output_dim=NUM_BINS,
        attend=attend,
        activation="leaky_relu",  # slope 0.2
        name="spectral_attention",
    )
    add_channel_axis = keras.layers.Reshape((-1, NUM_BINS, 1), name="add_channel_axis")
    backbone = _resnet(resnet_filters, resnet_blocks, "resnet")
    last_level = backbone.pyramid_levels[-1]
    # Mean over frequency then time of equally many positions = mean over both.
    pooling = keras.layers.GlobalAveragePooling2D(name="tap")
    stack = SplitViews(num_identities, name="embeddings")
    classifier = keras.layers.Dense(num_speakers, name="classifier")
    pit = LossHead(PermutationInvariantLoss(), name="pit")

    # === Functional Model ===
    mixture = keras.Input((None,), name="mixture")
    labels = keras.Input((num_identities,), dtype="int32", name="labels")
    x = frontend(mixture)
    if augment is not None:
        x = augment(x)
    for layer in encoder:
        x = layer(x)
    # The K views go through the ResNet as one batch of K x B images, so its
    # batch normalisation pools both identities' statistics in training as its
    # moving statistics do at inference (per-view batch statistics would
    # normalise away what tells the views apart, e.g. the level of W_k).
    views = keras.ops.concatenate(attention(exchange(x)), axis=0)  # [K * B, T, 257]
    maps = backbone(add_channel_axis(views))
    pooled = pooling(maps[last_level])  # [K * B, dim]
    embeddings = stack(pooled)
    embedder = keras.Model(mixture, embeddings, name="mirnet_embedder")
    # Dense acts on the last axis: one classifier for every identity.
    logits = pit([classifier(embeddings), labels])
    trainer = keras.Model([mixture, labels], logits, name="mirnet_trainer")
    return trainer, embedder


# === Speaker-conditioned separation (section 4.2, Table 2) ===

# What conditions the separator: (b) MIRNet's identities of the mixture itself,
# (a) a clean-speech embedder on an enrolment utterance of each target, (c) nothing (uPIT).
SEPARATOR_CONDITIONS = ("mirnet", "enrolment", "none")


def build_clean_embedder(
    num_speakers,
    resnet_filters=(64, 128, 256, 512),
    resnet_blocks=(2, 2, 2, 2),
    sample_rate=16000,
    normalization=None,
):
    """A single-speaker embedder of clean speech, for the enrolment baseline (a) of Table 2.

    The paper's baseline (a) conditions the separator on an enrolled clean
    utterance embedded by Chung et al.'s VoxCeleb2 model; that model is
    not shipped, so the recipe trains this one (MIRNet's front-end and
    ResNet-18 with TAP, without the encoder and the attention) on the
    same training speakers' clean utterances with softmax cross-entropy,
    or loads a user's embedder (`separator.enrolment_model`).

    Returns:
        `(trainer, embedder)`: the embedder maps `(batch, samples)` to
        `(batch, resnet_filters[-1])`; the trainer takes `[waveforms,
        labels]` and adds the softmax cross-entropy (`speaker_head_loss`).
    """
    from keras_spk.layers import SoftmaxHead

    num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
    resnet_filters = _check_int_list("resnet_filters", resnet_filters)
    resnet_blocks = _check_int_list("resnet_blocks", resnet_blocks, length=len(resnet_filters))
    backbone = _resnet(resnet_filters, resnet_blocks, "speaker_resnet")
    waveform = keras.Input((None,), name="waveform")
    labels = keras.Input((), dtype="int32", name="labels")
    x = _front_end(sample_rate, "speaker_log_spectrogram", normalization)(waveform)
    x = keras.layers.Reshape((-1, NUM_BINS, 1), name="speaker_channel_axis")(x)
    maps = backbone(x)
    embedding = keras.layers.GlobalAveragePooling2D(name="speaker_tap")(
        maps[backbone.pyramid_levels[-1]]
    )
    embedder = keras.Model(waveform, embedding, name="clean_embedder")
    logits = SoftmaxHead(num_speakers, name="speaker_head")([embedding, labels])
    trainer = keras.Model([waveform, labels], logits, name="clean_embedder_trainer")
    return trainer, embedder


def build_separator(
    condition="mirnet",
    identities=None,
    enrolment_embedder=None,
    num_sources=2,
    conv_filters=64,
    lstm_units=400,
    fc_units=600,
    output_channels=8,
    dilations=(1, 2, 4, 8, 16),
    power=0.3,
    sample_rate=16000,
):
    """The separators of Table 2: VoiceFilter conditioned on MIRNet (b), on enrolment (a), or uPIT (c).

    ```
    mixture -> STFT (32-ms Hann frames every 10 ms, FFT 512) -> |X|, phase
    (b) "mirnet":    e_1..e_K = MIRNet(mixture)        (frozen, in the graph)
                     mask_k = VoiceFilter(|X|, e_k)    (one network, K calls)
    (a) "enrolment": e_k = clean embedder(enrolment_k)  (frozen)
                     mask_k = VoiceFilter(|X|, e_k)
    (c) "none":      mask_1..mask_K = uPIT BLSTM(|X|)   (fc1 doubled, K * 257 outputs)
    estimate_k = InverseSTFT(mask_k * |X|, phase), cut to the mixture's length
    ```

    Loss: the spectral MSE between `mask_k * |X|` and the sources'
    magnitudes after power-law compression (`SpectralMSE(power)`),
    under the best assignment of the K outputs to the K sources (PIT) for
    (b) and (c), whose outputs come in no particular order; in source
    order for (a), whose k-th output is conditioned on source k's speaker.

    Args:
        condition: `"mirnet"`, `"enrolment"` or `"none"`.
        identities: for `"mirnet"`, the MIRNet embedder (mixture ->
            `(batch, K, E)`), frozen by the caller.
        enrolment_embedder: for `"enrolment"`, a clean-speech embedder
            (`(batch, samples)` -> `(batch, E)`), frozen by the caller.
        num_sources: K, the sources of each mixture. Defaults to `2`.
        conv_filters, lstm_units, fc_units, output_channels, dilations:
            VoiceFilter's sizes (`keras_spk.models.build_voicefilter`);
            uPIT's fc1 has `2 * fc_units` ("doubling the dimension of the
            fully-connected layer", section 4.2.2).
        power: the spectral MSE's compression. Defaults to `0.3`.
        sample_rate: the waveforms' rate. Defaults to `16000`.

    Returns:
        `(trainer, separator)`. The trainer takes the sampler's
        `[mixture (B, L), labels (B, K), sources (B, K, L)]` (and
        `enrolment (B, K, L_e)` for `"enrolment"`), adds the loss (logged
        as `separation_loss`) and returns the estimated magnitudes; compile
        it with `loss=None`. The separator maps `mixture` (and
        `enrolment`) to the estimated sources `(B, K, L)`.
    """
    from keras_spk.layers import STFT
    from keras_spk.layers import InverseSTFT
    from keras_spk.models.separation import apply_mask
    from keras_spk.models.separation import build_upit
    from keras_spk.models.separation import build_voicefilter
    from keras_spk.models.separation import spectral_mse

    _checks.check_choice("condition", condition, SEPARATOR_CONDITIONS)
    num_sources = _checks.check_positive_int("num_sources", num_sources)
    if condition == "mirnet" and identities is None:
        raise ValueError("`condition='mirnet'` needs `identities`, the MIRNet embedder.")
    if condition == "enrolment" and enrolment_embedder is None:
        raise ValueError("`condition='enrolment'` needs `enrolment_embedder`, a clean-speech embedder.")
    sizes = dict(
        num_bins=NUM_BINS,
        conv_filters=conv_filters,
        lstm_units=lstm_units,
        output_channels=output_channels,
        dilations=tuple(dilations),
    )
    stft = STFT(sample_rate=sample_rate, name="stft")
    inverse = InverseSTFT(sample_rate=sample_rate, name="inverse_stft")

    mixture = keras.Input((None,), name="mixture")
    labels = keras.Input((num_sources,), dtype="int32", name="labels")
    sources = keras.Input((num_sources, None), name="sources")
    enrolment = keras.Input((num_sources, None), name="enrolment")
    magnitude, phase = stft(mixture)
    if condition == "none":
        masks = build_upit(num_sources=num_sources, fc_units=2 * fc_units, **sizes)(magnitude)
    else:
        if condition == "mirnet":
            # A frozen model inside a trainer is called in training mode, where
            # SpecAugment would mask the mixture MIRNet reads.
            embeddings = _without_spec_augment(identities)(mixture)
            conditions = [embeddings[:, k] for k in range(num_sources)]
        else:
            conditions = [enrolment_embedder(enrolment[:, k]) for k in range(num_sources)]
        dim = conditions[0].shape[-1]
        voicefilter = build_voicefilter(condition_dim=dim, fc_units=fc_units, **sizes)
        masks = keras.ops.stack([voicefilter([magnitude, c]) for c in conditions], axis=1)
    estimates = masks * keras.ops.expand_dims(magnitude, 1)
    targets = keras.ops.stack([stft(sources[:, k])[0] for k in range(num_sources)], axis=1)
    per_source = spectral_mse(power)
    loss = per_source if condition == "enrolment" else PermutationInvariantLoss(per_speaker_loss=per_source)
    estimates = LossHead(loss, name="separation")([estimates, targets])
    inputs = [mixture, labels, sources] + ([enrolment] if condition == "enrolment" else [])
    trainer = keras.Model(inputs, estimates, name=f"separator_trainer_{condition}")

    waveforms = keras.ops.stack(
        [inverse([masks[:, k] * magnitude, phase]) for k in range(num_sources)], axis=1
    )
    waveforms = MatchLength(name="match_length")([waveforms, mixture])
    separator_inputs = [mixture, enrolment] if condition == "enrolment" else mixture
    separator = keras.Model(separator_inputs, waveforms, name=f"separator_{condition}")
    return trainer, separator
