"""Validation EER / minDCF on a trial list at the end of training epochs."""

import keras
import numpy as np

from keras_spk.metrics.verification import verification_metrics


def cosine_trial_scores(embeddings, enroll_index, test_index):
    """Cosine similarity of each trial's two embeddings.

    Args:
        embeddings: [utterances, dim] array.
        enroll_index, test_index: int arrays, one entry per trial.

    Returns:
        float64 [trials] scores in [-1, 1].
    """
    e = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(e)):
        raise ValueError(
            "Embeddings contain zero vectors or NaN/Inf; cosine scores are undefined. "
            "Check the model output (e.g. training diverged)."
        )
    e = e / norms
    return np.einsum("ij,ij->i", e[enroll_index], e[test_index])


class VerificationCallback(keras.callbacks.Callback):
    """Computes validation EER and minDCF on a trial list after training epochs.

    Every utterance of the trial list is embedded once per evaluation, whole
    (no cropping), one at a time; trials are scored by cosine similarity.
    The results are added to the epoch's `logs` as `val_eer` and
    `val_min_dcf_<p>` (one per `p_targets` entry), so the progress bar, the
    `History` and a `TensorBoard` callback listed *after* this one all
    record them.

    Args:
        trials: a `keras_spk.data.Trials`.
        embedding_model: Keras model (or callable) mapping waveforms
            `[1, samples]` to embeddings `[1, dim]`. Defaults to the model
            being trained, which must then take the waveform alone.
        sample_rate: rate the audio is read at.
        p_targets: target priors for minDCF (C_miss = C_fa = 1).
        frequency: evaluate every `frequency` epochs (and never in between).
        cache_audio: keep the decoded trial audio in memory between epochs.
        prefix: prefix of the log keys.
        verbose: print a line with the results.

    Example:
    >>> trials = keras_spk.data.read_trials("trials.txt", "eval_audio/")
    >>> model.fit(train, epochs=10,
    ...           callbacks=[VerificationCallback(trials, embedder),
    ...                      keras.callbacks.TensorBoard("logs")])
    """

    def __init__(
        self,
        trials,
        embedding_model=None,
        sample_rate=16000,
        p_targets=(0.01, 0.05),
        frequency=1,
        cache_audio=True,
        prefix="val_",
        verbose=0,
    ):
        super().__init__()
        if int(frequency) < 1:
            raise ValueError(f"frequency must be >= 1. Received: frequency={frequency}")
        for p in p_targets:
            if not 0 < p < 1:
                raise ValueError(f"p_targets must lie in (0, 1). Received: p_targets={p_targets}")
        self.trials = trials
        self.embedding_model = embedding_model
        self.sample_rate = sample_rate
        self.p_targets = tuple(p_targets)
        self.frequency = int(frequency)
        self.cache_audio = cache_audio
        self.prefix = prefix
        self.verbose = verbose
        self._audio = None
        self.enroll_index, self.test_index = trials.indices()

    def waveforms(self):
        """The decoded trial utterances, in `trials.utterances` order."""
        if self._audio is not None:
            return self._audio
        import tensorflow as tf

        from keras_spk.data.audio import AudioError
        from keras_spk.data.audio import audio_check_failure
        from keras_spk.data.pipeline import evaluation_dataset

        audio = [None] * len(self.trials.utterances)
        dataset = evaluation_dataset(self.trials.paths, self.sample_rate)
        try:
            for index, waveform, _ in dataset.as_numpy_iterator():
                audio[int(index[0])] = waveform
        except tf.errors.OpError as error:
            problem = audio_check_failure(error)
            if problem is None:
                raise
            raise AudioError(f"Validation trials: {problem}") from None
        if self.cache_audio:
            self._audio = audio
        return audio

    def embed(self):
        """Embeddings [utterances, dim] of every trial utterance, in `trials.utterances` order."""
        model = self.embedding_model or self.model
        rows = []
        for waveform in self.waveforms():
            out = model(waveform, training=False) if isinstance(model, keras.Model) else model(waveform)
            rows.append(np.asarray(keras.ops.convert_to_numpy(out)).reshape(-1))
        return np.stack(rows)

    def evaluate(self):
        """Returns `{"eer": ..., "min_dcf_0.01": ..., ...}` for the current weights."""
        scores = cosine_trial_scores(self.embed(), self.enroll_index, self.test_index)
        return verification_metrics(scores, self.trials.labels, self.p_targets)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.frequency:
            return
        results = self.evaluate()
        if logs is not None:
            logs.update({self.prefix + k: v for k, v in results.items()})
        if self.verbose:
            text = ", ".join(f"{k} {v:.4f}" for k, v in results.items())
            print(f"\nEpoch {epoch + 1}: verification on {len(self.trials)} trials: {text}")
