"""Deep multi-metric learning (Xu et al., Neurocomputing 2020): the ResNet-50 embedder and its trainers.

    waveform -> LogSpectrogram (20 ms Hamming / 10 ms, FFT 320: 161 bins, log1p,
                per-utterance per-bin mean/variance normalisation)
             -> copied to 3 channels (the "3 x 300 x 161 image" of section 4.2)
             -> ResNet-50 (bottleneck 3, 4, 6, 3; 7x7/2 stem, 3x3/2 max pooling)
                with the residual attention block (eq. 6-7) on conv-2, conv-3 and
                conv-4, whose output the next stage reads, and PReLU in the last block
             -> GAP -> BN -> dropout 0.1 -> FC 1024 -> BN = the speaker embedding

Two trainers share the embedder (section 4.6): `build_pretrainer` (softmax
only), then `build_multi_metric_trainer` (eq. 14):

    L = 0.5 L_n-pair + 0.1 L_soft + 1.0 L_tri + 1.0 L_ang

each term a layer that adds and logs its own loss (`LossHead` for the
metric losses on the embeddings, `SoftmaxHead(loss_weight=0.1)` for the
classifier), so the runner trains both with `model.fit` and `loss=None`.
A term of weight 0 is logged as 0 and adds nothing: Table 2's rows
(softmax with one metric loss) are the same graph with other weights.

What the paper leaves open or garbles, and what is chosen (the authors'
code, `GreatJiweix/DmmlTiSV`, where it agrees with the text):

- Front-end: `log1p|STFT|` (librosa's magnitude; `log_offset=1`),
  normalised per utterance and per frequency bin to zero mean and unit
  variance over its frames; a 3-s crop is 48,160 samples = 300 frames of
  320 samples every 160 (no centring).
- SpecAugment (`spec_augment`; not in the paper, off unless a config's
  `data.augment.spec_augment` masks something): a `SpecAugment` layer
  named "spec_augment" right after the front-end, i.e. after its
  normalisation, so a masked cell holds 0, the bin's mean over the
  utterance; the three channels are copies of the masked spectrogram. It
  masks in training only and has no weights: the embedder computes the
  same embeddings at inference, from the same parameters, as without it.
- Attention ("SE block", Fig. 3): `ResidualAttention` with a squeeze of 16
  channels (the code's `SELayer(C, reduction=16)`, an absolute width) and
  eq. 6's ReLU (the code gates with PReLU).
- PReLU: one PReLU with a single slope (initial 0.25) for the three
  activations of layer4's last block (the code's `nn.PReLU()` shared by
  the block).
- Head: the code's GAP -> BN(2048) -> Dropout(0.1) -> Linear(2048, 1024)
  -> BN; that output is the embedding (the losses and the classifier read
  it un-normalised; scoring L2-normalises it).
- Triplet: batch-hard (section 4.3; section 4.5 says semi-hard, an option)
  with the code's cosine margin 0.5: `TripletLoss(distance="cosine",
  margin=0.5)`, which on unit vectors is half of eq. 8 with m = 1.
- N-pair: eq. 10 with the code's L2 regulariser 0.02.
- Angular: alpha = 45 degrees ("the margin alpha in Eq. (8)" is eq. 11-13's
  alpha); eq. 13 is printed with its terms swapped, and the hinge the text
  describes is the default; the code's log-sum-exp form (Wang et al.) is
  `angular_form="npair"`.
- Classifier: FC 1024 -> speakers with a bias (`SoftmaxHead`).
- ImageNet initialisation: section 4.3 starts from torchvision's ImageNet
  ResNet-50; `load_torchvision_resnet50` reads such a state dict from a
  file the user gives (nothing is downloaded). TensorFlow's "same"
  padding of a stride-2 convolution on an even axis puts the extra zero on
  the other side from PyTorch's, so converted weights are an
  initialisation, not a bit-exact copy of the torchvision network.

Parameter counts (5,994 training speakers): embedder 25,671,537 (ResNet-50
23,508,032, attention 59,184, PReLU 1, head 2,104,320), trainer 31,815,387
(classifier 6,143,850); `tests/papers/multi_metric_model_test.py` derives
each.
"""

import os

import keras
import numpy as np

from keras_spk.layers import LogSpectrogram
from keras_spk.layers import LossHead
from keras_spk.layers import SoftmaxHead
from keras_spk.layers.spec_augment import spec_augment_layer
from keras_spk.losses import AngularLoss
from keras_spk.losses import NPairLoss
from keras_spk.losses import TripletLoss
from keras_spk.models import ResNetBackbone
from keras_spk.utils import _checks

# Section 4.3: ResNet-50 as torchvision builds it (v1.5: the stride on the 3x3 convolution).
PAPER_BACKBONE = {
    "stackwise_num_filters": [64, 128, 256, 512],
    "stackwise_num_blocks": [3, 4, 6, 3],
    "stackwise_num_strides": [1, 2, 2, 2],
    "block_type": "bottleneck_block",
    "stem_filters": 64,
    "stem_kernel_size": 7,
    "stem_strides": 2,
    "stem_max_pooling": True,
}
# Eq. 14 with section 4.3's weights.
PAPER_WEIGHTS = {"triplet": 1.0, "npair": 0.5, "angular": 1.0, "softmax": 0.1}
# The rows of Table 2 (softmax always on) and the attention ablation of section 4.5.
SYSTEMS = {
    "triplet": {"npair_weight": 0.0, "angular_weight": 0.0},
    "npair": {"triplet_weight": 0.0, "angular_weight": 0.0},
    "angular": {"triplet_weight": 0.0, "npair_weight": 0.0},
    "all": {},
    "no_attention": {"attention": False},
}
FFT_LENGTH = 320
FRAME_SAMPLES = 320  # 20 ms at 16 kHz
ANGULAR_FORMS = ("hinge", "npair")
TRIPLET_MININGS = ("batch_hard", "semi_hard")

_BN = {"epsilon": 1e-5, "momentum": 0.9}  # PyTorch's BatchNorm defaults


def build_embedder(
    sample_rate=16000,
    embedding_dim=1024,
    dropout=0.1,
    attention=True,
    attention_units=16,
    final_block_prelu=True,
    backbone_config=None,
    spec_augment=None,
    name="multi_metric_embedder",
):
    """The embedder of sections 3.2 and 4.3: waveform -> 1,024-d embedding.

    Args:
        sample_rate: int, the waveforms' rate (the front-end's 20-ms frames
            and 161 bins are at 16 kHz).
        embedding_dim: positive int, the FC layer's width. Defaults to `1024`.
        dropout: float in [0, 1), the dropout before that FC layer.
        attention: bool, the residual attention blocks on C2-C4.
        attention_units: positive int, their squeeze width. Defaults to `16`.
        final_block_prelu: bool, PReLU in the last block (section 4.3).
        backbone_config: optional dict of `ResNetBackbone` arguments over
            ResNet-50's (`PAPER_BACKBONE`), e.g. narrower stages for a demo.
        spec_augment: `None` or a dict of `keras_spk.layers.SpecAugment`
            arguments (`freq_masks`, `freq_width`, `time_masks`,
            `time_width`, `seed`): frequency and time masking of the
            normalised log spectrogram, in training only (layer
            "spec_augment", no weights). Not in the paper. Defaults to
            `None` (none).
        name: the model's name.

    Returns:
        `keras.Model` mapping `(batch, samples)` to `(batch, embedding_dim)`.
    """
    embedding_dim = _checks.check_positive_int("embedding_dim", embedding_dim)
    dropout = _checks.check_non_negative_real("dropout", dropout)
    if dropout >= 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
    for flag, value in (("attention", attention), ("final_block_prelu", final_block_prelu)):
        if not isinstance(value, bool):
            raise ValueError(f"`{flag}` must be True or False. Received: {flag}={value!r}")
    if backbone_config is not None and not isinstance(backbone_config, dict):
        raise ValueError(
            "`backbone_config` must be None or a dict of ResNetBackbone arguments. "
            f"Received: backbone_config={backbone_config!r}"
        )
    config = dict(PAPER_BACKBONE, **(backbone_config or {}))
    for key in ("feature_shape", "stackwise_attention", "final_block_activation", "name"):
        if key in config:
            raise ValueError(
                f"`backbone_config` must not set {key!r}: it follows `attention`, "
                f"`final_block_prelu` and the front-end. Received: backbone_config={backbone_config!r}"
            )
    stages = len(config["stackwise_num_filters"])
    bins = FFT_LENGTH // 2 + 1
    augment = spec_augment_layer(spec_augment)

    waveform = keras.Input((None,), name="waveform")
    x = LogSpectrogram(
        sample_rate=sample_rate,
        frame_length_ms=20,
        frame_step_ms=10,
        fft_length=FFT_LENGTH,
        window="hamming",
        log_offset=1.0,
        normalization="mean_variance",
        name="log_spectrogram",
    )(waveform)
    if augment is not None:
        x = augment(x)
    x = keras.layers.Reshape((-1, bins, 1), name="add_channel_axis")(x)
    x = keras.layers.Concatenate(axis=-1, name="three_channels")([x, x, x])
    backbone = ResNetBackbone(
        feature_shape=(None, bins, 3),
        stackwise_attention=[attention] * (stages - 1) + [False],
        attention_units=attention_units,
        final_block_activation="prelu" if final_block_prelu else None,
        name="resnet",
        **config,
    )
    x = backbone(x)[backbone.pyramid_levels[-1]]
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.BatchNormalization(name="pool_bn", **_BN)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(embedding_dim, name="fc")(x)
    embedding = keras.layers.BatchNormalization(name="embedding_bn", **_BN)(x)
    return keras.Model(waveform, embedding, name=name)


def _inputs():
    return keras.Input((None,), name="waveform"), keras.Input((), dtype="int32", name="labels")


def build_pretrainer(embedder, num_speakers):
    """Softmax pre-training (section 4.6): the embedder and the classifier, cross-entropy only."""
    num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
    waveform, labels = _inputs()
    logits = SoftmaxHead(num_speakers, name="classifier")([embedder(waveform), labels])
    return keras.Model([waveform, labels], logits, name="multi_metric_pretrainer")


def build_multi_metric_trainer(
    embedder,
    num_speakers,
    triplet_weight=1.0,
    npair_weight=0.5,
    angular_weight=1.0,
    softmax_weight=0.1,
    triplet_margin=0.5,
    triplet_distance="cosine",
    triplet_mining="batch_hard",
    npair_l2_reg=0.02,
    angular_alpha=45.0,
    angular_form="hinge",
):
    """Eq. 14's trainer on P x K batches: triplet, N-pair, angular and softmax, each logged.

    Args:
        embedder: the embedder (its layers are shared and train on).
        num_speakers: int >= 2, the classifier's classes.
        triplet_weight, npair_weight, angular_weight, softmax_weight: the
            lambdas of eq. 14 (section 4.3: 1.0, 0.5, 1.0, 0.1); 0 switches
            a term off (it is still logged, as 0).
        triplet_margin: the triplet margin (0.5 on cosine similarities).
        triplet_distance: `"cosine"`, `"squared"` or `"euclidean"`.
        triplet_mining: `"batch_hard"` or `"semi_hard"`.
        npair_l2_reg: the N-pair embedding-norm penalty (the code's 0.02).
        angular_alpha: alpha in degrees. Defaults to `45`.
        angular_form: `"hinge"` (eq. 13 as the text describes it) or
            `"npair"` (the authors' log-sum-exp form).

    Returns:
        `keras.Model([waveform, labels]) -> logits`, compiled with `loss=None`.
    """
    num_speakers = _checks.check_positive_int("num_speakers", num_speakers)
    _checks.check_choice("triplet_mining", triplet_mining, TRIPLET_MININGS)
    _checks.check_choice("angular_form", angular_form, ANGULAR_FORMS)
    waveform, labels = _inputs()
    embedding = embedder(waveform)
    # Each LossHead adds its weighted term and passes the embeddings on (chained, so in the graph).
    embedding = LossHead(
        TripletLoss(margin=triplet_margin, mining=triplet_mining, distance=triplet_distance),
        weight=triplet_weight,
        name="triplet",
    )([embedding, labels])
    embedding = LossHead(NPairLoss(l2_reg=npair_l2_reg), weight=npair_weight, name="npair")(
        [embedding, labels]
    )
    embedding = LossHead(
        AngularLoss(alpha_degrees=angular_alpha, form=angular_form),
        weight=angular_weight,
        name="angular",
    )([embedding, labels])
    logits = SoftmaxHead(num_speakers, loss_weight=softmax_weight, name="classifier")(
        [embedding, labels]
    )
    return keras.Model([waveform, labels], logits, name="multi_metric_trainer")


# === ImageNet initialisation from a torchvision ResNet-50 state dict ===


def _read_state_dict(path):
    """`{name: numpy array}` from a torchvision state dict: `.pth`/`.pt` (PyTorch) or `.npz`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ImageNet weights file {path} does not exist: give a torchvision ResNet-50 state dict "
            "(e.g. resnet50-0676ba61.pth, or the same tensors saved with numpy.savez)."
        )
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    if path.endswith((".pth", ".pt")):
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"Reading {path} needs PyTorch (pip install keras_spk[torch]); or save the state "
                "dict's tensors with numpy.savez and give the .npz file."
            ) from None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        return {name: value.numpy() for name, value in state.items() if hasattr(value, "numpy")}
    raise ValueError(f"ImageNet weights file {path}: expected a .pth, .pt or .npz file.")


def torchvision_names(backbone):
    """`{keras layer name: torchvision prefix}` for a ResNet-50-shaped `ResNetBackbone`."""
    names = {"stem_conv": "conv1", "stem_bn": "bn1"}
    for stage, blocks in enumerate(backbone.stackwise_num_blocks):
        for block in range(blocks):
            ours, theirs = f"stack{stage + 1}_block{block + 1}", f"layer{stage + 1}.{block}"
            for i in (1, 2, 3):
                names[f"{ours}_{i}_conv"] = f"{theirs}.conv{i}"
                names[f"{ours}_{i}_bn"] = f"{theirs}.bn{i}"
            names[f"{ours}_0_conv"] = f"{theirs}.downsample.0"
            names[f"{ours}_0_bn"] = f"{theirs}.downsample.1"
    return names


def load_torchvision_resnet50(backbone, path):
    """Sets a `ResNetBackbone`'s convolutions and BNs from a torchvision ResNet-50 state dict.

    Convolution kernels `(out, in, kh, kw)` become `(kh, kw, in, out)`; BN
    `weight, bias, running_mean, running_var` become `gamma, beta,
    moving_mean, moving_variance`. The attention blocks and PReLU are not
    in an ImageNet ResNet-50 and keep their initial values; `fc.*` is not
    read.

    Args:
        backbone: a `ResNetBackbone` with ResNet-50's structure.
        path: the state dict file (`.pth`/`.pt`, or `.npz` of the same names).

    Returns:
        The number of layers set.

    Raises:
        ValueError: a tensor missing from the file or of another shape (the
            file is not a ResNet-50, or the backbone is narrower).
    """
    state = _read_state_dict(path)
    loaded = 0
    for ours, theirs in torchvision_names(backbone).items():
        try:
            layer = backbone.get_layer(ours)
        except ValueError:
            continue  # a block without a projection shortcut
        if isinstance(layer, keras.layers.Conv2D):
            values = [np.transpose(_tensor(state, f"{theirs}.weight", path), (2, 3, 1, 0))]
        else:
            values = [
                _tensor(state, f"{theirs}.{key}", path)
                for key in ("weight", "bias", "running_mean", "running_var")
            ]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ValueError(
                f"ImageNet weights file {path}: {theirs} has shapes {[v.shape for v in values]}, "
                f"the backbone's {ours} needs {expected}: is it a ResNet-50 at the paper's widths?"
            )
        layer.set_weights([v.astype("float32") for v in values])
        loaded += 1
    return loaded


def _tensor(state, name, path):
    if name not in state:
        raise ValueError(
            f"ImageNet weights file {path} has no tensor {name!r}: it is not a torchvision "
            "ResNet-50 state dict."
        )
    return np.asarray(state[name])
