"""Ordered training stages from a recipe's config, all trained by `fit_stage`.

A config lists its stages in order, each with its epochs and what it
changes from the run's shared sections:

```yaml
optimizer: {name: adam, learning_rate: 3.0e-4}
schedule: {name: constant}
data: {sampler: random, batch_size: 32, ...}
stages:
  pretrain:                 # softmax only, random crops
    epochs: 8
  metric:                   # all losses, P x K batches, its own optimizer
    epochs: 20
    data: {sampler: pk}
    optimizer: {learning_rate: 1.0e-4}
  separator:
    epochs: 10
    frozen: [metric]        # the earlier stage's model, frozen inside this one's graph
```

A stage's `optimizer`, `schedule` and `data` sections are merged onto the
shared ones (a different optimizer or schedule `name` replaces the shared
section instead); any other key of a stage is the recipe's own (e.g.
RawNet's pre-training `loss`). The recipe builds each stage's trainer
(`build_stage(name, context)`) just before it trains, so a trainer may be
built around an earlier stage's embedder (the same layers, trained on) or
take an earlier stage's weights (`transfer_weights`); the runner compiles
it with the stage's optimizer (`keras_spk.recipe.optimizers`) and trains it
with `fit_stage` on the stage's sampler: checkpoints every epoch, exact
resumption, logs.
"""

import copy
import dataclasses

from keras_spk.config import ConfigError
from keras_spk.config import _merge
from keras_spk.recipe.run import RunError

# The keys of a stage the runner reads; any other key is the recipe's.
STAGE_KEYS = ("epochs", "optimizer", "schedule", "data", "frozen")


@dataclasses.dataclass
class StageContext:
    """What a recipe's `build_stage` and `embedder` read.

    Attributes:
        config: the system's resolved config.
        data: the run's `RecipeData`.
        stages: ordered dict stage name -> its resolved settings (`stage_plan`).
        models: stage name -> the trainer of every stage built so far in
            this process (trained, or restored from its checkpoint).
        shared: free-form dict for what a recipe's stages share (e.g. the
            embedder that successive trainers are built around).
        run: the (system's) `Run` the stages train in, or None.
    """

    config: dict
    data: object
    stages: dict
    models: dict = dataclasses.field(default_factory=dict)
    shared: dict = dataclasses.field(default_factory=dict)
    run: object = None

    @property
    def num_speakers(self):
        """The classes of the training labels: the speakers, times the speeds that
        `data.augment.speed` makes new speakers (`label + k * speakers`)."""
        from keras_spk.data.augment import speed_classes

        return len(self.data.speaker_map) * speed_classes(self.config["data"].get("augment"))

    def trained(self, stage):
        """Whether `stage` ran for at least one epoch (so its weights are worth taking)."""
        return self.stages[stage]["epochs"] > 0


def _merged_section(shared, override, where):
    """`override` (a stage's section) on `shared`: merged, or replacing it for another `name`."""
    if not override:
        return copy.deepcopy(shared)
    if shared is None or ("name" in override and override["name"] != shared.get("name")):
        return copy.deepcopy(override)
    merged = copy.deepcopy(shared)
    try:
        _merge(merged, override, shared, f"{where}.", "config")
    except ConfigError as error:
        raise ConfigError(str(error).replace("config: ", "", 1)) from None
    return merged


def stage_plan(config):
    """The config's stages in order, each with its sections merged: `{name: settings}`.

    `settings` holds `epochs`, `optimizer`, `schedule` (`None` when the
    config has none), `data` (the run's `data` section with the stage's
    changes), `frozen` (names of earlier stages) and the recipe's own keys.

    Raises:
        ConfigError: a stage without `epochs`, an unknown key in a stage's
            `data` section, a `frozen` name that is not an earlier stage.
    """
    import collections

    stages = config.get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        raise ConfigError("config key 'stages' must map each training stage's name to its settings.")
    plan = collections.OrderedDict()
    for name, stage in stages.items():
        where = f"stages.{name}"
        if not isinstance(stage, dict) or "epochs" not in stage:
            raise ConfigError(f"config key '{where}' must be a mapping with the stage's epochs.")
        settings = {key: copy.deepcopy(value) for key, value in stage.items() if key not in STAGE_KEYS}
        settings["epochs"] = stage["epochs"]
        settings["optimizer"] = _merged_section(config.get("optimizer"), stage.get("optimizer"), f"{where}.optimizer")
        settings["schedule"] = _merged_section(config.get("schedule"), stage.get("schedule"), f"{where}.schedule")
        settings["data"] = _merged_section(config["data"], stage.get("data"), f"{where}.data")
        frozen = stage.get("frozen") or []
        unknown = [f for f in frozen if f not in plan]
        if unknown:
            raise ConfigError(
                f"config key '{where}.frozen' names {', '.join(map(repr, unknown))}, not an earlier "
                f"stage; earlier stages: {', '.join(plan) or '(none)'}."
            )
        settings["frozen"] = list(frozen)
        plan[name] = settings
    return plan


def pk_batches_problem(config, stage, reason):
    """Why `stage` does not train on P x K batches with K >= 2, or None when it does.

    For losses that compare utterances of one speaker within a batch
    (GE2E, triplet, N-pair, angular): the stage's resolved `data` section
    (the shared one with the stage's changes) must use the P x K sampler
    with at least two utterances per speaker.

    Args:
        config: the (system's) config.
        stage: the stage's name.
        reason: what needs the batches, e.g. "loss 'ge2e'": the message's start.

    Returns:
        None, or the message naming the keys to set.
    """
    data = stage_plan(config)[stage]["data"]
    if data["sampler"] == "pk" and data["pk"]["num_utterances"] >= 2:
        return None
    return (
        f"{reason} compares utterances of the same speaker within a batch: stage {stage!r} needs "
        f"stages.{stage}.data.sampler: pk (or data.sampler: pk) with data.pk.num_utterances >= 2."
    )


def freeze(model):
    """Makes `model` (an earlier stage's) non-trainable, BN statistics included; returns it."""
    model.trainable = False
    return model


def run_stages(run, build_stage, data, callbacks=()):
    """Builds, compiles and trains every stage of `run.config` in order; returns the `StageContext`.

    For each stage: the stages it names as `frozen` are frozen, the
    recipe's `build_stage(name, context)` returns its trainer (a
    `keras.Model` that takes the sampler's inputs and adds its own losses),
    the trainer is compiled with the stage's optimizer and schedule
    (`loss=None`), and `fit_stage` trains it on the stage's sampler
    (`RecipeData.training_dataset`), resuming where it stopped.

    Args:
        run: the (system's) `Run`.
        build_stage: callable `(name, context) -> keras.Model`.
        data: the run's `RecipeData`.
        callbacks: extra Keras callbacks for every stage.
    """
    from keras_spk.recipe import training

    import contextlib

    config = run.config
    context = StageContext(config, data, stage_plan(config), run=run)
    train = config["train"]
    strategy = getattr(run, "strategy", None)
    # Under a tf.distribute strategy, every trainer is built and compiled in its scope.
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        _train_stages(run, build_stage, data, callbacks, context, train)
    return context


def _train_stages(run, build_stage, data, callbacks, context, train):
    from keras_spk.recipe import training

    config = run.config
    for name, stage in context.stages.items():
        for frozen in stage["frozen"]:
            freeze(context.models[frozen])
        trainer = build_stage(name, context)
        if trainer is None:
            raise RunError(f"The recipe built no trainer for stage {name!r}.")
        context.models[name] = trainer
        training.fit_stage(
            run,
            name,
            trainer,
            lambda start_epoch, stage=stage: data.training_dataset(
                stage["data"], config["seed"], start_epoch=start_epoch
            ),
            stage["epochs"],
            steps_per_epoch=None,
            callbacks=list(callbacks),
            keep_checkpoints=train["keep_checkpoints"],
            verbose=train["verbose"],
            optimizer=(stage["optimizer"], stage["schedule"]),
        )


def transfer_weights(source, target, layers=None):
    """Copies the weights of `source`'s layers into `target`'s layers of the same names.

    For stages whose trainers are separate models (e.g. a pre-trained CNN
    and the network built on it): every layer of `source` with weights
    (or the named `layers`) that `target` also has, by name, with weights of
    the same shapes. Sub-models are searched too.

    Returns:
        The names of the copied layers, in order.

    Raises:
        ValueError: a named layer missing from either model, or weights of
            other shapes.
    """

    def by_name(model):
        found = {}
        for layer in model.layers:
            if isinstance(layer, keras.Model):  # a sub-model: its layers
                found.update(by_name(layer))
            elif layer.weights:
                found.setdefault(layer.name, layer)
        return found

    import keras

    source_layers, target_layers = by_name(source), by_name(target)
    names = list(layers) if layers is not None else list(source_layers)
    copied = []
    for name in names:
        if name not in source_layers or name not in target_layers:
            if layers is None:
                continue
            where = source.name if name not in source_layers else target.name
            raise ValueError(f"transfer_weights: no layer {name!r} in model {where!r}.")
        values = source_layers[name].get_weights()
        shapes = [w.shape for w in target_layers[name].get_weights()]
        if [v.shape for v in values] != shapes:
            raise ValueError(
                f"transfer_weights: layer {name!r} has weights of shapes {[v.shape for v in values]} "
                f"in {source.name!r} but {shapes} in {target.name!r}."
            )
        target_layers[name].set_weights(values)
        copied.append(name)
    return copied
