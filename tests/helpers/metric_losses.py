"""Toy batches and numpy references shared by the metric-learning loss tests.

Used by tests/losses/{triplet_loss,npair_loss,angular_loss,ge2e_loss,
multi_metric_loss}_test.py.
"""

import math

import keras
import numpy as np


def reference_distance(a, b, distance):
    a = np.asarray(a, "float64")
    b = np.asarray(b, "float64")
    if distance == "squared":
        return float(np.sum((a - b) ** 2))
    if distance == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    return 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def reference_triplet_loss(labels, x, margin=0.3, mining="batch_hard", distance="squared"):
    """Eq. 8 of Xu et al., [d(a, p) + m - d(a, n)]_+, one loop per anchor."""
    labels = list(np.asarray(labels).reshape(-1))
    out = np.zeros(len(labels))
    for a in range(len(labels)):
        positives = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        d_ap = {p: reference_distance(x[a], x[p], distance) for p in positives}
        d_an = {n: reference_distance(x[a], x[n], distance) for n in negatives}
        if mining == "batch_hard":
            out[a] = max(0.0, max(d_ap.values()) + margin - min(d_an.values()))
            continue
        pair_losses = []
        for p in positives:
            farther = [d for d in d_an.values() if d > d_ap[p]]
            chosen = min(farther) if farther else max(d_an.values())
            pair_losses.append(max(0.0, d_ap[p] + margin - chosen))
        out[a] = np.mean(pair_losses)
    return out


def shuffled_batch(seed=0, counts=(3, 3, 3), dim=5):
    """Labels in random order (not grouped by speaker) with clustered embeddings."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    centers = rng.normal(size=(len(counts), dim))
    x = centers[labels] + 1.5 * rng.normal(size=(len(labels), dim))
    return labels.astype("int32"), x.astype("float32")


def clustered_data(num_speakers=4, per_speaker=4, dim=8, seed=0, noise=1.0):
    """P x K toy batch: speaker centres plus noise, rows grouped by speaker."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_speakers), per_speaker).astype("int32")
    x = 2.0 * rng.normal(size=(num_speakers, dim))[labels]
    x = x + noise * rng.normal(size=(len(labels), dim))
    return x.astype("float32"), labels


def fit_history(loss, epochs=15, noise=1.0):
    """Loss per epoch of a Dense(4) embedding trained on the toy batch."""
    x, y = clustered_data(noise=noise)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)
    return history.history["loss"]


def reference_npair_loss(labels, x, l2_reg=0.002):
    """Eq. 10 per anchor, with the tuplets of the cyclic views, as loops.

    Rows of each speaker in batch order are its utterances 0, 1, ..., n-1;
    anchor utterance r of speaker s is paired with utterance (r + 1) mod n
    of every speaker: its own as the positive, the others' as negatives.
    """
    labels = list(np.asarray(labels).reshape(-1))
    x = np.asarray(x, "float64")
    rows = {s: [i for i, label in enumerate(labels) if label == s] for s in dict.fromkeys(labels)}
    out = np.zeros(len(labels))
    for i, s in enumerate(labels):
        out[i] = l2_reg * x[i] @ x[i]
        own = rows[s]
        if len(own) < 2:
            continue
        r = own.index(i)
        positive = own[(r + 1) % len(own)]
        total = 0.0
        for t, other in rows.items():
            if t == s:
                continue
            negative = other[(r + 1) % len(other)]
            total += np.exp(x[i] @ x[negative] - x[i] @ x[positive])
        out[i] += np.log(1.0 + total)
    return out


def reference_angular_loss(labels, x, alpha_degrees=45.0):
    """Hinge on eq. 12 of Xu et al. (Wang et al. 2017), mean over (p, n) per anchor."""
    labels = list(np.asarray(labels).reshape(-1))
    x = np.asarray(x, "float64")
    tan_squared = math.tan(math.radians(alpha_degrees)) ** 2
    out = np.zeros(len(labels))
    for a in range(len(labels)):
        values = []
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            x_c = (x[a] + x[p]) / 2.0
            for n in range(len(labels)):
                if labels[n] == labels[a]:
                    continue
                d_ap = np.sum((x[a] - x[p]) ** 2)
                d_nc = np.sum((x[n] - x_c) ** 2)
                values.append(max(0.0, d_ap - 4.0 * tan_squared * d_nc))
        out[a] = np.mean(values) if values else 0.0
    return out
