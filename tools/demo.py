"""End-to-end check of the data pipeline and metrics on the demo corpus.

Generates the demo corpus when missing, trains a small log-mel CNN speaker
embedder on its training speakers through `keras_spk.data.training_dataset`,
and prints the verification table (EER, minDCF at p_target 0.01 and 0.05)
on the test trials for three systems: random embeddings, untrained
features (mean log-mel, cosine) and the trained embedder. Everything the
run produces goes into one run folder.

    python tools/demo.py [--output DIR] [--data DIR] [--eval-data DIR --trials FILE]
                         [--config FILE] [--section.key=value ...]
"""

import argparse
import datetime
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "configs", "demo.yaml")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Any other --section.key=value argument overrides the config.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config")
    parser.add_argument("--data", help="training corpus (VoxCeleb layout); default: demo corpus")
    parser.add_argument("--eval-data", help="evaluation audio folder; trial paths are relative to it")
    parser.add_argument("--trials", help="trial list (VoxCeleb or Kaldi format)")
    parser.add_argument("--output", help="run folder (default runs/demo-<timestamp>)")
    parser.add_argument(
        "--allow-speaker-overlap",
        action="store_true",
        help="allow speakers present in both the training and the evaluation data",
    )
    return parser.parse_known_args(argv)


def build_embedder(num_mel_bins, embedding_dim, sample_rate):
    import keras

    from keras_spk.layers import LogMelFilterbank
    from keras_spk.layers import PreEmphasis

    waveform = keras.Input((None,), name="waveform")
    x = PreEmphasis(0.97)(waveform)
    x = LogMelFilterbank(sample_rate=sample_rate, num_mel_bins=num_mel_bins)(x)
    for filters, dilation in [(128, 1), (128, 2), (128, 3)]:
        x = keras.layers.Conv1D(filters, 3, dilation_rate=dilation, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    # Mean and max over time: a pooling that accepts any length.
    pooled = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling1D()(x), keras.layers.GlobalMaxPooling1D()(x)]
    )
    embedding = keras.layers.Dense(embedding_dim, name="embedding")(pooled)
    return keras.Model(waveform, embedding, name="demo_embedder")


def resolve_data(args, config):
    from keras_spk.data import ensure_demo_corpus

    if args.data:
        if not (args.eval_data and args.trials):
            raise SystemExit("--data needs --eval-data and --trials as well.")
        return args.data, args.eval_data, args.trials
    if args.eval_data or args.trials:
        raise SystemExit("--eval-data/--trials need --data as well (or give none for the demo).")
    root = ensure_demo_corpus(config["data"]["demo_dir"] or None, seed=config["seed"])
    return os.path.join(root, "train"), os.path.join(root, "test"), os.path.join(root, "trials.txt")


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)

    from keras_spk.config import load_config
    from keras_spk.config import save_config

    config = load_config(args.config, overrides)
    output = args.output or os.path.join(
        "runs", "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    os.makedirs(output, exist_ok=True)
    save_config(config, os.path.join(output, "config.yaml"))

    import keras
    import numpy as np

    from keras_spk import data
    from keras_spk import metrics
    from keras_spk.layers import LogMelFilterbank
    from keras_spk.utils.files import atomic_write_json

    started = time.time()
    keras.utils.set_random_seed(config["seed"])
    train_dir, eval_dir, trials_path = resolve_data(args, config)
    sample_rate = config["data"]["sample_rate"]
    train = data.read_voxceleb(train_dir)
    trials = data.read_trials(trials_path, eval_dir)
    data.check_speaker_overlap(
        train.speaker_ids,
        set(trials.speakers().values()),
        allow_overlap=args.allow_speaker_overlap or config["data"]["allow_speaker_overlap"],
    )
    speaker_map = train.speaker_map()
    speaker_map.save(os.path.join(output, "speakers.json"))
    print(
        f"train: {len(train)} utterances of {len(speaker_map)} speakers from {train_dir}\n"
        f"eval:  {len(trials)} trials over {len(trials.utterances)} utterances from {eval_dir}"
    )

    crop = int(config["data"]["crop_seconds"] * sample_rate)
    dataset = data.training_dataset(
        train.paths,
        train.labels(speaker_map),
        crop,
        config["data"]["batch_size"],
        sample_rate=sample_rate,
        seed=config["seed"],
    )

    embedder = build_embedder(
        config["model"]["num_mel_bins"], config["model"]["embedding_dim"], sample_rate
    )
    model = keras.Sequential(
        [embedder, keras.layers.Dense(len(speaker_map), name="speaker_logits")]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config["optimizer"]["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    validation = metrics.VerificationCallback(trials, embedder, sample_rate=sample_rate)

    def table_row(name, embeddings):
        enroll, test = trials.indices()
        scores = metrics.cosine_trial_scores(embeddings, enroll, test)
        return {"system": name, **metrics.verification_metrics(scores, trials.labels)}

    rng = np.random.default_rng(config["seed"])
    rows = [table_row("random embeddings", rng.standard_normal((len(trials.utterances), 128)))]
    # Without mean normalisation: the utterance's average log spectrum is the feature.
    features = LogMelFilterbank(
        sample_rate=sample_rate,
        num_mel_bins=config["model"]["num_mel_bins"],
        mean_normalization_window=None,
    )
    long_term = [keras.ops.convert_to_numpy(features(w)).mean(axis=1)[0] for w in validation.waveforms()]
    rows.append(table_row("mean log-mel, cosine (untrained)", np.stack(long_term)))
    model.fit(
        dataset,
        epochs=config["training"]["epochs"],
        callbacks=[
            validation,
            keras.callbacks.CSVLogger(os.path.join(output, "training_log.csv")),
            keras.callbacks.TensorBoard(os.path.join(output, "tensorboard")),
        ],
        verbose=config["training"]["verbose"],
        shuffle=False,  # the dataset shuffles itself, every epoch
    )
    rows.append(table_row("trained log-mel CNN, cosine", validation.embed()))
    wall = time.time() - started

    header = f"{'system':36s} {'EER %':>7s} {'minDCF0.01':>11s} {'minDCF0.05':>11s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['system']:36s} {100 * r['eer']:7.2f} {r['min_dcf_0.01']:11.4f} {r['min_dcf_0.05']:11.4f}"
        )
    table = "\n".join(lines)
    print("\n" + table + f"\n\nbackend: {keras.backend.backend()}, wall time {wall:.0f} s")
    atomic_write_json(
        os.path.join(output, "results.json"),
        {"backend": keras.backend.backend(), "wall_seconds": wall, "results": rows},
    )
    print(f"run folder: {output}")
    return rows


if __name__ == "__main__":
    main()
