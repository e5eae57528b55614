"""MIRNet (Han, Chung and Kang, Interspeech 2020): identities from overlapped speech, then speaker-conditioned separation.

    python papers/mirnet/train.py                      # demo corpus, configs/demo.yaml
    python papers/mirnet/train.py --config papers/mirnet/configs/demo_table2.yaml   # + baselines (a), (c)
    python papers/mirnet/train.py \\
        --data LibriSpeech/train-clean-100 LibriSpeech/train-clean-360 LibriSpeech/train-other-500 \\
        --eval-data LibriSpeech/dev-test \\
        --data.wsj0_2mix.root wsj0-2mix/wav16k/min     # the paper: Table 1's network, Table 2's row (b)
    python papers/mirnet/train.py --resume [RUN_DIR]   # continue an interrupted run

Stages, each resumable from its last epoch:
1. `mirnet`: MIRNet (section 3, Table 1) on mixtures of two training
   speakers, re-paired every epoch (3-s segments at random offsets, equal
   RMS unless `data.mixture.sir_db` says otherwise), with permutation
   invariant cross-entropy (eq. 3-5);
2. `speaker` (Table 2's baseline (a) only): a clean-speech embedder trained
   with softmax on the same speakers, to embed the enrolment utterances;
3. `separator`: a VoiceFilter mask network (section 4.2) conditioned on
   (b) the frozen MIRNet's identities of the mixture itself, trained with
   PIT over its two outputs; or the baselines (a) conditioned on a clean
   enrolment utterance of each target, (c) uPIT without a condition
   (`separator.condition`).
Then the protocols: `mixture_verification` (section 4.1.2: triples A+B,
A'+C, C'+D; the minimum distance over identity pairs; EER for seen and
unseen speakers, clean and reference rows) and `separation` (Table 2: SDRi
and PESQi over both sources, with the unprocessed mixture and the ideal
ratio mask as reference rows), and the export of the embedder (a mixture
waveform in, `[batch, 2, 512]` out) as a SavedModel.

Everything goes into one run folder (see `keras_spk.recipe.run`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads otherwise spin while the tf.data threads decode audio on the
# same cores (see papers/fpm/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script: make `papers.mirnet` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

DEFAULT_CONFIG = os.path.join(HERE, "configs", "mirnet.yaml")
DEMO_CONFIG = os.path.join(HERE, "configs", "demo.yaml")

# One 32-ms frame (512 samples at 16 kHz): the front-end's shortest input.
FRAME_MS = 32
SEPARATOR_WEIGHTS = "separator.weights.h5"


def min_samples(config):
    """The shortest input (in samples) the embedder accepts: one 32-ms front-end frame."""
    return int(round(FRAME_MS * config["data"]["sample_rate"] / 1000))


def config_constraints():
    """What the recipe's own keys may be (the shared ones: `keras_spk.recipe.recipe_constraints`)."""
    from keras_spk.config import Constraint
    from keras_spk.config import choice
    from keras_spk.config import float_range
    from keras_spk.config import int_range
    from keras_spk.config import list_of
    from keras_spk.config import non_empty_string
    from papers.mirnet.model import ATTENDS
    from papers.mirnet.model import SEPARATOR_CONDITIONS

    positive = int_range(min=1)
    positive_list = list_of(positive, min_length=1, noun="positive integers")

    def kernels(value, config):
        filters = config["model"]["encoder_filters"]
        if not isinstance(value, list) or not isinstance(filters, list) or len(value) != len(filters) + 1:
            return (
                f"model.encoder_kernels needs one kernel per convolution, conv1 to conv6: "
                f"{len(filters) + 1 if isinstance(filters, list) else 'len(model.encoder_filters) + 1'} "
                f"entries (conv6 has K * 257 channels), got {value!r}."
            )
        return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)

    def blocks(value, config):
        widths = config["model"]["resnet_filters"]
        if not isinstance(value, list) or not isinstance(widths, list) or len(value) != len(widths):
            return f"model.resnet_blocks needs one entry per stage of model.resnet_filters ({widths!r}), got {value!r}."
        return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)

    return {
        "data.crop_samples": int_range(min=min_samples),
        "model.num_identities": int_range(min=2, max=8),
        "model.encoder_filters": positive_list,
        "model.encoder_kernels": Constraint(kernels, "one positive kernel size per convolution (conv1-conv6)"),
        "model.attention_units": positive,
        "model.attend": choice(list(ATTENDS)),
        "model.normalization": choice([None, "mean_variance"]),
        "model.encoder_batch_norm": choice([True, False]),
        "model.resnet_filters": positive_list,
        "model.resnet_blocks": Constraint(blocks, "one positive block count per ResNet stage"),
        "separator.condition": choice(list(SEPARATOR_CONDITIONS)),
        "separator.conv_filters": positive,
        "separator.lstm_units": positive,
        "separator.fc_units": positive,
        "separator.output_channels": positive,
        "separator.dilations": positive_list,
        "separator.power": float_range(min=0, include_min=False),
        "separator.enrolment_model": non_empty_string(allow_none=True),
        "stages.mirnet.epochs": int_range(min=0),
        "stages.speaker.epochs": int_range(min=0),
        "stages.separator.epochs": int_range(min=0),
    }


def _sampler(stage):
    return stage["data"]["sampler"]


def check_data(config, data):
    """The stages' samplers fit their trainers; the separator has what it is conditioned on."""
    from keras_spk.recipe.run import RunError
    from keras_spk.recipe.stages import stage_plan

    plan = stage_plan(config)
    identities = config["model"]["num_identities"]
    mirnet = plan["mirnet"]
    if mirnet["epochs"] > 0:
        if _sampler(mirnet) != "mixture":
            raise RunError(
                "stage 'mirnet' trains on mixtures: set data.sampler: mixture (or "
                "stages.mirnet.data.sampler: mixture)."
            )
        if mirnet["data"]["mixture"]["num_speakers"] != identities:
            raise RunError(
                f"MIRNet returns model.num_identities={identities} identities but stage 'mirnet' mixes "
                f"data.mixture.num_speakers={mirnet['data']['mixture']['num_speakers']} speakers; "
                "make them equal."
            )
    separator = plan["separator"]
    settings = config["separator"]
    condition = settings["condition"]
    protocols = config["evaluation"]["protocols"]
    if "separation" in protocols and separator["epochs"] == 0:
        raise RunError(
            "evaluation.protocols lists separation but stages.separator.epochs is 0 (nothing would "
            "be trained to separate): give the separator epochs, or drop separation from the protocols."
        )
    if condition == "mirnet" and separator["epochs"] > 0 and mirnet["epochs"] == 0:
        raise RunError(
            "separator.condition=mirnet conditions the separator on the MIRNet of stage 'mirnet', "
            "which trains for 0 epochs: give stages.mirnet.epochs, or another separator.condition."
        )
    if condition == "mirnet" and "mirnet" not in separator["frozen"]:
        raise RunError("separator.condition=mirnet needs stages.separator.frozen: [mirnet] (MIRNet stays as trained).")
    if separator["epochs"] > 0:
        sampler = _sampler(separator)
        if sampler not in ("mixture", "wsj0_2mix"):
            raise RunError(
                f"stage 'separator' learns from mixtures and their sources: set "
                f"stages.separator.data.sampler to mixture or wsj0_2mix (got {sampler!r})."
            )
        section = separator["data"][sampler]
        if sampler == "mixture":
            if not section.get("return_sources"):
                raise RunError("stage 'separator' needs the sources: set stages.separator.data.mixture.return_sources: true.")
            if section["num_speakers"] != identities:
                raise RunError(
                    f"stage 'separator' separates model.num_identities={identities} sources but mixes "
                    f"{section['num_speakers']} (stages.separator.data.mixture.num_speakers); make them equal."
                )
        elif identities != 2:
            raise RunError(f"WSJ0-2mix has two sources per mixture; model.num_identities is {identities}.")
        if condition == "enrolment":
            if not section.get("return_enrolments"):
                raise RunError(
                    f"separator.condition=enrolment conditions on a clean utterance of each target: set "
                    f"stages.separator.data.{sampler}.return_enrolments: true."
                )
            model_path = settings["enrolment_model"]
            if model_path is None:
                if plan["speaker"]["epochs"] == 0:
                    raise RunError(
                        "separator.condition=enrolment needs a clean-speech embedder: train one "
                        "(stages.speaker.epochs > 0) or give separator.enrolment_model (a .keras file)."
                    )
                if "speaker" not in separator["frozen"]:
                    raise RunError("separator.condition=enrolment needs stages.separator.frozen to list speaker.")
            elif not os.path.isfile(model_path):
                raise RunError(f"separator.enrolment_model={model_path}: no such file. Give a saved .keras embedder.")


def mirnet_settings(config):
    """Keyword arguments of `build_mirnet` from the config's `model` section."""
    from keras_spk.data.augment import spec_augment_settings

    model = config["model"]
    return {
        "num_identities": model["num_identities"],
        "encoder_filters": list(model["encoder_filters"]),
        "encoder_kernels": list(model["encoder_kernels"]),
        "attention_units": model["attention_units"],
        "attend": model["attend"],
        "resnet_filters": list(model["resnet_filters"]),
        "resnet_blocks": list(model["resnet_blocks"]),
        "sample_rate": config["data"]["sample_rate"],
        "normalization": model["normalization"],
        "encoder_batch_norm": model["encoder_batch_norm"],
        "spec_augment": spec_augment_settings(config),
    }


def _enrolment_embedder(context):
    """(a)'s clean-speech embedder: the user's `separator.enrolment_model`, or the `speaker` stage's."""
    path = context.config["separator"]["enrolment_model"]
    if path is None:
        return context.shared["clean_embedder"]
    import keras

    model = keras.saving.load_model(path)
    model.trainable = False
    return model


def build_stage(name, context):
    """`mirnet`: MIRNet with PIT cross-entropy; `speaker`: a clean embedder; `separator`: Table 2's separator."""
    from papers.mirnet import model as mirnet_model

    config = context.config
    if name == "mirnet":
        trainer, embedder = mirnet_model.build_mirnet(context.num_speakers, **mirnet_settings(config))
        context.shared["embedder"] = embedder
        return trainer
    if name == "speaker":
        trainer, embedder = mirnet_model.build_clean_embedder(
            context.num_speakers,
            resnet_filters=list(config["model"]["resnet_filters"]),
            resnet_blocks=list(config["model"]["resnet_blocks"]),
            sample_rate=config["data"]["sample_rate"],
            normalization=config["model"]["normalization"],
        )
        context.shared["clean_embedder"] = embedder
        return trainer
    if name == "separator":
        settings = config["separator"]
        condition = settings["condition"]
        trainer, separator = mirnet_model.build_separator(
            condition,
            identities=context.shared["embedder"] if condition == "mirnet" else None,
            enrolment_embedder=_enrolment_embedder(context) if condition == "enrolment" else None,
            num_sources=config["model"]["num_identities"],
            conv_filters=settings["conv_filters"],
            lstm_units=settings["lstm_units"],
            fc_units=settings["fc_units"],
            output_channels=settings["output_channels"],
            dilations=list(settings["dilations"]),
            power=settings["power"],
            sample_rate=config["data"]["sample_rate"],
        )
        context.shared["separator"] = separator
        context.shared["separator_label"] = SEPARATOR_LABELS[condition]
        return trainer
    raise ValueError(f"The MIRNet recipe has no stage {name!r}; its stages are mirnet, speaker, separator.")


SEPARATOR_LABELS = {
    "mirnet": "(b) VoiceFilter on MIRNet's identities of the mixture",
    "enrolment": "(a) VoiceFilter on a clean enrolment embedding",
    "none": "(c) uPIT BLSTM, no condition",
}


def final_models(context):
    """After the stages: keeps the trained separator's weights in the run folder; returns the embedder."""
    separator = context.shared.get("separator")
    if separator is not None and context.run is not None and context.trained("separator"):
        path = context.run.join(SEPARATOR_WEIGHTS)
        temporary = context.run.join(f".tmp-{os.getpid()}-{SEPARATOR_WEIGHTS}")
        try:
            separator.save_weights(temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        print(f"separator ({context.shared['separator_label']}): {path}")
    return context.shared["embedder"]


def recipe():
    """The MIRNet recipe for `keras_spk.recipe.run_recipe`."""
    from keras_spk.recipe import Recipe

    return Recipe(
        name="mirnet",
        default_config=DEFAULT_CONFIG,
        demo_config=DEMO_CONFIG,
        description=__doc__.split("\n\n")[0],
        build_stage=build_stage,
        embedder=final_models,
        constraints=config_constraints,
        min_samples=min_samples,
        data_check=check_data,
    )


def main(argv=None, callbacks=()):
    """Runs the recipe; returns the `Run` (its folder holds every result).

    Args:
        argv: command-line arguments (default `sys.argv[1:]`).
        callbacks: extra Keras callbacks for every training stage.
    """
    from keras_spk.recipe import run_recipe

    return run_recipe(recipe(), argv, callbacks)


if __name__ == "__main__":
    from keras_spk.recipe import main_guard

    main_guard(main)
