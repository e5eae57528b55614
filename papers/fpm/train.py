"""FPM (Jung et al., Interspeech 2020): train a multi-scale system, evaluate by duration, export.

    python papers/fpm/train.py                         # demo corpus, configs/demo.yaml
    python papers/fpm/train.py --config papers/fpm/configs/msea_fpm_tc_lde.yaml \\
        --data VOX1/dev --eval-data VOX1/test --trials VOX1/veri_test.txt
    python papers/fpm/train.py --resume [RUN_DIR]      # continue an interrupted run

Steps, each resumable:
1. training (section 4.2): log-mel ResNet-34 with the configured aggregation
   (Single, MSFA or MSEA, without FPM or with FPM-B / FPM-TC) and pooling
   (GAP, SAP, LDE); softmax, or A-softmax with ring loss; SGD with momentum
   0.9 and a step learning-rate schedule;
2. embeddings of whole test utterances, cosine scoring (EER, minDCF);
3. the duration table (Tables 5-6): test utterances cut by the energy VAD to
   1, 2, 3, 5 s of speech and full length, against 5-s and full enrolment;
4. export: `embedder.keras` and a SavedModel in `export/<version>/`.

Everything goes into one run folder (see `keras_spk.recipe.run`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads otherwise spin while the tf.data threads decode audio on the
# same cores; on 2 cores that made training steps up to 10x slower (unset it to compare).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make `papers.fpm` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

DEFAULT_CONFIG = os.path.join(HERE, "configs", "fpm.yaml")
DEMO_CONFIG = os.path.join(HERE, "configs", "demo.yaml")

# Input (section 4.2): 3-s waveform crops (300 frames of 25 ms every 10 ms), a shorter
# utterance repeated, from the runner's samplers; the log-mel front-end is the model's
# first layer. Testing: whole utterances. One 25-ms frame at 16 kHz is the shortest input.
FRAME_SAMPLES = 400


def min_samples(config):
    """The shortest utterance (in samples) the model accepts: one front-end frame."""
    return int(round(FRAME_SAMPLES * config["data"]["sample_rate"] / 16000))


def _systems():
    from papers.fpm.model import SYSTEMS

    return sorted(SYSTEMS)


def _poolings():
    from papers.fpm.model import POOLINGS

    return list(POOLINGS)


def _heads():
    from papers.fpm.model import HEADS

    return list(HEADS)


def _last_level(config):
    """The deepest pyramid level: C<stages + 1> (C5 for ResNet-34's four stages)."""
    stages = config["model"]["stage_filters"]
    return 1 + (len(stages) if isinstance(stages, list) and stages else 4)


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
        # Every crop and every duration-limited cut must hold one 25-ms front-end frame.
        "data.crop_samples": int_range(min=min_samples),
        "evaluation.enroll_durations": duration_list(min_samples),
        "evaluation.test_durations": duration_list(min_samples),
        "model.system": choice(_systems),
        "model.pooling": choice(_poolings, allow_none=True),
        "model.levels": list_of(
            int_range(min=2, max=_last_level), min_length=1, unique=True, allow_none=True,
            noun="pyramid levels",
        ),
        "model.head": choice(_heads, allow_none=True),
        "model.embedding_dim": positive,
        "model.fpm_channels": positive,
        "model.sap_attention_units": positive,
        "model.ring_loss_weight": non_negative,
        "model.a_softmax_margin": positive,
        "model.l2": non_negative,
        "model.num_mel_bins": positive,
        "model.stage_filters": list_of(positive, min_length=1, allow_none=True, noun="filter counts"),
        "model.stem_filters": int_range(min=1, allow_none=True),
        "optimizer.learning_rate": float_range(min=0, include_min=False),
        "optimizer.momentum": float_range(0, 1, include_max=False),
        "schedule.drop_at": list_of(
            float_range(0, 1, include_min=False, include_max=False), noun="fractions of the epochs"
        ),
        "schedule.drop_factor": float_range(0, 1, include_min=False),
        "schedule.warmup_epochs": int_range(min=0),
        "stages.train.epochs": int_range(min=1),
    }


def model_settings(config):
    """Keyword arguments of `build_system` from the config's `model` section (nulls: the system's)."""
    from keras_spk.data.augment import spec_augment_settings

    model = dict(config["model"])
    model.pop("system")
    backbone = {}
    if model.pop("stage_filters") is not None:
        backbone["stackwise_num_filters"] = tuple(config["model"]["stage_filters"])
    if model.pop("stem_filters") is not None:
        backbone["stem_filters"] = config["model"]["stem_filters"]
    settings = {k: v for k, v in model.items() if v is not None}
    if backbone:
        settings["backbone_config"] = backbone
    settings["sample_rate"] = config["data"]["sample_rate"]
    settings["spec_augment"] = spec_augment_settings(config)
    return settings


def build_stage(name, context):
    """The one stage's trainer: the configured system with its head (section 4.2)."""
    from papers.fpm.model import build_system

    config = context.config
    trainer, context.shared["embedder"] = build_system(
        config["model"]["system"], context.num_speakers, **model_settings(config)
    )
    return trainer


def recipe():
    """The FPM recipe for `keras_spk.recipe.run_recipe`."""
    from keras_spk.recipe import Recipe

    return Recipe(
        name="fpm",
        default_config=DEFAULT_CONFIG,
        demo_config=DEMO_CONFIG,
        description=__doc__.split("\n\n")[0],
        build_stage=build_stage,
        embedder=lambda context: context.shared["embedder"],
        constraints=config_constraints,
        min_samples=min_samples,
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
