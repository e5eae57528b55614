"""The data of a recipe run: training utterances, speaker map and trials."""

import dataclasses
import os

from keras_spk.config import choice
from keras_spk.config import has_key
from keras_spk.config import int_range
from keras_spk.config import non_empty_string
from keras_spk.config import read_yaml
from keras_spk.recipe.run import RunError

# Sampling rates a speech corpus is recorded at: telephone (8 kHz) to studio (192 kHz).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000

# The `seed`, `data` and `train` keys every recipe shares (`recipe_constraints`).
CONSTRAINTS = {
    "seed": int_range(min=0, max=2**32 - 1),
    "data.sample_rate": int_range(min=MIN_SAMPLE_RATE, max=MAX_SAMPLE_RATE),
    "data.crop_samples": int_range(min=1),
    "data.batch_size": int_range(min=1),
    "data.demo_dir": non_empty_string(allow_none=True),
    # The last stage: at least one epoch (earlier stages may declare int_range(min=0): 0 skips).
    "train.epochs": int_range(min=1),
    "train.keep_checkpoints": int_range(min=1, allow_none=True),
    "train.verbose": choice([0, 1, 2]),
}


def recipe_constraints(default_config, constraints=None):
    """The constraints of a recipe's config: the shared ones for the keys it has, then its own.

    The library declares once what the keys every recipe shares may be
    (`CONSTRAINTS` here: `seed`, `data.*`, `train.*`;
    `keras_spk.recipe.evaluation.CONSTRAINTS`: `evaluation.*`, `export.*`);
    a recipe adds its own keys and may tighten a shared one (e.g.
    `data.crop_samples` against its model's shortest input).

    Args:
        default_config: the recipe's full config (path or mapping), the schema.
        constraints: the recipe's own `{dotted key: Constraint}`; they win.

    Returns:
        dict dotted key -> `keras_spk.config.Constraint`.
    """
    from keras_spk.recipe import evaluation

    schema = read_yaml(default_config) if isinstance(default_config, (str, os.PathLike)) else default_config
    shared = {**CONSTRAINTS, **evaluation.CONSTRAINTS}
    merged = {key: rule for key, rule in shared.items() if has_key(schema, key)}
    merged.update(constraints or {})
    return merged


@dataclasses.dataclass
class RecipeData:
    """What a run trains and evaluates on.

    Attributes:
        train: `keras_spk.data.UtteranceList` of the training speakers.
        speaker_map: `keras_spk.data.SpeakerMap` (label index <-> speaker).
        trials: `keras_spk.data.Trials`, paths resolved under `eval_dir`.
        train_dir, eval_dir, trials_path: where they were read from.
    """

    train: object
    speaker_map: object
    trials: object
    train_dir: str
    eval_dir: str
    trials_path: str

    def labels(self):
        """Label index of every training utterance."""
        return self.train.labels(self.speaker_map)

    def steps_per_epoch(self, batch_size):
        """Full batches per epoch; an error when there is not even one."""
        steps = len(self.train) // batch_size
        if steps == 0:
            raise RunError(
                f"{len(self.train)} training utterances do not fill one batch of "
                f"data.batch_size={batch_size}; lower it."
            )
        return steps

    def training_dataset(self, config, start_epoch=0):
        """Training crops for a trainer that takes `[waveform, labels]` and adds its own losses.

        An endless, resumable stream of epochs from `start_epoch`
        (`keras_spk.data.training_dataset(..., start_epoch=...)`), with
        `config["data"]`'s `crop_samples`, `batch_size` and `sample_rate`
        and `config["seed"]`.

        Returns:
            A `tf.data.Dataset` of `((waveforms [batch, crop], labels [batch]),)`.
        """
        from keras_spk.data import training_dataset

        data = config["data"]
        dataset = training_dataset(
            self.train.paths,
            self.labels(),
            data["crop_samples"],
            data["batch_size"],
            sample_rate=data["sample_rate"],
            seed=config["seed"],
            start_epoch=start_epoch,
        )
        return dataset.map(lambda waveforms, labels: ((waveforms, labels),))


def load_data(run, allow_speaker_overlap=False):
    """Reads the run's training data and trial list, and checks them.

    Without user data (`run.data == {}`) the demo corpus is used
    (generated on first use into `config["data"]["demo_dir"]`, or the
    default demo folder). A speaker present in both the training data and
    the trials is an error unless `allow_speaker_overlap` (or the config's
    `data.allow_speaker_overlap`) is set. The speaker map is written to
    `<run>/speakers.json`; a resumed run checks that its training data
    still gives the saved map.

    Args:
        run: the `keras_spk.recipe.Run`.
        allow_speaker_overlap: bool, from `--allow-speaker-overlap`.

    Returns:
        A `RecipeData`.
    """
    from keras_spk import data

    config = run.config
    if run.data:
        train_dir, eval_dir, trials_path = run.data["train"], run.data["eval"], run.data["trials"]
        for flag, path, kind in [
            ("--data", train_dir, "folder"),
            ("--eval-data", eval_dir, "folder"),
            ("--trials", trials_path, "file"),
        ]:
            exists = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
            if not exists:
                raise RunError(f"{flag} {path}: no such {kind}. Check the path.")
    else:
        root = data.ensure_demo_corpus(config["data"]["demo_dir"] or None, seed=config["seed"])
        train_dir = os.path.join(root, "train")
        eval_dir = os.path.join(root, "test")
        trials_path = os.path.join(root, "trials.txt")
    train = data.read_voxceleb(train_dir)
    trials = data.read_trials(trials_path, eval_dir)
    data.check_speaker_overlap(
        train.speaker_ids,
        set(trials.speakers().values()),
        allow_overlap=allow_speaker_overlap or config["data"]["allow_speaker_overlap"],
    )
    speaker_map = train.speaker_map()
    saved = run.join("speakers.json")
    if run.resumed and os.path.exists(saved):
        if data.SpeakerMap.load(saved) != speaker_map:
            raise RunError(
                f"The training speakers in {train_dir} no longer match {saved}: the data changed "
                "since the run started. Restore the data, or start a new run."
            )
    else:
        speaker_map.save(saved)
    print(
        f"train: {len(train)} utterances of {len(speaker_map)} speakers from {train_dir}\n"
        f"eval:  {len(trials)} trials over {len(trials.utterances)} utterances from {eval_dir}"
    )
    return RecipeData(train, speaker_map, trials, train_dir, eval_dir, trials_path)


def check_data(config, data):
    """Checks the config against the data it will run on, before any training.

    `data.batch_size` must fill at least one batch per epoch, and an
    `evaluation.lda_dim` used by `lda` / `lda_plda` must be below the
    number of training speakers (LDA has at most speakers - 1 directions).

    Raises:
        RunError: naming the key and the fix.
    """
    data.steps_per_epoch(config["data"]["batch_size"])
    evaluation = config.get("evaluation", {})
    lda_dim = evaluation.get("lda_dim")
    uses_lda = [b for b in evaluation.get("backends", []) if b in ("lda", "lda_plda")]
    if lda_dim is not None and uses_lda and lda_dim > len(data.speaker_map) - 1:
        raise RunError(
            f"evaluation.lda_dim={lda_dim} is more than LDA can give with {len(data.speaker_map)} "
            f"training speakers (at most {len(data.speaker_map) - 1}), for {', '.join(uses_lda)}; "
            f"lower it, e.g. --evaluation.lda_dim={max(1, len(data.speaker_map) - 1)}."
        )


def start_run(name, argv, default_config, demo_config, description, constraints=None):
    """Everything a recipe's `main` does before building its models.

    Parses the command line, checks every config value against its
    constraint (`recipe_constraints`: the shared keys' and the recipe's
    own) and opens (or resumes) the run folder (`open_run`), seeds Python,
    NumPy and the backend with `config["seed"]`, reads the data
    (`load_data`) and checks the config against it (`check_data`). A bad
    value is reported before the run folder is made; a run that stops
    before its first checkpoint does not hold its folder (a later command
    may use it with other arguments, see `open_run`'s `provisional`).

    Args:
        name: the recipe's name (`runs/<name>-<timestamp>`).
        argv: command-line arguments.
        default_config, demo_config: the recipe's full and demo configs.
        description: the `--help` text.
        constraints: the recipe's own `{dotted key: keras_spk.config.Constraint}`.

    Returns:
        `(run, data)`: the `Run` and its `RecipeData`.
    """
    import keras

    from keras_spk.recipe.run import open_run
    from keras_spk.recipe.run import recipe_parser

    parser = recipe_parser(name, description)
    run, args = open_run(
        name,
        argv,
        default_config,
        demo_config,
        parser,
        constraints=recipe_constraints(default_config, constraints),
        provisional=True,
    )
    print(f"run folder: {run.path}  (backend: {keras.backend.backend()})")
    keras.utils.set_random_seed(run.config["seed"])
    data = load_data(run, allow_speaker_overlap=args.allow_speaker_overlap)
    check_data(run.config, data)
    return run, data


def stage_options(config, callbacks=()):
    """`fit_stage` keyword arguments from the config's `train` section and extra callbacks."""
    train = config["train"]
    return {
        "callbacks": list(callbacks),
        "keep_checkpoints": train["keep_checkpoints"],
        "verbose": train["verbose"],
    }
