"""The `separation` evaluation protocol: a recipe's separator scored as in MIRNet's Table 2.

A recipe that trains a separator puts it in its training context,
`context.shared["separator"]`: a `keras.Model` whose inputs are, by name,
`mixture` (`[batch, samples]` float32) and optionally `enrolment`
(`[batch, K, enrolment_samples]`, one clean utterance of each source's
speaker, in source order), and whose output is the estimated sources
`[batch, K, samples]` (K = 2, in any order); `context.shared
["separator_label"]` optionally names its row. The protocol scores it on
two-speaker mixtures with `keras_spk.evaluation.separation` (SDRi,
SI-SDRi, PESQi, improvements over the mixture averaged over both sources),
beside two reference rows on the same mixtures (the mixture itself, and
the ideal ratio mask as the oracle bound), and writes
`results/separation_table.txt` and `results/separation_results.{json,csv}`.
A `systems:` run also gets every system's rows in one table,
`<run>/results/separation_table.txt`, with the reference rows once.

Settings (`evaluation.*`; a recipe whose config lacks them gets the
defaults, `SEPARATION_DEFAULTS`):

- `separation_source`: `eval_speakers` (mixtures of the evaluation
  folder's speakers, `--eval-data`, read with the run's `data.layout`) or
  `wsj0_2mix` (the subset `separation_subset` of WSJ0-2mix at
  `data.wsj0_2mix.root`);
- `separation_subset`: `tr`, `cv` or `tt` (WSJ0-2mix only);
- `separation_mixtures`: how many mixtures (`null`: every WSJ0-2mix
  mixture of the subset);
- `separation_seconds`: the length of an `eval_speakers` mixture;
- `separation_enrolment_seconds`: the length of each enrolment utterance
  (`null`: whole);
- `separation_pesq`: whether to compute PESQi (needs the optional `pesq`
  package; without it the rows say so).
"""

import os

from keras_spk.recipe.protocols import register_protocol
from keras_spk.recipe.run import RunError

SEPARATION_SOURCES = ("eval_speakers", "wsj0_2mix")
# The protocol's `evaluation` keys and their values for a recipe whose config lacks them.
SEPARATION_DEFAULTS = {
    "separation_source": "eval_speakers",
    "separation_subset": "tt",
    "separation_mixtures": 100,
    "separation_seconds": 1.0,
    "separation_enrolment_seconds": 3.0,
    "separation_pesq": True,
}
SEPARATOR_INPUTS = ("mixture", "enrolment")


def separation_settings(evaluation):
    """The run's `evaluation.separation_*` settings, the defaults for the keys it lacks.

    Returns:
        dict with `source`, `subset`, `num_mixtures`, `seconds`,
        `enrolment_seconds` and `pesq`.

    Raises:
        RunError: an unknown `separation_source`.
    """
    settings = evaluation.settings
    values = {key: settings.get(key, default) for key, default in SEPARATION_DEFAULTS.items()}
    source = values["separation_source"]
    if source not in SEPARATION_SOURCES:
        raise RunError(
            f"Unknown evaluation.separation_source {source!r}; valid: "
            f"{', '.join(SEPARATION_SOURCES)}."
        )
    return {
        "source": source,
        "subset": values["separation_subset"],
        "num_mixtures": values["separation_mixtures"],
        "seconds": values["separation_seconds"],
        "enrolment_seconds": values["separation_enrolment_seconds"],
        "pesq": bool(values["separation_pesq"]),
    }


def _wsj0_2mix_root(config):
    section = config.get("data", {}).get("wsj0_2mix")
    root = section.get("root") if isinstance(section, dict) else None
    if not root:
        state = "null" if isinstance(section, dict) and "root" in section else "missing"
        raise RunError(
            "evaluation.separation_source is wsj0_2mix but the config key data.wsj0_2mix.root is "
            f"{state}: set it to "
            "the WSJ0-2mix folder holding tr/, cv/ and tt/ (e.g. "
            "--data.wsj0_2mix.root=/data/wsj0-mix/2speakers/wav16k/min), or use "
            "evaluation.separation_source: eval_speakers."
        )
    return root


def separation_mixtures(evaluation, settings, enrolment=True):
    """The evaluation mixtures `settings` describe, for `evaluation`'s run (a `MixtureSet`)."""
    from keras_spk.evaluation import separation

    config = evaluation.config
    rate = config["data"]["sample_rate"]
    seconds = settings["enrolment_seconds"]
    enrolment_samples = None if seconds is None else max(1, int(round(seconds * rate)))
    if settings["source"] == "wsj0_2mix":
        return separation.wsj0_2mix_mixtures(
            _wsj0_2mix_root(config), settings["subset"], num_mixtures=settings["num_mixtures"],
            sample_rate=rate, enrolment_samples=enrolment_samples, enrolment=enrolment,
        )
    eval_dir = evaluation.data.eval_dir
    if not eval_dir:
        raise RunError(
            "evaluation.separation_source is eval_speakers, which mixes the evaluation folder's "
            "speakers, but the run has no evaluation folder: give --eval-data, or set "
            "evaluation.separation_source: wsj0_2mix (with data.wsj0_2mix.root)."
        )
    num_mixtures = settings["num_mixtures"]
    if num_mixtures is None:
        raise RunError(
            "evaluation.separation_mixtures is null (every mixture), which only WSJ0-2mix has; "
            "eval_speakers mixtures are drawn: give a number, e.g. "
            f"--evaluation.separation_mixtures={SEPARATION_DEFAULTS['separation_mixtures']}."
        )
    try:
        return separation.speaker_mixtures(
            evaluation.data.eval_utterances(),
            num_mixtures,
            int(round(settings["seconds"] * rate)),
            sample_rate=rate,
            seed=config["seed"],
            enrolment_samples=enrolment_samples,
            enrolment=enrolment,
        )
    except ValueError as error:
        raise RunError(f"Separation mixtures of {eval_dir}: {error}") from error


def _input_names(model):
    return [getattr(tensor, "name", None) for tensor in (getattr(model, "inputs", None) or [])]


def separator_function(model):
    """`(mixture, enrolment) -> estimates` (numpy) calling a separator model without training.

    The model is called with `training=False`: under TensorFlow through one
    `tf.function` for inputs of any length, under PyTorch without autograd.
    `enrolment` is fed only when the model has an input named `enrolment`.

    Args:
        model: a `keras.Model` whose inputs are named `mixture` and
            optionally `enrolment` (see the module doc).

    Returns:
        `(function, conditioned)`: the callable, and whether the model
        reads an enrolment.

    Raises:
        RunError: a model without a `mixture` input, or with other inputs.
    """
    import keras

    names = _input_names(model)
    unknown = [name for name in names if name not in SEPARATOR_INPUTS]
    if "mixture" not in names or unknown:
        raise RunError(
            f"The separator {getattr(model, 'name', model)!r} has inputs {names}; the separation "
            "protocol feeds inputs named 'mixture' [batch, samples] and optionally 'enrolment' "
            "[batch, K, samples]: name the model's keras.Input layers so (keras.Input(..., "
            "name='mixture'))."
        )
    conditioned = "enrolment" in names
    as_dict = conditioned or isinstance(getattr(model, "_inputs_struct", None), dict)

    def inputs(mixture, enrolment):
        if not as_dict:
            return mixture
        feed = {"mixture": mixture}
        if conditioned:
            feed["enrolment"] = enrolment
        return feed

    def check(enrolment):
        if conditioned and enrolment is None:
            raise ValueError(
                "The separator reads an enrolment input, but the mixtures have no enrolment."
            )

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec([1, None], tf.float32)]
        if conditioned:
            signature.append(tf.TensorSpec([1, None, None], tf.float32))

            @tf.autograph.experimental.do_not_convert
            def call(mixture, enrolment):
                return model(inputs(mixture, enrolment), training=False)

        else:

            @tf.autograph.experimental.do_not_convert
            def call(mixture):
                return model(inputs(mixture, None), training=False)

        function = tf.function(call, input_signature=signature)

        def separate(mixture, enrolment):
            check(enrolment)
            arguments = [tf.constant(mixture, tf.float32)]
            if conditioned:
                arguments.append(tf.constant(enrolment, tf.float32))
            return function(*arguments).numpy()

        return separate, conditioned

    def separate(mixture, enrolment):
        check(enrolment)
        feed = inputs(mixture, enrolment if conditioned else None)
        if backend == "torch":
            import torch

            with torch.no_grad():
                return keras.ops.convert_to_numpy(model(feed, training=False))
        return keras.ops.convert_to_numpy(model(feed, training=False))

    return separate, conditioned


def _metadata(run, settings, mixtures=None):
    import keras

    metadata = {"keras_backend": keras.backend.backend(), "run": os.path.abspath(run.path)}
    if settings is not None:
        metadata["settings"] = settings
    if mixtures is not None:
        metadata["mixtures"] = mixtures.settings
    return metadata


@register_protocol(
    "separation", needs_trials=False, merge=lambda run, systems: merge_separation(run, systems)
)
def separation_protocol(evaluation):
    """The recipe's separator on two-speaker mixtures: SDRi, SI-SDRi, PESQi (MIRNet, Table 2)."""
    from keras_spk.evaluation import separation

    context = evaluation.context
    model = None if context is None else context.shared.get("separator")
    if model is None:
        raise RunError(
            "The recipe has no separator for the separation protocol (its training puts none in "
            "context.shared['separator']); remove separation from evaluation.protocols."
        )
    settings = separation_settings(evaluation)
    separate, conditioned = separator_function(model)
    mixtures = separation_mixtures(evaluation, settings, enrolment=conditioned)
    label = context.shared.get("separator_label") or getattr(model, "name", None) or "separator"
    rate = evaluation.config["data"]["sample_rate"]
    print(f"[evaluation] separation: {label} on {mixtures.description}...")
    try:
        rows = separation.evaluate_separation(
            separate, mixtures, pesq=settings["pesq"], sample_rate=rate, label=str(label),
            progress=True,
        )
    except ValueError as error:
        raise RunError(
            f"The separation protocol failed: {error}"
            + (" (or set evaluation.separation_pesq: false)" if "PESQ" in str(error) else "")
        ) from error
    separation.write_separation_results(
        rows, evaluation.run.makedirs("results"), metadata=_metadata(evaluation.run, settings, mixtures)
    )
    print("\nSpeaker-conditioned separation (improvements over the mixture, both sources):\n"
          + separation.format_separation_table(rows))
    return rows


def merge_separation(run, systems):
    """Every system's separation rows in one table, `<run>/results/separation_table.txt`.

    The reference rows (mixture, ideal ratio mask) are shown once per
    distinct mixture set, after the systems' own rows.
    """
    from keras_spk.evaluation import separation

    rows, references, seen = [], [], set()
    for name, _, system_rows in systems:
        for row in system_rows:
            if row.get("reference"):
                key = (row["system"], row.get("mixtures"), row["n_mixtures"])
                if key not in seen:
                    seen.add(key)
                    references.append({"recipe_system": "(reference)", **row})
            else:
                rows.append({"recipe_system": name, **row})
    if not rows and not references:
        return
    rows += references
    separation.write_separation_results(rows, run.makedirs("results"), metadata=_metadata(run, None))
    print(f"\nSpeaker-conditioned separation, all systems ({len(systems)}):\n"
          + separation.format_separation_table(rows))
