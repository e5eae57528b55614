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

`ensure_demo_augmentation(OUT)` adds, on demand, a small set of noises and
room impulse responses for on-the-fly augmentation
(`keras_spk.data.augment`), in the layouts of MUSAN and RIRS_NOISES:

```
OUT/augment/
  augment.json                                    generator version
  musan/noise/synthetic/noise-synthetic-0000.wav  coloured, band and hum noises
  musan/music/synthetic/music-synthetic-0000.wav  harmonic melodies and chords
  musan/speech/synthetic/speech-synthetic-0000.wav  speech of other voices (babble)
  rirs/simulated_rirs/{smallroom,mediumroom,largeroom}/Room001/Room001-00001.wav
```

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
    "AUGMENT_VERSION",
    "default_demo_dir",
    "ensure_demo_augmentation",
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
    # The augmentation set may be made before the corpus it sits in.
    if _read_info(out_dir) is None and any(
        p.name != _AUGMENT_DIR or _read_augment_info(p) is None for p in out_dir.iterdir()
    ):
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
    # The augmentation set does not depend on the corpus: keep it.
    if _augment_current(old / _AUGMENT_DIR) and not (out_dir / _AUGMENT_DIR).exists():
        os.rename(old / _AUGMENT_DIR, out_dir / _AUGMENT_DIR)
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


# ---------------------------------------------------------------------------
# Noises and impulse responses for augmentation
# ---------------------------------------------------------------------------

# Bump whenever the generated augmentation set changes, so cached sets are rebuilt.
AUGMENT_VERSION = 1
_AUGMENT_DIR = "augment"
_AUGMENT_INFO = "augment.json"
_AUGMENT_GENERATOR = "keras_spk.data.demo_corpus.augment"
# The set does not depend on the corpus seed; its streams use their own seed.
_AUGMENT_SEED = 7919
_STREAM_NOISE, _STREAM_MUSIC, _STREAM_RIR = 11, 12, 13
# Babble voices are speaker indices no corpus plan reaches, so they are not
# training or test speakers of any demo corpus.
_BABBLE_FIRST_SPEAKER = 1_000_000
_NUM_BABBLE = 10
_ROOMS = {  # name: (RT60 range in s, source distance range in m)
    "smallroom": ((0.15, 0.35), (1.0, 3.0)),
    "mediumroom": ((0.35, 0.6), (2.0, 6.0)),
    "largeroom": ((0.6, 0.9), (3.0, 10.0)),
}
_ROOMS_PER_SIZE = 2
_RIRS_PER_ROOM = 3


def _peak_normalise(x, peak):
    return x * (peak / max(np.max(np.abs(x)), 1e-12))


def _demo_noises(rng):
    """Stationary noises: white, pink, brown, band-passed, mains hum, fan; one shorter than a crop."""
    from scipy import signal

    n = 4 * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    white = rng.normal(0.0, 1.0, n)
    pink = signal.lfilter([0.049922, -0.095993, 0.050612, -0.004408],
                          [1.0, -2.494956, 2.017265, -0.522190], rng.normal(0.0, 1.0, n))
    brown = signal.lfilter([1.0], [1.0, -0.995], rng.normal(0.0, 1.0, n))
    band = signal.sosfilt(signal.butter(4, [300, 3000], "bandpass", fs=SAMPLE_RATE, output="sos"),
                          rng.normal(0.0, 1.0, n))
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    hum = hum + 0.05 * white
    fan = signal.sosfilt(signal.butter(2, 800, fs=SAMPLE_RATE, output="sos"), rng.normal(0.0, 1.0, n))
    fan = fan * (1.0 + 0.3 * np.sin(2 * np.pi * 4.0 * t))
    short = rng.normal(0.0, 1.0, SAMPLE_RATE)  # 1 s: repeated to fill a crop
    return [_peak_normalise(x - np.mean(x), 0.5) for x in (white, pink, brown, band, hum, fan, short)]


def _demo_music(rng, count=4, seconds=6.0):
    """Melodies of harmonic notes over a held chord, on a pentatonic scale."""
    n = int(seconds * SAMPLE_RATE)
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    clips = []
    for _ in range(count):
        root = rng.uniform(110.0, 330.0)
        x = np.zeros(n)
        start = 0
        while start < n:
            length = min(int(rng.uniform(0.15, 0.5) * SAMPLE_RATE), n - start)
            f = root * 2.0 ** (rng.choice(scale) / 12.0)
            tt = np.arange(length) / SAMPLE_RATE
            note = sum(np.sin(2 * np.pi * f * k * tt) * 0.6**k for k in range(1, 6) if f * k < 7000)
            envelope = np.minimum(1.0, tt / 0.01) * np.exp(-tt * rng.uniform(2.0, 6.0))
            x[start : start + length] += note * envelope
            start += length
        tt = np.arange(n) / SAMPLE_RATE
        for interval in (0, 4, 7):
            x += 0.2 * np.sin(2 * np.pi * root / 2 * 2.0 ** (interval / 12.0) * tt)
        clips.append(_peak_normalise(x, 0.5))
    return clips


def _demo_babble(count=_NUM_BABBLE, seconds=4.0):
    """Speech of voices outside the demo corpora (one utterance each)."""
    clips = []
    for i in range(count):
        k = _BABBLE_FIRST_SPEAKER + i
        voice = speech_synthesis.speaker_voice(_AUGMENT_SEED, k)
        conditions = speech_synthesis.session_conditions(_AUGMENT_SEED, k, 0, voice)
        clips.append(speech_synthesis.render_utterance(_AUGMENT_SEED, k, 0, voice, conditions, seconds))
    return clips


def _demo_rir(rng, rt60, distance):
    """An impulse response: propagation delay, direct path, early reflections, decaying tail.

    The tail is low-passed noise decaying by 60 dB in `rt60` seconds; the
    direct path is the largest sample, after `distance / 343 m/s` of silence.
    """
    from scipy import signal

    delay = int(round(distance / 343.0 * SAMPLE_RATE))
    n = delay + int(rt60 * SAMPLE_RATE)
    h = np.zeros(n)
    h[delay] = 1.0
    for _ in range(6):
        at = delay + int(rng.uniform(0.002, 0.03) * SAMPLE_RATE)
        h[min(at, n - 1)] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)
    start = delay + int(0.005 * SAMPLE_RATE)
    tail = signal.lfilter([1.0 - 0.5], [1.0, -0.5], rng.normal(0.0, 1.0, n - start))
    tail *= 0.25 * np.exp(-6.908 * np.arange(n - start) / (rt60 * SAMPLE_RATE))
    h[start:] += tail
    h[delay] = 1.5 * max(np.max(np.abs(h[delay + 1 :])), 1.0)  # the direct path stays the peak
    return _peak_normalise(h, 0.9)


def _build_augmentation(root):
    """Writes the augmentation set under `root` (MUSAN and RIRS_NOISES layouts)."""
    musan = root / "musan"
    sets = [
        ("noise", _demo_noises(random_stream(_AUGMENT_SEED, _STREAM_NOISE))),
        ("music", _demo_music(random_stream(_AUGMENT_SEED, _STREAM_MUSIC))),
        ("speech", _demo_babble()),
    ]
    counts = {}
    for kind, clips in sets:
        folder = musan / kind / "synthetic"
        folder.mkdir(parents=True, exist_ok=True)
        for i, x in enumerate(clips):
            write_wav(folder / f"{kind}-synthetic-{i:04d}.wav", x, SAMPLE_RATE)
        counts[kind] = len(clips)
    rng = random_stream(_AUGMENT_SEED, _STREAM_RIR)
    for size, ((rt_lo, rt_hi), (d_lo, d_hi)) in _ROOMS.items():
        for room in range(1, _ROOMS_PER_SIZE + 1):
            folder = root / "rirs" / "simulated_rirs" / size / f"Room{room:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            rt60 = rng.uniform(rt_lo, rt_hi)
            for k in range(1, _RIRS_PER_ROOM + 1):
                h = _demo_rir(rng, rt60, rng.uniform(d_lo, d_hi))
                write_wav(folder / f"Room{room:03d}-{k:05d}.wav", h, SAMPLE_RATE)
    info = {
        "generator": _AUGMENT_GENERATOR,
        "version": AUGMENT_VERSION,
        "sample_rate": SAMPLE_RATE,
        **{f"num_{kind}": n for kind, n in counts.items()},
        "num_rirs": len(_ROOMS) * _ROOMS_PER_SIZE * _RIRS_PER_ROOM,
    }
    # Written last: its presence marks a complete set.
    (root / _AUGMENT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _read_augment_info(folder):
    try:
        info = json.loads((pathlib.Path(folder) / _AUGMENT_INFO).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("generator") != _AUGMENT_GENERATOR:
        return None
    return info


def _augment_current(folder):
    info = _read_augment_info(folder)
    return info is not None and info.get("version") == AUGMENT_VERSION


def ensure_demo_augmentation(root=None):
    """Returns the demo's noise and impulse-response folder, generating it if needed.

    Writes `<root>/augment/musan` (MUSAN layout: `noise/`, `music/`,
    `speech/`) and `<root>/augment/rirs` (RIRS_NOISES layout:
    `simulated_rirs/{smallroom,mediumroom,largeroom}/Room*/Room*-*.wav`),
    about 3 MB of 16 kHz audio made in a second or two from a fixed seed:

    - noise: white, pink, brown, band-passed (300-3000 Hz), mains hum with
      harmonics, amplitude-modulated low-passed "fan" noise, and a 1-s white
      noise (shorter than a crop: it is repeated);
    - music: harmonic melodies on a pentatonic scale over a held chord;
    - speech: one utterance each of 10 synthetic voices that are not
      speakers of any demo corpus (their indices are beyond any corpus
      plan), to be summed into babble;
    - impulse responses: 6 rooms (2 per size), 3 source positions each:
      silence for the propagation delay, the direct path (the peak), a few
      early reflections and a low-passed noise tail decaying by 60 dB in
      the room's RT60 (0.15-0.35 s, 0.35-0.6 s, 0.6-0.9 s).

    The set is built in a temporary sibling folder and renamed into place
    when complete, and kept while `AUGMENT_VERSION` is unchanged; an
    existing corpus is never regenerated for it.

    Args:
        root: the demo corpus folder (default `default_demo_dir()`).

    Returns:
        The path of `<root>/augment`, as a string.

    Example:

    >>> folder = ensure_demo_augmentation(ensure_demo_corpus())  # doctest: +SKIP
    >>> sorted(os.listdir(folder))  # doctest: +SKIP
    ['augment.json', 'musan', 'rirs']
    """
    root = pathlib.Path(root if root is not None else default_demo_dir()).expanduser().absolute()
    out = root / _AUGMENT_DIR
    if _augment_current(out):
        return str(out)
    if out.exists() and _read_augment_info(out) is None and not _is_empty_dir(out):
        raise FileExistsError(
            f"{out} exists and is not a keras_spk demo augmentation set (no valid "
            f"{_AUGMENT_INFO}). Refusing to overwrite it; move it away."
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_AUGMENT_DIR}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _build_augmentation(tmp)
        try:
            _install(tmp, out)
        except OSError:
            # Another process may have installed the same set meanwhile.
            if not _augment_current(out):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
