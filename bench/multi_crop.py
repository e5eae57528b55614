"""Cost of the multi-crop test against whole-utterance embedding, under the current Keras backend.

Writes `--utterances` generated WAV files (a few tones plus noise, of
random durations between `--min-seconds` and `--max-seconds`, 16 kHz) and
embeds them twice with the same small ResNet embedder (log spectrogram,
`keras_spk.models.ResNetBackbone` with basic blocks of `--width` x
(8, 16, 32, 64) filters, mean over time and frequency, a 128-d Dense):

* whole utterances, `keras_spk.inference.embed_files` (one utterance of
  its own length per call);
* `--num-crops` crops of `--crop-seconds` per utterance,
  `keras_spk.inference.embed_crops` (one batch of crops per utterance; Xu
  et al. 2020, section 4.6: ten 3-s crops).

Each is run once on a few files first (tracing, first-call allocation),
then timed over all of them, `--repeats` times (the median is printed).
The printed figures: seconds per pass and milliseconds per utterance of
each, the crops/whole time ratio, and the audio each embeds (ten 3-s crops
are 30 s of audio per utterance, so the ratio follows the mean utterance
duration). The time of scoring the trials is not counted: it is small
beside either.

    python bench/multi_crop.py [--utterances 40] [--min-seconds 4] [--max-seconds 12]
                               [--num-crops 10] [--crop-seconds 3] [--width 1.0]
                               [--repeats 3] [--threads N]

Run it under each backend with KERAS_BACKEND=tensorflow / torch.
"""

import argparse
import os
import statistics
import tempfile
import time

from _threads import set_threads  # bench/_threads.py (this script's folder)

SAMPLE_RATE = 16000
FILTERS = (8, 16, 32, 64)
EMBEDDING_DIM = 128
WARMUP_FILES = 2


def build_embedder(width):
    """Waveforms -> log spectrogram -> small ResNet -> mean over time and frequency -> Dense."""
    import keras

    from keras_spk.layers import LogSpectrogram
    from keras_spk.models import ResNetBackbone

    filters = [max(1, round(width * f)) for f in FILTERS]
    waveforms = keras.Input((None,), name="waveforms")
    features = LogSpectrogram(sample_rate=SAMPLE_RATE, fft_length=512)(waveforms)  # 257 bins
    features = keras.layers.Reshape((-1, 257, 1))(features)
    backbone = ResNetBackbone(
        stackwise_num_filters=filters,
        stackwise_num_blocks=(1, 1, 1, 1),
        stackwise_num_strides=(1, 2, 2, 2),
        stem_filters=filters[0],
        stem_strides=2,
        feature_shape=(None, 257, 1),
    )
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(features)[backbone.pyramid_levels[-1]])
    return keras.Model(waveforms, keras.layers.Dense(EMBEDDING_DIM)(pooled), name="bench_embedder")


def write_utterances(folder, count, min_seconds, max_seconds, seed=0):
    """`count` WAV files of random durations; returns their paths and total seconds."""
    import numpy as np

    from keras_spk.data import write_wav

    rng = np.random.default_rng(seed)
    paths, total = [], 0.0
    for index in range(count):
        samples = int(rng.uniform(min_seconds, max_seconds) * SAMPLE_RATE)
        t = np.arange(samples) / SAMPLE_RATE
        frequencies = rng.uniform(100.0, 3000.0, 3)
        audio = sum(0.2 * np.sin(2 * np.pi * f * t) for f in frequencies)
        audio = audio + 0.05 * rng.standard_normal(samples)
        paths.append(os.path.join(folder, f"utt{index:04d}.wav"))
        write_wav(paths[-1], audio.astype("float32"), SAMPLE_RATE)
        total += samples / SAMPLE_RATE
    return paths, total


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=40, help="generated utterances to embed")
    parser.add_argument("--min-seconds", type=float, default=4.0, help="shortest utterance (s)")
    parser.add_argument("--max-seconds", type=float, default=12.0, help="longest utterance (s)")
    parser.add_argument("--num-crops", type=int, default=10, help="crops per utterance (paper: 10)")
    parser.add_argument("--crop-seconds", type=float, default=3.0, help="crop length (paper: 3 s)")
    parser.add_argument("--width", type=float, default=1.0, help="ResNet filters x (8, 16, 32, 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the median is printed")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the backend; 0: default")
    args = parser.parse_args()
    for name in ("utterances", "num_crops", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer. Received: {getattr(args, name)}")
    if not 0.05 <= args.min_seconds <= args.max_seconds:
        parser.error(
            "--min-seconds must be at least 0.05 and at most --max-seconds. Received: "
            f"{args.min_seconds} and {args.max_seconds}"
        )
    if args.crop_seconds < 0.05 or args.width <= 0:
        parser.error(f"--crop-seconds must be at least 0.05 and --width positive. Received: "
                     f"{args.crop_seconds} and {args.width}")
    set_threads(args.threads)

    import keras

    from keras_spk.inference import embed_crops
    from keras_spk.inference import embed_files

    model = build_embedder(args.width)
    crop_samples = int(round(args.crop_seconds * SAMPLE_RATE))
    with tempfile.TemporaryDirectory() as folder:
        paths, total_seconds = write_utterances(folder, args.utterances, args.min_seconds, args.max_seconds)

        def whole(files=paths):
            return embed_files(model, files, sample_rate=SAMPLE_RATE, progress=False)

        def crops(files=paths):
            return embed_crops(
                model, files, num_crops=args.num_crops, crop_samples=crop_samples,
                sample_rate=SAMPLE_RATE, progress=False,
            )

        whole(paths[:WARMUP_FILES])
        crops(paths[:WARMUP_FILES])
        whole_seconds = median_seconds(whole, args.repeats)
        crop_seconds = median_seconds(crops, args.repeats)

    n = args.utterances
    crop_audio = n * args.num_crops * crop_samples / SAMPLE_RATE
    print(
        f"backend {keras.backend.backend()}; {n} utterances of {args.min_seconds:g}-{args.max_seconds:g} s "
        f"(mean {total_seconds / n:.1f} s); embedder {model.count_params():,} parameters; "
        f"median of {args.repeats} passes"
    )
    print(f"{'embedding':<34} {'s / pass':>9} {'ms / utt':>9} {'audio s':>9}")
    print(f"{'whole utterance (embed_files)':<34} {whole_seconds:>9.2f} {1000 * whole_seconds / n:>9.1f} "
          f"{total_seconds:>9.0f}")
    label = f"{args.num_crops} x {args.crop_seconds:g} s crops (embed_crops)"
    print(f"{label:<34} {crop_seconds:>9.2f} {1000 * crop_seconds / n:>9.1f} {crop_audio:>9.0f}")
    print(f"multi-crop / whole-utterance time: {crop_seconds / whole_seconds:.2f} "
          f"(audio embedded: {crop_audio / total_seconds:.2f})")


if __name__ == "__main__":
    main()
