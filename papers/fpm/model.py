"""Multi-scale aggregation with a feature pyramid module (Jung et al., Interspeech 2020).

The recipe's model builders, from Table 1, sections 2-4 and Tables 2-4 of
the paper. Every system is

    waveform -> LogMelFilterbank(64) -> ResNet-34 (Table 1) -> C2..C5
             -> [FeaturePyramid: P_l]  -> aggregation -> speaker embedding
             -> output layer (training only)

with the aggregation one of "single" (the last stage only, Fig. 2(a)),
"msea" (multi-scale embedding aggregation, Seo et al.) or "msfa"
(multi-scale feature aggregation, Gao et al.), without an FPM, with FPM-B
(bilinear top-down upsampling) or with FPM-TC (transposed convolutions),
and pooling by GAP, SAP or LDE. `build_fpm_model` builds any combination;
`SYSTEMS` names the paper's rows and `build_system(name, ...)` builds one.

Each builder returns `(trainer, embedder)`. The trainer takes
`[waveform, labels]`, returns the output layer's logits and adds its own
losses (softmax, or A-softmax + ring loss, and the L2 weight decay), so it is
compiled with `loss=None`. The embedder shares the trainer's layers and maps
waveforms `(batch, samples)` of any length to embeddings; the front-end is
inside it, so it exports as it is (`keras_spk.export.export_saved_model`).

What the paper leaves open, and what is chosen here:

- Axis layout: the "64 x T" input is stored `(T, 64, 1)` (time, frequency,
  channel), the layout of `LogMelFilterbank` and of the pyramid layers.
- Front-end: 64 log-mel bands, 25 ms frames; the step is not given, 10 ms
  is used (300 frames for 3 s, as section 4.2 says); the sliding mean
  normalisation window of "up to 3 s" is 300 frames (`LogMelFilterbank`'s
  Kaldi-style sliding CMN). No pre-emphasis or VAD.
- SpecAugment (`spec_augment`; not in the paper, off unless a config's
  `data.augment.spec_augment` masks something): a `SpecAugment` layer
  named "spec_augment" right after the front-end, i.e. after its sliding
  mean normalisation, so a masked cell holds 0, the window's mean. It masks
  in training only and has no weights: the embedder computes the same
  embeddings at inference, from the same parameters, as without it.
- ResNet-34 (`keras_spk.models.ResNetBackbone` with its defaults): bias-free
  convolutions, each followed by BN (PyTorch's eps 1e-5 and momentum 0.1)
  and ReLU, 1x1 projection shortcuts where a stage changes stride or width,
  "same" padding (a stride of 2 maps `n` to `ceil(n / 2)`).
- How GAP reads a map: the mean over time of each frame's whole
  frequency x channel vector ("frames" descriptors, `8 x 256 = 2048`
  features for C5). This is what makes "Single" 5.74M parameters against
  the paper's 5.77M; averaging over frequency too would give 5.51M (-4.4 %).
  SAP reads the same frames. LDE reads every time-frequency position as a
  64-d descriptor after its 1x1 convolution, which is what lets one LDE
  layer be "shared by all stages" (section 4.2) although their frequency
  resolutions differ.
- MSEA's "1x1 convolutions added before pooling" (section 3.1): their width
  is not given. With GAP and SAP they reduce each map to
  `min(64, narrowest aggregated map)` channels: 64 for the backbone's
  C3-C5 (64 is the one width the paper gives for such a convolution, before
  LDE), and 32 for the FPM's P maps, which the lateral 1x1 convolutions have
  already reduced to 32 (widening them to 64 would make the FPM systems
  larger than MSEA without FPM, against sections 3.2 and 5.1). With LDE they
  map to 64 channels, as section 4.2 says. "Single" and MSFA have no such
  convolution with GAP or SAP (the paper describes none); with LDE they
  have the 1x1 convolution to 64.
- LDE head: 1x1 convolution to 64 channels per level, one LDE layer (64
  codewords) and one FC layer (to `embedding_dim`) shared by all levels,
  L2-normalisation between them (section 4.2); MSEA then concatenates the
  levels and a final FC gives the embedding. With a single pooled vector
  ("single", MSFA) the shared FC after the L2-normalisation is the
  embedding layer itself.
- SAP: one layer per level (not shared, section 4.2) with 128 attention
  units (`sap_attention_units`); the paper does not give the size, and the
  authors' reference [9] size (the input width, up to 2048 here) would
  make each SAP layer up to 4M parameters.
- MSFA (section 2, after Gao et al.): levels are fused at the middle one
  (C4 of C3-C5): the lower level by a 3x3 stride-2 convolution keeping its
  channels, the upper one by bilinear interpolation (section 5.1: "bilinear
  upsampling is applied to C5"), then concatenated on channels.
- FPM (`keras_spk.layers.FeaturePyramid`): 32 channels (section 3.2), built
  over the aggregated levels only (C3-C5 for Tables 2-3: the top-down
  pathway starts at C5 and ends at the lowest aggregated level); FPM-TC's
  transposed convolutions are 3x3 with stride 2 (the size that makes
  FPM-TC about 0.02M larger than FPM-B, as Table 2).
- Levels: C3-C5 for Tables 2 and 3 (section 5.1), except LDE, which
  aggregates "stage 3 and 4" only (section 5.2), i.e. C4-C5; the Table 4
  systems use all stages (C2-C5) with GAP ("Proposed 1") and stages 2-4
  (C3-C5) with LDE ("Proposed 2") (section 5.3).
- Embedding: the output of the final FC layer (no BN or activation after
  it; the paper names none), 128-d (256-d for VoxCeleb2, section 5.3).
  `embedding_batch_norm=True` adds a BN after that FC, inside the embedder
  (2 x 128 trainable parameters). It is not in the paper, but the recipe's
  configs switch it on: nothing normalises the FPM, the aggregation or the
  final FC, which reads a long un-normalised vector (1,792 GAP-over-frames
  features for MSEA with FPM), and without the BN the model does not train
  reliably at the paper's learning rate (papers/fpm/README.md has the
  measurements).
- Output layer: softmax is an FC layer with bias (`SoftmaxHead`);
  A-softmax (`ASoftmax`, margin 4 with SphereFace's lambda annealing) with
  ring loss (`RingLoss`, weight 0.01) before it: the paper only says "with
  the same settings as in [16]", which it does not restate.
- Weight decay 1e-4 with SGD (section 4.2): PyTorch's `weight_decay=1e-4` is
  the gradient of `5e-5 ||w||^2`, so `l2=5e-5` on every convolution, FC
  and output-layer kernel (through the momentum, as in PyTorch); PyTorch
  also decays BN parameters and biases, which is left out here.

Parameter counts (Table 2, 1,211 training speakers, softmax output layer
included; `tests/papers/fpm_model_test.py` derives each by hand): Single
5,743,131 (paper 5.77M); MSFA 6,435,419 / 5,729,019 / 5,747,515 (paper 6.20M
/ 5.82M / 5.85M); MSEA 5,968,603 / 5,755,707 / 5,774,203 (paper 5.90M /
5.83M / 5.85M), for without FPM / FPM-B / FPM-TC. All but MSFA without FPM
are within 2 % of the paper; see the test's docstring for why that one is
3.8 % above it under every reading that keeps the other six.
"""

import keras

from keras_spk.layers import ASoftmax
from keras_spk.layers import FeaturePyramid
from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import MultiScaleAggregation
from keras_spk.layers import RingLoss
from keras_spk.layers import SelfAttentivePooling
from keras_spk.layers import SoftmaxHead
from keras_spk.layers.spec_augment import spec_augment_layer
from keras_spk.models import ResNetBackbone
from keras_spk.utils import _checks

AGGREGATIONS = ("single", "msea", "msfa")
FPMS = (None, "bilinear", "transposed")
POOLINGS = ("gap", "sap", "lde")
HEADS = ("softmax", "a_softmax")
AUTO = "auto"

# The backbone of Table 1 (ResNetBackbone's defaults, spelled out here so
# the recipe does not change if those do).
PAPER_BACKBONE = {
    "stackwise_num_filters": [32, 64, 128, 256],
    "stackwise_num_blocks": [3, 4, 6, 3],
    "stackwise_num_strides": [1, 2, 2, 2],
    "block_type": "basic_block",
    "stem_filters": 32,
    "stem_kernel_size": 7,
    "stem_strides": 1,
    "stem_max_pooling": False,
}

# The rows of Tables 2-4. Tables 2 and 3 cross the first seven with the
# pooling (Table 2: GAP; Table 3: "single" and the three MSEA rows with
# GAP, SAP and LDE). Table 4's two proposed systems are complete.
SYSTEMS = {
    "single": {"aggregation": "single", "fpm": None},
    "msfa": {"aggregation": "msfa", "fpm": None},
    "msfa_fpm_b": {"aggregation": "msfa", "fpm": "bilinear"},
    "msfa_fpm_tc": {"aggregation": "msfa", "fpm": "transposed"},
    "msea": {"aggregation": "msea", "fpm": None},
    "msea_fpm_b": {"aggregation": "msea", "fpm": "bilinear"},
    "msea_fpm_tc": {"aggregation": "msea", "fpm": "transposed"},
    "proposed_1": {
        "aggregation": "msea",
        "fpm": "transposed",
        "pooling": "gap",
        "levels": [2, 3, 4, 5],
        "head": "a_softmax",
    },
    "proposed_2": {
        "aggregation": "msea",
        "fpm": "transposed",
        "pooling": "lde",
        "levels": [3, 4, 5],
        "head": "a_softmax",
    },
}

# Section 4.2: "a 1x1 convolution is applied to change the number of
# channels to 64" (before LDE); also the cap of MSEA's 1x1 convolutions.
_PROJECTION_CHANNELS = 64


def default_levels(aggregation, pooling):
    """The pyramid levels the paper aggregates for Tables 2 and 3.

    `[5]` for "single"; `[4, 5]` for LDE (section 5.2: "we only aggregate
    features from stage 3 and 4"); `[3, 4, 5]` otherwise (section 5.1).
    """
    _checks.check_choice("aggregation", aggregation, AGGREGATIONS)
    _checks.check_choice("pooling", pooling, POOLINGS)
    if aggregation == "single":
        return [5]
    if pooling == "lde":
        return [4, 5]
    return [3, 4, 5]


def _regularizer(l2):
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _check_levels(levels, available):
    if (
        isinstance(levels, (str, bytes))
        or not isinstance(levels, (list, tuple))
        or not levels
        or not all(_checks.is_int(level) for level in levels)
        or len(set(levels)) != len(levels)
    ):
        raise ValueError(
            "`levels` must be None or a non-empty list of distinct level numbers such as "
            f"[3, 4, 5]. Received: levels={levels!r}"
        )
    levels = sorted(int(level) for level in levels)
    missing = [level for level in levels if level not in available]
    if missing:
        raise ValueError(
            f"`levels` {levels} asks for levels the backbone does not have; it has "
            f"{list(available)} (C2 for its first stage). Received: levels={levels!r}"
        )
    return levels


def _aggregation_layer(
    aggregation,
    pooling,
    levels,
    map_channels,
    embedding_dim,
    projection_channels,
    sap_attention_units,
    l2,
):
    """The `MultiScaleAggregation` that maps the (C or P) maps to the embedding."""
    if pooling == "lde":
        settings = {"pooling": "lde"}  # 1x1 to 64, positions, shared LDE, L2
        if aggregation != "msea":
            # One pooled vector: the FC after the L2-normalisation is the
            # embedding layer itself.
            settings["level_units"] = None
    else:
        settings = {"descriptors": "frames"}
        if pooling == "sap":
            settings["pooling"] = SelfAttentivePooling(
                attention_units=sap_attention_units, name="sap"
            )
            settings["share_pooling"] = False
        else:
            settings["pooling"] = "gap"
            # GAP has no weights; one per level lets the frame sizes differ.
            settings["share_pooling"] = False
        if aggregation == "msea":
            settings["projection_channels"] = min(_PROJECTION_CHANNELS, min(map_channels))
        else:
            settings["projection_channels"] = None
    if projection_channels != AUTO:
        settings["projection_channels"] = projection_channels
    return MultiScaleAggregation(
        mode="msfa" if aggregation == "msfa" else "msea",
        embedding_dim=embedding_dim,
        levels=levels,
        kernel_regularizer=_regularizer(l2),
        name="aggregation",
        **settings,
    )


def build_fpm_model(
    num_speakers,
    aggregation="msea",
    fpm=None,
    pooling="gap",
    levels=None,
    embedding_dim=128,
    head="softmax",
    fpm_channels=32,
    projection_channels=AUTO,
    sap_attention_units=128,
    ring_loss_weight=0.01,
    a_softmax_margin=4,
    l2=5e-5,
    num_mel_bins=64,
    sample_rate=16000,
    mean_normalization_window=300,
    backbone_config=None,
    embedding_batch_norm=False,
    spec_augment=None,
):
    """A system of Tables 2-4: log-mel, ResNet-34, optional FPM, aggregation, output layer.

    Args:
        num_speakers: int >= 2, the training speakers (1,211 for VoxCeleb1
            dev, 5,994 for VoxCeleb2 dev).
        aggregation: `"single"` (last level only), `"msea"` or `"msfa"`.
            Defaults to `"msea"`.
        fpm: `None` (no FPM), `"bilinear"` (FPM-B) or `"transposed"`
            (FPM-TC). Defaults to `None`.
        pooling: `"gap"`, `"sap"` or `"lde"`. Defaults to `"gap"`.
        levels: list of pyramid levels to aggregate (`2` is the first
            stage's output C2), or `None` for the paper's choice
            (`default_levels`). Defaults to `None`.
        embedding_dim: positive int, the speaker embedding size. Defaults
            to `128` (the paper uses 256 when training on VoxCeleb2).
        head: `"softmax"` or `"a_softmax"` (A-softmax with ring loss).
            Defaults to `"softmax"`.
        fpm_channels: positive int, the FPM's channels. Defaults to `32`.
        projection_channels: `"auto"` (the paper's 1x1 convolutions before
            pooling, see the module docstring), `None` (none) or a positive
            int (that width on every level). Defaults to `"auto"`.
        sap_attention_units: positive int, the attention units of each SAP
            layer. Defaults to `128`.
        ring_loss_weight: float >= 0, the ring loss weight with
            `head="a_softmax"`. Defaults to `0.01`.
        a_softmax_margin: positive int, the A-softmax angular margin `m`.
            Defaults to `4`.
        l2: float >= 0, L2 penalty `l2 * ||w||^2` on every convolution, FC
            and output-layer kernel; `5e-5` is the paper's SGD weight decay
            of 1e-4 (PyTorch convention). 0 disables it. Defaults to `5e-5`.
        num_mel_bins: positive int, log-mel bands. Defaults to `64`.
        sample_rate: positive int, the waveforms' sampling rate. Defaults to
            `16000`.
        mean_normalization_window: frames of the sliding mean
            normalisation (`None` or 0: none). Defaults to `300` (3 s).
        backbone_config: optional dict of `ResNetBackbone` arguments
            replacing those of Table 1 (`PAPER_BACKBONE`), e.g. a smaller
            network for tests or demos.
        embedding_batch_norm: bool, batch-normalise the embedding (inside
            the embedder, after the final FC layer). Not in the paper; see
            the module docstring for why the recipe's configs switch it on.
            Defaults to `False` (the paper's structure).
        spec_augment: `None` or a dict of `keras_spk.layers.SpecAugment`
            arguments (`freq_masks`, `freq_width`, `time_masks`,
            `time_width`, `seed`): frequency and time masking of the
            mean-normalised log-mel features, in training only (layer
            "spec_augment", no weights). Not in the paper. Defaults to
            `None` (none).

    Returns:
        `(trainer, embedder)`: the trainer maps `[waveform, labels]`
        (`(batch, None)` floats, `(batch,)` ints) to logits
        `(batch, num_speakers)` and adds the losses (compile with
        `loss=None`); the embedder maps waveforms `(batch, None)` to
        speaker embeddings `(batch, embedding_dim)`.

    Example:

    ```python
    trainer, embedder = build_fpm_model(1211, "msea", fpm="transposed", pooling="lde")
    trainer.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=None
    )
    trainer.fit(dataset)  # yields ((waveforms, labels),), 3-s crops
    embeddings = embedder.predict_on_batch(utterance[None])  # a whole utterance
    ```
    """
    num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
    if num_speakers < 2:
        raise ValueError(
            f"`num_speakers` must be at least 2. Received: num_speakers={num_speakers}"
        )
    _checks.check_choice("aggregation", aggregation, AGGREGATIONS)
    _checks.check_choice("fpm", fpm, FPMS)
    _checks.check_choice("pooling", pooling, POOLINGS)
    _checks.check_choice("head", head, HEADS)
    embedding_dim = _checks.check_positive_int("embedding_dim", embedding_dim)
    fpm_channels = _checks.check_positive_int("fpm_channels", fpm_channels)
    if projection_channels != AUTO:
        projection_channels = _checks.check_positive_int(
            "projection_channels", projection_channels, allow_none=True
        )
    sap_attention_units = _checks.check_positive_int("sap_attention_units", sap_attention_units)
    ring_loss_weight = _checks.check_non_negative_real("ring_loss_weight", ring_loss_weight)
    a_softmax_margin = _checks.check_positive_int("a_softmax_margin", a_softmax_margin)
    l2 = _checks.check_non_negative_real("l2", l2)
    num_mel_bins = _checks.check_positive_int("num_mel_bins", num_mel_bins)
    if not isinstance(embedding_batch_norm, bool):
        raise ValueError(
            "`embedding_batch_norm` must be True or False. "
            f"Received: embedding_batch_norm={embedding_batch_norm!r}"
        )
    if backbone_config is not None and not isinstance(backbone_config, dict):
        raise ValueError(
            "`backbone_config` must be None or a dict of ResNetBackbone arguments. "
            f"Received: backbone_config={backbone_config!r}"
        )
    config = dict(PAPER_BACKBONE, **(backbone_config or {}))
    for key in ("feature_shape", "kernel_regularizer", "name"):
        if key in config:
            raise ValueError(
                f"`backbone_config` must not set {key!r}: it follows `num_mel_bins`, `l2` and "
                f"the recipe. Received: backbone_config={backbone_config!r}"
            )
    stages = config["stackwise_num_filters"]
    # C2 .. C<n+1> for n stages (a malformed list is reported by ResNetBackbone).
    available = range(2, 2 + len(stages)) if isinstance(stages, (list, tuple)) else range(2, 6)
    levels = _check_levels(
        default_levels(aggregation, pooling) if levels is None else levels, available
    )
    if aggregation == "single" and len(levels) != 1:
        raise ValueError(f"aggregation='single' pools one level. Received: levels={levels!r}")
    if aggregation == "single" and fpm is not None:
        raise ValueError(
            "aggregation='single' has no feature pyramid (Fig. 2(a)); use 'msea' or 'msfa' "
            f"with an FPM. Received: fpm={fpm!r}"
        )

    # === Layers ===
    frontend = LogMelFilterbank(
        sample_rate=sample_rate,
        num_mel_bins=num_mel_bins,
        frame_length_ms=25,
        frame_step_ms=10,
        mean_normalization_window=mean_normalization_window,
        name="log_mel",
    )
    augment = spec_augment_layer(spec_augment)
    backbone = ResNetBackbone(
        feature_shape=(None, num_mel_bins, 1),
        kernel_regularizer=_regularizer(l2),
        name="resnet",
        **config,
    )
    keys = {number: f"C{number}" for number in levels}
    channels = {number: backbone.pyramid_outputs[keys[number]].shape[-1] for number in levels}
    pyramid = None
    if fpm is not None:
        pyramid = FeaturePyramid(
            channels=fpm_channels,
            upsampling=fpm,
            levels=levels,
            kernel_regularizer=_regularizer(l2),
            name="feature_pyramid",
        )
        channels = {number: fpm_channels for number in levels}
    aggregate = _aggregation_layer(
        aggregation,
        pooling,
        levels,
        [channels[number] for number in levels],
        embedding_dim,
        projection_channels,
        sap_attention_units,
        l2,
    )
    ring_loss = None
    if head == "a_softmax":
        ring_loss = RingLoss(weight=ring_loss_weight, name="ring_loss")
        output_layer = ASoftmax(
            num_speakers,
            margin=a_softmax_margin,
            kernel_regularizer=_regularizer(l2),
            name="output_layer",
        )
    else:
        output_layer = SoftmaxHead(
            num_speakers, kernel_regularizer=_regularizer(l2), name="output_layer"
        )

    # === Functional Model ===
    waveform = keras.Input((None,), name="waveform")
    labels = keras.Input((), dtype="int32", name="labels")
    features = frontend(waveform)
    if augment is not None:
        features = augment(features)
    features = keras.layers.Reshape((-1, num_mel_bins, 1), name="add_channel_axis")(features)
    maps = backbone(features)
    maps = {keys[number]: maps[keys[number]] for number in levels}
    if pyramid is not None:
        maps = pyramid(maps)
    embedding = aggregate(maps)
    if embedding_batch_norm:
        embedding = keras.layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9, name="embedding_bn"  # PyTorch's BatchNorm1d defaults
        )(embedding)
    embedder = keras.Model(waveform, embedding, name="fpm_embedder")
    x = ring_loss([embedding, labels]) if ring_loss is not None else embedding
    logits = output_layer([x, labels])
    trainer = keras.Model([waveform, labels], logits, name="fpm_trainer")
    return trainer, embedder


def build_system(name, num_speakers, **overrides):
    """`build_fpm_model` for a row of the paper, by its `SYSTEMS` name.

    Args:
        name: one of `SYSTEMS`: `"single"`, `"msfa"`, `"msfa_fpm_b"`,
            `"msfa_fpm_tc"`, `"msea"`, `"msea_fpm_b"`, `"msea_fpm_tc"`
            (Tables 2 and 3), `"proposed_1"` or `"proposed_2"` (Table 4).
        num_speakers: int >= 2, the training speakers.
        **overrides: further `build_fpm_model` arguments (e.g.
            `pooling="lde"` for Table 3, `embedding_dim=256` for VoxCeleb2),
            applied over the system's own.

    Returns:
        `(trainer, embedder)`, as `build_fpm_model`.
    """
    if name not in SYSTEMS:
        raise ValueError(
            f"Unknown FPM system. Valid names: {sorted(SYSTEMS)}. Received: name={name!r}"
        )
    return build_fpm_model(num_speakers, **dict(SYSTEMS[name], **overrides))
