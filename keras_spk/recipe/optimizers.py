"""Optimizers and learning-rate schedules chosen by name from a recipe's config.

A stage's `optimizer` section names the optimizer and its settings, its
`schedule` section the learning-rate schedule:

```yaml
optimizer: {name: adam, learning_rate: 1.0e-3, amsgrad: true}   # RawNet (AMSGrad)
schedule: {name: inverse_time, decay: 1.0e-4}                     # Keras 2's `decay`
```

```yaml
optimizer: {name: sgd, learning_rate: 0.1, momentum: 0.9}         # FPM
schedule: {name: step, drop_at: [0.5, 0.75], drop_factor: 0.1, warmup_epochs: 1}
```

`build_optimizer(optimizer, schedule, steps_per_epoch, epochs)` returns the
Keras optimizer; `fit_stage(..., optimizer=...)` compiles a trainer with it.
Adding an optimizer or a schedule is adding an entry to `OPTIMIZERS` or
`SCHEDULES`. Unknown names and settings are errors listing the valid ones.
"""

from keras_spk.utils.registry import did_you_mean


def _adam(learning_rate, amsgrad=False, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    import keras

    return keras.optimizers.Adam(
        learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad
    )


def _adamw(learning_rate, weight_decay=1e-4, amsgrad=False, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    import keras

    return keras.optimizers.AdamW(
        learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
        amsgrad=amsgrad,
    )


def _sgd(learning_rate, momentum=0.0, nesterov=False):
    import keras

    return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)


# name -> factory(learning_rate, **settings); the factory's keyword arguments are its settings.
OPTIMIZERS = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def _constant(rate, steps_per_epoch, epochs):
    return rate


def _inverse_time(rate, steps_per_epoch, epochs, decay=0.0):
    """`rate / (1 + decay * step)`: Keras 2's optimizer `decay` (RawNet's AMSGrad)."""
    import keras

    if decay <= 0:
        return rate
    return keras.optimizers.schedules.InverseTimeDecay(rate, decay_steps=1, decay_rate=decay)


def _step(rate, steps_per_epoch, epochs, drop_at=(), drop_factor=0.1, warmup_epochs=0):
    """`rate`, times `drop_factor` at each `drop_at` fraction of the epochs.

    During the first `warmup_epochs` epochs a tenth of it (the constant
    warm-up of He et al.'s deepest CIFAR ResNets), which keeps a narrow
    network from diverging in its first steps.
    """
    import keras

    total = epochs * steps_per_epoch
    drops = sorted({int(round(f * epochs)) * steps_per_epoch for f in drop_at})
    points = [(b, rate * drop_factor ** (i + 1)) for i, b in enumerate(drops) if 0 < b < total]
    warmup = warmup_epochs * steps_per_epoch
    if 0 < warmup < total:
        points = [(warmup, rate)] + [(b, v) for b, v in points if b > warmup]
        first = rate * 0.1
    else:
        first = rate
    if not points:
        return rate
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [b for b, _ in points], [first] + [v for _, v in points]
    )


def _cosine(rate, steps_per_epoch, epochs, warmup_epochs=0, final_fraction=0.0):
    """Cosine decay to `final_fraction * rate` over the stage, after a linear warm-up."""
    import keras

    warmup = warmup_epochs * steps_per_epoch
    decay_steps = max(1, epochs * steps_per_epoch - warmup)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps, alpha=final_fraction, warmup_target=rate, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(rate, decay_steps, alpha=final_fraction)


# name -> factory(rate, steps_per_epoch, epochs, **settings) -> a float or a Keras schedule.
SCHEDULES = {"constant": _constant, "inverse_time": _inverse_time, "step": _step, "cosine": _cosine}


def _settings_of(factory, skip):
    import inspect

    return [p for p in inspect.signature(factory).parameters if p not in skip]


def _split(section, registry, kind, source):
    """`(name, factory, settings)` of a config section `{name: ..., **settings}`."""
    if not isinstance(section, dict) or "name" not in section:
        raise ValueError(
            f"{source} must be a mapping with a `name` ({', '.join(sorted(registry))}) and its "
            f"settings. Received: {section!r}"
        )
    settings = dict(section)
    name = settings.pop("name")
    if name not in registry:
        raise ValueError(
            f"{source}.name: unknown {kind} {name!r}.{did_you_mean(name, registry)} "
            f"Valid names: {', '.join(sorted(registry))}."
        )
    return name, registry[name], settings


def check_settings(section, registry, kind, source, skip):
    """Checks that every setting of a section is one its factory takes; returns the settings."""
    name, factory, settings = _split(section, registry, kind, source)
    valid = _settings_of(factory, skip)
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ValueError(
            f"{source}: {kind} {name!r} has no setting(s) {', '.join(unknown)}. "
            f"Its settings: {', '.join(valid) or '(none)'}."
        )
    return name, factory, settings


def build_optimizer(optimizer, schedule=None, steps_per_epoch=1, epochs=1):
    """A Keras optimizer from the config sections `optimizer` and `schedule`.

    Args:
        optimizer: `{name, learning_rate, **settings}`, `name` in `OPTIMIZERS`.
        schedule: `{name, **settings}`, `name` in `SCHEDULES`, or `None`
            (a constant learning rate).
        steps_per_epoch: int, the stage's batches per epoch (schedules
            count steps).
        epochs: int, the stage's epochs.

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: an unknown name or setting, naming the section and the
            valid ones.
    """
    _, make_optimizer, settings = check_settings(
        optimizer, OPTIMIZERS, "optimizer", "optimizer", skip=()
    )
    if "learning_rate" not in settings:
        raise ValueError(f"optimizer needs a learning_rate. Received: {optimizer!r}")
    rate = settings.pop("learning_rate")
    if schedule is not None:
        _, make_schedule, schedule_settings = check_settings(
            schedule, SCHEDULES, "schedule", "schedule", skip=("rate", "steps_per_epoch", "epochs")
        )
        rate = make_schedule(rate, steps_per_epoch, epochs, **schedule_settings)
    return make_optimizer(rate, **settings)
