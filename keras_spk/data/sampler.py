"""P speakers x K utterances batch sampling for metric-learning losses."""

import numpy as np


class PKSampler:
    """Draws batches of P speakers with K utterances each.

    Within an epoch the speakers are visited in a shuffled order, P at a
    time, so every speaker appears once per epoch (the last incomplete group
    is dropped, as speakers are never repeated within a batch). Each speaker
    contributes K distinct utterances when it has at least K, otherwise its
    utterances are drawn with replacement. The batch is laid out speaker by
    speaker: rows `p*K .. p*K+K-1` belong to the p-th speaker of the batch,
    the arrangement GE2E-style losses expect.

    Epoch `e` is a pure function of `(seed, e)`, so runs repeat exactly.

    Args:
        labels: int array, the speaker index of each utterance.
        num_speakers: P, speakers per batch.
        num_utterances: K, utterances per speaker.
        seed: int.

    Example:
    >>> sampler = PKSampler([0, 0, 1, 1, 2, 2], num_speakers=2, num_utterances=2)
    >>> batches = sampler.epoch(0)
    >>> len(batches), batches[0].shape
    (1, (4,))
    """

    def __init__(self, labels, num_speakers, num_utterances, seed=0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array. Received shape {labels.shape}")
        if int(num_speakers) < 1 or int(num_utterances) < 1:
            raise ValueError(
                "num_speakers and num_utterances must be >= 1. "
                f"Received: num_speakers={num_speakers}, num_utterances={num_utterances}"
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
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse))
        self._members = np.split(order, bounds[:-1])

    @property
    def batch_size(self):
        return self.num_speakers * self.num_utterances

    def __len__(self):
        """Batches per epoch."""
        return len(self.speakers) // self.num_speakers

    def epoch(self, epoch):
        """The list of index batches (each `[P*K]` int64) of epoch `epoch`."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        visit = rng.permutation(len(self.speakers))
        batches = []
        for b in range(len(self)):
            rows = []
            for s in visit[b * self.num_speakers : (b + 1) * self.num_speakers]:
                members = self._members[s]
                replace = len(members) < self.num_utterances
                rows.append(rng.choice(members, self.num_utterances, replace=replace))
            batches.append(np.concatenate(rows).astype(np.int64))
        return batches

    def __iter__(self):
        """Endless stream of batches, epoch after epoch."""
        epoch = 0
        while True:
            yield from self.epoch(epoch)
            epoch += 1
