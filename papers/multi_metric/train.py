"""Deep multi-metric learning (Xu et al., Neurocomputing 2020): pre-train, train on eq. 14, ten-crop scoring, export.

    python papers/multi_metric/train.py                # demo corpus, configs/demo.yaml
    python papers/multi_metric/train.py --data VOX2/dev/aac_wav --eval-data VOX1/test/wav \\
        --trials VOX1/veri_test.txt [--config papers/multi_metric/configs/table2.yaml]
    python papers/multi_metric/train.py --resume [RUN_DIR]   # continue an interrupted run

Stages, each resumable from its last epoch (section 4.6):
1. `pretrain`: the ResNet-50 embedder with attention (sections 3.2, 4.3) and
   a softmax classifier on random 3-s crops;
2. `train`: the same embedder and classifier with eq. 14's losses (0.5
   N-pair + 0.1 softmax + triplet + angular, each logged), P x K batches of
   64 x 2, Adam 3e-4;
then whole-utterance cosine scoring and the ten-crop protocol (ten 3-s
crops per utterance, the mean of the 100 crop-pair distances), and export.

Everything goes into one run folder (see `keras_spk.recipe.run`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads otherwise spin while the tf.data threads decode audio on the
# same cores (see papers/fpm/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make `papers.multi_metric` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

DEFAULT_CONFIG = os.path.join(HERE, "configs", "multi_metric.yaml")
DEMO_CONFIG = os.path.join(HERE, "configs", "demo.yaml")

# The network divides time by 32 (stem, pooling, three strided stages): one 20-ms frame
# per 10 ms, so an utterance needs 32 frames (about 0.33 s) to reach the last stage with
# more than one position; one frame (320 samples at 16 kHz) is the hard minimum.
FRAME_SAMPLES = 320


def min_samples(config):
    """The shortest utterance (in samples) the model accepts: one front-end frame."""
    return int(round(FRAME_SAMPLES * config["data"]["sample_rate"] / 16000))


def config_constraints():
    """What the recipe's own keys may be (the shared ones: `keras_spk.recipe.recipe_constraints`)."""
    from keras_spk.config import choice
    from keras_spk.config import float_range
    from keras_spk.config import int_range
    from keras_spk.config import list_of
    from keras_spk.config import non_empty_string
    from keras_spk.recipe.evaluation import crop_seconds
    from keras_spk.recipe.evaluation import duration_list
    from papers.multi_metric.model import ANGULAR_FORMS
    from papers.multi_metric.model import TRIPLET_MININGS

    positive = int_range(min=1)
    non_negative = float_range(min=0)
    return {
        "data.crop_samples": int_range(min=min_samples),
        "evaluation.enroll_durations": duration_list(min_samples),
        "evaluation.test_durations": duration_list(min_samples),
        "evaluation.multi_crop_seconds": crop_seconds(min_samples),
        "model.embedding_dim": positive,
        "model.dropout": float_range(0, 1, include_max=False),
        "model.attention": choice([True, False]),
        "model.attention_units": positive,
        "model.final_block_prelu": choice([True, False]),
        "model.stage_filters": list_of(positive, min_length=1, allow_none=True, noun="filter counts"),
        "model.stem_filters": int_range(min=1, allow_none=True),
        "model.imagenet_weights": non_empty_string(allow_none=True),
        "loss.triplet_weight": non_negative,
        "loss.npair_weight": non_negative,
        "loss.angular_weight": non_negative,
        "loss.softmax_weight": non_negative,
        "loss.triplet_margin": float_range(min=0, include_min=False),
        "loss.triplet_distance": choice(["cosine", "squared", "euclidean"]),
        "loss.triplet_mining": choice(list(TRIPLET_MININGS)),
        "loss.npair_l2_reg": non_negative,
        "loss.angular_alpha": float_range(0, 90, include_min=False, include_max=False),
        "loss.angular_form": choice(list(ANGULAR_FORMS)),
        "optimizer.learning_rate": float_range(min=0, include_min=False),
        "stages.pretrain.epochs": int_range(min=0),
        "stages.train.epochs": int_range(min=0),
    }


def check_data(config, data):
    """The metric losses need P x K batches with K >= 2, and ImageNet weights a file that exists."""
    from keras_spk.recipe.run import RunError
    from keras_spk.recipe.stages import pk_batches_problem
    from keras_spk.recipe.stages import stage_plan

    losses = config["loss"]
    metric = any(losses[f"{term}_weight"] > 0 for term in ("triplet", "npair", "angular"))
    if stage_plan(config)["train"]["epochs"] > 0 and metric:
        problem = pk_batches_problem(config, "train", "the metric losses (the paper: 64 speakers x 2)")
        if problem:
            raise RunError(problem)
    weights = config["model"]["imagenet_weights"]
    if weights is not None and not os.path.isfile(weights):
        raise RunError(
            f"model.imagenet_weights={weights}: no such file. Give a torchvision ResNet-50 state "
            "dict (.pth, or its tensors in a .npz), or null to train from scratch."
        )


def embedder_settings(config):
    """Keyword arguments of `build_embedder` from the config's `model` section."""
    from keras_spk.data.augment import spec_augment_settings

    model = config["model"]
    backbone = {}
    if model["stage_filters"] is not None:
        backbone["stackwise_num_filters"] = list(model["stage_filters"])
    if model["stem_filters"] is not None:
        backbone["stem_filters"] = model["stem_filters"]
    return {
        "sample_rate": config["data"]["sample_rate"],
        "embedding_dim": model["embedding_dim"],
        "dropout": model["dropout"],
        "attention": model["attention"],
        "attention_units": model["attention_units"],
        "final_block_prelu": model["final_block_prelu"],
        "backbone_config": backbone or None,
        "spec_augment": spec_augment_settings(config),
    }


def _embedder(context):
    """The embedder both stages train (built once, optionally from ImageNet weights)."""
    from papers.multi_metric.model import build_embedder
    from papers.multi_metric.model import load_torchvision_resnet50

    if "embedder" not in context.shared:
        embedder = build_embedder(**embedder_settings(context.config))
        weights = context.config["model"]["imagenet_weights"]
        if weights is not None:
            count = load_torchvision_resnet50(embedder.get_layer("resnet"), weights)
            print(f"ResNet-50: {count} layers initialised from {weights}")
        context.shared["embedder"] = embedder
    return context.shared["embedder"]


def build_stage(name, context):
    """Pre-training: the embedder with a softmax classifier; training: eq. 14 around the same embedder."""
    from papers.multi_metric.model import build_multi_metric_trainer
    from papers.multi_metric.model import build_pretrainer

    embedder = _embedder(context)
    if name == "pretrain":
        return build_pretrainer(embedder, context.num_speakers)
    loss = context.config["loss"]
    trainer = build_multi_metric_trainer(embedder, context.num_speakers, **loss)
    if context.trained("pretrain"):  # the classifier trained on; the embedder is shared already
        from keras_spk.recipe import transfer_weights

        transfer_weights(context.models["pretrain"], trainer, layers=["classifier"])
    return trainer


def recipe():
    """The multi-metric recipe for `keras_spk.recipe.run_recipe`."""
    from keras_spk.recipe import Recipe

    return Recipe(
        name="multi_metric",
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
        callbacks: extra Keras callbacks for both training stages.
    """
    from keras_spk.recipe import run_recipe

    return run_recipe(recipe(), argv, callbacks)


if __name__ == "__main__":
    from keras_spk.recipe import main_guard

    main_guard(main)
