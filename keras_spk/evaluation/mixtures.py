"""Speaker verification from two-speaker mixtures (Han, Chung and Kang, 2020, section 4.1.2).

An embedder that maps a mixture waveform `[batch, samples]` to K identity
embeddings `[batch, K, dim]`, in no particular order, cannot be scored on
ordinary trials: which output holds which speaker is unknown. The MIRNet
paper scores it on triples of mixtures `S_{A+B}`, `S_{A'+C}`, `S_{C'+D}`
(A, B, C, D four distinct speakers, A' another utterance of A, C' another
utterance of C):

```
d_p = min_{i,j} ||I_i(A+B) - I_j(A'+C)||     (eq. 6, a target trial)
d_n = min_{i,j} ||I_i(A+B) - I_j(C'+D)||     (eq. 7, a non-target trial)
```

and reports the EER of the scores `-d` over 200 target and 200 non-target
trials. The paper does not say whether the embeddings are normalised; here
the distance is Euclidean between L2-normalised embeddings.

* `mixture_triples(speakers, num_trials, seed)` draws the utterances of the
  triples;
* `min_distance_scores(anchors, others)` is `-min_{i,j}` of the distance of
  every identity pair;
* `mixture_verification(embedder, utterances)` reads the utterances, cuts a
  fixed-length segment of each, mixes the pairs at equal level (or another
  signal-to-interference ratio), embeds them and returns one result row for
  the mixtures and one for the clean segments (the same embedder, the same
  speakers: pairs (A, A') and (A, C) of single-speaker segments, scored by
  the same minimum over identity pairs), and the same two rows for an
  optional reference embedder (e.g. `keras_spk.models.feature_statistics_embedder`,
  one embedding per input, i.e. K = 1), so the numbers can be judged.

Example:

>>> utterances = keras_spk.data.read_dataset("librispeech", "dev-clean")  # doctest: +SKIP
>>> rows, scores = mixture_verification(embedder, utterances, num_trials=200)  # doctest: +SKIP
>>> [(row["input"], round(100 * row["eer"], 2)) for row in rows]  # doctest: +SKIP
[('mixture', 6.0), ('clean', 2.5)]
"""

import numpy as np

from keras_spk.utils._checks import check_positive_int

__all__ = [
    "mixture_segment",
    "mixture_triples",
    "mixture_verification",
    "min_distance_scores",
    "MIXTURE_ROLES",
    "REFERENCE_LABEL",
    "TRAINED_LABEL",
]

# The columns of `mixture_triples`: the utterances of S_{A+B}, S_{A'+C} and S_{C'+D}.
MIXTURE_ROLES = ("A", "B", "A'", "C", "C'", "D")
TRAINED_LABEL = "trained embedder"
REFERENCE_LABEL = "log-mel mean+std, min distance (no training)"
# Tries at a triple not drawn before, before a repeated one is accepted.
_DISTINCT_TRIES = 100


def mixture_triples(speakers, num_trials, seed=0):
    """The utterances of `num_trials` triples of mixtures A+B, A'+C, C'+D (seeded).

    Each triple takes four distinct speakers: A and C drawn uniformly among
    the speakers with at least two utterances (A' and C' are another
    utterance of the same speaker), B and D uniformly among the other
    speakers. Triples already drawn are drawn again (up to 100 times), so
    they are distinct whenever the data holds enough of them.

    Args:
        speakers: 1-D array-like, the speaker label of each utterance
            (str or any hashable label).
        num_trials: int >= 1, the number of triples (each gives one target
            and one non-target trial).
        seed: int.

    Returns:
        int64 numpy array `[num_trials, 6]` of utterance indices, the
        columns `(A, B, A', C, C', D)` (`MIXTURE_ROLES`).

    Raises:
        ValueError: `speakers` is not a non-empty 1-D list, `num_trials` is
            not a positive int, fewer than 4 speakers, or fewer than 2
            speakers with at least 2 utterances.

    Example:

    >>> speakers = ["s1", "s1", "s2", "s2", "s3", "s4"]
    >>> triples = mixture_triples(speakers, num_trials=2, seed=0)
    >>> triples.shape
    (2, 6)
    """
    speakers = np.asarray(speakers)
    if speakers.ndim != 1 or speakers.size == 0:
        raise ValueError(
            "`speakers` must be a non-empty 1-D list of the speaker of each utterance. "
            f"Received: speakers of shape {speakers.shape}"
        )
    num_trials = check_positive_int("num_trials", num_trials)
    names, inverse, counts = np.unique(speakers, return_inverse=True, return_counts=True)
    if len(names) < 4:
        raise ValueError(
            "Mixture verification needs utterances of at least 4 speakers: A, B, C and D of a "
            f"triple of mixtures are distinct speakers. Received: utterances of {len(names)} "
            f"speaker(s) ({', '.join(map(str, names))}). Add speakers."
        )
    repeated = np.flatnonzero(counts >= 2)
    if len(repeated) < 2:
        raise ValueError(
            "Mixture verification needs at least 2 speakers with 2 or more utterances each "
            "(A' and C' are other utterances of the speakers A and C). Received: "
            f"{len(repeated)} such speaker(s) among {len(names)}. Add utterances (e.g. hold out "
            "at least 2 per speaker)."
        )
    members = [np.flatnonzero(inverse == k) for k in range(len(names))]
    rng = np.random.default_rng([int(seed), 0x6D6978])
    triples, drawn = [], set()
    for _ in range(num_trials):
        for _ in range(_DISTINCT_TRIES):
            triple = _draw_triple(rng, members, repeated)
            if triple not in drawn:
                break
        drawn.add(triple)
        triples.append(triple)
    return np.asarray(triples, dtype=np.int64).reshape(num_trials, 6)


def _draw_triple(rng, members, repeated):
    """One `(A, B, A', C, C', D)` of utterance indices."""
    a, c = rng.choice(repeated, size=2, replace=False)
    others = np.setdiff1d(np.arange(len(members)), [a, c])
    b, d = rng.choice(others, size=2, replace=False)
    utt_a, utt_a2 = rng.choice(members[a], size=2, replace=False)
    utt_c, utt_c2 = rng.choice(members[c], size=2, replace=False)
    utt_b, utt_d = rng.choice(members[b]), rng.choice(members[d])
    return tuple(int(i) for i in (utt_a, utt_b, utt_a2, utt_c, utt_c2, utt_d))


def _identities(name, x):
    """`x` as float64 `[N, K, D]` (a 2-D `[N, D]` is K = 1), each identity of unit L2 norm."""
    x = np.asarray(x, dtype="float64")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(
            f"`{name}` must be embeddings [N, K, dim] (or [N, dim] for one per input). "
            f"Received: {name} of shape {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` holds NaN or Inf values.")
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def min_distance_scores(anchors, others):
    """Minus the smallest Euclidean distance between identity pairs, per row (eq. 6-7).

    `score[n] = -min_{i,j} ||a_i / |a_i| - o_j / |o_j| ||`, over the K1
    identities `a_i` of `anchors[n]` and the K2 identities `o_j` of
    `others[n]`, each L2-normalised (an all-zero embedding stays zero).
    Higher means more likely one shared speaker.

    Args:
        anchors: `[N, K1, dim]`, or `[N, dim]` for one embedding per input.
        others: `[N, K2, dim]`, or `[N, dim]`.

    Returns:
        float64 numpy array `[N]`, in `[-2, 0]`.

    Raises:
        ValueError: other shapes, mismatched `N` or `dim`, NaN or Inf.

    Example:

    >>> anchors = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # one row, two identities
    >>> others = np.array([[2.0, 2.0]])  # one identity: (1, 1) / sqrt(2) once normalised
    >>> min_distance_scores(anchors, others)  # -sqrt(2 - sqrt(2))
    array([-0.76536686])
    """
    a = _identities("anchors", anchors)
    o = _identities("others", others)
    if a.shape[0] != o.shape[0] or a.shape[2] != o.shape[2]:
        raise ValueError(
            "`anchors` and `others` must hold as many rows and embeddings of one size. "
            f"Received: anchors of shape {np.shape(anchors)}, others of shape {np.shape(others)}"
        )
    distances = np.linalg.norm(a[:, :, None, :] - o[:, None, :, :], axis=-1)  # [N, K1, K2]
    return -distances.reshape(len(a), -1).min(axis=1)


def mixture_segment(waveform, segment_samples, seed):
    """A `segment_samples` window of `waveform` at a seeded offset, short utterances repeated.

    As the training crops (`keras_spk.data.crop_or_repeat`): an utterance
    of `n >= L` samples gives a window at a uniform offset in `[0, n - L]`;
    a shorter one is repeated end to end and the window starts at a uniform
    offset in `[0, n - 1]`. The offset is drawn from `numpy`'s generator
    seeded with `seed`, so a segment depends only on the waveform and `seed`.

    Args:
        waveform: 1-D float array, not empty.
        segment_samples: int, the window length `L`.
        seed: int or sequence of ints (a `numpy.random.default_rng` seed).

    Returns:
        float32 numpy array `[segment_samples]`.

    Example:

    >>> mixture_segment(np.arange(3.0), 5, seed=0).shape
    (5,)
    """
    segment_samples = check_positive_int("segment_samples", segment_samples)
    waveform = np.asarray(waveform, dtype="float32")
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(
            f"`waveform` must be a non-empty 1-D array [samples]. Received: waveform with shape {waveform.shape}"
        )
    n = waveform.shape[0]
    rng = np.random.default_rng(seed)
    if n >= segment_samples:
        offset = int(rng.integers(0, n - segment_samples + 1))
        return waveform[offset : offset + segment_samples].copy()
    offset = int(rng.integers(0, n))
    tiled = np.tile(waveform, -(-(segment_samples + offset) // n))
    return tiled[offset : offset + segment_samples].copy()


def _mix(first, second, sir_db):
    """`first + g * second`, `g` bringing `second` to `first`'s RMS times `10**(-sir / 20)`.

    The convention of `keras_spk.data.mixture.mix_sources`: a silent source
    (RMS below `SILENT_RMS`) keeps its level.
    """
    from keras_spk.data.mixture import SILENT_RMS

    first, second = np.asarray(first, "float32"), np.asarray(second, "float32")
    reference = np.sqrt(np.mean(np.square(first, dtype="float64"), axis=-1))
    rest = np.sqrt(np.mean(np.square(second, dtype="float64"), axis=-1))
    audible = (reference > SILENT_RMS) & (rest > SILENT_RMS)
    target = reference * np.power(10.0, -np.asarray(sir_db, "float64") / 20.0)
    gains = np.where(audible, target / np.where(audible, rest, 1.0), 1.0)
    return (first + gains[:, None].astype("float32") * second).astype("float32")


def _utterance_lists(utterances):
    """`(paths, speakers)` of an `UtteranceList` or a `(paths, speakers)` pair."""
    if hasattr(utterances, "paths") and hasattr(utterances, "speakers"):
        paths, speakers = utterances.paths, utterances.speakers
    else:
        try:
            paths, speakers = utterances
        except (TypeError, ValueError):
            raise ValueError(
                "`utterances` must be a `keras_spk.data.UtteranceList` or a `(paths, speakers)` "
                f"pair. Received: {type(utterances).__name__}"
            ) from None
    paths, speakers = [str(p) for p in paths], [str(s) for s in speakers]
    if len(paths) != len(speakers):
        raise ValueError(
            "`utterances` must give one speaker per path. "
            f"Received: {len(paths)} paths, {len(speakers)} speakers"
        )
    return paths, speakers


def _read_segments(paths, indices, segment_samples, sample_rate, seed):
    """One seeded segment `[len(paths), L]` of each file, each file read once (only its segment kept)."""
    from keras_spk.inference import read_waveforms

    segments = np.empty((len(paths), segment_samples), dtype="float32")
    for row, (index, waveform) in enumerate(zip(indices, read_waveforms(paths, sample_rate))):
        if waveform.size == 0:
            from keras_spk.data.audio import AudioError

            raise AudioError(f"{paths[row]}: the file holds no samples. Remove it from the data.")
        segments[row] = mixture_segment(waveform, segment_samples, [int(seed), 0x736567, int(index)])
    return segments


def _embed(embed, count, batch_size, inputs, name_of):
    """Embeddings `[count, K, dim]` of `inputs(start, stop) -> [b, L]`, batch by batch, each checked."""
    from keras_spk.inference import _check_row
    from keras_spk.inference import _to_numpy

    rows = []
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        output = _to_numpy(embed(inputs(start, stop)))
        if output.ndim not in (2, 3) or output.shape[0] != stop - start:
            raise ValueError(
                f"The embedder must map {stop - start} waveforms [{stop - start}, samples] to "
                f"embeddings [{stop - start}, dim] or [{stop - start}, K, dim]. Received an output "
                f"of shape {output.shape} for {name_of(start)} and the next ones."
            )
        for i in range(stop - start):
            rows.append(_check_row(output[i : i + 1], name_of(start + i), rows))
    embeddings = np.stack(rows)
    return embeddings[:, None, :] if embeddings.ndim == 2 else embeddings


def mixture_verification(
    embedder,
    utterances,
    num_trials=200,
    segment_samples=48000,
    sample_rate=16000,
    sir_db=(0.0, 0.0),
    seed=0,
    batch_size=32,
    min_samples=1,
    reference=None,
    progress=False,
):
    """EER of an embedder on mixtures of two speakers, and on their clean segments (section 4.1.2).

    `num_trials` triples of utterances `(A, B, A', C, C', D)` are drawn
    (`mixture_triples`). Each utterance used is read once (decoded and
    resampled as `keras_spk.inference.embed_files` reads it) and cut to one
    segment of `segment_samples` samples at a seeded offset
    (`mixture_segment`; a short utterance is repeated end to end, as the
    training crops are); only the segments are kept. The mixtures
    `S_{A+B}`, `S_{A'+C}`, `S_{C'+D}` sum their two segments with the
    second brought to the first's RMS times `10**(-sir / 20)`, `sir` drawn
    uniformly in `sir_db` for each mixture (the convention of
    `keras_spk.data.mixture.mix_sources`; equal RMS for `(0, 0)`). They are
    embedded `batch_size` at a time; the target score of a triple is
    `min_distance_scores(I(A+B), I(A'+C))`, its non-target score
    `min_distance_scores(I(A+B), I(C'+D))`.

    The clean condition embeds the single-speaker segments of A, A' and C
    with the same embedder: target `(A, A')`, non-target `(A, C)`, scored
    by the same minimum over identity pairs. With `reference`, both
    conditions are scored for it too, on the same segments and mixtures.

    Args:
        embedder: a Keras model mapping waveforms `[batch, samples]` to
            embeddings `[batch, K, dim]` (or `[batch, dim]`, K = 1), called
            with `training=False`, or a callable doing so on float32 numpy
            arrays.
        utterances: a `keras_spk.data.UtteranceList`, or a
            `(paths, speakers)` pair.
        num_trials: int, triples (target and non-target trials each).
        segment_samples: int, the length of each segment and mixture, in
            samples at `sample_rate`.
        sample_rate: int, the rate the embedder expects; files at another
            rate are resampled.
        sir_db: `(lo, hi)` in dB, the range of the level of the first
            source of a mixture over the second.
        seed: int; fixes the triples, the segments and the levels.
        batch_size: int, waveforms per embedder call.
        min_samples: int, the shortest input the embedder accepts; the
            segments must be at least that long.
        reference: optional second embedder (e.g.
            `keras_spk.models.feature_statistics_embedder`) scored the
            same way, for comparison.
        progress: bool, print what is being embedded.

    Returns:
        `(rows, scores)`. `rows`: one dict per (system, input), the trained
        embedder's first, with `input` (`"mixture"` or `"clean"`),
        `system` (`TRAINED_LABEL` or `REFERENCE_LABEL`), `eer` and
        `min_dcf_<p>` (fractions, as from
        `keras_spk.metrics.verification_metrics`), `n_positive`,
        `n_negative`, `identities` (K of the system), `segment_samples` and
        `sir_db`. `scores`: dict of numpy arrays: `labels` (int8
        `[2 * num_trials]`: 1 for the targets, which come first),
        `triples` (`[num_trials, 6]`, indices into `utterances`) and the
        scores `[2 * num_trials]` of each row, `trained_mixture`,
        `trained_clean`, and with `reference` `reference_mixture`,
        `reference_clean`.

    Raises:
        ValueError: bad arguments, too few speakers or utterances (see
            `mixture_triples`), segments shorter than `min_samples`, or an
            embedder output that is not finite `[batch, dim]` or
            `[batch, K, dim]` with no all-zero embedding (the message names
            the mixture or segment).
        FileNotFoundError: files that do not exist.
        keras_spk.data.AudioError: a file that cannot be decoded (named).

    Example:

    >>> rows, scores = mixture_verification(  # doctest: +SKIP
    ...     embedder, keras_spk.data.read_dataset("librispeech", "test-clean"),
    ...     num_trials=200, segment_samples=48000,
    ...     reference=keras_spk.models.feature_statistics_embedder(16000))
    >>> [(r["system"], r["input"], f"{100 * r['eer']:.2f}") for r in rows]  # doctest: +SKIP
    """
    from keras_spk import metrics
    from keras_spk.data.mixture import _check_sir
    from keras_spk.inference import _check_file_arguments
    from keras_spk.inference import embedding_function

    paths, speakers = _utterance_lists(utterances)
    segment_samples = check_positive_int("segment_samples", segment_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    min_samples = check_positive_int("min_samples", min_samples)
    lo, hi = _check_sir(sir_db)
    if segment_samples < min_samples:
        raise ValueError(
            f"`segment_samples` must be at least the {min_samples} samples "
            f"({min_samples / sample_rate:.3f} s at {sample_rate} Hz) the embedder needs "
            f"(`min_samples`). Received: segment_samples={segment_samples}"
        )
    triples = mixture_triples(speakers, num_trials, seed)
    num_trials = len(triples)
    needed, slots = np.unique(triples, return_inverse=True)
    slots = slots.reshape(triples.shape)  # rows of `segments`
    needed_paths = [paths[i] for i in needed]
    sample_rate, _, needed_paths = _check_file_arguments(
        "mixture_verification", embedder, needed_paths, sample_rate, min_samples
    )
    if reference is not None:
        _check_file_arguments("mixture_verification", reference, needed_paths[:1], sample_rate, min_samples)
    if progress:
        print(f"Reading a {segment_samples}-sample segment of each of {len(needed)} utterances...")
    segments = _read_segments(needed_paths, needed, segment_samples, sample_rate, seed)

    # Mixtures: the anchors A+B, then A'+C, then C'+D; the first source sets the level.
    pairs = np.concatenate([slots[:, [0, 1]], slots[:, [2, 3]], slots[:, [4, 5]]])
    sirs = np.random.default_rng([int(seed), 0x736972]).uniform(lo, hi, size=len(pairs))

    def mixtures(start, stop):
        chosen = pairs[start:stop]
        return _mix(segments[chosen[:, 0]], segments[chosen[:, 1]], sirs[start:stop])

    def mixture_name(m):
        first, second = needed_paths[pairs[m, 0]], needed_paths[pairs[m, 1]]
        return f"the mixture of {first} and {second}"

    # Clean segments: those of A, A' and C.
    clean, clean_rows = np.unique(slots[:, [0, 2, 3]], return_inverse=True)
    clean_rows = clean_rows.reshape(num_trials, 3)

    labels = np.concatenate([np.ones(num_trials, "int8"), np.zeros(num_trials, "int8")])
    scores = {"labels": labels, "triples": triples}
    rows = []
    systems = [("trained", TRAINED_LABEL, embedder)]
    if reference is not None:
        systems.append(("reference", REFERENCE_LABEL, reference))
    for key, label, model in systems:
        embed = embedding_function(model, batch_shape=(None, segment_samples))
        if progress:
            print(f"Embedding {len(pairs)} mixtures and {len(clean)} clean segments ({label})...")
        mixed = _embed(embed, len(pairs), batch_size, mixtures, mixture_name)
        anchors, positives, negatives = np.split(mixed, 3)
        single = _embed(
            embed, len(clean), batch_size, lambda start, stop: segments[clean[start:stop]],
            lambda i: f"the segment of {needed_paths[clean[i]]}",
        )
        a, a2, c = (single[clean_rows[:, k]] for k in range(3))
        conditions = {
            "mixture": (mixed.shape[1], anchors, positives, negatives),
            "clean": (single.shape[1], a, a2, c),
        }
        for name, (identities, anchor, target, nontarget) in conditions.items():
            values = np.concatenate(
                [min_distance_scores(anchor, target), min_distance_scores(anchor, nontarget)]
            )
            scores[f"{key}_{name}"] = values
            rows.append(
                {
                    "input": name,
                    "system": label,
                    **metrics.verification_metrics(values, labels, p_targets=(0.01, 0.05)),
                    "n_positive": int(num_trials),
                    "n_negative": int(num_trials),
                    "identities": int(identities),
                    "segment_samples": int(segment_samples),
                    "sir_db": [lo, hi],
                }
            )
    return rows, scores
