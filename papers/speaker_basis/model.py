"""Speaker-basis losses (Heo et al., Interspeech 2019): the networks of Tables 1 and 3, every loss of Table 2.

Every system is

    waveform -> PreEmphasis(0.97) -> LogMelFilterbank(64, 25 ms / 10 ms, 3-s mean norm.)
             -> ResNet-34 with leaky ReLU (Table 1 or Table 3)
             -> global average pooling over time and frequency
             -> [Dense 1024, Table 3 only] = the speaker embedding
             -> the loss's output layer (training only)

and the rows of Table 2 differ only in that output layer and its losses
(`LOSSES`):

| name        | loss                    | output layer                                    |
|-------------|-------------------------|-------------------------------------------------|
| softmax     | L_S (eq. 1)             | `SoftmaxHead` (W and b)                         |
| center      | L_S + L_C (eq. 1-3)     | `CenterLoss` (lambda 1e-3, alpha 0.5) + `SoftmaxHead` |
| am_softmax  | L_AMS (eq. 4-5)         | `AMSoftmax` (s 5, m 0.35), weight decay         |
| ge2e        | L_G (eq. 6-8)           | `GE2EHead` (sigmoid variant), P x K batches, weight decay |
| proposed_1  | L_S + L_C + L_BC (eq. 9)| `CenterLoss` + `SpeakerBasis` (softmax on)      |
| proposed_2  | L_H + L_BC (eq. 9-10)   | `SpeakerBasis` (no softmax, H hardest bases), weight decay |

Table 4's systems are `center` ("L_S + L_C") and `proposed_2` with H = 100
or 50 on the Table 3 network.

Each builder returns `(trainer, embedder)`. The trainer takes
`[waveform, labels]`, returns the output layer's scores and adds its own
losses, so it is compiled with `loss=None`. The embedder shares the
trainer's layers and maps waveforms `(batch, samples)` of any length to
embeddings; the front-end is inside it, so it exports as it is.

What the paper leaves open, and what is chosen here:

- Front-end (section 4.1, "Kaldi"): Kaldi's default pre-emphasis of 0.97
  (`pre_emphasis`, 0 switches it off), 64 log-mel bands from 25-ms Hamming
  windows every 10 ms, mean normalisation over a 300-frame (3-s) sliding
  window; the layout is `(time, frequency, 1)`, so Table 1's `l x 64 x 16`
  is `(l, 64, 16)`.
- SpecAugment (`spec_augment`; not in the paper, off unless a config's
  `data.augment.spec_augment` masks something): a `SpecAugment` layer
  named "spec_augment" right after the log-mel front-end, i.e. after its
  sliding mean normalisation, so a masked cell holds 0, the window's mean.
  It masks in training only and has no weights: the embedder computes the
  same embeddings at inference, from the same parameters, as without it.
- Block type: the paper cites both post-activation [25] and
  pre-activation [26] ResNets; `ResNetBackbone`'s post-activation basic
  blocks are used (BN after every bias-free convolution, 1x1 projection
  shortcuts where the stride or width changes).
- Leaky ReLU slope: not given; 0.3, Keras's default, which the same
  group's Keras code (RawNet) uses.
- Pooling: "Global" in both tables: the mean over time and frequency of
  C5, 128 values (Table 1) or 512 (Table 3).
- Table 3's Dense 512 -> 1024 is the embedding (b-vectors are made "from
  two 1024-dimensional embeddings"); its activation is not given, leaky
  ReLU ("the activation function", section 4.1) by default,
  `embedding_activation="linear"` for none.
- Weight decay 1e-4 (section 4.1, Table 2): an L2 penalty `1e-4 ||w||^2` on
  every kernel (convolutions, the Dense and the output layer), only for
  the cosine losses (AM-softmax, GE2E, Proposed 2), as section 4.1 says it
  helped them and hurt the inner-product ones. `l2` overrides it.
- L_BC's scale: eq. 9 sums N(N - 1) cosines with weight 1, a term of up to
  1.5 million that would swamp the others for 1,211 speakers. The default
  is the reading of the same group's code (the RawNet recipe): the mean
  pairwise cosine times 5 (`basis_reduction="mean"`, `basis_weight=5`);
  `basis_reduction="sum"` with `basis_weight=1` is eq. 9 literally.
- L_S and L_H sum over the M utterances of a batch; `SpeakerBasis`
  averages (the same optimum, independent of the batch size). The center
  loss is summed, as eq. 2 and the RawNet recipe (lambda 1e-3 was tuned for
  the sum).
- Eq. 7's centroid includes the utterance itself; `GE2EHead` leaves it out
  of its own speaker's centroid, as Wan et al. do (with it in, a speaker
  can score itself); the loss is the sigmoid variant of eq. 8.
- Proposed 1's L_S keeps eq. 1's bias (as the softmax baseline); Proposed 2
  has no softmax and so no bias.
"""

import keras

from keras_spk.layers import AMSoftmax
from keras_spk.layers import CenterLoss
from keras_spk.layers import LogMelFilterbank
from keras_spk.layers import PreEmphasis
from keras_spk.layers import SoftmaxHead
from keras_spk.layers import SpeakerBasis
from keras_spk.layers.spec_augment import spec_augment_layer
from keras_spk.losses import GE2EHead
from keras_spk.models import ResNetBackbone
from keras_spk.utils import _checks

# Table 1 (VoxCeleb1) and Table 3 (VoxCeleb2): the backbone, and the Dense
# embedding layer after the pooling (None: the pooled vector is the embedding).
NETWORKS = {
    "vox1": {
        "backbone": {
            "stackwise_num_filters": [16, 32, 64, 128],
            "stackwise_num_blocks": [3, 4, 6, 3],
            "stackwise_num_strides": [1, 2, 2, 2],
            "block_type": "basic_block",
            "stem_filters": 16,
            "stem_kernel_size": 7,
            "stem_strides": 1,
            "stem_max_pooling": False,
        },
        "embedding_dim": None,
    },
    "vox2": {
        "backbone": {
            "stackwise_num_filters": [64, 128, 256, 512],
            "stackwise_num_blocks": [3, 4, 6, 3],
            "stackwise_num_strides": [1, 2, 2, 2],
            "block_type": "basic_block",
            "stem_filters": 64,
            "stem_kernel_size": 7,
            "stem_strides": [1, 2],  # l x 64 -> l x 32 (Table 3's Conv1)
            "stem_max_pooling": False,
        },
        "embedding_dim": 1024,
    },
}

# The rows of Table 2 (and Table 4's two losses): the output layer and the
# loss terms; `weight_decay` is section 4.1's L2 of 1e-4 on the cosine losses.
LOSSES = {
    "softmax": {"head": "softmax", "center": False, "weight_decay": False},
    "center": {"head": "softmax", "center": True, "weight_decay": False},
    "am_softmax": {"head": "am_softmax", "center": False, "weight_decay": True},
    "ge2e": {"head": "ge2e", "center": False, "weight_decay": True},
    "proposed_1": {"head": "basis", "center": True, "softmax": True, "weight_decay": False},
    "proposed_2": {"head": "basis", "center": False, "softmax": False, "weight_decay": True},
}
# Losses whose batches must hold several utterances of each speaker.
PK_LOSSES = ("ge2e",)
WEIGHT_DECAY = 1e-4
EMBEDDING_ACTIVATIONS = ("leaky_relu", "linear")


def _regularizer(l2):
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _check_network(network, backbone_config):
    _checks.check_choice("network", network, tuple(NETWORKS))
    if backbone_config is not None and not isinstance(backbone_config, dict):
        raise ValueError(
            "`backbone_config` must be None or a dict of ResNetBackbone arguments. "
            f"Received: backbone_config={backbone_config!r}"
        )
    config = dict(NETWORKS[network]["backbone"], **(backbone_config or {}))
    for key in ("feature_shape", "kernel_regularizer", "activation", "negative_slope", "name"):
        if key in config:
            raise ValueError(
                f"`backbone_config` must not set {key!r}: it follows `num_mel_bins`, `l2`, "
                f"`negative_slope` and the recipe. Received: backbone_config={backbone_config!r}"
            )
    return config


def build_embedder(
    network="vox1",
    num_mel_bins=64,
    sample_rate=16000,
    pre_emphasis=0.97,
    mean_normalization_window=300,
    negative_slope=0.3,
    embedding_dim="auto",
    embedding_activation="leaky_relu",
    l2=0.0,
    backbone_config=None,
    spec_augment=None,
    name="speaker_basis_embedder",
):
    """The embedder of Table 1 (`"vox1"`) or Table 3 (`"vox2"`): waveform -> embedding.

    Args:
        network: `"vox1"` (Table 1: 16-128 channels, the 128-d pooled
            vector is the embedding) or `"vox2"` (Table 3: 64-512
            channels, stem stride (1, 2), Dense 1024 embedding).
        num_mel_bins: positive int, log-mel bands. Defaults to `64`.
        sample_rate: positive int, the waveforms' rate. Defaults to `16000`.
        pre_emphasis: float in `[0, 1]`, the pre-emphasis coefficient (0:
            none). Defaults to `0.97` (Kaldi's).
        mean_normalization_window: frames of the sliding mean
            normalisation (`None` or 0: none). Defaults to `300` (3 s).
        negative_slope: float >= 0, the leaky ReLU slope. Defaults to `0.3`.
        embedding_dim: `"auto"` (the network's: none for vox1, 1024 for
            vox2), `None` (the pooled vector is the embedding) or a
            positive int (a Dense layer of that size after the pooling).
        embedding_activation: `"leaky_relu"` or `"linear"`, after that
            Dense layer. Defaults to `"leaky_relu"`.
        l2: float >= 0, L2 penalty on every kernel. Defaults to `0`.
        backbone_config: optional dict of `ResNetBackbone` arguments over
            the network's (e.g. narrower stages for a demo).
        spec_augment: `None` or a dict of `keras_spk.layers.SpecAugment`
            arguments (`freq_masks`, `freq_width`, `time_masks`,
            `time_width`, `seed`): frequency and time masking of the
            mean-normalised log-mel features, in training only (layer
            "spec_augment", no weights). Not in the paper. Defaults to
            `None` (none).
        name: the model's name.

    Returns:
        `keras.Model` mapping `(batch, samples)` to `(batch, dim)`.
    """
    config = _check_network(network, backbone_config)
    num_mel_bins = _checks.check_positive_int("num_mel_bins", num_mel_bins)
    pre_emphasis = _checks.check_non_negative_real("pre_emphasis", pre_emphasis)
    if pre_emphasis > 1:
        raise ValueError(f"`pre_emphasis` must be in [0, 1]. Received: pre_emphasis={pre_emphasis}")
    negative_slope = _checks.check_non_negative_real("negative_slope", negative_slope)
    if embedding_dim == "auto":
        embedding_dim = NETWORKS[network]["embedding_dim"]
    embedding_dim = _checks.check_positive_int("embedding_dim", embedding_dim, allow_none=True)
    _checks.check_choice("embedding_activation", embedding_activation, EMBEDDING_ACTIVATIONS)
    l2 = _checks.check_non_negative_real("l2", l2)
    augment = spec_augment_layer(spec_augment)

    waveform = keras.Input((None,), name="waveform")
    x = waveform
    if pre_emphasis > 0:
        x = PreEmphasis(pre_emphasis, name="pre_emphasis")(x)
    x = LogMelFilterbank(
        sample_rate=sample_rate,
        num_mel_bins=num_mel_bins,
        frame_length_ms=25,
        frame_step_ms=10,
        mean_normalization_window=mean_normalization_window,
        name="log_mel",
    )(x)
    if augment is not None:
        x = augment(x)
    x = keras.layers.Reshape((-1, num_mel_bins, 1), name="add_channel_axis")(x)
    backbone = ResNetBackbone(
        feature_shape=(None, num_mel_bins, 1),
        kernel_regularizer=_regularizer(l2),
        activation="leaky_relu",
        negative_slope=negative_slope,
        name="resnet",
        **config,
    )
    c5 = backbone(x)[backbone.pyramid_levels[-1]]
    embedding = keras.layers.GlobalAveragePooling2D(name="pool")(c5)
    if embedding_dim is not None:
        embedding = keras.layers.Dense(
            embedding_dim,
            kernel_regularizer=_regularizer(l2),
            name="embedding",
        )(embedding)
        if embedding_activation == "leaky_relu":
            embedding = keras.layers.LeakyReLU(negative_slope=negative_slope, name="embedding_act")(
                embedding
            )
    return keras.Model(waveform, embedding, name=name)


def build_speaker_basis_model(
    num_speakers,
    loss="proposed_2",
    network="vox1",
    l2=None,
    center_loss_weight=1e-3,
    center_loss_alpha=0.5,
    basis_weight=5.0,
    basis_reduction="mean",
    num_hard=100,
    am_scale=5.0,
    am_margin=0.35,
    **embedder_settings,
):
    """A system of Table 2 or 4: the embedder of `network` with the output layer of `loss`.

    Args:
        num_speakers: int >= 2, the training speakers (1,211 for VoxCeleb1
            dev; 6,112 for all of VoxCeleb2 as in Table 3).
        loss: one of `LOSSES`: `"softmax"`, `"center"`, `"am_softmax"`,
            `"ge2e"`, `"proposed_1"` (L_S + L_C + L_BC) or `"proposed_2"`
            (L_H + L_BC). Defaults to `"proposed_2"`.
        network: `"vox1"` (Table 1) or `"vox2"` (Table 3).
        l2: float >= 0, the L2 penalty on every kernel, or `None` for the
            paper's: 1e-4 with AM-softmax, GE2E and Proposed 2, else 0.
        center_loss_weight: lambda of eq. 2 (center and proposed_1).
        center_loss_alpha: the centers' update rate alpha (eq. 3).
        basis_weight: weight of L_BC (proposed_1, proposed_2).
        basis_reduction: `"mean"` or `"sum"` (eq. 9 literally), see the
            module docstring.
        num_hard: H of eq. 10 (proposed_2), at most `num_speakers - 1`.
        am_scale: AM-softmax's `s`. Defaults to `5`.
        am_margin: AM-softmax's `m`. Defaults to `0.35`.
        **embedder_settings: `build_embedder` arguments.

    Returns:
        `(trainer, embedder)`: the trainer maps `[waveform, labels]` to the
        output layer's scores and adds the losses (compile with
        `loss=None`); the embedder maps `(batch, samples)` waveforms to
        embeddings.

    Example:

    ```python
    trainer, embedder = build_speaker_basis_model(1211, "proposed_2", num_hard=100)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=None)
    trainer.fit(dataset)  # ((waveforms, labels),) batches of 100
    ```
    """
    num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
    if num_speakers < 2:
        raise ValueError(f"`num_speakers` must be at least 2. Received: num_speakers={num_speakers}")
    _checks.check_choice("loss", loss, tuple(LOSSES))
    spec = LOSSES[loss]
    if l2 is None:
        l2 = WEIGHT_DECAY if spec["weight_decay"] else 0.0
    l2 = _checks.check_non_negative_real("l2", l2)
    if spec["head"] == "basis" and not spec["softmax"] and num_hard > num_speakers - 1:
        raise ValueError(
            f"`num_hard` (H of eq. 10) must be at most num_speakers - 1 = {num_speakers - 1}: "
            f"the hardest negatives are other speakers' bases. Received: num_hard={num_hard}"
        )
    embedder = build_embedder(network=network, l2=l2, **embedder_settings)
    regularizer = _regularizer(l2)

    waveform = keras.Input((None,), name="waveform")
    labels = keras.Input((), dtype="int32", name="labels")
    embedding = embedder(waveform)
    if spec["center"]:
        embedding = CenterLoss(
            num_speakers,
            alpha=center_loss_alpha,
            weight=center_loss_weight,
            reduction="sum",
            name="center_loss",
        )([embedding, labels])
    head = spec["head"]
    if head == "softmax":
        output = SoftmaxHead(num_speakers, kernel_regularizer=regularizer, name="output_layer")
    elif head == "am_softmax":
        output = AMSoftmax(
            num_speakers, scale=am_scale, margin=am_margin, kernel_regularizer=regularizer,
            name="output_layer",
        )
    elif head == "ge2e":
        output = GE2EHead(variant="sigmoid", name="ge2e")
    else:
        output = SpeakerBasis(
            num_speakers,
            softmax_weight=1.0 if spec["softmax"] else 0.0,
            basis_weight=basis_weight,
            basis_reduction=basis_reduction,
            hard_weight=0.0 if spec["softmax"] else 1.0,
            num_hard=num_hard,
            use_bias=spec["softmax"],
            kernel_regularizer=regularizer,
            name="output_layer",
        )
    scores = output([embedding, labels])
    trainer = keras.Model([waveform, labels], scores, name=f"speaker_basis_{loss}")
    return trainer, embedder


def speaker_bases(trainer):
    """The speaker bases of a trainer: its output layer's `W`, `(dim, num_speakers)`, or None (GE2E)."""
    try:
        layer = trainer.get_layer("output_layer")
    except ValueError:
        return None
    return keras.ops.convert_to_numpy(layer.kernel)
