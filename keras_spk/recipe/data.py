"""The data of a recipe run: training utterances, held-out utterances, speaker map, trial lists."""

import collections
import dataclasses
import os

from keras_spk.recipe.run import RunError
from keras_spk.utils.files import atomic_write_json

HOLDOUT_FORMAT = "keras_spk.holdout/1"


@dataclasses.dataclass
class RecipeData:
    """What a run trains and evaluates on.

    Attributes:
        train: `keras_spk.data.UtteranceList` of the training utterances
            (without the held-out ones).
        speaker_map: `keras_spk.data.SpeakerMap` (label index <-> speaker).
        trial_lists: ordered dict name -> `keras_spk.data.Trials` (paths
            resolved under `eval_dir`); empty when the evaluation needs none.
        train_dirs: the training folders (or manifest files) read.
        eval_dir: the evaluation audio folder (`None` when there is none).
        trials_paths: the trial list files, in `trial_lists` order.
        holdout: `UtteranceList` of the training speakers' held-out
            utterances (`data.holdout_per_speaker`), or `None`.
        layout: `data.layout`, how `eval_dir` is read by `eval_utterances`.
        allow_speaker_overlap: whether speakers may be in both the
            training data and the evaluation folder.
        replica: `None`, or `(rank, processes)` in data-parallel training
            (`torchrun`): each process reads its share of every batch.
        demo_root: the demo corpus folder when the run trains on it (its
            generated noise and impulse responses serve `data.augment`
            sections without a `root`), else `None`.
    """

    train: object
    speaker_map: object
    trial_lists: dict
    train_dirs: list
    eval_dir: str
    trials_paths: list
    holdout: object = None
    layout: str = "voxceleb"
    allow_speaker_overlap: bool = False
    replica: tuple = None
    demo_root: str = None

    def eval_utterances(self):
        """The utterances of the evaluation folder (read once), for protocols without trial lists.

        Raises:
            RunError: no evaluation folder, an unreadable one, or a speaker
                who is also a training speaker (unless allowed).
        """
        from keras_spk import data

        if getattr(self, "_eval_utterances", None) is not None:
            return self._eval_utterances
        if not self.eval_dir:
            raise RunError("This evaluation reads the evaluation folder: give --eval-data.")
        try:
            utterances = data.read_dataset(self.layout, self.eval_dir)
        except (ValueError, OSError) as error:
            raise RunError(
                f"Cannot read the evaluation folder {self.eval_dir} (data.layout={self.layout!r}): {error}"
            ) from None
        if self.train is not None:
            try:
                data.check_speaker_overlap(
                    self.train.speaker_ids, utterances.speaker_ids, allow_overlap=self.allow_speaker_overlap
                )
            except ValueError as error:
                raise RunError(f"{self.eval_dir}: {error}") from None
        self._eval_utterances = utterances
        return utterances

    @property
    def trials(self):
        """The first trial list (`None` when there is none)."""
        return next(iter(self.trial_lists.values()), None)

    def labels(self):
        """Label index of every training utterance."""
        return self.train.labels(self.speaker_map)

    def steps_per_epoch(self, batch_size):
        """Full batches of `batch_size` random crops per epoch; an error when there is not even one."""
        steps = len(self.train) // batch_size
        if steps == 0:
            raise RunError(
                f"{len(self.train)} training utterances do not fill one batch of "
                f"data.batch_size={batch_size}; lower it."
            )
        return steps

    def training_dataset(self, data_config, seed, start_epoch=0):
        """The training batches of the sampler `data_config` names, from `start_epoch` on.

        `data.sampler` (`random` crops, `pk` batches of P speakers x K
        utterances, `mixture`s of several speakers; `keras_spk.data.SAMPLERS`)
        with its settings, `crop_samples`, `batch_size` and `sample_rate`;
        an endless stream in which epoch `e` depends only on `(seed, e)`, so
        a resumed stage sees the batches of an uninterrupted one.

        Returns:
            `(dataset, steps_per_epoch)`; the dataset's elements are
            `((inputs..., labels),)` for a trainer that takes its labels as
            inputs and adds its own losses.
        """
        from keras_spk.data.samplers import sampler_dataset
        from keras_spk.data.samplers import sampler_from_config

        name, settings = sampler_from_config(data_config)
        if name == "random":
            self.steps_per_epoch(data_config["batch_size"])  # the error names data.batch_size
        augment = self.augmentation(data_config)
        try:
            return sampler_dataset(
                name,
                self.train.paths,
                self.labels(),
                crop_samples=data_config["crop_samples"],
                batch_size=data_config["batch_size"],
                sample_rate=data_config["sample_rate"],
                seed=seed,
                start_epoch=start_epoch,
                augment=augment,
                replica=self.replica,
                **settings,
            )
        except (ValueError, OSError) as error:
            if name == "wsj0_2mix":  # pre-made mixtures: the training utterances are not read
                raise RunError(f"data.sampler='wsj0_2mix': {error}") from None
            raise RunError(
                f"data.sampler={name!r} cannot draw batches from {len(self.train)} training "
                f"utterances of {len(self.speaker_map)} speakers: {error}"
            ) from None


    def augmentation(self, data_config):
        """The `keras_spk.data.Augmentation` of a (stage's) `data` section, or `None`.

        Raises:
            RunError: a bad `data.augment` value, a missing noise or
                impulse-response folder (the message names the key).
        """
        from keras_spk.data.augment import augmentation_from_config

        section = data_config.get("augment")
        if section is None:
            return None
        try:
            return augmentation_from_config(
                section,
                sample_rate=data_config["sample_rate"],
                crop_samples=data_config["crop_samples"],
                num_speakers=len(self.speaker_map),
                demo_root=self.demo_root,
            )
        except (ValueError, OSError) as error:
            raise RunError(str(error)) from None


def _check_exists(flag, path, kind):
    exists = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not exists:
        raise RunError(f"{flag} {path}: no such {kind}. Check the path.")


def read_training_data(layout, locations):
    """The utterances of one or several training folders (or manifests), as one list.

    Args:
        layout: `data.layout` (`keras_spk.data.READERS`: voxceleb,
            librispeech, manifest).
        locations: folders (manifest files for `manifest`).

    Returns:
        A `keras_spk.data.UtteranceList`; its `root` is the folders' common
        parent, so relative names stay distinct.

    Raises:
        RunError: a location given twice, or a file listed by two locations.
    """
    from keras_spk import data

    if len(set(locations)) != len(locations):
        raise RunError(f"--data names a location twice: {locations}. Give each once.")
    lists = [data.read_dataset(layout, location) for location in locations]
    if len(lists) == 1:
        return lists[0]
    paths = [p for utterances in lists for p in utterances.paths]
    if len(set(paths)) != len(paths):
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        raise RunError(
            f"{len(repeated)} file(s) are listed by more than one --data location (e.g. "
            f"{repeated[0]}); give folders that do not overlap."
        )
    roots = [utterances.root or os.path.dirname(location) for utterances, location in zip(lists, locations)]
    return data.UtteranceList(
        paths=paths,
        speakers=[s for utterances in lists for s in utterances.speakers],
        root=os.path.commonpath([os.path.abspath(r) for r in roots]),
    )


def split_holdout(train, per_speaker, seed):
    """Holds `per_speaker` utterances of every training speaker out of training (seeded).

    Every speaker keeps at least one training utterance: one with fewer
    than `per_speaker + 1` is an error naming it.

    Returns:
        `(train, holdout)` `UtteranceList`s (`holdout` is `None` for 0).
    """
    import numpy as np

    from keras_spk.recipe.evaluation import select_per_speaker

    if not per_speaker:
        return train, None
    counts = collections.Counter(train.speakers)
    short = sorted(s for s, n in counts.items() if n <= per_speaker)
    if short:
        raise RunError(
            f"data.holdout_per_speaker={per_speaker} leaves no training utterance to "
            f"{len(short)} speaker(s) (e.g. {short[0]} has {counts[short[0]]}); lower it, or "
            "remove speakers with so few utterances."
        )
    held = select_per_speaker(train, per_speaker, seed=seed)
    kept = np.setdiff1d(np.arange(len(train)), held)
    return train.select(kept), train.select(held)


def _save_or_check_holdout(run, holdout, per_speaker, seed):
    """Writes `<run>/holdout.json`; a resumed run checks it still holds the same utterances."""
    import json

    path = run.join("holdout.json")
    names = [] if holdout is None else holdout.relative_paths()
    content = {"format": HOLDOUT_FORMAT, "per_speaker": per_speaker, "seed": seed, "utterances": names}
    if run.resumed and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("utterances") != names:
            raise RunError(
                f"The held-out utterances of this run ({path}) differ from those the data gives "
                "now: the training data changed since the run started. Restore it, or start a "
                "new run."
            )
        return
    atomic_write_json(path, content)


def _trial_list_names(paths):
    """A short name per trial list: its file name without extension, unique."""
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RunError(
            f"Two trial lists have the same file name ({repeated[0]}); the results name each "
            "list by its file name: rename one."
        )
    return names


def load_data(run, allow_speaker_overlap=False, needs_trials=True):
    """Reads the run's training data, held-out utterances and trial lists, and checks them.

    Without user data (`run.data == {}`) the demo corpus is used (generated
    on first use into `config["data"]["demo_dir"]`, or the default demo
    folder). The training folders (`--data`, several allowed) are read in
    the layout `data.layout`; `data.holdout_per_speaker` utterances of each
    training speaker are held out of training (seeded, listed in
    `<run>/holdout.json`). A speaker present in both the training data and
    the trials is an error unless `allow_speaker_overlap` (or the config's
    `data.allow_speaker_overlap`) is set. The speaker map is written to
    `<run>/speakers.json`; a resumed run checks that its training data
    still gives the saved map.

    Args:
        run: the `keras_spk.recipe.Run`.
        allow_speaker_overlap: bool, from `--allow-speaker-overlap`.
        needs_trials: whether an evaluation protocol of the run reads trial
            lists (then `--trials` is required with user data).

    Returns:
        A `RecipeData`.
    """
    from keras_spk import data

    config = run.config
    data_config = config["data"]
    if run.data:
        train_dirs = run.data["train"]
        train_dirs = [train_dirs] if isinstance(train_dirs, str) else list(train_dirs)
        eval_dir = run.data["eval"]
        trials_paths = run.data.get("trials") or []
        trials_paths = [trials_paths] if isinstance(trials_paths, str) else list(trials_paths)
        kind = "file" if data_config.get("layout") == "manifest" else "folder"
        for path in train_dirs:
            _check_exists("--data", path, kind)
        _check_exists("--eval-data", eval_dir, "folder")
        for path in trials_paths:
            _check_exists("--trials", path, "file")
        if needs_trials and not trials_paths:
            raise RunError(
                "The evaluation protocols of this config score trial lists "
                f"(evaluation.protocols={config['evaluation'].get('protocols')}): give --trials FILE "
                "[FILE ...]."
            )
    else:
        root = data.ensure_demo_corpus(data_config["demo_dir"] or None, seed=config["seed"])
        train_dirs = [os.path.join(root, "train")]
        eval_dir = os.path.join(root, "test")
        trials_paths = [os.path.join(root, "trials.txt")] if needs_trials else []
    layout = data_config.get("layout", "voxceleb")
    train = read_training_data(layout, train_dirs)
    trial_lists = collections.OrderedDict(
        (name, data.read_trials(path, eval_dir))
        for name, path in zip(_trial_list_names(trials_paths), trials_paths)
    )
    eval_speakers = set()
    for trials in trial_lists.values():
        eval_speakers |= set(trials.speakers().values())
    data.check_speaker_overlap(
        train.speaker_ids,
        eval_speakers,
        allow_overlap=allow_speaker_overlap or data_config["allow_speaker_overlap"],
    )
    per_speaker = data_config.get("holdout_per_speaker") or 0
    train, holdout = split_holdout(train, per_speaker, config["seed"])
    _save_or_check_holdout(run, holdout, per_speaker, config["seed"])
    speaker_map = train.speaker_map()
    saved = run.join("speakers.json")
    if run.resumed and os.path.exists(saved):
        if data.SpeakerMap.load(saved) != speaker_map:
            raise RunError(
                f"The training speakers in {', '.join(train_dirs)} no longer match {saved}: the "
                "data changed since the run started. Restore the data, or start a new run."
            )
    else:
        speaker_map.save(saved)
    where = train_dirs[0] if len(train_dirs) == 1 else f"{len(train_dirs)} folders"
    print(f"train: {len(train)} utterances of {len(speaker_map)} speakers from {where}")
    if holdout is not None:
        print(f"held out: {len(holdout)} utterances ({per_speaker} per training speaker)")
    for name, trials in trial_lists.items():
        print(f"eval:  {name}: {len(trials)} trials over {len(trials.utterances)} utterances from {eval_dir}")
    return RecipeData(
        train, speaker_map, trial_lists, train_dirs, eval_dir, trials_paths, holdout, layout=layout,
        allow_speaker_overlap=bool(allow_speaker_overlap or data_config["allow_speaker_overlap"]),
        demo_root=None if run.data else root,
    )
