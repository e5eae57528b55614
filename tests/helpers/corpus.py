"""A tiny synthetic corpus for the end-to-end recipe tests, passed as the user's data."""

from keras_spk.data import make_demo_corpus


def make_tiny_corpus(tmp_path_factory, seed):
    """Writes a tiny demo corpus in VoxCeleb layout under a fresh temporary folder.

    4 training speakers and 3 test speakers, 4 and 3 utterances each of
    1 to 1.5 s, 2 videos per speaker: a recipe trains on it in seconds.

    Args:
        tmp_path_factory: pytest's `tmp_path_factory` fixture.
        seed: seed of the corpus (the same seed gives the same files).

    Returns:
        The corpus folder (str), holding `train/`, `test/` and `trials.txt`.
    """
    root = str(tmp_path_factory.mktemp("corpus") / "demo")
    make_demo_corpus(
        root,
        seed=seed,
        num_train_speakers=4,
        num_train_utterances=4,
        num_test_speakers=3,
        num_test_utterances=3,
        videos_per_speaker=2,
        min_duration=1.0,
        max_duration=1.5,
    )
    return root


def data_args(corpus):
    """The recipe's `--data`, `--eval-data` and `--trials` arguments for `corpus`.

    Args:
        corpus: a folder from `make_tiny_corpus`.

    Returns:
        list of command-line arguments.
    """
    return [
        "--data",
        f"{corpus}/train",
        "--eval-data",
        f"{corpus}/test",
        "--trials",
        f"{corpus}/trials.txt",
    ]


# A RawNet small enough to train in seconds: one frame per crop (3^7 samples).
RAWNET_TINY_MODEL = [
    "--data.crop_samples=2187",
    "--data.batch_size=8",
    "--model.strided_conv_filters=4",
    "--model.stackwise_filters=[4, 4, 8, 8, 8, 8]",
    "--model.gru_units=8",
    "--model.embedding_dim=8",
]
