"""P speakers x K utterances batch sampling for metric-learning losses."""

import numpy as np

from keras_spk.utils._checks import is_int


def draw_positions(rng, sizes, count):
    """`count` positions in `[0, size)` per row, distinct where `size >= count`.

    Rows whose `size` is smaller than `count` draw with replacement. Fully
    vectorised over rows (a Python loop over `count` only), so a whole
    epoch of a large corpus is drawn at once.

    Args:
        rng: `numpy.random.Generator`.
        sizes: int [rows], each >= 1.
        count: int >= 0.

    Returns:
        int64 [rows, count].
    """
    sizes = np.asarray(sizes, np.int64)
    u = rng.random((len(sizes), count))
    out = np.minimum((u * sizes[:, None]).astype(np.int64), sizes[:, None] - 1)
    distinct = sizes >= count
    if count < 2 or not distinct.any():
        return out
    n = sizes[distinct]
    u = u[distinct]
    picked = np.empty((len(n), count), np.int64)
    for j in range(count):
        # The r-th of the n - j positions not taken yet: walk the taken ones in
        # increasing order, stepping over each one at or below r.
        r = np.minimum((u[:, j] * (n - j)).astype(np.int64), n - j - 1)
        for taken in np.sort(picked[:, :j], axis=1).T:
            r += r >= taken
        picked[:, j] = r
    out[distinct] = picked
    return out


# The most batches an epoch may have: its indices are drawn at once ([steps, P*K] int64;
# 100,000 batches of 128 rows are 100 MB, ten passes over VoxCeleb2).
MAX_STEPS_PER_EPOCH = 100_000
# The most mixtures an epoch may have ([mixtures, K] pairings drawn at once: 10 M of 2
# speakers are 160 MB, about 8,000 hours of 3-s mixtures).
MAX_MIXTURES_PER_EPOCH = 10_000_000


class PKSampler:
    """Draws batches of P speakers with K utterances each.

    An epoch covers the training set: `len(labels) // (P*K)` batches by
    default (`steps_per_epoch` overrides it). Speakers are visited in a
    shuffled order, P at a time, and re-shuffled when a pass over them is
    exhausted (the last `n_speakers % P` speakers of a pass, fewer than a
    batch, wait for the next pass), so an epoch may pass over the speakers
    several times while no batch holds a speaker twice. Each speaker
    contributes K distinct utterances when it has at least K, otherwise its
    utterances are drawn with replacement. The batch is laid out speaker by
    speaker: rows `p*K .. p*K+K-1` belong to the p-th speaker of the batch,
    the arrangement GE2E-style losses expect.

    Epoch `e` is a pure function of `(seed, e)`, so runs repeat exactly and a
    run resumed at epoch `e` draws what an uninterrupted run would have.

    Args:
        labels: int array, the speaker index of each utterance.
        num_speakers: P, speakers per batch.
        num_utterances: K, utterances per speaker.
        seed: int.
        steps_per_epoch: `None` (`len(labels) // (P*K)`) or an int >= 1,
            batches per epoch.

    Example:
    >>> sampler = PKSampler([0, 0, 1, 1, 2, 2, 2, 2], num_speakers=2, num_utterances=2)
    >>> batches = sampler.epoch(0)
    >>> len(batches), batches[0].shape
    (2, (4,))
    """

    def __init__(self, labels, num_speakers, num_utterances, seed=0, steps_per_epoch=None):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(
                f"labels must be a non-empty 1-D array. Received: labels of shape {labels.shape}"
            )
        for name, value in [("num_speakers", num_speakers), ("num_utterances", num_utterances)]:
            if not is_int(value) or value < 1:
                raise ValueError(
                    "num_speakers and num_utterances must be ints >= 1. "
                    f"Received: {name}={value!r}"
                )
        if steps_per_epoch is not None and (
            not is_int(steps_per_epoch) or not 1 <= steps_per_epoch <= MAX_STEPS_PER_EPOCH
        ):
            raise ValueError(
                "steps_per_epoch must be None (one pass over the utterances) or an int from 1 to "
                f"{MAX_STEPS_PER_EPOCH:,} (an epoch's indices are drawn at once). "
                f"Received: steps_per_epoch={steps_per_epoch!r}"
            )
        self.speakers, inverse = np.unique(labels, return_inverse=True)
        if int(num_speakers) > len(self.speakers):
            raise ValueError(
                f"num_speakers (P) cannot exceed the {len(self.speakers)} speakers in the data. "
                f"Received: num_speakers={num_speakers}"
            )
        self.num_speakers = int(num_speakers)
        self.num_utterances = int(num_utterances)
        self.seed = int(seed)
        if steps_per_epoch is None and len(labels) < self.batch_size:
            raise ValueError(
                f"{len(labels)} utterances do not fill one batch of P*K = {self.batch_size}. "
                "Lower num_speakers or num_utterances, or set steps_per_epoch. "
                f"Received: num_speakers={num_speakers}, num_utterances={num_utterances}"
            )
        self.steps_per_epoch = steps_per_epoch
        self._members = np.argsort(inverse, kind="stable").astype(np.int64)
        self._counts = np.bincount(inverse).astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)

    @property
    def batch_size(self):
        return self.num_speakers * self.num_utterances

    def __len__(self):
        """Batches per epoch."""
        if self.steps_per_epoch is not None:
            return int(self.steps_per_epoch)
        return int(self._counts.sum()) // self.batch_size

    def epoch_indices(self, epoch):
        """Utterance indices of epoch `epoch`: int64 `[len(self), P*K]`, one row per batch."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        steps, P, K = len(self), self.num_speakers, self.num_utterances
        n_speakers = len(self.speakers)
        per_pass = n_speakers // P
        passes = -(-steps // per_pass)
        visits = rng.permuted(np.tile(np.arange(n_speakers), (passes, 1)), axis=1)
        speakers = visits[:, : per_pass * P].reshape(-1)[: steps * P]
        positions = draw_positions(rng, self._counts[speakers], K)
        rows = self._members[self._starts[speakers][:, None] + positions]
        return rows.reshape(steps, P * K)

    def epoch(self, epoch):
        """The list of index batches (each `[P*K]` int64) of epoch `epoch`."""
        return list(self.epoch_indices(epoch))

    def __iter__(self):
        """Endless stream of batches, epoch after epoch."""
        epoch = 0
        while True:
            yield from self.epoch(epoch)
            epoch += 1
