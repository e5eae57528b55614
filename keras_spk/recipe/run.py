"""The run folder: one directory per training run, resumable.

Everything a recipe run produces goes into its run folder:

```
<run>/
  run.json              how the run was started: data locations, backend, command
  config.yaml           the resolved config
  speakers.json         the training speaker map (label index <-> speaker id)
  state.json            which stages are finished
  checkpoints/<stage>/  epoch-NNN.weights.h5: model and optimizer after each epoch
  logs/                 <stage>.csv and tensorboard/<stage>/
  embedder.keras        the trained embedder (Keras model file)
  embeddings/           train.npz, trials.npz (`keras_spk.scoring.save_embeddings`)
  results/              the back-end table (table.txt, results.json/.csv, det.png)
  export/1/             SavedModel for TF Serving (`<model>/<version>/` layout)
```

A run is resumed (`--resume [DIR]`, or automatically) from its saved
config, data locations and checkpoints; see `open_run`. A folder opened
with `provisional=True` (as the recipes' `start_run` does) holds its config
only once training has written a checkpoint: a run that stopped before
that (a data error, a crash in the first epoch) is started afresh, in place,
by the next command, whatever its arguments.
"""

import argparse
import contextlib
import datetime
import fnmatch
import glob
import json
import os
import socket
import sys

from keras_spk.config import ConfigError
from keras_spk.config import check_config
from keras_spk.config import dump_config
from keras_spk.config import load_config
from keras_spk.config import save_config
from keras_spk.utils.files import atomic_write_json

RUNS_ROOT = "runs"
LATEST = "latest"


def recipe_parser(name, description, epilog=None):
    """The command line every recipe shares.

    `--config FILE`, `--data DIR`, `--eval-data DIR`, `--trials FILE`,
    `--output DIR`, `--resume [DIR]`, `--new-run`,
    `--allow-speaker-overlap`; any other `--section.key=value` argument
    overrides the config. A recipe may add its own arguments.

    Args:
        name: the recipe's name, used for default run folders
            (`runs/<name>-<timestamp>`).
        description: the `--help` text.
        epilog: optional text after the arguments.

    Returns:
        An `argparse.ArgumentParser`; parse with `parse_known_args` so
        config overrides stay in the second list.
    """
    parser = argparse.ArgumentParser(
        prog=f"{name} recipe",
        description=description,
        epilog=epilog or "Any other --section.key=value argument overrides the config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        help="YAML config (default: the recipe's demo config without --data, its full config with --data)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="training corpus folder(s) in the layout of data.layout (voxceleb: "
        "<speaker>/<video>/<utt>; librispeech: <speaker>/<chapter>/<utt>; manifest: a list file), "
        "WAV, FLAC, Ogg or MP3",
    )
    parser.add_argument("--eval-data", help="evaluation audio folder; trial paths are relative to it")
    parser.add_argument(
        "--trials",
        nargs="+",
        metavar="FILE",
        help="trial list(s) (VoxCeleb 'label enrol test' or Kaldi format), each scored in its own "
        "column group; optional when no evaluation protocol needs one",
    )
    parser.add_argument("--output", help=f"run folder (default {RUNS_ROOT}/{name}-<timestamp>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=LATEST,
        metavar="DIR",
        help="continue an interrupted run: DIR, or without DIR the newest unfinished one",
    )
    parser.add_argument(
        "--new-run",
        action="store_true",
        help="start a new run even if an unfinished run of the same config and data exists",
    )
    parser.add_argument(
        "--allow-speaker-overlap",
        action="store_true",
        help="allow speakers present in both the training and the evaluation data",
    )
    return parser


class RunError(ValueError):
    """A run folder cannot be created or resumed; the message says why and what to do."""


class Run:
    """A run folder with its resolved config and stage bookkeeping.

    Created by `open_run`. Attributes:
        name: the recipe's name.
        path: the run folder.
        config: the resolved config (nested dicts).
        data: `{"train": DIR, "eval": DIR, "trials": FILE, "demo": bool}`.
        resumed: whether the run continues an earlier one.
        writer: whether this process writes the run's files: `False` in the
            other processes of a data-parallel run (`join_run`), which
            train alongside rank 0 and leave the folder to it.
        parallel: the `keras_spk.distribute.DataParallel` of a run started
            with `torchrun`, or `None`.
        strategy: the `tf.distribute` strategy the stages train under
            (`train.distribution: mirrored`), or `None`.
    """

    def __init__(self, name, path, config, data, resumed, info, writer=True):
        self.name = name
        self.path = path
        self.config = config
        self.data = data
        self.resumed = resumed
        self.info = info
        self.writer = writer
        self.parallel = None
        self.strategy = None

    def __repr__(self):
        return f"Run({self.path!r}, resumed={self.resumed})"

    def join(self, *parts):
        """A path inside the run folder."""
        return os.path.join(self.path, *parts)

    def makedirs(self, *parts):
        """Creates (if needed) and returns a folder inside the run folder."""
        path = self.join(*parts)
        os.makedirs(path, exist_ok=True)
        return path

    def system(self, name, config):
        """The run of one system (a row of a paper's table) in `<run>/<name>/`.

        It has the layout of a run folder of its own (config, state,
        checkpoints, logs, embeddings, results, export), so each system
        trains, resumes and finishes on its own; the data locations are the
        parent run's. Its `config.yaml` records the system's resolved config.
        """
        path = self.makedirs(name)
        resumed = os.path.exists(os.path.join(path, "state.json"))
        if self.writer:
            save_config(config, os.path.join(path, "config.yaml"))
        run = Run(
            f"{self.name}/{name}", path, config, self.data, resumed=resumed, info=self.info,
            writer=self.writer,
        )
        run.parallel, run.strategy = self.parallel, self.strategy
        return run

    # --- stages ---

    def _state(self):
        return _read_json(self.join("state.json"), default={"stages": {}, "finished": False})

    def stage_done(self, stage):
        """Whether `stage` finished in this run (so a resumed run skips it)."""
        return self._state()["stages"].get(stage) == "done"

    def mark_stage_done(self, stage):
        if not self.writer:
            return
        state = self._state()
        state["stages"][stage] = "done"
        atomic_write_json(self.join("state.json"), state)

    @property
    def finished(self):
        return self._state()["finished"]

    def mark_finished(self):
        if not self.writer:
            return
        state = self._state()
        state["finished"] = True
        atomic_write_json(self.join("state.json"), state)


def _read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _data_args(args):
    """The data locations the user gave: {} for the demo corpus.

    `{"train": [DIR, ...], "eval": DIR, "trials": [FILE, ...]}`; `trials` may
    be empty (whether a protocol needs a trial list is checked with the
    config, by `keras_spk.recipe.load_data`).
    """
    given = {k: getattr(args, k) for k in ("data", "eval_data", "trials")}
    if not any(given.values()):
        return {}
    missing = [f"--{k.replace('_', '-')}" for k in ("data", "eval_data") if not given[k]]
    if missing:
        raise RunError(
            f"--data and --eval-data go together (with --trials where the evaluation needs trial "
            f"lists); missing {', '.join(missing)}. Give them for your own data, or no data "
            "argument for the demo corpus."
        )
    return {
        "train": [os.path.abspath(path) for path in args.data],
        "eval": os.path.abspath(args.eval_data),
        "trials": [os.path.abspath(path) for path in args.trials or []],
    }


def _resolve_config(args, overrides, default_config, demo_config, data_given, constraints=None):
    config_path = args.config or (default_config if data_given else demo_config)
    return load_config(config_path, overrides, defaults=default_config, constraints=constraints), config_path


# Temporary files of interrupted writes: `keras_spk.utils.files.atomic_open`
# (`.<name>.<random>.tmp`) and the checkpoint / embedder writers
# (`.tmp-<pid>-<name>`).
TEMPORARY_PATTERNS = (".*.tmp", ".tmp-*")


def _pid_alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _writer_alive(name):
    """Whether a `.tmp-<pid>-...` file belongs to another live process (still being written)."""
    pid = name[len(".tmp-"):].split("-", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid))


def remove_temporary_files(path):
    """Deletes leftovers of interrupted writes inside the run folder `path`.

    Only regular files whose names match `TEMPORARY_PATTERNS` are removed
    (symbolic links are neither followed nor removed), and a `.tmp-<pid>-`
    file of a process that is still running is left to it.

    Returns:
        The removed paths, sorted.
    """
    removed = []
    for folder, subfolders, files in os.walk(path):
        for name in files:
            file_path = os.path.join(folder, name)
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in TEMPORARY_PATTERNS):
                continue
            if os.path.islink(file_path) or not os.path.isfile(file_path):
                continue
            if name.startswith(".tmp-") and _writer_alive(name):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(file_path)
                removed.append(file_path)
    if removed:
        print(f"Removed {len(removed)} temporary file(s) of interrupted writes in {path}.")
    return sorted(removed)


# Keys a resumed run may change: they only steer the steps after training
# (embeddings, back-end table, duration table, export) or the console output.
CHANGEABLE_ON_RESUME = ("evaluation.", "export.", "train.verbose")
# ... except those the saved embeddings were made with.
FIXED_AFTER_EMBEDDINGS = ("evaluation.train_utterances_per_speaker",)


def _changeable(key, path):
    if not any(key == prefix or key.startswith(prefix) for prefix in CHANGEABLE_ON_RESUME):
        return False
    if key in FIXED_AFTER_EMBEDDINGS:
        state = _read_json(os.path.join(path, "state.json"), {"stages": {}})
        return state.get("stages", {}).get("embeddings") != "done"
    return True


def has_trained(path):
    """Whether the run folder `path` holds training progress: a checkpoint, or a finished run."""
    from keras_spk.recipe.training import list_checkpoints

    stages = glob.glob(os.path.join(path, "checkpoints", "*"))
    stages += glob.glob(os.path.join(path, "*", "checkpoints", "*"))  # the systems of a run
    if any(list_checkpoints(stage) for stage in stages):
        return True
    return bool(_read_json(os.path.join(path, "state.json"), {}).get("finished"))


def _holds(path, info):
    """Whether a run folder keeps its config and data (so another command may not replace them)."""
    return not info.get("provisional") or has_trained(path)


def _in_use(info):
    """The pid of another live process that opened this (provisional) folder on this machine, or None."""
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and pid != os.getpid() and _pid_alive(pid):
        return pid
    return None


def _diff(a, b, prefix=""):
    """Dotted keys whose values differ between two nested configs."""
    keys = []
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys.extend(_diff(x, y, f"{prefix}{key}."))
        elif x != y:
            keys.append(f"{prefix}{key}")
    return keys


def _unfinished_runs(root, name, trained_only=False):
    """Unfinished run folders of recipe `name` under `root`, newest first.

    With `trained_only`, only those that hold training progress (a provisional
    folder that stopped before its first checkpoint is left out).
    """
    found = []
    for path in glob.glob(os.path.join(root, f"{name}-*")):
        info = _read_json(os.path.join(path, "run.json"))
        state = _read_json(os.path.join(path, "state.json"), {"finished": False})
        if info is not None and info.get("name") == name and not state.get("finished"):
            if not trained_only or _holds(path, info):
                found.append(path)
    return sorted(found, reverse=True)


def open_run(
    name, argv, default_config, demo_config, parser=None, constraints=None, provisional=False
):
    """Parses a recipe's command line and creates or resumes its run folder.

    The config is `--config` (or `demo_config` without `--data`,
    `default_config` with it) merged onto `default_config`, then the
    `--section.key=value` overrides; unknown keys are errors, and so are
    values that break `constraints` (checked before any folder is made).

    Which folder:
    - `--resume DIR`: that run (`--resume` alone: the newest unfinished
      run under `runs/` that has trained). Its saved config (with the
      command's overrides) and data are used; a config, override or data
      argument that disagrees with them is an error.
    - `--output DIR`: a new run there; if DIR holds an unfinished run of
      the same config and data, it is resumed.
    - neither: the newest unfinished run under `runs/` with the same config
      and data is resumed (an interrupted command is simply run again);
      otherwise a new `runs/<name>-<timestamp>/`. `--new-run` always starts
      a new folder.

    "The same config" leaves out the keys of `CHANGEABLE_ON_RESUME`
    (`evaluation.*`, `export.*`, `train.verbose`: they do not change
    training): a resumed run takes their new values and records them, so a
    back-end list can be corrected without training again
    (`evaluation.train_utterances_per_speaker` only until the embeddings
    are made).

    A provisional folder that has not trained yet (no checkpoint; see
    `has_trained`) holds nothing: `--resume DIR` or `--output DIR` start it
    afresh in place with the new command's config and data (unless another
    live process opened it), and the same command reuses it. Leftover
    temporary files of interrupted writes are removed from a folder that
    is opened again (`remove_temporary_files`).

    Args:
        name: the recipe's name.
        argv: command-line arguments (without the program name).
        default_config: the recipe's full config; also the schema of valid keys.
        demo_config: the config used without `--data`.
        parser: optional parser from `recipe_parser` with extra arguments.
        constraints: optional `{dotted key: keras_spk.config.Constraint}`
            checked on the resolved config.
        provisional: whether the folder holds its config only once training
            has written a checkpoint (recipes: `True`, through `start_run`).

    Returns:
        `(run, args)`: the `Run` and the parsed `argparse.Namespace`.

    Raises:
        RunError, ConfigError: with the reason and the fix.
    """
    parser = parser or recipe_parser(name, f"Train and evaluate the {name} recipe.")
    args, overrides = parser.parse_known_args(argv)
    data = _data_args(args)
    command = [os.path.basename(sys.argv[0] or name)] + list(argv)
    settings = {
        "default_config": default_config,
        "demo_config": demo_config,
        "constraints": constraints,
        "provisional": provisional,
        "command": command,
    }

    if args.resume is not None:
        if args.new_run:
            raise RunError("--resume and --new-run contradict each other; give one.")
        path = _resume_path(args.resume, name)
        return _resume(name, path, None, None, data, args, overrides, settings), args

    config, config_path = _resolve_config(
        args, overrides, default_config, demo_config, bool(data), constraints
    )
    if args.output:
        path = args.output
        if os.path.exists(os.path.join(path, "run.json")) and not args.new_run:
            return _resume(name, path, config, config_path, data, args, overrides, settings), args
        if os.path.isdir(path) and os.listdir(path):
            raise RunError(
                f"--output {path} exists and is not an empty run folder; choose another folder "
                "(or remove it)."
            )
    else:
        if not args.new_run:
            for candidate in _unfinished_runs(RUNS_ROOT, name):
                info = _read_json(os.path.join(candidate, "run.json"))
                try:
                    saved = load_config(os.path.join(candidate, "config.yaml"), defaults=default_config)
                except (ConfigError, OSError):
                    continue  # a run of another version of the recipe: never resumed silently
                changed = _diff(saved, config)
                if info.get("data") != data:
                    continue
                if _holds(candidate, info):
                    if any(not _changeable(key, candidate) for key in changed):
                        continue
                    print(
                        f"Resuming the interrupted run {candidate} (same training config and data; "
                        "--new-run starts afresh)."
                    )
                    return _continue(name, candidate, info, saved, config, changed), args
                if not changed and _in_use(info) is None:
                    print(f"Using {candidate} again: it stopped before training (same config and data).")
                    return _create(name, candidate, config, config_path, data, settings), args
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = os.path.join(RUNS_ROOT, f"{name}-{stamp}")
        suffix = 1
        while os.path.exists(path):
            suffix += 1
            path = os.path.join(RUNS_ROOT, f"{name}-{stamp}-{suffix}")
    return _create(name, path, config, config_path, data, settings), args


def _create(name, path, config, config_path, data, settings):
    """Writes a run's config and info into `path` (new, or a folder that never trained)."""
    os.makedirs(path, exist_ok=True)
    remove_temporary_files(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(path, "state.json"))  # stages of an attempt that trained nothing
    info = {
        "name": name,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": settings["command"],
        "config_file": os.path.abspath(config_path),
        "data": data,
        "backend": _backend(),
        "provisional": bool(settings["provisional"]),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    save_config(config, os.path.join(path, "config.yaml"))
    atomic_write_json(os.path.join(path, "run.json"), info)
    return Run(name, path, config, data, resumed=False, info=info)


def _backend():
    import keras

    return keras.backend.backend()


def _resume_path(resume, name):
    if resume != LATEST:
        return resume
    runs = _unfinished_runs(RUNS_ROOT, name, trained_only=True)
    if not runs:
        raise RunError(f"--resume: no unfinished {name} run under {RUNS_ROOT}/; give --resume DIR.")
    return runs[0]


def _resume(name, path, config, config_path, data, args, overrides, settings):
    """Opens the existing run folder `path`.

    `config` is the command's resolved config (`--output DIR`), or `None`
    for `--resume DIR`: the run's saved config with the command's overrides
    (or `--config` with them).
    """
    info = _read_json(os.path.join(path, "run.json"))
    saved_path = os.path.join(path, "config.yaml")
    if info is None or not os.path.exists(saved_path):
        raise RunError(f"{path} is not a run folder (no run.json/config.yaml); check the path.")
    if info.get("name") != name:
        raise RunError(f"{path} is a {info.get('name')!r} run, not a {name!r} run.")
    default_config, constraints = settings["default_config"], settings["constraints"]
    saved = load_config(saved_path, defaults=default_config)
    explicit = config is None
    if explicit:
        if args.config:
            config, config_path = _resolve_config(
                args, overrides, default_config, settings["demo_config"], True, constraints
            )
        else:
            config = load_config(saved_path, overrides, defaults=default_config, constraints=constraints)
            config_path = info.get("config_file") or saved_path
    if not _holds(path, info):
        # Nothing trained: the folder is started afresh with this command's arguments.
        pid = _in_use(info)
        if pid is not None:
            raise RunError(
                f"{path} is being started by another process (pid {pid}) that has not trained yet; "
                "choose another --output, or stop that process first."
            )
        new_data = (data or info.get("data") or {}) if explicit else data
        changed = _diff(saved, config) + (["the data"] if new_data != info.get("data") else [])
        what = f" with the new {', '.join(changed)}" if changed else ""
        print(f"{path} stopped before training; starting it afresh{what}.")
        return _create(name, path, config, config_path, new_data, settings)
    changed = _diff(saved, config)
    fixed = [key for key in changed if not _changeable(key, path)]
    if fixed:
        raise RunError(
            f"{path} was started with another config; these keys differ: {', '.join(fixed)}. "
            "A resumed run keeps its training config (only evaluation.*, export.* and "
            "train.verbose may change): drop those arguments, or start a new run "
            "(--new-run or another --output)."
        )
    if data and data != info["data"]:
        raise RunError(
            f"{path} was started with other data ({info['data'] or 'the demo corpus'}); "
            "resume it without --data/--eval-data/--trials, or start a new run."
        )
    state = _read_json(os.path.join(path, "state.json"), {"finished": False})
    if state.get("finished"):
        raise RunError(f"{path} is a finished run; start a new one with another --output (or --new-run).")
    print(f"Resuming {path}.")
    return _continue(name, path, info, saved, config, changed)


def _continue(name, path, info, saved, config, changed):
    """Resumes a run whose config differs from `saved` at most in `CHANGEABLE_ON_RESUME` keys."""
    if changed:
        # Steps after training only: the run continues with the new values, recorded.
        print(f"New values of {', '.join(changed)} (they do not change training).")
        save_config(config, os.path.join(path, "config.yaml"))
        saved = config
    return _open_existing(name, path, info, saved)


def _open_existing(name, path, info, config):
    if info.get("backend") != _backend():
        print(
            f"Note: {path} was started under the {info.get('backend')} backend and continues under "
            f"{_backend()}; checkpoints are backend-neutral."
        )
    remove_temporary_files(path)
    return Run(name, path, config, info["data"], resumed=True, info=info)


def join_run(name, path, argv, default_config, parser=None, constraints=None):
    """Opens the run folder rank 0 of a data-parallel run opened, without writing to it.

    The other processes of a `torchrun` run train alongside rank 0: they
    read its resolved config and data locations and leave every file of the
    folder (config, state, checkpoints, logs, results) to it.

    Returns:
        `(run, args)`, `run.writer` false.
    """
    parser = parser or recipe_parser(name, f"Train and evaluate the {name} recipe.")
    args, _ = parser.parse_known_args(argv)
    info = _read_json(os.path.join(path, "run.json"))
    if info is None:
        raise RunError(f"{path} holds no run.json: rank 0 did not open the run folder.")
    config = load_config(os.path.join(path, "config.yaml"), defaults=default_config, constraints=constraints)
    return Run(name, path, config, info["data"], resumed=True, info=info, writer=False), args


def describe(run):
    """Multi-line summary of a run for the console."""
    return f"run folder: {run.path}{' (resumed)' if run.resumed else ''}\n" + dump_config(run.config)
