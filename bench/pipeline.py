"""Training-pipeline throughput: 3-s crops per second from WAV files, FLAC decoding.

Compares `keras_spk.data.training_dataset` (read, decode, crop, batch,
prefetch) against a plain per-file Python loop (`wave` + numpy) doing the
same work, and prints both rates and their ratio. Then the samplers of
`keras_spk.data.samplers` as a resumable training stream (`start_epoch=0`):
uniform crops, P x K batches (`pk_dataset`, K = 2, the same batch size)
and two-speaker mixtures (`mixture_dataset`, half the batch size, so the
same crops per batch): crops/s, mixtures/s and P x K / uniform, each the
best of `--rounds` interleaved rounds (the machine is shared).

`--flac` measures FLAC decoding instead: seconds of audio decoded per
second of wall time by `keras_spk.data.load_audio` in a parallel tf.data
map (libsndfile through `soundfile`), by tensorflow-io's `decode_flac` in
the same map when tensorflow-io is installed (the decoder keras_spk used
before), and by a plain `soundfile.read` loop; then the training pipeline's
crops/s on the FLAC files.

`--shards` measures sharded corpora instead (`keras_spk.data.shards`): the
same WAV files packed into TFRecord shards (`--shard-size` utterances
each) and the uniform sampler's resumable stream read from the files, from
the shards by random access (`read_shards` references) and streamed whole
shards at a time (`shard_stream_dataset`), as crops/s and ratios to the
files, best of `--rounds` interleaved rounds; then the bare reads (no
decoding) of the files by `tf.io.read_file` and by `read_contents`, which
the pipelines call now.

    python bench/pipeline.py [--files 512] [--batches 60] [--batch-size 64] [--rounds 3]
    python bench/pipeline.py --flac [--files 256]
    python bench/pipeline.py --augment      # augmented crops/s as a ratio of the plain pipeline's
    python bench/pipeline.py --shards [--files 512] [--shard-size 64]
"""

import argparse
import os
import tempfile
import time
import wave

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_files(folder, count, sample_rate, seed=0, flac=False):
    import soundfile

    from keras_spk.data import write_wav

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        seconds = rng.uniform(4.0, 10.0)  # VoxCeleb 1 utterances are 4-20 s, mostly short
        path = os.path.join(folder, f"id{i % 32:05d}", "vid", f"{i:05d}.{'flac' if flac else 'wav'}")
        n = int(seconds * sample_rate)
        # Speech-like: a noisy, amplitude-modulated tone (white noise alone does not compress).
        t = np.arange(n) / sample_rate
        x = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
             + 0.02 * rng.standard_normal(n))
        if flac:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            soundfile.write(path, x, sample_rate, subtype="PCM_16")
        else:
            write_wav(path, x, sample_rate)
        paths.append(path)
    return paths


def decode_rate(paths, decode, repeats=2):
    """Seconds of audio per wall-clock second for `decode` (path -> samples) in a tf.data map."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: tf.size(decode(p)), num_parallel_calls=tf.data.AUTOTUNE
    )
    for _ in dataset:  # warm-up: tracing, page cache
        pass
    start = time.perf_counter()
    samples = sum(int(n) for _ in range(repeats) for n in dataset)
    return samples / 16000 / (time.perf_counter() - start)


def flac_figures(paths, crop, batch_size, batches):
    import soundfile
    import tensorflow as tf

    from keras_spk.data import load_audio

    rows = [("keras_spk load_audio (libsndfile)", decode_rate(paths, load_audio))]
    try:
        import tensorflow_io as tfio
    except ImportError:
        rows.append(("tensorflow-io decode_flac", None))
    else:
        rows.append((
            "tensorflow-io decode_flac",
            decode_rate(paths, lambda p: tfio.audio.decode_flac(tf.io.read_file(p), dtype=tf.int16)),
        ))
    start = time.perf_counter()
    samples = sum(len(soundfile.read(p, dtype="float32")[0]) for p in paths)
    rows.append(("soundfile.read loop (one thread)", samples / 16000 / (time.perf_counter() - start)))
    base = rows[0][1]
    print(f"FLAC decoding, {len(paths)} files (16-bit, 4-10 s), seconds of audio per second:")
    for name, rate in rows:
        if rate is None:
            print(f"  {name:36s}      (not installed)")
        else:
            print(f"  {name:36s} {rate:8.0f}  ({rate / base:.2f}x keras_spk)")
    labels = np.arange(len(paths)) % 32
    crops = pipeline(paths, labels, crop, batch_size, batches)
    print(f"training pipeline on FLAC: {crops:8.0f} crops/s")


def python_loop(paths, labels, crop, batch_size, batches, seed=0):
    """Baseline: read each file with `wave`, decode with numpy, crop, stack."""
    rng = np.random.default_rng(seed)
    done = 0
    start = time.perf_counter()
    while done < batches:
        order = rng.permutation(len(paths))
        for b in range(len(paths) // batch_size):
            rows = []
            for i in order[b * batch_size : (b + 1) * batch_size]:
                with wave.open(paths[i], "rb") as w:
                    x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
                x /= 32768.0
                if len(x) < crop:
                    x = np.tile(x, -(-crop // len(x)))
                offset = rng.integers(0, len(x) - crop + 1)
                rows.append(x[offset : offset + crop])
            np.stack(rows)
            labels[order[b * batch_size : (b + 1) * batch_size]]
            done += 1
            if done == batches:
                break
    return batches * batch_size / (time.perf_counter() - start)


def pipeline(paths, labels, crop, batch_size, batches, seed=0):
    from keras_spk.data import training_dataset

    dataset = training_dataset(paths, labels, crop, batch_size, seed=seed).repeat()
    return rate(dataset, batches, batch_size)


def rate(dataset, batches, rows):
    """Rows (crops or mixtures) per second over `batches` batches, after a warm-up."""
    iterator = iter(dataset)
    for _ in range(5):  # warm-up: tracing, thread pools, page cache
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * rows / (time.perf_counter() - start)


def sampler_figures(paths, labels, crop, batch_size, batches, rounds, seed=0):
    """Best-of-`rounds` rows/s of the uniform, P x K and mixture training streams."""
    from keras_spk.data import mixture_dataset
    from keras_spk.data import pk_dataset
    from keras_spk.data import training_dataset

    K = 2
    P = batch_size // K
    mixtures = batch_size // 2
    builders = {
        "uniform": (lambda: training_dataset(paths, labels, crop, batch_size, seed=seed,
                                             start_epoch=0), batch_size),
        "pk": (lambda: pk_dataset(paths, labels, crop, P, K, seed=seed, start_epoch=0), P * K),
        "mixture": (lambda: mixture_dataset(paths, labels, crop, mixtures, num_speakers=2,
                                            sir_db=(-5.0, 5.0), seed=seed, start_epoch=0),
                    mixtures),
    }
    best = dict.fromkeys(builders, 0.0)
    for _ in range(rounds):
        for name, (build, rows) in builders.items():
            best[name] = max(best[name], rate(build(), batches, rows))
    return best, P, K, mixtures


def augment_figures(paths, labels, crop, batch_size, batches, rounds, seed=0):
    """Best-of-`rounds` crops/s of the uniform stream with each kind of augmentation, every
    crop augmented (the demo's generated MUSAN and RIRS_NOISES sets), against none."""
    from keras_spk.data import ensure_demo_augmentation
    from keras_spk.data import training_dataset
    from keras_spk.data.augment import augmentation_from_config

    sets = ensure_demo_augmentation(tempfile.mkdtemp(prefix="augment-sets-"))
    roots = {"noise": {"root": os.path.join(sets, "musan")},
             "reverb": {"root": os.path.join(sets, "rirs")}}
    kinds = {
        "none": None,
        "noise (every crop)": {"probability": 1.0, "noise": {**roots["noise"], "probability": 1.0},
                               "reverb": {**roots["reverb"], "probability": 0.0}},
        "reverb (every crop)": {"probability": 1.0, "noise": {**roots["noise"], "probability": 0.0},
                                "reverb": {**roots["reverb"], "probability": 1.0}},
        "speed 0.9/1.0/1.1": {"speed": {"speeds": [0.9, 1.0, 1.1]}},
        "WeSpeaker mix (0.6; reverb or noise; speeds)": {
            "probability": 0.6, "noise": roots["noise"], "reverb": roots["reverb"],
            "speed": {"speeds": [0.9, 1.0, 1.1]}},
    }
    builders = {}
    for name, section in kinds.items():
        augment = None if section is None else augmentation_from_config(
            section, sample_rate=16000, crop_samples=crop, num_speakers=int(max(labels)) + 1)
        builders[name] = lambda augment=augment: training_dataset(
            paths, labels, crop, batch_size, seed=seed, start_epoch=0, augment=augment)
    best = dict.fromkeys(builders, 0.0)
    for _ in range(rounds):
        for name, build in builders.items():
            best[name] = max(best[name], rate(build(), batches, batch_size))
    return best


def read_rate(paths, read, rounds):
    """Best-of-`rounds` files per second read (not decoded) by `read` in a parallel tf.data map."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(paths).repeat(4).map(
        lambda p: tf.strings.length(read(p)), num_parallel_calls=tf.data.AUTOTUNE
    ).batch(len(paths))  # one Python step per pass, so Python does not set the pace
    for _ in dataset:  # warm-up: tracing, page cache
        pass
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in dataset:
            pass
        best = max(best, 4 * len(paths) / (time.perf_counter() - start))
    return best


def shard_figures(folder, paths, labels, crop, batch_size, batches, rounds, shard_size, seed=0):
    """Crops/s of the uniform sampler from files, shards (random access) and streamed shards."""
    import tensorflow as tf

    from keras_spk.data import read_dataset
    from keras_spk.data import training_dataset
    from keras_spk.data.readers import UtteranceList
    from keras_spk.data.shards import read_contents
    from keras_spk.data.shards import shard_stream_dataset
    from keras_spk.data.shards import write_shards

    files = UtteranceList(paths=paths, speakers=[f"id{int(i):05d}" for i in labels], root=folder)
    out = os.path.join(folder, "shards")
    start = time.perf_counter()
    summary = write_shards(files, out, shard_size=shard_size, workers=4)
    packing = time.perf_counter() - start
    listed = read_dataset("shards", out)
    builders = {
        "files": lambda: training_dataset(paths, labels, crop, batch_size, seed=seed, start_epoch=0),
        "random access": lambda: training_dataset(
            listed.paths, listed.labels(), crop, batch_size, seed=seed, start_epoch=0
        ),
        "streamed": lambda: shard_stream_dataset(out, crop, batch_size, seed=seed, start_epoch=0)[0],
    }
    best = dict.fromkeys(builders, 0.0)
    for _ in range(rounds):
        for name, build in builders.items():
            best[name] = max(best[name], rate(build(), batches, batch_size))
    reads = dict.fromkeys(("tf.io.read_file", "read_contents"), 0.0)
    for _ in range(rounds):
        for name, read in (("tf.io.read_file", tf.io.read_file), ("read_contents", read_contents)):
            reads[name] = max(reads[name], read_rate(paths, read, 1))
    print(f"shards: {summary.utterances} files in {summary.shards} shards of up to {shard_size}, "
          f"{summary.bytes / 1e6:.0f} MB packed in {packing:.1f} s "
          f"({summary.bytes / 1e6 / packing:.0f} MB/s, 4 workers)")
    print(f"uniform sampler, resumable stream, best of {rounds} rounds:")
    for name, value in best.items():
        print(f"  {name:26s}{value:8.0f} crops/s  ({value / best['files']:.2f}x files)")
    print("reading files only (no decoding), files/s:")
    for name, value in reads.items():
        print(f"  {name:26s}{value:8.0f}  ({value / reads['tf.io.read_file']:.2f}x tf.io.read_file)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=512)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the samplers")
    parser.add_argument("--flac", action="store_true", help="measure FLAC decoding")
    parser.add_argument("--shards", action="store_true", help="measure sharded corpora")
    parser.add_argument("--shard-size", type=int, default=64, help="utterances per shard (--shards)")
    parser.add_argument("--augment", action="store_true",
                        help="measure the augmented pipeline against the plain one")
    args = parser.parse_args()

    crop = int(args.seconds * args.sample_rate)
    print(f"cores: {os.cpu_count()}")
    if args.flac:
        with tempfile.TemporaryDirectory() as folder:
            paths = make_files(folder, args.files, args.sample_rate, flac=True)
            flac_figures(paths, crop, args.batch_size, args.batches)
        return
    if args.augment:
        with tempfile.TemporaryDirectory() as folder:
            paths = make_files(folder, args.files, args.sample_rate)
            labels = np.arange(len(paths)) % 32
            best = augment_figures(paths, labels, crop, args.batch_size, args.batches, args.rounds)
        print(f"files: {args.files} WAV (16-bit, 4-10 s), crop {args.seconds:g} s, "
              f"batch {args.batch_size}, best of {args.rounds} rounds")
        for name, value in best.items():
            print(f"  {name:46s} {value:8.0f} crops/s  ({value / best['none']:.2f}x none)")
        return
    if args.shards:
        with tempfile.TemporaryDirectory() as folder:
            paths = make_files(folder, args.files, args.sample_rate)
            labels = np.arange(len(paths)) % 32
            print(f"files: {args.files} WAV (16-bit, 4-10 s), crop {args.seconds:g} s, "
                  f"batch {args.batch_size}")
            shard_figures(folder, paths, labels, crop, args.batch_size, args.batches, args.rounds,
                          args.shard_size)
        return
    with tempfile.TemporaryDirectory() as folder:
        paths = make_files(folder, args.files, args.sample_rate)
        labels = np.arange(len(paths)) % 32
        python_loop(paths, labels, crop, args.batch_size, 2)  # page cache warm-up
        base = python_loop(paths, labels, crop, args.batch_size, args.batches)
        fast = pipeline(paths, labels, crop, args.batch_size, args.batches)
        best, P, K, mixtures = sampler_figures(
            paths, labels, crop, args.batch_size, args.batches, args.rounds
        )
    print(f"files: {args.files} WAV (16-bit, 4-10 s), crop {args.seconds:g} s, batch {args.batch_size}")
    print(f"python loop (wave + numpy): {base:8.0f} crops/s")
    print(f"keras_spk tf.data pipeline: {fast:8.0f} crops/s  ({fast / base:.1f}x the loop)")
    print(f"samplers, resumable stream (start_epoch=0), best of {args.rounds} rounds:")
    print(f"  uniform crops             {best['uniform']:8.0f} crops/s")
    print(f"  P x K ({P} x {K})            {best['pk']:8.0f} crops/s  "
          f"(P x K / uniform: {best['pk'] / best['uniform']:.2f})")
    print(f"  mixtures (2 speakers, {mixtures}) {best['mixture']:8.0f} mixtures/s  "
          f"({2 * best['mixture']:.0f} crops/s, {2 * best['mixture'] / best['uniform']:.2f}x uniform)")


if __name__ == "__main__":
    main()
