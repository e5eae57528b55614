"""RawNet (Jung et al., Interspeech 2019): train, evaluate every back-end, export.

    python papers/rawnet/train.py                      # demo corpus, configs/demo.yaml
    python papers/rawnet/train.py --data VOX1/dev --eval-data VOX1/test \\
        --trials VOX1/veri_test.txt [--config papers/rawnet/configs/rawnet.yaml]
    python papers/rawnet/train.py --resume [RUN_DIR]   # continue an interrupted run

Stages, each resumable from its last epoch:
1. pre-training (section 2.2): the CNN with global average pooling;
2. training: RawNet (Table 1) from the pre-trained CNN, eq. 3;
3. embeddings of the back-end training utterances and every trial utterance;
4. the back-end table (Table 4: cosine, PLDA, LDA/PLDA, b-vector, rb-vector,
   concat&mul; Table 2's Enhance column: LDA and DCAE before cosine), with
   EER, minDCF(0.01), minDCF(0.05) and a DET plot;
5. export: `embedder.keras` and a SavedModel for TF Serving in `export/<version>/`.

Everything goes into one run folder (see `keras_spk.recipe.run`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make `papers.rawnet` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

DEFAULT_CONFIG = os.path.join(HERE, "configs", "rawnet.yaml")
DEMO_CONFIG = os.path.join(HERE, "configs", "demo.yaml")

PRETRAIN_LOSSES = ("same", "softmax")
# Input (section 4.2): raw waveforms cropped to data.crop_samples, short utterances repeated,
# no normalisation (pre-emphasis is the model's first layer): the runner's samplers. The CNN
# divides the time axis by 3 seven times (strided convolution and six max-pools): an
# utterance needs 3**7 samples for one frame.
MIN_SAMPLES = 3**7
BASIS_REDUCTIONS = ("mean", "sum")
GRU_GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid_keras2")


def config_constraints():
    """What the recipe's own keys may be (the shared ones: `keras_spk.recipe.recipe_constraints`).

    Checked at start-up, before the run folder is made, so that a bad
    value is reported before any training.
    """
    from keras_spk.config import choice
    from keras_spk.config import float_range
    from keras_spk.config import int_range
    from keras_spk.config import list_of
    from keras_spk.recipe.evaluation import duration_list

    positive = int_range(min=1)
    non_negative = float_range(min=0)
    return {
        # Every crop and every duration-limited cut must give the CNN one frame.
        "data.crop_samples": int_range(
            min=MIN_SAMPLES,
            fix=(
                f"The CNN needs at least {MIN_SAMPLES} samples per frame: use 59049 (the paper) or "
                f"another power of 3 >= {MIN_SAMPLES}, e.g. --data.crop_samples=19683."
            ),
        ),
        "evaluation.enroll_durations": duration_list(MIN_SAMPLES),
        "evaluation.test_durations": duration_list(MIN_SAMPLES),
        "model.strided_conv_filters": positive,
        "model.stackwise_filters": list_of(positive, min_length=1, noun="filter counts"),
        "model.gru_units": positive,
        "model.recurrent_dropout": float_range(0, 1, include_max=False),
        "model.gru_gate_activation": choice(GRU_GATE_ACTIVATIONS),
        "model.embedding_dim": positive,
        "model.leaky_relu_slope": non_negative,
        "model.pre_emphasis": float_range(0, 1),
        "model.l2": non_negative,
        "loss.center_loss_weight": non_negative,
        "loss.center_loss_alpha": float_range(0, 1),
        "loss.basis_weight": non_negative,
        "loss.basis_reduction": choice(BASIS_REDUCTIONS),
        "optimizer.learning_rate": float_range(min=0, include_min=False),
        "schedule.decay": non_negative,
        "stages.pretrain.epochs": int_range(min=0),  # 0: no pre-training
        "stages.pretrain.loss": choice(PRETRAIN_LOSSES),
        "stages.train.epochs": int_range(min=1),
    }


def model_settings(config, recurrent_dropout=None):
    """Keyword arguments of `build_rawnet` from the config's `model` and `loss` sections."""
    model, loss = config["model"], config["loss"]
    return {
        "strided_conv_filters": model["strided_conv_filters"],
        "stackwise_filters": tuple(model["stackwise_filters"]),
        "gru_units": model["gru_units"],
        "recurrent_dropout": model["recurrent_dropout"] if recurrent_dropout is None else recurrent_dropout,
        "gru_reset_after": model["gru_reset_after"],
        "gru_gate_activation": model["gru_gate_activation"],
        "embedding_dim": model["embedding_dim"],
        "leaky_relu_slope": model["leaky_relu_slope"],
        "pre_emphasis": model["pre_emphasis"],
        "l2": model["l2"],
        "center_loss_weight": loss["center_loss_weight"],
        "center_loss_alpha": loss["center_loss_alpha"],
        "basis_weight": loss["basis_weight"],
        "basis_reduction": loss["basis_reduction"],
    }


def cnn_settings(config, mode):
    """Keyword arguments of `build_rawnet_cnn` (pre-training with loss `mode`: same | softmax)."""
    settings = model_settings(config)
    for key in ("gru_units", "recurrent_dropout", "embedding_dim", "gru_reset_after", "gru_gate_activation"):
        del settings[key]
    if mode == "softmax":
        settings.update(center_loss_weight=0.0, basis_weight=0.0)
    elif mode != "same":  # checked at start-up (config_constraints); kept for direct callers
        raise ValueError(f"stages.pretrain.loss must be 'same' or 'softmax'. Received: {mode!r}")
    return settings


def build_stage(name, context):
    """The trainer of each stage: the CNN with pooling (pre-training), then RawNet on it (eq. 3)."""
    from papers.rawnet.model import build_rawnet
    from papers.rawnet.model import build_rawnet_cnn
    from papers.rawnet.model import transfer_pretrained

    config = context.config
    if name == "pretrain":
        trainer, _ = build_rawnet_cnn(context.num_speakers, **cnn_settings(config, context.stages[name]["loss"]))
        return trainer
    # RawNet from the pre-trained CNN: only the pooling (and its output layer) is dropped.
    trainer, context.shared["embedder"] = build_rawnet(context.num_speakers, **model_settings(config))
    if context.trained("pretrain"):
        transfer_pretrained(context.models["pretrain"], trainer)
    return trainer


def inference_embedder(context):
    """A copy of the embedder with `recurrent_dropout=0`: the same outputs, a faster (cuDNN) GRU."""
    from papers.rawnet.model import build_rawnet

    _, copy = build_rawnet(context.num_speakers, **model_settings(context.config, recurrent_dropout=0.0))
    copy.set_weights(context.shared["embedder"].get_weights())
    return copy


def recipe():
    """The RawNet recipe for `keras_spk.recipe.run_recipe`."""
    from keras_spk.recipe import Recipe

    return Recipe(
        name="rawnet",
        default_config=DEFAULT_CONFIG,
        demo_config=DEMO_CONFIG,
        description=__doc__.split("\n\n")[0],
        build_stage=build_stage,
        embedder=inference_embedder,
        constraints=config_constraints,
        min_samples=MIN_SAMPLES,
    )


def main(argv=None, callbacks=()):
    """Runs the recipe; returns the `Run` (its folder holds every result).

    Args:
        argv: command-line arguments (default `sys.argv[1:]`).
        callbacks: extra Keras callbacks for both training stages.
    """
    from keras_spk.recipe import run_recipe

    return run_recipe(recipe(), argv, callbacks)


if __name__ == "__main__":
    from keras_spk.recipe import main_guard

    main_guard(main)
