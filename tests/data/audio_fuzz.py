"""A seeded generator of mutated audio files, and a bounded runner that feeds them to the readers.

`make_cases(folder, count, seed)` writes `count` files: seed files of every
encoding keras_spk reads (WAV PCM 8/16/24/32-bit, float 32/64-bit, stereo,
`WAVE_FORMAT_EXTENSIBLE`, extra chunks, 8/16/44.1 kHz; FLAC 16/24-bit;
Ogg Vorbis and Opus; MP3), each mutated in one of the ways files break:
header fields overwritten with absurd values, flipped bits, zeroed,
duplicated or deleted spans, truncation, appended or inserted junk, and
extreme float samples.

`run_cases(cases, ...)` decodes each file in a child process, through
`keras_spk.data.read_audio` ("reader") and through the training pipeline's
decode-and-crop step (`keras_spk.data.pipeline.crop_batch`, "training"),
and every twentieth file also through a whole `training_dataset` iterator
("dataset": building one costs seconds, so not for every file). Each runs
under a per-case time bound and a memory bound on the child (polled from
/proc); the child is restarted after a hang, a blow-up or a crash. Each
(case, path) pair ends as one of:

- `named`: an error whose message names the file;
- `ok`: audio returned that is plausible: finite, within
  +-`PLAUSIBLE_PEAK`, and no longer than twice the seed's length (scaled by
  how much the mutation grew the file);
- `unnamed`: an error that does not name the file;
- `garbage`: audio returned that is not plausible;
- `hang`, `memory`, `crash`: the child passed the time bound, passed the
  memory bound, or died.

`tests/data/audio_fuzz_test.py` runs a few hundred cases in the test suite
and the full-size run as a slow test;

    python -m tests.data.audio_fuzz --cases 1200

prints the counts.
"""

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_RATE = 16000
CROP = 8000
OUTCOMES = ("named", "ok", "unnamed", "garbage", "hang", "memory", "crash")
BAD = ("unnamed", "garbage", "hang", "memory", "crash")
# Decoded audio is full scale at 1; lossy decoding and resampling overshoot a little.
PLAUSIBLE_PEAK = 2.0


# === Seed files ===
def _wav(samples, rate, encoding, channels=1, extensible=False, extra_chunk=False):
    """WAV bytes written by hand (every encoding, optional extensible header and LIST chunk)."""
    x = np.repeat(samples[:, None], channels, axis=1)
    if encoding == "u8":
        fmt, bits, data = 1, 8, np.clip(np.round(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    elif encoding in ("pcm16", "pcm32"):
        bits = 16 if encoding == "pcm16" else 32
        q = np.round(x * (2 ** (bits - 1) - 1)).astype(f"<i{bits // 8}")
        fmt, data = 1, q.tobytes()
    elif encoding == "pcm24":
        q = np.round(x * (2**23 - 1)).astype(np.int64).reshape(-1) & 0xFFFFFF
        fmt, bits = 1, 24
        data = np.stack([q & 255, (q >> 8) & 255, q >> 16], 1).astype(np.uint8).tobytes()
    else:
        bits = 32 if encoding == "float32" else 64
        fmt, data = 3, x.astype(f"<f{bits // 8}").tobytes()
    block = channels * bits // 8
    payload = (
        (0xFFFE if extensible else fmt).to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * block).to_bytes(4, "little")
        + block.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
    )
    if extensible:
        payload += (22).to_bytes(2, "little") + bits.to_bytes(2, "little")
        payload += ((1 << channels) - 1).to_bytes(4, "little") + fmt.to_bytes(2, "little")
        payload += b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    body = b"fmt " + len(payload).to_bytes(4, "little") + payload
    if extra_chunk:
        body = b"LIST" + (10).to_bytes(4, "little") + b"INFOtest\x00\x00" + body
    body += b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body


def _encoded(samples, rate, fmt, subtype, channels=1):
    import io

    import soundfile

    buffer = io.BytesIO()
    x = np.repeat(samples[:, None], channels, axis=1)
    soundfile.write(buffer, x, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


SEEDS = (
    # (name, extension, rate, maker(samples, rate) -> bytes)
    ("pcm16", "wav", 16000, lambda x, r: _wav(x, r, "pcm16")),
    ("pcm16_8k", "wav", 8000, lambda x, r: _wav(x, r, "pcm16")),
    ("pcm16_44k_stereo", "wav", 44100, lambda x, r: _wav(x, r, "pcm16", channels=2)),
    ("u8", "wav", 16000, lambda x, r: _wav(x, r, "u8")),
    ("pcm24", "wav", 16000, lambda x, r: _wav(x, r, "pcm24")),
    ("pcm32_extensible", "wav", 16000, lambda x, r: _wav(x, r, "pcm32", extensible=True)),
    ("float32", "wav", 16000, lambda x, r: _wav(x, r, "float32")),
    ("float64_stereo", "wav", 22050, lambda x, r: _wav(x, r, "float64", channels=2)),
    ("pcm16_list_chunk", "wav", 16000, lambda x, r: _wav(x, r, "pcm16", extra_chunk=True)),
    ("flac16", "flac", 16000, lambda x, r: _encoded(x, r, "FLAC", "PCM_16")),
    ("flac24_stereo", "flac", 44100, lambda x, r: _encoded(x, r, "FLAC", "PCM_24", channels=2)),
    ("vorbis", "ogg", 16000, lambda x, r: _encoded(x, r, "OGG", "VORBIS")),
    ("opus", "ogg", 48000, lambda x, r: _encoded(x, r, "OGG", "OPUS")),
    ("mp3", "mp3", 16000, lambda x, r: _encoded(x, r, "MP3", "MPEG_LAYER_III")),
)


def _signal(seconds, rate, rng):
    """A speech-like test signal: a modulated tone with noise, peak about 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * rng.uniform(120, 300) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.4 * tone + 0.03 * rng.standard_normal(len(t))).astype(np.float32)


# === Mutations ===
# WAV header fields: (name, offset, size) in a plain header (fmt at byte 12).
_WAV_FIELDS = (
    ("riff_size", 4, 4), ("fmt_size", 16, 4), ("audio_format", 20, 2), ("channels", 22, 2),
    ("sample_rate", 24, 4), ("byte_rate", 28, 4), ("block_align", 32, 2), ("bits", 34, 2),
    ("data_size", 40, 4),
)
_ABSURD = (0, 1, 2, 3, 7, 12, 17, 100, 255, 4000, 7999, 8000, 11025, 22050, 48000, 65535,
           384001, 2**31 - 1, 2**31, 2**32 - 1)
_FLOATS = (np.nan, np.inf, -np.inf, 3e38, -3e38, 1e30, 41.0, 1e5)


def _set_field(data, offset, size, value):
    data[offset : offset + size] = int(value % (1 << (8 * size))).to_bytes(size, "little")


def mutate(contents, rng, is_wav, is_float):
    """One random mutation of `contents`; returns (bytes, description)."""
    data = bytearray(contents)
    n = len(data)
    kinds = ["flip", "flip", "zero", "duplicate", "delete", "truncate", "append", "insert"]
    if is_wav:
        kinds += ["field"] * 6
    if is_float:
        kinds += ["float"] * 2
    kind = kinds[rng.integers(len(kinds))]
    if kind == "field":
        name, offset, size = _WAV_FIELDS[rng.integers(len(_WAV_FIELDS))]
        value = int(_ABSURD[rng.integers(len(_ABSURD))])
        if offset + size <= n:
            _set_field(data, offset, size, value)
        return bytes(data), f"{name}={value}"
    if kind == "float":
        value = float(_FLOATS[rng.integers(len(_FLOATS))])
        width = 4 if contents[34] == 32 else 8
        count = int(rng.integers(1, 20))
        for _ in range(count):
            at = 44 + width * int(rng.integers(0, (n - 44) // width))
            data[at : at + width] = np.array([value], f"<f{width}").tobytes()
        return bytes(data), f"float x{count}={value}"
    if kind == "flip":
        # Headers are where files are most fragile: a third of the flips hit the first 64 bytes.
        count = int(rng.integers(1, 9))
        for _ in range(count):
            at = int(rng.integers(0, min(n, 64))) if rng.random() < 0.33 else int(rng.integers(0, n))
            data[at] ^= 1 << int(rng.integers(8))
        return bytes(data), f"flip x{count}"
    start = int(rng.integers(0, n))
    span = int(rng.integers(1, max(2, min(4096, n // 4))))
    if kind == "zero":
        data[start : start + span] = bytes(len(data[start : start + span]))
    elif kind == "duplicate":
        data[start:start] = data[start : start + span]
    elif kind == "delete":
        del data[start : start + span]
    elif kind == "truncate":
        del data[start:]
    elif kind == "append":
        data += rng.integers(0, 256, span, dtype=np.uint8).tobytes()
    else:
        data[start:start] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
    return bytes(data), f"{kind} {span} at {start}"


def make_cases(folder, count, seed=0):
    """Writes `count` mutated files into `folder`; returns a list of case dicts.

    Each case: `path`, `seed` (the seed file's name), `mutation`, and
    `max_samples`: twice the seed's length at 16 kHz, scaled by how much the
    mutation grew the file; longer output is not plausible.
    """
    rng = np.random.default_rng(seed)
    seeds = []
    for i, (name, extension, rate, maker) in enumerate(SEEDS):
        samples = _signal(rng.uniform(0.3, 1.2), rate, rng)
        contents = maker(samples, rate)
        seeds.append((name, extension, contents, len(samples) * TARGET_RATE / rate))
    cases = []
    for i in range(count):
        name, extension, contents, length = seeds[i % len(seeds)]
        mutated, description = mutate(
            contents, rng, extension == "wav", name.startswith("float")
        )
        path = os.path.join(folder, f"case{i:05d}_{name}.{extension}")
        with open(path, "wb") as f:
            f.write(mutated)
        growth = max(1.0, len(mutated) / len(contents))
        cases.append({
            "path": path,
            "seed": name,
            "mutation": description,
            "max_samples": int(2 * length * growth) + 1152,
        })
    return cases


# === The child: decode each case, report one JSON line per case ===
def _plausible(x, max_samples):
    x = np.asarray(x)
    return bool(
        x.size > 0
        and np.all(np.isfinite(x))
        and np.max(np.abs(x)) <= PLAUSIBLE_PEAK
        and x.shape[-1] <= max_samples
    )


def _outcome(path, error):
    return "named" if path in str(error) else "unnamed"


_CROP_FUNCTION = []


def _training_crop(path):
    """The training pipeline's decode-and-crop step on one file, as tf.data runs it."""
    import tensorflow as tf

    from keras_spk.data.pipeline import crop_batch

    if not _CROP_FUNCTION:
        _CROP_FUNCTION.append(tf.function(
            lambda contents, name: crop_batch(
                contents[None], name[None], tf.constant([1, 2], tf.int64), CROP, TARGET_RATE
            )
        ))
    return _CROP_FUNCTION[0](tf.io.read_file(path), tf.constant(path)).numpy()


def paths_of(index):
    """The ways case `index` is decoded."""
    return ("reader", "training", "dataset") if index % 20 == 0 else ("reader", "training")


def _decode_case(case, through):
    from keras_spk.data import AudioError
    from keras_spk.data import read_audio
    from keras_spk.data import training_dataset

    path = case["path"]
    limit = case["max_samples"] if through == "reader" else CROP
    try:
        if through == "reader":
            x = read_audio(path, TARGET_RATE)
        elif through == "training":
            x = _training_crop(path)
        else:
            dataset = training_dataset([path], [0], CROP, 1, TARGET_RATE, seed=0, start_epoch=0)
            x = next(iter(dataset))[0].numpy()
    except AudioError as error:
        return _outcome(path, error), str(error)[:300]
    except Exception as error:  # noqa: BLE001 - what the user would see
        message = getattr(error, "message", str(error))
        return _outcome(path, message), f"{type(error).__name__}: {message[:300]}"
    return ("ok" if _plausible(x, limit) else "garbage"), f"{np.asarray(x).shape[-1]} samples"


def _child(case_file, start):
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    with open(case_file) as f:
        cases = json.load(f)
    for index in range(start, len(cases)):
        print(json.dumps({"start": index}), flush=True)
        for through in paths_of(index):
            outcome, detail = _decode_case(cases[index], through)
            print(json.dumps({"index": index, "through": through, "outcome": outcome,
                              "detail": detail}), flush=True)
        print(json.dumps({"done": index}), flush=True)


# === The parent: bounds and restarts ===
def _rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_cases(cases, time_limit=30.0, memory_limit=3 * 2**30, startup_limit=180.0, env=None):
    """Decodes every case in a child process under the bounds; returns the results.

    Args:
        cases: from `make_cases`.
        time_limit: seconds a case may take (both paths) before it counts as a hang.
        memory_limit: bytes of resident memory the child may reach.
        startup_limit: seconds for the child to import TensorFlow and start.
        env: the child's environment (default: this process's, repository on PYTHONPATH).

    Returns:
        A list of dicts `{index, through, outcome, detail}`, one per case
        and path (`through`: "reader", "training", "dataset"); a case that hung, blew up or
        crashed the child gets that outcome for both paths it had not finished.
    """
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        case_file = os.path.join(folder, "cases.json")
        with open(case_file, "w") as f:
            json.dump(cases, f)
        start = 0
        while start < len(cases):
            start = _run_child(case_file, start, results, time_limit, memory_limit,
                               startup_limit, env, len(cases))
    return results


def _run_child(case_file, start, results, time_limit, memory_limit, startup_limit, env, total):
    """Runs the child from case `start`; returns the next case to run."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.data.audio_fuzz", "--child", case_file, str(start)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    current, finished = None, set()
    deadline = time.monotonic() + startup_limit
    buffer = b""
    try:
        while True:
            if _rss_bytes(child.pid) > memory_limit:
                return _fail(child, current, start, finished, results, "memory")
            if time.monotonic() > deadline:
                return _fail(child, current, start, finished, results, "hang")
            ready, _, _ = select.select([child.stdout], [], [], 0.05)
            if not ready:
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:  # the child exited
                child.wait()
                if current is None and start >= total:
                    return total
                return _fail(child, current, start, finished, results, "crash")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if "start" in message:
                    current, finished = message["start"], set()
                    deadline = time.monotonic() + time_limit
                elif "done" in message:
                    current = None
                    if message["done"] + 1 >= total:
                        child.wait()
                        return total
                else:
                    finished.add(message["through"])
                    results.append(message)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _fail(child, current, start, finished, results, outcome):
    child.kill()
    child.wait()
    index = start if current is None else current
    for through in paths_of(index):
        if through not in finished:
            results.append({"index": index, "through": through, "outcome": outcome,
                            "detail": f"child {outcome}"})
    return index + 1


def summarise(cases, results):
    """Counts of outcomes per path, and the cases with a bad outcome."""
    counts = {t: collections.Counter() for t in ("reader", "training", "dataset")}
    bad = []
    for r in results:
        counts[r["through"]][r["outcome"]] += 1
        if r["outcome"] in BAD:
            case = cases[r["index"]]
            bad.append(f"{r['outcome']}: {case['seed']} [{case['mutation']}] via {r['through']}: "
                       f"{r['detail']}")
    return counts, bad


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fuzz keras_spk's audio readers.")
    parser.add_argument("--cases", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--memory-limit-gb", type=float, default=3.0)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child[0], int(args.child[1]))
    with tempfile.TemporaryDirectory() as folder:
        started = time.time()
        cases = make_cases(folder, args.cases, args.seed)
        results = run_cases(cases, args.time_limit, int(args.memory_limit_gb * 2**30))
        counts, bad = summarise(cases, results)
    print(f"{len(cases)} mutated files (seed {args.seed}), bounds: {args.time_limit:g} s per case, "
          f"{args.memory_limit_gb:g} GB resident; {time.time() - started:.0f} s")
    for through, counter in counts.items():
        print(f"  {through:9s} " + "  ".join(f"{o} {counter[o]}" for o in OUTCOMES))
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
