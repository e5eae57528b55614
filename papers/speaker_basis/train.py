"""Speaker-basis losses (Heo et al., Interspeech 2019): train the systems of Tables 2 and 4, score, plot, export.

    python papers/speaker_basis/train.py               # demo corpus, configs/demo.yaml
    python papers/speaker_basis/train.py --config papers/speaker_basis/configs/table2.yaml \\
        --data VOX1/dev --eval-data VOX1/test --trials VOX1/veri_test.txt
    python papers/speaker_basis/train.py --config papers/speaker_basis/configs/table4.yaml \\
        --data VOX2/dev VOX2/test --eval-data VOX1/wav \\
        --trials VOX1/veri_test.txt VOX1/list_test_all.txt VOX1/list_test_hard.txt
    python papers/speaker_basis/train.py --resume [RUN_DIR]   # continue an interrupted run

Steps, each resumable (for each system of `systems:`):
1. training (section 4.1): 64 log-mel ResNet-34 with leaky ReLU (Table 1 or
   Table 3) and the system's loss (`loss.name`: softmax, center, am_softmax,
   ge2e, proposed_1 = L_S + L_C + L_BC, proposed_2 = L_H + L_BC); Adam 1e-3,
   batches of 100 (GE2E: 20 speakers x 5 utterances);
2. whole-utterance embeddings, cosine and b-vector scoring (section 4.3) on
   every trial list (EER, minDCF), beside a reference row;
3. the training speakers' centroids: Fig. 1 (t-SNE with the speaker bases)
   and Fig. 2 (histogram of cos(c_i, c_j)), every system on one plot;
4. export: `embedder.keras` and a SavedModel in `export/<version>/`.

Everything goes into one run folder (see `keras_spk.recipe.run`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads otherwise spin while the tf.data threads decode audio on the
# same cores (see papers/fpm/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make `papers.speaker_basis` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

DEFAULT_CONFIG = os.path.join(HERE, "configs", "speaker_basis.yaml")
DEMO_CONFIG = os.path.join(HERE, "configs", "demo.yaml")

# One 25-ms front-end frame at 16 kHz is the shortest input.
FRAME_SAMPLES = 400


def min_samples(config):
    """The shortest utterance (in samples) the model accepts: one front-end frame."""
    return int(round(FRAME_SAMPLES * config["data"]["sample_rate"] / 16000))


def config_constraints():
    """What the recipe's own keys may be (the shared ones: `keras_spk.recipe.recipe_constraints`)."""
    from keras_spk.config import Constraint
    from keras_spk.config import choice
    from keras_spk.config import float_range
    from keras_spk.config import int_range
    from keras_spk.config import list_of
    from keras_spk.recipe.evaluation import duration_list
    from papers.speaker_basis.model import EMBEDDING_ACTIVATIONS
    from papers.speaker_basis.model import LOSSES
    from papers.speaker_basis.model import NETWORKS

    positive = int_range(min=1)
    non_negative = float_range(min=0)
    return {
        "data.crop_samples": int_range(min=min_samples),
        "evaluation.enroll_durations": duration_list(min_samples),
        "evaluation.test_durations": duration_list(min_samples),
        "model.network": choice(sorted(NETWORKS)),
        "model.num_mel_bins": positive,
        "model.pre_emphasis": float_range(0, 1),
        "model.negative_slope": non_negative,
        "model.embedding_dim": int_range(min=0, allow_none=True),
        "model.embedding_activation": choice(list(EMBEDDING_ACTIVATIONS)),
        "model.l2": float_range(min=0, allow_none=True),
        "model.stage_filters": list_of(positive, min_length=1, allow_none=True, noun="filter counts"),
        "model.stem_filters": int_range(min=1, allow_none=True),
        "loss.name": Constraint(_loss_sampler_test, f"one of {', '.join(LOSSES)}"),
        "loss.center_loss_weight": non_negative,
        "loss.center_loss_alpha": float_range(0, 1),
        "loss.basis_weight": non_negative,
        "loss.basis_reduction": choice(["mean", "sum"]),
        "loss.num_hard": positive,
        "loss.am_scale": float_range(min=0, include_min=False),
        "loss.am_margin": non_negative,
        "optimizer.learning_rate": float_range(min=0, include_min=False),
        "stages.train.epochs": int_range(min=1),
    }


def _loss_sampler_test(value, config):
    """The loss is known, and GE2E trains on P x K batches of K >= 2 utterances per speaker."""
    from keras_spk.config import ConfigError
    from keras_spk.recipe.stages import pk_batches_problem
    from papers.speaker_basis.model import LOSSES
    from papers.speaker_basis.model import PK_LOSSES

    if value not in LOSSES:
        return False
    if value in PK_LOSSES:
        try:
            problem = pk_batches_problem(config, "train", f"loss {value!r} (the paper: 20 speakers x 5)")
        except (ConfigError, ValueError):  # a malformed `stages` is reported by its own constraint
            return True
        return problem or True
    return True


def check_data(config, data):
    """H of eq. 10 must be below the number of training speakers (the negatives are other speakers)."""
    from keras_spk.recipe.run import RunError
    from papers.speaker_basis.model import LOSSES

    loss = config["loss"]
    spec = LOSSES[loss["name"]]
    speakers = len(data.speaker_map)
    if spec["head"] == "basis" and not spec["softmax"] and loss["num_hard"] > speakers - 1:
        raise RunError(
            f"loss.num_hard={loss['num_hard']} hardest negative bases per utterance, but the data "
            f"has {speakers} training speakers, so at most {speakers - 1} negatives; lower it, e.g. "
            f"--loss.num_hard={max(1, round(0.08 * (speakers - 1)))} (the paper's 100 of 1,210)."
        )


def model_settings(config):
    """Keyword arguments of `build_speaker_basis_model` from the config's `model` and `loss` sections."""
    from keras_spk.data.augment import spec_augment_settings

    model, loss = config["model"], config["loss"]
    backbone = {}
    if model["stage_filters"] is not None:
        backbone["stackwise_num_filters"] = list(model["stage_filters"])
    if model["stem_filters"] is not None:
        backbone["stem_filters"] = model["stem_filters"]
    embedding_dim = model["embedding_dim"]
    return {
        "loss": loss["name"],
        "network": model["network"],
        "l2": model["l2"],
        "center_loss_weight": loss["center_loss_weight"],
        "center_loss_alpha": loss["center_loss_alpha"],
        "basis_weight": loss["basis_weight"],
        "basis_reduction": loss["basis_reduction"],
        "num_hard": loss["num_hard"],
        "am_scale": loss["am_scale"],
        "am_margin": loss["am_margin"],
        "num_mel_bins": model["num_mel_bins"],
        "sample_rate": config["data"]["sample_rate"],
        "pre_emphasis": model["pre_emphasis"],
        "negative_slope": model["negative_slope"],
        "embedding_dim": "auto" if embedding_dim is None else (embedding_dim or None),
        "embedding_activation": model["embedding_activation"],
        "backbone_config": backbone or None,
        "spec_augment": spec_augment_settings(config),
    }


def build_stage(name, context):
    """The one stage's trainer: the network with the system's loss; its output layer's W are the bases."""
    from papers.speaker_basis.model import build_speaker_basis_model

    trainer, context.shared["embedder"] = build_speaker_basis_model(
        context.num_speakers, **model_settings(context.config)
    )
    try:  # read by the speaker_centroids protocol (Fig. 1); GE2E has no output layer
        context.shared["speaker_bases"] = trainer.get_layer("output_layer")
    except ValueError:
        context.shared["speaker_bases"] = None
    return trainer


def recipe():
    """The speaker-basis recipe for `keras_spk.recipe.run_recipe`."""
    from keras_spk.recipe import Recipe

    return Recipe(
        name="speaker_basis",
        default_config=DEFAULT_CONFIG,
        demo_config=DEMO_CONFIG,
        description=__doc__.split("\n\n")[0],
        build_stage=build_stage,
        embedder=lambda context: context.shared["embedder"],
        constraints=config_constraints,
        min_samples=min_samples,
        data_check=check_data,
    )


def main(argv=None, callbacks=()):
    """Runs the recipe; returns the `Run` (its folder holds every result).

    Args:
        argv: command-line arguments (default `sys.argv[1:]`).
        callbacks: extra Keras callbacks for training.
    """
    from keras_spk.recipe import run_recipe

    return run_recipe(recipe(), argv, callbacks)


if __name__ == "__main__":
    from keras_spk.recipe import main_guard

    main_guard(main)
