"""A trivial reference embedder: statistics of log-mel frames, with nothing learnt."""


def feature_statistics_embedder(sample_rate=16000, num_mel_bins=40, name="feature_statistics"):
    """Waveforms `[batch, samples]` -> the mean and standard deviation of each log-mel band.

    The reference row of the recipes' tables: what an utterance-level
    summary of the spectrum, with no training, gives for verification once
    LDA (fitted on the training speakers) has projected it. A trained
    system that does not beat it has learnt little about speakers.

    `LogMelFilterbank(num_mel_bins)` (25-ms frames every 10 ms, no mean
    normalisation, so the means keep the long-term spectrum) followed by
    `StatisticsPooling` over the frames: `2 * num_mel_bins` numbers per
    utterance.

    Args:
        sample_rate: int, the rate of the waveforms.
        num_mel_bins: int, mel bands.
        name: the model's name.

    Returns:
        A `keras.Model` with no weights to train.
    """
    import keras

    from keras_spk.layers import LogMelFilterbank
    from keras_spk.layers import StatisticsPooling

    waveforms = keras.Input((None,), name="waveforms")
    frames = LogMelFilterbank(
        sample_rate=sample_rate, num_mel_bins=num_mel_bins, mean_normalization_window=None
    )(waveforms)
    statistics = StatisticsPooling()(frames)
    return keras.Model(waveforms, statistics, name=name)
