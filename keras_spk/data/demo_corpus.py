"""A small synthetic multi-speaker corpus for demos, tutorials and tests.

The corpus mimics the VoxCeleb layout so that every reader and recipe in
`keras_spk` can run on it without downloading anything:

```
OUT/
  corpus.json                       generator version, seed and sizes
  trials.txt                        "1 id10041/Xk3.../00001.wav id10041/..."
  train/<speaker>/<video>/00001.wav
  test/<speaker>/<video>/00001.wav  (speakers disjoint from train)
```

All audio is 16 kHz mono 16-bit PCM, generated deterministically from a seed.

The voices, sessions and utterances come from the formant synthesiser of
`keras_spk.data.speech_synthesis`; this module plans the corpus (speakers,
sessions, durations, file names), writes it and its trial list, and keeps
it cached (`ensure_demo_corpus`).
"""

import json
import os
import pathlib
import shutil

import numpy as np

from keras_spk.data import speech_synthesis
from keras_spk.data.speech_synthesis import SAMPLE_RATE
from keras_spk.data.speech_synthesis import random_stream
from keras_spk.data.wav import write_wav

__all__ = [
    "GENERATOR_VERSION",
    "SAMPLE_RATE",
    "default_demo_dir",
    "ensure_demo_corpus",
    "make_demo_corpus",
]

# Bump whenever the generated audio (keras_spk.data.speech_synthesis) or the
# layout changes, so cached corpora made by an older generator are rebuilt by
# `ensure_demo_corpus`.
GENERATOR_VERSION = 2
_GENERATOR_NAME = "keras_spk.data.demo_corpus"
_INFO_FILE = "corpus.json"
_TRIALS_FILE = "trials.txt"

# Random stream tags of the corpus plan, beside the synthesiser's
# (speech_synthesis.STREAM_SPEAKER, ...), from the same seed.
_STREAM_LAYOUT = 4
_STREAM_TRIALS = 5

_DEFAULTS = {
    "num_train_speakers": 40,
    "num_train_utterances": 12,
    "num_test_speakers": 20,
    "num_test_utterances": 8,
    "videos_per_speaker": 3,
    "min_duration": 2.0,
    "max_duration": 5.0,
}

# ---------------------------------------------------------------------------
# Corpus layout
# ---------------------------------------------------------------------------

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def _video_id(rng):
    """An 11-character id in the style of a YouTube video id."""
    chars = rng.integers(len(_ID_CHARS), size=11)
    # Start with a letter or digit so ids never look like command-line flags.
    chars[0] %= 62
    return "".join(_ID_CHARS[c] for c in chars)


def _plan(seed, config):
    """Lists every utterance to generate.

    Returns:
        A list of dicts with keys `split`, `speaker_index`, `speaker_id`,
        `video`, `session`, `utterance` (index within the speaker), `path`
        (relative to the split directory) and `duration`.
    """
    items = []
    rng = random_stream(seed, _STREAM_LAYOUT)
    splits = [
        ("train", config["num_train_speakers"], config["num_train_utterances"]),
        ("test", config["num_test_speakers"], config["num_test_utterances"]),
    ]
    speaker_index = 0
    for split, num_speakers, num_utts in splits:
        for _ in range(num_speakers):
            speaker_id = f"id{10001 + speaker_index:05d}"
            num_videos = min(config["videos_per_speaker"], num_utts)
            videos = []
            while len(videos) < num_videos:
                v = _video_id(rng)
                if v not in videos:
                    videos.append(v)
            # Spread the utterances over the sessions, every session used.
            sessions = rng.permutation(np.arange(num_utts) % num_videos)
            counters = [0] * num_videos
            for utt in range(num_utts):
                session = int(sessions[utt])
                counters[session] += 1
                items.append({
                    "split": split,
                    "speaker_index": speaker_index,
                    "speaker_id": speaker_id,
                    "video": videos[session],
                    "session": session,
                    "utterance": utt,
                    "path": f"{speaker_id}/{videos[session]}/{counters[session]:05d}.wav",
                    "duration": float(rng.uniform(config["min_duration"], config["max_duration"])),
                })
            speaker_index += 1
    return items


def _make_trials(seed, test_items):
    """Target trials for all same-speaker pairs plus as many non-targets.

    Returns:
        A list of `(label, enroll_path, test_path)` tuples in random order.
    """
    rng = random_stream(seed, _STREAM_TRIALS)
    paths = sorted(it["path"] for it in test_items)
    speakers = [p.split("/")[0] for p in paths]
    n = len(paths)
    targets = [(i, j) for i in range(n) for j in range(i + 1, n)
               if speakers[i] == speakers[j]]
    nontarget_pool = n * (n - 1) // 2 - len(targets)
    wanted = min(len(targets), nontarget_pool)
    nontargets = set()
    if wanted == nontarget_pool:
        nontargets = {(i, j) for i in range(n) for j in range(i + 1, n)
                      if speakers[i] != speakers[j]}
    while len(nontargets) < wanted:
        i, j = (int(v) for v in rng.integers(n, size=2))
        if speakers[i] != speakers[j]:
            nontargets.add((min(i, j), max(i, j)))
    pairs = [(1, i, j) for i, j in targets] + [(0, i, j) for i, j in sorted(nontargets)]
    swap = rng.random(len(pairs)) < 0.5
    trials = []
    for (label, i, j), s in zip(pairs, swap):
        if s:
            i, j = j, i
        trials.append((label, paths[i], paths[j]))
    order = rng.permutation(len(trials))
    return [trials[k] for k in order]


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def default_demo_dir():
    """Default location of the demo corpus.

    Returns:
        The value of the environment variable `KERAS_SPK_DEMO_DIR` if it is
        set and not empty, otherwise `~/.cache/keras_spk/demo` (expanded).

    Example:

    >>> default_demo_dir()  # doctest: +SKIP
    '/home/me/.cache/keras_spk/demo'
    """
    env = os.environ.get("KERAS_SPK_DEMO_DIR")
    if env:
        return str(pathlib.Path(env).expanduser())
    return str(pathlib.Path("~/.cache/keras_spk/demo").expanduser())


def _validate_config(seed, config):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
    for name in ("num_train_speakers", "num_train_utterances", "num_test_speakers",
                 "num_test_utterances", "videos_per_speaker"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if config["num_test_speakers"] < 2:
        raise ValueError(
            "`num_test_speakers` must be at least 2 to form different-speaker "
            f"trials. Received: num_test_speakers={config['num_test_speakers']}"
        )
    if config["num_test_utterances"] < 2:
        raise ValueError(
            "`num_test_utterances` must be at least 2 to form same-speaker "
            f"trials. Received: num_test_utterances={config['num_test_utterances']}"
        )
    lo, hi = config["min_duration"], config["max_duration"]
    # Below 1 s the fixed leading/trailing silences leave almost no speech.
    if not (1.0 <= lo <= hi <= 60.0):
        raise ValueError(
            "Durations must satisfy 1 <= min_duration <= max_duration <= 60 "
            f"(seconds). Received: min_duration={lo}, max_duration={hi}"
        )


def _read_info(out_dir):
    """Returns the parsed `corpus.json` of a demo corpus, or None."""
    path = pathlib.Path(out_dir) / _INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("generator") != _GENERATOR_NAME:
        return None
    return info


def _is_complete(out_dir, info):
    out_dir = pathlib.Path(out_dir)
    return (
        info is not None
        and (out_dir / _TRIALS_FILE).is_file()
        and (out_dir / "train").is_dir()
        and (out_dir / "test").is_dir()
    )


def _is_empty_dir(path):
    return path.is_dir() and not any(path.iterdir())


def _check_replaceable(out_dir):
    """Raises unless `out_dir` is a demo corpus or an empty directory."""
    if not out_dir.is_dir():
        raise FileExistsError(
            f"Cannot write the demo corpus to {out_dir}: it exists and is not a "
            "directory."
        )
    if _read_info(out_dir) is None and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} exists and is not a keras_spk demo corpus (no valid "
            f"{_INFO_FILE}). Refusing to overwrite it; choose another "
            "directory or remove it yourself."
        )


def make_demo_corpus(
    out_dir,
    seed=0,
    *,
    num_train_speakers=40,
    num_train_utterances=12,
    num_test_speakers=20,
    num_test_utterances=8,
    videos_per_speaker=3,
    min_duration=2.0,
    max_duration=5.0,
    force=False,
):
    """Generates the synthetic demo corpus in VoxCeleb layout.

    The corpus is built in a temporary sibling directory `OUT.tmp-<pid>` and
    renamed to `out_dir` only once complete, so a partially written corpus is
    never visible under `out_dir`.

    Args:
        out_dir: output directory. It must not exist or be empty, unless
            `force=True` and it is an existing demo corpus.
        seed: non-negative integer. The same seed and sizes give
            byte-identical files.
        num_train_speakers: number of training speakers.
        num_train_utterances: utterances per training speaker.
        num_test_speakers: number of test speakers (disjoint from training),
            at least 2.
        num_test_utterances: utterances per test speaker, at least 2.
        videos_per_speaker: sessions per speaker; each has its own channel
            and noise. Capped at the number of utterances per speaker.
        min_duration: shortest utterance in seconds.
        max_duration: longest utterance in seconds. Durations are uniform in
            `[min_duration, max_duration]`.
        force: replace an existing demo corpus at `out_dir`. A directory that
            is not a demo corpus is never deleted.

    Returns:
        The path of the corpus directory, as a string.

    Example:

    >>> path = make_demo_corpus("/tmp/demo", seed=0, num_train_speakers=4,
    ...                         num_test_speakers=2)  # doctest: +SKIP
    >>> open(f"{path}/trials.txt").readline()  # doctest: +SKIP
    '1 id10006/Qx0F.../00002.wav id10006/.../00001.wav\\n'
    """
    config = {
        "num_train_speakers": num_train_speakers,
        "num_train_utterances": num_train_utterances,
        "num_test_speakers": num_test_speakers,
        "num_test_utterances": num_test_utterances,
        "videos_per_speaker": videos_per_speaker,
        "min_duration": float(min_duration),
        "max_duration": float(max_duration),
    }
    _validate_config(seed, config)
    seed = int(seed)
    out_dir = pathlib.Path(out_dir).expanduser().absolute()
    if out_dir.is_symlink() or (out_dir.exists() and not _is_empty_dir(out_dir)):
        if not force:
            raise FileExistsError(
                f"{out_dir} already exists. Pass force=True to replace a demo "
                "corpus, or use `ensure_demo_corpus` to reuse it."
            )
        _check_replaceable(out_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        # Left over by a crashed run of a process with the same id.
        shutil.rmtree(tmp)
    try:
        _build(tmp, seed, config)
        _install(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out_dir)


def _build(root, seed, config):
    """Writes the whole corpus under `root`."""
    items = _plan(seed, config)
    voices, conditions = {}, {}
    for it in items:
        k = it["speaker_index"]
        if k not in voices:
            voices[k] = speech_synthesis.speaker_voice(seed, k)
        key = (k, it["session"])
        if key not in conditions:
            conditions[key] = speech_synthesis.session_conditions(seed, k, it["session"], voices[k])
        path = root / it["split"] / it["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        x = speech_synthesis.render_utterance(
            seed, k, it["utterance"], voices[k], conditions[key], it["duration"]
        )
        write_wav(path, x, SAMPLE_RATE)

    trials = _make_trials(seed, [it for it in items if it["split"] == "test"])
    with open(root / _TRIALS_FILE, "w", newline="\n") as f:
        for label, a, b in trials:
            f.write(f"{label} {a} {b}\n")

    info = {
        "generator": _GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        **config,
        "num_utterances": len(items),
        "num_trials": len(trials),
        "num_target_trials": sum(t[0] for t in trials),
    }
    # Written last: its presence marks a complete corpus.
    (root / _INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _install(tmp, out_dir):
    """Atomically moves the finished corpus from `tmp` to `out_dir`."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    # Replacing an existing corpus: move it aside first, then swap in the new
    # one, so `out_dir` always holds a complete corpus or nothing.
    old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _matches(info, seed, config):
    if info is None or info.get("version") != GENERATOR_VERSION or info.get("seed") != seed:
        return False
    return all(info.get(k) == v for k, v in config.items())


def ensure_demo_corpus(out_dir=None, seed=0, **kwargs):
    """Returns the demo corpus at `out_dir`, generating it if needed.

    An existing corpus is reused when it was made by the same generator
    version with the same seed and sizes; an existing demo corpus with other
    settings is regenerated in place. Concurrent calls are safe: each builds
    in its own temporary directory and the first to finish wins.

    Args:
        out_dir: corpus directory; defaults to `default_demo_dir()`.
        seed: non-negative integer seed.
        **kwargs: sizes forwarded to `make_demo_corpus` (e.g.
            `num_train_speakers=6`).

    Returns:
        The path of the corpus directory, as a string.

    Raises:
        FileExistsError: if `out_dir` exists but is not a demo corpus; it is
            left untouched.

    Example:

    >>> root = ensure_demo_corpus()  # doctest: +SKIP
    >>> sorted(os.listdir(root))  # doctest: +SKIP
    ['corpus.json', 'test', 'train', 'trials.txt']
    """
    unknown = set(kwargs) - set(_DEFAULTS)
    if unknown:
        raise ValueError(
            f"Unknown corpus option(s) {sorted(unknown)}; expected some of "
            f"{sorted(_DEFAULTS)}. Received: kwargs={kwargs}"
        )
    config = {**_DEFAULTS, **kwargs}
    config["min_duration"] = float(config["min_duration"])
    config["max_duration"] = float(config["max_duration"])
    _validate_config(seed, config)
    out_dir = pathlib.Path(out_dir if out_dir is not None else default_demo_dir())
    out_dir = out_dir.expanduser().absolute()
    if out_dir.exists():
        info = _read_info(out_dir)
        if _matches(info, seed, config) and _is_complete(out_dir, info):
            return str(out_dir)
        _check_replaceable(out_dir)
    try:
        return make_demo_corpus(out_dir, seed, force=True, **config)
    except OSError:
        # Another process may have installed the same corpus meanwhile.
        info = _read_info(out_dir)
        if _matches(info, seed, config) and _is_complete(out_dir, info):
            return str(out_dir)
        raise
