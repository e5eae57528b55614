"""One runner for every recipe: start, systems, stages, evaluation protocols, export.

A paper's `train.py` declares a `Recipe` (its configs, its config
constraints, how to build each stage's trainer and the embedder to
evaluate) and calls `run_recipe`; everything else is here:

1. `start_run`: the command line, the config and its constraints, the run
   folder (new or resumed), the data (`load_data`) and its checks;
2. for each system of `systems:` (the rows of a paper's table; one system,
   the run itself, when the list is empty), in `<run>/<system>/`:
   the stages of `stages:` in order (`run_stages`: build, compile with the
   stage's optimizer, `fit_stage` on the stage's sampler), then the
   evaluation protocols of `evaluation.protocols` and the export
   (`evaluate_and_export`);
3. with several systems, their tables merged into `<run>/results/`.

Every step resumes: a finished system, stage or protocol is not run again.
"""

import copy
import dataclasses
import os
import re
import sys
import time

from keras_spk.config import ConfigError
from keras_spk.config import Constraint
from keras_spk.config import _merge
from keras_spk.config import check_config
from keras_spk.config import choice
from keras_spk.config import has_key
from keras_spk.config import int_range
from keras_spk.config import non_empty_string
from keras_spk.config import read_yaml
from keras_spk.recipe.run import RunError

# Sampling rates a speech corpus is recorded at: telephone (8 kHz) to studio (192 kHz).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000

_SYSTEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _layouts():
    from keras_spk.data.readers import READERS

    return sorted(READERS)


def _registry_test(registry, kind, skip):
    def test(value, config):
        from keras_spk.recipe import optimizers

        try:
            optimizers.check_settings(value, getattr(optimizers, registry), kind, kind, skip)
        except ValueError as error:
            return str(error)
        return True

    return test


def _stages_test(value, config):
    from keras_spk.recipe.stages import stage_plan

    try:
        plan = stage_plan(config)
    except (ConfigError, ValueError) as error:
        return str(error)
    for name, stage in plan.items():
        epochs = stage["epochs"]
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            return f"stages.{name}.epochs must be an int >= 0 (0 skips the stage), got {epochs!r}."
        for section, registry, skip in (
            ("optimizer", "OPTIMIZERS", ()),
            ("schedule", "SCHEDULES", ("rate", "steps_per_epoch", "epochs")),
        ):
            if stage[section] is not None:
                problem = _registry_test(registry, f"stages.{name}.{section}", skip)(stage[section], config)
                if problem is not True:
                    return problem
    if not any(stage["epochs"] > 0 for stage in plan.values()):
        return "no stage trains: give at least one stage one epoch or more."
    return True


def _systems_test(value, config, constraints=None):
    if not isinstance(value, list):
        return False
    names = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return f"each system is a mapping with a `name` and the config values it changes, got {entry!r}."
        if not _SYSTEM_NAME.match(entry["name"]):
            return f"system name {entry['name']!r} must be a folder name (letters, digits, _ . -)."
        if "systems" in entry:
            return f"system {entry['name']!r} may not list systems of its own."
        names.append(entry["name"])
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return f"system name(s) {', '.join(repeated)} appear more than once."
    if value and constraints is not None:
        try:  # each system's own config, checked like the run's
            system_configs(config, constraints)
        except ConfigError as error:
            return str(error)
    return True


def _protocols():
    from keras_spk.recipe.protocols import protocol_names

    return protocol_names()


# The keys every recipe shares (`recipe_constraints` picks those a recipe's config has).
CONSTRAINTS = {
    "seed": int_range(min=0, max=2**32 - 1),
    "data.layout": choice(_layouts),
    "data.sample_rate": int_range(min=MIN_SAMPLE_RATE, max=MAX_SAMPLE_RATE),
    "data.crop_samples": int_range(min=1),
    "data.batch_size": int_range(min=1),
    "data.demo_dir": non_empty_string(allow_none=True),
    "data.holdout_per_speaker": int_range(min=0),
    "optimizer": Constraint(
        _registry_test("OPTIMIZERS", "optimizer", ()),
        "a mapping {name: adam | adamw | sgd, learning_rate: ..., and the optimizer's settings}",
    ),
    "schedule": Constraint(
        _registry_test("SCHEDULES", "schedule", ("rate", "steps_per_epoch", "epochs")),
        "a mapping {name: constant | inverse_time | step | cosine, and the schedule's settings}",
    ),
    "stages": Constraint(
        _stages_test, "an ordered mapping of stage name -> {epochs, and what the stage changes}"
    ),
    "systems": Constraint(
        _systems_test, "a list of systems, each {name: ..., and the config values it changes}"
    ),
    "train.keep_checkpoints": int_range(min=1, allow_none=True),
    "train.distribution": choice(["auto", "mirrored"]),
    "train.devices": Constraint(
        lambda value, config: value is None
        or (isinstance(value, list) and value and all(isinstance(d, str) and d for d in value)),
        "null (every GPU) or a list of device names such as ['/gpu:0', '/gpu:1']",
    ),
    "train.verbose": choice([0, 1, 2]),
    "evaluation.protocols": Constraint(
        lambda value, config: isinstance(value, list)
        and all(name in _protocols() for name in value)
        and len(set(value)) == len(value),
        lambda config: f"a list of distinct evaluation protocols from {', '.join(_protocols())}",
    ),
    "evaluation.reference_mel_bins": int_range(min=1),
}


def recipe_constraints(default_config, constraints=None):
    """The constraints of a recipe's config: the shared ones for the keys it has, then its own.

    The library declares once what the keys every recipe shares may be
    (`CONSTRAINTS` here: `seed`, `data.*`, `optimizer`, `schedule`,
    `stages`, `systems`, `train.*`, `evaluation.protocols`;
    `keras_spk.data.samplers.CONSTRAINTS`: the samplers' keys;
    `keras_spk.recipe.evaluation.CONSTRAINTS`: `evaluation.*`, `export.*`);
    a recipe adds its own keys and may tighten a shared one (e.g.
    `data.crop_samples` against its model's shortest input).

    Args:
        default_config: the recipe's full config (path or mapping), the schema.
        constraints: the recipe's own `{dotted key: Constraint}`; they win.

    Returns:
        dict dotted key -> `keras_spk.config.Constraint`.
    """
    from keras_spk.data import augment
    from keras_spk.data import samplers
    from keras_spk.recipe import evaluation
    from keras_spk.recipe import precision

    schema = read_yaml(default_config) if isinstance(default_config, (str, os.PathLike)) else default_config
    shared = {
        **CONSTRAINTS, **samplers.CONSTRAINTS, **augment.CONSTRAINTS, **precision.CONSTRAINTS,
        **evaluation.CONSTRAINTS,
    }
    merged = {key: rule for key, rule in shared.items() if has_key(schema, key)}
    merged.update(constraints or {})
    if "systems" in merged:  # each system's config is checked with all of them, at start-up
        merged["systems"] = Constraint(
            lambda value, config: _systems_test(value, config, merged),
            "a list of systems, each {name: ..., and the config values it changes}",
        )
    return merged


def system_configs(config, constraints=None, source="config"):
    """The configs of the run's systems: `[(name, config)]`, or `[(None, config)]` without `systems`.

    Each entry of `systems:` is `{name: ..., <section>: {<key>: value}}`:
    the run's config (without `systems`) with those values changed, checked
    like the config itself (unknown keys, `constraints`).

    Raises:
        ConfigError: naming the system and the bad key or value.
    """
    entries = config.get("systems") or []
    if not entries:
        return [(None, config)]
    base = copy.deepcopy(config)
    base["systems"] = []
    systems = []
    for entry in entries:
        name = entry["name"]
        changes = {k: v for k, v in entry.items() if k != "name"}
        resolved = copy.deepcopy(base)
        _merge(resolved, changes, base, "", f"{source}: system {name!r}")
        if constraints:
            check_config(resolved, constraints, source=f"{source}: system {name!r}")
        systems.append((name, resolved))
    return systems


def check_data(config, data):
    """Checks the config against the data it will run on, before any training.

    An `evaluation.lda_dim` used by `lda` / `lda_plda` must be below the
    number of training speakers (LDA has at most speakers - 1 directions);
    each stage's sampler must be able to draw its batches (checked when
    its dataset is made, also before training).

    Raises:
        RunError: naming the key and the fix.
    """
    evaluation = config.get("evaluation", {})
    lda_dim = evaluation.get("lda_dim")
    uses_lda = [b for b in evaluation.get("backends", []) if b in ("lda", "lda_plda")]
    if lda_dim is not None and uses_lda and lda_dim > len(data.speaker_map) - 1:
        raise RunError(
            f"evaluation.lda_dim={lda_dim} is more than LDA can give with {len(data.speaker_map)} "
            f"training speakers (at most {len(data.speaker_map) - 1}), for {', '.join(uses_lda)}; "
            f"lower it, e.g. --evaluation.lda_dim={max(1, len(data.speaker_map) - 1)}."
        )
    from keras_spk.data.augment import speed_classes
    from keras_spk.recipe.stages import stage_plan

    classes = speed_classes(config["data"].get("augment"))
    for name, stage in stage_plan(config).items():
        if speed_classes(stage["data"].get("augment")) != classes:
            raise RunError(
                f"stages.{name}.data.augment.speed makes another number of speakers from the "
                f"speeds ({speed_classes(stage['data'].get('augment'))} label blocks) than "
                f"data.augment.speed ({classes}), which sizes every classifier: change the speeds "
                "in data.augment for all stages, or set as_new_speakers: false."
            )
        if stage["epochs"] > 0:
            try:
                data.training_dataset(stage["data"], config["seed"], start_epoch=0)
            except RunError as error:
                raise RunError(f"[{name}] {error}") from None


def start_run(name, argv, default_config, demo_config, description, constraints=None, data_check=None):
    """Everything a recipe does before building its models.

    Parses the command line, checks every config value against its
    constraint (`recipe_constraints`: the shared keys' and the recipe's
    own), and every system's config, opens (or resumes) the run folder
    (`open_run`), seeds Python, NumPy and the backend with `config["seed"]`,
    reads the data (`load_data`) and checks each system's config against it
    (`check_data`). A bad value is reported before the run folder is made;
    a run that stops before its first checkpoint does not hold its folder
    (a later command may use it with other arguments, see `open_run`'s
    `provisional`).

    Args:
        data_check: optional `(config, data) -> None` of the recipe, run for
            each system's config after the shared checks; it raises
            `RunError` naming the key and the fix.

    Returns:
        `(run, data, systems)`: the `Run`, its `RecipeData` and
        `system_configs(run.config)`.
    """
    import keras

    from keras_spk.recipe.data import load_data
    from keras_spk.recipe.protocols import needs_trials
    from keras_spk.recipe.run import open_run
    from keras_spk.recipe.run import recipe_parser

    from keras_spk.recipe.run import join_run

    parser = recipe_parser(name, description)
    all_constraints = recipe_constraints(default_config, constraints)
    parallel = _data_parallel()
    if parallel is not None and not parallel.is_writer:
        # Rank 0 opens the folder and reads the data first (generating the demo corpus,
        # writing the speaker map); then the others join its run.
        outcome = parallel.broadcast_object(None)
        if outcome[0] == "error":
            raise RunError(f"rank 0 stopped before training: {outcome[1]}")
        run, args = join_run(name, outcome[1], argv, default_config, parser, all_constraints)
        return _prepare(run, args, all_constraints, data_check, parallel)
    try:
        run, args = open_run(
            name,
            argv,
            default_config,
            demo_config,
            parser,
            constraints=all_constraints,
            provisional=True,
        )
        prepared = _prepare(run, args, all_constraints, data_check, parallel)
    except (ConfigError, RunError, ValueError, OSError) as error:
        if parallel is not None:
            parallel.broadcast_object(("error", str(error)))
        raise
    if parallel is not None:
        parallel.broadcast_object(("run", run.path))
    return prepared


def _data_parallel():
    """The `DataParallel` of a process started by torchrun (joined to its group), or None."""
    from keras_spk.distribute import data_parallel_from_environment

    try:
        parallel = data_parallel_from_environment()
    except ValueError as error:
        raise RunError(str(error)) from None
    return None if parallel is None else parallel.setup()


def _prepare(run, args, all_constraints, data_check, parallel):
    """`start_run` once the run folder is open: seeds, data, checks, distribution."""
    import keras

    from keras_spk.recipe.data import load_data
    from keras_spk.recipe.protocols import needs_trials

    systems = system_configs(run.config, all_constraints)
    run.parallel = parallel
    run.strategy = _strategy(run.config, parallel)
    where = "" if parallel is None else f", rank {parallel.rank} of {parallel.world_size}"
    print(f"run folder: {run.path}  (backend: {keras.backend.backend()}{where})")
    keras.utils.set_random_seed(run.config["seed"])
    data = load_data(
        run,
        allow_speaker_overlap=args.allow_speaker_overlap,
        needs_trials=any(needs_trials(config) for _, config in systems),
    )
    if parallel is not None:
        data.replica = parallel.replica
    for system, config in systems:
        try:
            check_data(config, data)
            if data_check is not None:
                data_check(config, data)
        except RunError as error:
            if system is None:
                raise
            raise RunError(f"system {system!r}: {error}") from None
    return run, data, systems


def _strategy(config, parallel):
    """The `tf.distribute` strategy of `train.distribution`, or None."""
    train = config.get("train", {})
    if train.get("distribution", "auto") != "mirrored":
        return None
    if parallel is not None:
        raise RunError(
            "train.distribution: mirrored is TensorFlow's single-process strategy, but this "
            "command was started by torchrun; set train.distribution: auto."
        )
    from keras_spk.distribute import mirrored_strategy

    try:
        strategy = mirrored_strategy(train.get("devices"))
    except ValueError as error:
        raise RunError(f"train.distribution: mirrored: {error}") from None
    print(f"MirroredStrategy over {strategy.num_replicas_in_sync} replica(s)")
    return strategy


@dataclasses.dataclass
class Recipe:
    """What a paper's `train.py` declares; `run_recipe` does the rest.

    Attributes:
        name: the run folders' prefix (`runs/<name>-<timestamp>`).
        default_config: the full config (every key the recipe understands).
        demo_config: the config used on the demo corpus (no `--data`).
        description: the `--help` text.
        build_stage: `(stage name, StageContext) -> keras.Model`: the
            stage's trainer, uncompiled, taking the sampler's inputs and
            adding its own losses (`keras_spk.recipe.stages`).
        embedder: `StageContext -> keras.Model`: the embedder the
            protocols evaluate and the export writes (waveforms ->
            embeddings), after the last stage.
        constraints: `{dotted key: Constraint}` of the recipe's own keys, or
            a callable returning them.
        min_samples: the shortest input the embedder accepts: an int, or a
            callable `config -> int`.
        data_check: optional `(config, data) -> None` checking a system's
            config against the data before any training (e.g. a setting
            bounded by the number of training speakers); raises `RunError`.
    """

    name: str
    default_config: str
    demo_config: str
    description: str
    build_stage: object
    embedder: object
    constraints: object = None
    min_samples: object = 1
    data_check: object = None


def _merged_results(run, results):
    """Writes the systems' `utterance` rows as one table into `<run>/results/`, then each protocol's merge."""
    import keras

    from keras_spk.recipe.protocols import table_rows
    from keras_spk.scoring import format_table
    from keras_spk.utils.files import write_result_files

    from keras_spk.recipe.protocols import merge_protocols

    merge_protocols(run, results)
    rows = []
    for system, _, protocol_rows in results:
        for row in protocol_rows.get("utterance", []):
            rows.append({"recipe_system": system, **row})
    if not rows:
        return None
    table = format_table(table_rows(rows))
    metadata = {"keras_backend": keras.backend.backend(), "run": os.path.abspath(run.path)}
    write_result_files(run.makedirs("results"), table, rows, metadata=metadata)
    print(f"\nAll systems ({len(results)}):\n{table}")
    return rows


def run_recipe(recipe, argv=None, callbacks=()):
    """Runs a recipe end to end; returns the `Run` (its folder holds every result).

    Args:
        recipe: a `Recipe`.
        argv: command-line arguments (default `sys.argv[1:]`).
        callbacks: extra Keras callbacks for every training stage.
    """
    from keras_spk.recipe.protocols import finished_rows

    started = time.time()
    constraints = recipe.constraints() if callable(recipe.constraints) else recipe.constraints
    run, data, systems = start_run(
        recipe.name,
        sys.argv[1:] if argv is None else argv,
        recipe.default_config,
        recipe.demo_config,
        recipe.description,
        constraints=constraints,
        data_check=recipe.data_check,
    )
    import keras

    from keras_spk.recipe.precision import precision_scope

    results = []
    for name, config in systems:
        system_run = run if name is None else run.system(name, config)
        if name is not None:
            print(f"\n=== system {name} ({systems.index((name, config)) + 1} of {len(systems)}) ===")
            if system_run.finished:
                results.append((name, system_run, finished_rows(system_run)))
                print(f"[{name}] finished earlier; its results are in {system_run.join('results')}.")
                continue
            # Each system starts as a run of its own would: a fresh session (memory, layer
            # names) and the seed.
            keras.backend.clear_session()
            keras.utils.set_random_seed(config["seed"])
        # The models are built under the system's precision (train.precision).
        with precision_scope(config["train"].get("precision", "float32")):
            rows = _train_and_evaluate(recipe, system_run, config, data, callbacks)
        if rows is not None:
            results.append((name, system_run, rows))
    if not run.writer:
        print(f"rank {run.parallel.rank}: training done; rank 0 evaluates and exports.")
        return run
    if len(systems) > 1 or systems[0][0] is not None:
        _merged_results(run, results)
        run.mark_finished()
    print(f"\nbackend: {keras.backend.backend()}, wall time {time.time() - started:.0f} s\nrun folder: {run.path}")
    return run


def _train_and_evaluate(recipe, run, config, data, callbacks):
    """One system: its stages, then (rank 0) its protocols and export; returns its rows."""
    from keras_spk.recipe.precision import float32_embedder
    from keras_spk.recipe.protocols import evaluate_and_export
    from keras_spk.recipe.stages import run_stages

    context = run_stages(run, recipe.build_stage, data, callbacks=callbacks)
    if not run.writer:
        return None  # rank 0 evaluates and exports; the other processes go on training
    min_samples = recipe.min_samples(config) if callable(recipe.min_samples) else recipe.min_samples
    embedder = recipe.embedder(context)
    if run.strategy is not None:
        embedder = single_device_copy(embedder)
    # Float32 in and out whatever the precision: embeddings, scores, the SavedModel.
    embedder = float32_embedder(embedder)
    return evaluate_and_export(run, embedder, data, min_samples=min_samples, context=context)


def single_device_copy(model):
    """A copy of `model` with plain (not mirrored) variables, for evaluation and export.

    A model built under a `tf.distribute` strategy keeps it: its `predict`
    splits every batch across the replicas, and its variables are mirrored.
    The copy, made outside the strategy's scope, holds the same weights.
    """
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def main_guard(main):
    """Runs a recipe's `main()` as a script: a bad argument prints its message, without a trace."""
    try:
        main()
    except (ConfigError, RunError) as error:  # a bad argument: its message says what to do
        sys.exit(f"error: {error}")
