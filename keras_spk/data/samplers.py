"""Training samplers chosen by name, for recipe configs.

A recipe's `data` section names its sampler and holds one sub-section of
settings per sampler:

```yaml
data:
  sampler: pk            # random | pk | mixture | wsj0_2mix
  pk: {num_speakers: 64, num_utterances: 2, steps_per_epoch: null}
  mixture: {num_speakers: 2, sir_db: [0.0, 0.0], mixtures_per_epoch: null,
            return_sources: false, return_enrolments: false}
  wsj0_2mix: {root: null, subset: tr, mixtures_per_epoch: null,
              return_enrolments: false}
```

`random` and `pk` crop the recipe's training utterances; `mixture` mixes
them on the fly, K distinct speakers per mixture; `wsj0_2mix` ignores them
and reads the pre-made mixtures of WSJ0-2mix (`data.wsj0_2mix.root`, the
folder holding `tr/`, `cv/` and `tt/`), with their sources, to train a
separator; its labels index the corpus' own speakers, not the recipe's
speaker map. With `return_enrolments`, the two mixture samplers also give
each source an enrolment crop (another utterance of its speaker), for a
speaker-conditioned separator.

`sampler_from_config(config["data"])` reads it, `sampler_dataset(name, ...,
**settings)` builds the endless, resumable training stream (every epoch a
function of `(seed, epoch)`) and its steps per epoch, and `CONSTRAINTS`
declares the valid values for `keras_spk.config.load_config`.
"""

import inspect
import math

from keras_spk.config import Constraint
from keras_spk.config import choice
from keras_spk.config import int_range
from keras_spk.config import non_empty_string
from keras_spk.data.readers import WSJ0_2MIX_SUBSETS
from keras_spk.data.sampler import MAX_MIXTURES_PER_EPOCH
from keras_spk.data.sampler import MAX_STEPS_PER_EPOCH
from keras_spk.utils._checks import is_real
from keras_spk.utils.registry import did_you_mean


def _random(paths, labels, crop_samples, batch_size, sample_rate, seed, start_epoch, augment, replica):
    """Uniform random crops, every file once per epoch (`training_dataset`)."""
    from keras_spk.data.pipeline import _check_lists
    from keras_spk.data.pipeline import training_dataset

    dataset = training_dataset(
        paths, labels, crop_samples, batch_size, sample_rate=sample_rate, seed=seed,
        start_epoch=start_epoch, augment=augment, replica=replica,
    )
    return dataset, len(_check_lists(paths, labels)[0]) // batch_size


def _pk(
    paths, labels, crop_samples, batch_size, sample_rate, seed, start_epoch, augment, replica, *,
    num_speakers, num_utterances, steps_per_epoch=None,
):
    """P speakers x K utterances per batch (`pk_dataset`); the batch is P*K, not `batch_size`."""
    from keras_spk.data.pipeline import AUTOTUNE
    from keras_spk.data.pipeline import _pk_dataset

    return _pk_dataset(
        paths, labels, crop_samples, num_speakers, num_utterances, sample_rate, seed, AUTOTUNE,
        start_epoch, steps_per_epoch, augment, replica,
    )


def _mixture(
    paths, labels, crop_samples, batch_size, sample_rate, seed, start_epoch, augment, replica, *,
    num_speakers=2, sir_db=(0.0, 0.0), mixtures_per_epoch=None, return_sources=False,
    return_enrolments=False,
):
    """Mixtures of K distinct speakers, `crop_samples` long (`mixture_dataset`)."""
    from keras_spk.data.mixture import _mixture_dataset
    from keras_spk.data.pipeline import AUTOTUNE

    return _mixture_dataset(
        paths, labels, crop_samples, batch_size, num_speakers, mixtures_per_epoch, sir_db,
        sample_rate, seed, start_epoch, return_sources, AUTOTUNE, return_enrolments, augment,
        replica,
    )


def _wsj0_2mix(
    paths, labels, crop_samples, batch_size, sample_rate, seed, start_epoch, augment, replica, *,
    root=None, subset="tr", mixtures_per_epoch=None, return_enrolments=False,
):
    """WSJ0-2mix mixtures with their sources (`wsj0_2mix_dataset`); `paths` and `labels` unused."""
    from keras_spk.data.mixture import _wsj0_2mix_dataset
    from keras_spk.data.pipeline import AUTOTUNE

    if augment is not None:
        raise ValueError(
            "The wsj0_2mix sampler reads pre-made mixtures and does not augment them: set "
            "data.augment.probability to 0 (and data.augment.speed.speeds to [1.0]) for this stage."
        )
    return _wsj0_2mix_dataset(
        root, subset, crop_samples, batch_size, mixtures_per_epoch, sample_rate, seed,
        start_epoch, return_enrolments, AUTOTUNE, replica,
    )


# name -> function(paths, labels, crop_samples, batch_size, sample_rate, seed,
# start_epoch, augment, replica, **settings) -> (dataset of unwrapped elements, steps per epoch).
SAMPLERS = {"random": _random, "pk": _pk, "mixture": _mixture, "wsj0_2mix": _wsj0_2mix}


def sampler_settings(name):
    """`{setting: default}` of sampler `name`; a required setting's default is
    `inspect.Parameter.empty`."""
    return {
        p.name: p.default
        for p in inspect.signature(_lookup(name)).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _lookup(name):
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(
            f"Unknown sampler {name!r}.{did_you_mean(name, SAMPLERS)} "
            f"Valid samplers: {', '.join(sorted(SAMPLERS))}. Received: name={name!r}"
        )
    return SAMPLERS[name]


def _check_settings(name, settings):
    valid = sampler_settings(name)
    for key in settings:
        if key not in valid:
            words = ", ".join(sorted(valid)) or "none"
            raise ValueError(
                f"Unknown setting {key!r} for sampler {name!r}.{did_you_mean(key, valid)} "
                f"Valid settings of {name!r}: {words}. Received: {key}={settings[key]!r}"
            )
    missing = [k for k, v in valid.items() if v is inspect.Parameter.empty and k not in settings]
    if missing:
        raise ValueError(
            f"Sampler {name!r} needs the setting(s) {', '.join(missing)} "
            f"(in a config: data.{name}.{missing[0]}). Received: settings={settings!r}"
        )


def sampler_dataset(
    name,
    paths,
    labels,
    *,
    crop_samples,
    batch_size,
    sample_rate=16000,
    seed=0,
    start_epoch=0,
    augment=None,
    replica=None,
    **settings,
):
    """A training stream from the sampler `name`, for a trainer that takes its labels as inputs.

    Samplers and their settings:
    - `"random"`: uniform random crops, every file once per epoch
      (`training_dataset`); no settings. Elements `((waveforms [B, crop],
      labels [B]),)`, `len(paths) // batch_size` steps per epoch.
    - `"pk"`: P speakers x K utterances (`pk_dataset`): `num_speakers` (P),
      `num_utterances` (K), `steps_per_epoch` (optional; default
      `len(paths) // (P*K)`). The batch is P*K; `batch_size` is unused.
      Elements `((waveforms [P*K, crop], labels [P*K]),)`, rows grouped
      speaker by speaker.
    - `"mixture"`: mixtures of K distinct speakers (`mixture_dataset`,
      segment = `crop_samples`): `num_speakers` (K, default 2), `sir_db`
      (default `[0, 0]`), `mixtures_per_epoch` (default `len(paths)`),
      `return_sources` (default false), `return_enrolments` (default
      false). Elements `((mixture [B, crop], labels [B, K]),)`, with
      sources `((mixture, labels, sources [B, K, crop]),)`, with
      enrolments `((mixture, labels, enrolments [B, K, crop]),)`, with both
      `((mixture, labels, sources, enrolments),)`;
      `mixtures_per_epoch // batch_size` steps per epoch. Enrolment `k` is
      a crop of another utterance of source `k`'s speaker (every speaker
      needs two or more).
    - `"wsj0_2mix"`: WSJ0-2mix mixtures and their sources
      (`wsj0_2mix_dataset`); `paths` and `labels` are unused: `root` (the
      folder holding `tr/`, `cv/`, `tt/`; required), `subset` (default
      `"tr"`), `mixtures_per_epoch` (default: all of the subset),
      `return_enrolments` (default false). Elements `((mixture [B, crop],
      labels [B, 2], sources [B, 2, crop]),)`, with enrolments
      `((mixture, labels, sources, enrolments [B, 2, crop]),)`; the labels
      index the subset's WSJ0 speakers in sorted order, not the recipe's
      speaker map. `mixtures_per_epoch // batch_size` steps per epoch.

    With `start_epoch=e` (an int) the stream is endless and resumable:
    epochs `e, e + 1, ...`, each a function of `(seed, epoch)` only, so
    `model.fit(dataset, initial_epoch=e, steps_per_epoch=steps)` after a
    restart sees the batches of an uninterrupted run. `None` gives one
    epoch per pass.

    Args:
        name: a key of `SAMPLERS`.
        paths: list of audio file paths.
        labels: int speaker index of each path.
        crop_samples: crop (or mixture) length in samples.
        batch_size: int (crops or mixtures per batch).
        sample_rate: files at another rate are resampled to it.
        seed: int.
        start_epoch: int >= 0 or `None`.
        augment: `None`, or a `keras_spk.data.augment.Augmentation` applied
            to the crops (`random`, `pk`) or to the mixtures (`mixture`:
            noise and reverberation only); `wsj0_2mix` takes none.
        replica: `None`, or `(index, count)`: in data-parallel training,
            this worker's share of every batch (rows `index * b ..` with
            `b = batch // count`), read, cropped and augmented exactly as
            in the whole batch; the batch must be a multiple of `count`.
            The steps per epoch are the whole batches'.
        **settings: the sampler's settings (above).

    Returns:
        `(dataset, steps_per_epoch)`.

    Raises:
        ValueError: an unknown sampler or setting (listing the valid ones),
            a missing setting, a bad value.
    """
    sampler = _lookup(name)
    _check_settings(name, settings)
    dataset, steps = sampler(
        paths, labels, crop_samples, batch_size, sample_rate, seed, start_epoch, augment, replica,
        **settings,
    )
    return dataset.map(lambda *element: (element,)), steps


def sampler_from_config(data_section):
    """`(name, settings)` of the sampler a recipe config's `data` section asks for.

    `data.sampler` names it (default `"random"`); its settings are the
    entries of the sub-section of that name (`data.pk`, `data.mixture`,
    `data.wsj0_2mix`;
    missing entries take the sampler's defaults). Pass them on as
    `sampler_dataset(name, ..., **settings)`.

    Raises:
        ValueError: an unknown sampler, or an unknown key in its sub-section.
    """
    name = data_section.get("sampler", "random")
    _lookup(name)
    section = data_section.get(name) or {}
    if not isinstance(section, dict):
        raise ValueError(
            f"data.{name} must be a mapping of the {name!r} sampler's settings. "
            f"Received: data.{name}={section!r}"
        )
    valid = sampler_settings(name)
    for key in section:
        if key not in valid:
            words = ", ".join(sorted(valid)) or "none"
            raise ValueError(
                f"Unknown config key 'data.{name}.{key}'.{did_you_mean(key, valid)} "
                f"Valid keys under 'data.{name}': {words}. Received: data.{name}.{key}={section[key]!r}"
            )
    return name, dict(section)


def _sir_range(value, config):
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return False
    lo, hi = value
    if not all(is_real(v) and math.isfinite(v) for v in (lo, hi)):
        return False
    return True if lo <= hi else f"Its low end {lo} is above its high end {hi}."


# Valid values of the sampler keys of a recipe config (`keras_spk.config.load_config`).
CONSTRAINTS = {
    "data.sampler": choice(lambda: sorted(SAMPLERS)),
    "data.pk.num_speakers": int_range(min=1),
    "data.pk.num_utterances": int_range(min=1),
    "data.pk.steps_per_epoch": int_range(min=1, max=MAX_STEPS_PER_EPOCH, allow_none=True),
    "data.mixture.num_speakers": int_range(min=2),
    "data.mixture.sir_db": Constraint(
        _sir_range, "a list of two numbers [lo, hi] in dB with lo <= hi"
    ),
    "data.mixture.mixtures_per_epoch": int_range(min=1, max=MAX_MIXTURES_PER_EPOCH, allow_none=True),
    "data.mixture.return_sources": Constraint(
        lambda value, config: isinstance(value, bool), "true or false"
    ),
    "data.mixture.return_enrolments": Constraint(
        lambda value, config: isinstance(value, bool), "true or false"
    ),
    "data.wsj0_2mix.root": non_empty_string(allow_none=True),
    "data.wsj0_2mix.subset": choice(WSJ0_2MIX_SUBSETS),
    "data.wsj0_2mix.mixtures_per_epoch": int_range(
        min=1, max=MAX_MIXTURES_PER_EPOCH, allow_none=True
    ),
    "data.wsj0_2mix.return_enrolments": Constraint(
        lambda value, config: isinstance(value, bool), "true or false"
    ),
}
