"""Writes a noisy copy of an evaluation folder: every utterance mixed with noise at a set SNR.

For robustness tables: score the same trial list on the clean folder and on
its noisy copy. Each utterance gets one noise file (drawn with `--seed`),
at a random offset (repeated when shorter than the utterance), scaled so
that the utterance's mean square over the noise's is `--snr-db`. The copy
keeps the relative paths, so the folder's trial lists apply to it as they
are; files are 16-bit WAV at `--sample-rate`, each written under a
temporary name and renamed, and a folder holding a finished copy of the
same settings is left as it is.

    python tools/add_noise.py EVAL_DIR OUT_DIR --noise-dir MUSAN/noise --snr-db 5 [--seed 0]
    python tools/add_noise.py EVAL_DIR OUT_DIR --noise-dir generated:1 --snr-db 5

`generated:SEED` draws the demo's kinds of stationary noise (white, pink,
brown, band-passed, hum, fan) afresh from SEED: noise that a model
trained with the demo's generated augmentation set has not heard.
"""

import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as a script: make `keras_spk` importable from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INFO = "noisy_copy.json"
GENERATED = "generated:"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("eval_dir", help="the clean evaluation folder (any layout: every audio file under it)")
    parser.add_argument("out_dir", help="the noisy copy (created)")
    parser.add_argument("--noise-dir", required=True,
                        help="folder of noise files (e.g. MUSAN/noise), or generated:SEED")
    parser.add_argument("--snr-db", type=float, required=True, help="signal-to-noise ratio in dB")
    parser.add_argument("--seed", type=int, default=0, help="draws the noise file and offset of each utterance")
    parser.add_argument("--sample-rate", type=int, default=16000)
    return parser.parse_args(argv)


def noise_clips(noise_dir, sample_rate):
    """`[(name, waveform)]` of the noise folder, or of the generated noises of `generated:SEED`."""
    from keras_spk.data import read_audio
    from keras_spk.data.augment import _audio_files

    if noise_dir.startswith(GENERATED):
        from keras_spk.data import demo_corpus
        from keras_spk.data.speech_synthesis import random_stream

        seed = noise_dir[len(GENERATED):]
        if not seed.isdigit():
            raise ValueError(f"--noise-dir {noise_dir}: give generated:SEED with an integer SEED >= 0.")
        if sample_rate != demo_corpus.SAMPLE_RATE:
            raise ValueError(f"generated noise is at {demo_corpus.SAMPLE_RATE} Hz; use --sample-rate {demo_corpus.SAMPLE_RATE}.")
        clips = demo_corpus._demo_noises(random_stream(int(seed), demo_corpus._STREAM_NOISE))
        return [(f"{noise_dir}#{i}", np.asarray(c, np.float32)) for i, c in enumerate(clips)]
    if not os.path.isdir(noise_dir):
        raise ValueError(f"--noise-dir {noise_dir}: no such folder.")
    files = _audio_files(noise_dir)
    if not files:
        raise ValueError(f"--noise-dir {noise_dir} holds no audio files.")
    clips = [(path, read_audio(path, sample_rate)) for path in files]
    silent = [path for path, x in clips if not np.any(x)]
    if silent:
        raise ValueError(f"{silent[0]}: the noise file is silent; remove it from {noise_dir}.")
    return clips


def add_noise(speech, noise, snr_db, rng):
    """`speech` plus a crop of `noise` (repeated when short) scaled to `snr_db` below it."""
    n = len(speech)
    if len(noise) < n:
        noise = np.tile(noise, -(-n // len(noise)) + 1)
    start = int(rng.integers(0, len(noise) - n + 1))
    crop = noise[start : start + n].astype(np.float64)
    power = np.mean(np.square(speech, dtype=np.float64))
    gain = np.sqrt(power / (np.mean(np.square(crop)) * 10.0 ** (snr_db / 10.0)))
    return (speech + gain * crop).astype(np.float32)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from keras_spk.data import read_audio
    from keras_spk.data import write_wav
    from keras_spk.data.augment import _audio_files

    if not os.path.isdir(args.eval_dir):
        raise ValueError(f"{args.eval_dir}: no such folder.")
    settings = {"eval_dir": os.path.abspath(args.eval_dir), "noise_dir": args.noise_dir,
                "snr_db": args.snr_db, "seed": args.seed, "sample_rate": args.sample_rate}
    info_path = os.path.join(args.out_dir, INFO)
    if os.path.exists(info_path):
        with open(info_path) as f:
            if json.load(f) == settings:
                print(f"{args.out_dir} already holds this noisy copy.")
                return 0
        raise ValueError(f"{args.out_dir} holds a noisy copy made with other settings; choose another folder.")
    files = _audio_files(args.eval_dir)
    if not files:
        raise ValueError(f"{args.eval_dir} holds no audio files.")
    noises = noise_clips(args.noise_dir, args.sample_rate)
    rng = np.random.default_rng(args.seed)
    for path in files:
        speech = read_audio(path, args.sample_rate)
        if not np.any(speech):
            raise ValueError(f"{path}: the utterance is silent, so no SNR can be set; remove it.")
        _, noise = noises[int(rng.integers(0, len(noises)))]
        noisy = add_noise(speech, noise, args.snr_db, rng)
        peak = float(np.max(np.abs(noisy)))
        if peak > 1.0:  # keep 16-bit WAV from clipping: the level does not change an SNR
            noisy /= peak
        relative = os.path.splitext(os.path.relpath(path, args.eval_dir))[0] + ".wav"
        target = os.path.join(args.out_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temporary = os.path.join(os.path.dirname(target), f".tmp-{os.path.basename(target)}")
        write_wav(temporary, noisy, args.sample_rate)
        os.replace(temporary, target)
    from keras_spk.utils.files import atomic_write_json

    atomic_write_json(info_path, settings)
    print(f"{len(files)} utterances mixed with {len(noises)} noise clip(s) at {args.snr_db:g} dB into {args.out_dir}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
