"""Speaker-conditioned separation, scored as in MIRNet's Table 2: SDRi, SI-SDRi, PESQi.

Han, Chung and Kang (Interspeech 2020, section 4.2) compare separators
conditioned on speaker embeddings by the improvement of the separated
signals over the unprocessed mixture, averaged over both sources: BSS-eval
SDR (SDRi) and wideband PESQ (PESQi). This module builds the evaluation
mixtures and scores a separator on them, with two reference rows computed
on the same mixtures:

* `"mixture (no separation)"`: every estimate is the mixture itself, so
  its SDRi, SI-SDRi and PESQi are 0 exactly: the floor;
* `"ideal ratio mask (oracle)"`: each source's share of the summed source
  magnitudes, `|S_k| / sum_j |S_j|`, applied to the mixture's magnitude
  with the mixture's phase (`keras_spk.models.apply_mask`), with the STFT
  the separation recipe uses (32-ms Hann frames every 10 ms, FFT 512 at
  16 kHz): what a mask network could reach at best.

Two mixture sets, each read lazily (one mixture in memory at a time) and
re-iterable, each mixture with one clean enrolment utterance per source
(another utterance of the same speaker, for separators conditioned on an
enrolled reference, e.g. VoiceFilter):

* `speaker_mixtures`: deterministic two-speaker mixtures of a speaker
  corpus' utterances (e.g. a run's evaluation folder);
* `wsj0_2mix_mixtures`: a subset of WSJ0-2mix, the paper's corpus.

The metrics are `keras_spk.metrics.separation`'s; the assignment of a
separator's estimates to the sources is the one that maximises the mean
SDR, and SI-SDRi and PESQi score the same assignment.
"""

import dataclasses
import functools
import math
import os
import zlib

import numpy as np

from keras_spk.metrics import separation as separation_metrics
from keras_spk.utils import _checks

MIXTURE_LABEL = "mixture (no separation)"
IDEAL_RATIO_MASK_LABEL = "ideal ratio mask (oracle)"
SEPARATION_TABLE = "separation_table"
SEPARATION_RESULTS = "separation_results"
NUM_SOURCES = 2
# A source crop whose RMS is below this (-120 dBFS) keeps its level when mixed
# (`keras_spk.data.mixture.SILENT_RMS`).
SILENT_RMS = 1e-6
# The separation recipe's analysis: 32-ms frames every 10 ms, FFT 512 at 16 kHz.
FRAME_LENGTH_MS = 32
FRAME_STEP_MS = 10
FFT_LENGTH = 512


# --------------------------------------------------------------------------
# Evaluation mixtures.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluationMixture:
    """One evaluation mixture, its clean sources and their speakers' enrolment.

    Attributes:
        name: a name for messages and listings.
        mixture: float32 `[samples]`, the sum of the sources.
        sources: float32 `[K, samples]`, the clean sources at their level
            in the mixture.
        speakers: speaker id of each source, in source order.
        enrolment: float32 `[K, enrolment_samples]`, one clean utterance
            of each source's speaker (not the one in the mixture), in
            source order; `None` when the set has no enrolment.
    """

    name: str
    mixture: np.ndarray
    sources: np.ndarray
    speakers: tuple
    enrolment: np.ndarray = None


class MixtureSet:
    """A fixed list of evaluation mixtures, read one at a time when iterated.

    Built by `speaker_mixtures` and `wsj0_2mix_mixtures`: the plan (which
    files, crops and levels) is made up front, the audio is read and mixed
    as each mixture is reached, so memory holds one mixture at a time. The
    set may be iterated several times and gives the same mixtures each
    time.

    Attributes:
        description: one line saying what the mixtures are.
        settings: dict of the settings the set was made with.
    """

    def __init__(self, plan, load, description, settings):
        self._plan = list(plan)
        self._load = load
        self.description = description
        self.settings = dict(settings)

    def __len__(self):
        return len(self._plan)

    def __iter__(self):
        for entry in self._plan:
            yield self._load(entry)

    def __repr__(self):
        return f"MixtureSet({len(self)} mixtures: {self.description})"


def _check_sir(sir_db):
    try:
        lo, hi = sir_db
    except (TypeError, ValueError):
        lo = hi = None
    if not (_checks.is_real(lo) and _checks.is_real(hi) and math.isfinite(lo) and math.isfinite(hi)
            and lo <= hi):
        raise ValueError(
            "`sir_db` must be two finite numbers (lo, hi) with lo <= hi, the range of the "
            "signal-to-interference ratio in dB of the first source over the second (e.g. "
            f"(0, 0) for equal levels). Received: sir_db={sir_db!r}"
        )
    return float(lo), float(hi)


def _read(path, sample_rate):
    from keras_spk.data.audio import read_audio

    waveform = read_audio(path, sample_rate)
    if waveform.size == 0:
        raise ValueError(f"{path}: the audio file holds no samples; remove it from the evaluation.")
    return waveform


def _crop_or_repeat(waveform, length, rng):
    """`length` samples: a crop at a random offset, or the waveform repeated from its start."""
    if waveform.shape[0] >= length:
        offset = int(rng.integers(0, waveform.shape[0] - length + 1))
        return waveform[offset : offset + length]
    return np.tile(waveform, -(-length // waveform.shape[0]))[:length]


def _stack_enrolment(waveforms, enrolment_samples, rng):
    """`[K, Le]`: each waveform cut or repeated to `enrolment_samples` (None: the longest's length)."""
    length = max(w.shape[0] for w in waveforms) if enrolment_samples is None else enrolment_samples
    return np.stack([_crop_or_repeat(w, length, rng) for w in waveforms]).astype(np.float32)


def _mix(sources, sir):
    """Second source at `sir` dB below the first (equal RMS for 0); the sum and the scaled sources."""
    sources = np.asarray(sources, dtype=np.float64)
    rms = np.sqrt(np.mean(np.square(sources), axis=-1))
    if rms[0] > SILENT_RMS and rms[1] > SILENT_RMS:
        sources[1] *= rms[0] * 10.0 ** (-sir / 20.0) / rms[1]
    sources = sources.astype(np.float32)
    return sources.sum(axis=0), sources


def speaker_mixtures(
    utterances,
    num_mixtures,
    segment_samples,
    sample_rate=16000,
    sir_db=(0.0, 0.0),
    seed=0,
    enrolment_samples=None,
    enrolment=True,
):
    """Deterministic two-speaker mixtures of a speaker corpus, each with its speakers' enrolment.

    Mixture `m` takes two distinct speakers, drawn uniformly, and one
    utterance of each, drawn uniformly among that speaker's; each source
    is a `segment_samples` crop at a random offset (an utterance shorter
    than that is repeated from its start). The second source is scaled to
    the RMS of the first times `10**(-sir / 20)`, `sir` drawn uniformly in
    `sir_db` (equal RMS by default, as `keras_spk.data.mixture_dataset`
    mixes for training), and the mixture is the exact sum of the two.
    The enrolment of each source is another utterance of the same
    speaker, drawn uniformly among the others, cut (at a random offset) or
    repeated to `enrolment_samples`. Everything depends only on the
    utterance list and `seed`.

    Speakers with a single utterance have no second one to enrol with:
    with `enrolment=True` they are left out of the draw (and the set is an
    error when fewer than two speakers remain).

    Args:
        utterances: a `keras_spk.data.UtteranceList` (e.g.
            `read_dataset(layout, eval_dir)`).
        num_mixtures: int >= 1.
        segment_samples: int, the length of each mixture in samples (at
            `sample_rate`).
        sample_rate: files at another rate are resampled to it. Defaults to
            `16000`.
        sir_db: `(lo, hi)`, the range of the first source's level over the
            second's, in dB. Defaults to `(0, 0)`.
        seed: int.
        enrolment_samples: int, the length of each enrolment utterance;
            `None`: each enrolment utterance whole, the shorter one
            repeated to the longer one's length.
        enrolment: bool, whether the mixtures carry enrolment utterances.
            Defaults to `True`.

    Returns:
        A `MixtureSet` of `num_mixtures` `EvaluationMixture`s, read lazily.

    Raises:
        ValueError: bad arguments, or fewer than two speakers to mix (with
            enrolment: fewer than two with at least two utterances).

    Example:

    ```python
    utterances = keras_spk.data.read_dataset("voxceleb", "data/test")
    mixtures = speaker_mixtures(utterances, 100, segment_samples=16000,
                                enrolment_samples=48000)
    for item in mixtures:
        item.mixture.shape, item.sources.shape, item.enrolment.shape
        # (16000,), (2, 16000), (2, 48000)
    ```
    """
    num_mixtures = _checks.check_positive_int("num_mixtures", num_mixtures)
    segment_samples = _checks.check_positive_int("segment_samples", segment_samples)
    sample_rate = _checks.check_positive_int("sample_rate", sample_rate)
    enrolment_samples = _checks.check_positive_int("enrolment_samples", enrolment_samples, allow_none=True)
    lo, hi = _check_sir(sir_db)
    if not _checks.is_int(seed):
        raise ValueError(f"`seed` must be an int. Received: seed={seed!r}")
    if not isinstance(enrolment, bool):
        raise ValueError(f"`enrolment` must be True or False. Received: enrolment={enrolment!r}")
    paths, speakers = list(utterances.paths), [str(s) for s in utterances.speakers]
    members = {}
    for index in sorted(range(len(paths)), key=lambda i: (speakers[i], paths[i])):
        members.setdefault(speakers[index], []).append(index)
    single = sorted(s for s, m in members.items() if len(m) < 2)
    eligible = sorted(s for s in members if not (enrolment and s in single))
    if len(eligible) < NUM_SOURCES:
        why = (
            f" ({len(single)} speaker(s) with a single utterance, e.g. {single[:5]}, have no "
            "other utterance to enrol with and are left out)"
            if enrolment and single
            else ""
        )
        raise ValueError(
            f"Two-speaker mixtures need at least 2 speakers; the utterances give "
            f"{len(eligible)}{why}. Use a corpus with more speakers"
            + (", or enrolment=False." if enrolment and single else ".")
        )

    rng = np.random.default_rng([int(seed), 0x5E9])
    plan = []
    for m in range(num_mixtures):
        # The same draws with or without enrolment, so the mixtures are the same.
        pair = rng.choice(len(eligible), NUM_SOURCES, replace=False)
        chosen, enrol = [], []
        for k in pair:
            indices = members[eligible[k]]
            utterance = int(rng.integers(len(indices)))
            other = int(rng.integers(max(len(indices) - 1, 1)))
            other += other >= utterance
            chosen.append(indices[utterance])
            enrol.append(indices[other] if len(indices) > 1 else None)
        sir = float(rng.uniform(lo, hi))
        crop_seed = int(rng.integers(2**62))
        plan.append((m, tuple(chosen), tuple(enrol) if enrolment else None, sir, crop_seed))

    def load(entry):
        m, chosen, enrol, sir, crop_seed = entry
        crops = np.random.default_rng(crop_seed)
        sources = [
            _crop_or_repeat(_read(paths[i], sample_rate), segment_samples, crops) for i in chosen
        ]
        mixture, sources = _mix(np.stack(sources), sir)
        references = None
        if enrol is not None:
            references = _stack_enrolment(
                [_read(paths[i], sample_rate) for i in enrol], enrolment_samples, crops
            )
        who = tuple(speakers[i] for i in chosen)
        return EvaluationMixture(f"{m:05d}_{who[0]}_{who[1]}", mixture, sources, who, references)

    description = (
        f"{num_mixtures} mixtures of 2 of {len(eligible)} speakers, "
        f"{segment_samples / sample_rate:g} s, SIR {lo:g} to {hi:g} dB"
    )
    settings = {
        "source": "speakers",
        "num_mixtures": num_mixtures,
        "segment_samples": segment_samples,
        "sample_rate": sample_rate,
        "sir_db": [lo, hi],
        "seed": int(seed),
        "enrolment": enrolment,
        "enrolment_samples": enrolment_samples if enrolment else None,
    }
    return MixtureSet(plan, load, description, settings)


def _wsj0_utterances(name):
    """The two WSJ0 utterance ids of a WSJ0-2mix mixture name."""
    fields = name.split("_")
    return fields[0], fields[2]


def wsj0_2mix_mixtures(
    root, subset, num_mixtures=None, sample_rate=16000, enrolment_samples=None, enrolment=True
):
    """WSJ0-2mix mixtures at full length, each with another utterance of each speaker as enrolment.

    Reads `read_wsj0_2mix(root, subset)`: each mixture is the corpus'
    `mix/<name>.wav`, its sources `s1/<name>.wav` and `s2/<name>.wav`
    (which must have the mixture's length: the "min" mode). The enrolment
    of a source is a different WSJ0 utterance of the same speaker (the
    speaker being the first 3 characters of the utterance id) among the
    subset's `s1` / `s2` files, chosen deterministically (a CRC-32 of the
    mixture name and source index picks one of the speaker's other
    utterances, in sorted order), read from the first file that holds it.

    Args:
        root: the WSJ0-2mix folder holding `tr`, `cv` and `tt` (e.g.
            `.../wsj0-mix/2speakers/wav16k/min`).
        subset: `"tr"`, `"cv"` or `"tt"` (unseen speakers).
        num_mixtures: `None` (every mixture of the subset) or an int >= 1:
            that many mixtures spread evenly over the sorted list.
        sample_rate: files at another rate are resampled to it. Defaults to
            `16000`.
        enrolment_samples: int, the length of each enrolment utterance (cut
            at an offset fixed by the mixture's name, or repeated); `None`:
            whole, the shorter one repeated to the longer one's length.
        enrolment: bool, whether the mixtures carry enrolment utterances.
            Defaults to `True`.

    Returns:
        A `MixtureSet` of `EvaluationMixture`s, read lazily.

    Raises:
        ValueError: bad arguments; with enrolment, a speaker with no other
            utterance in the subset (named with its mixture).
        FileNotFoundError: see `keras_spk.data.read_wsj0_2mix`.

    Example:

    ```python
    mixtures = wsj0_2mix_mixtures("wsj0-mix/2speakers/wav16k/min", "tt",
                                  enrolment_samples=48000)
    len(mixtures)  # 3000
    ```

    Reference:
        - Hershey, Chen, Le Roux and Watanabe, Deep clustering, ICASSP 2016
        - Han, Chung and Kang, MIRNet, Interspeech 2020, section 4.2
    """
    from keras_spk.data.readers import read_wsj0_2mix

    num_mixtures = _checks.check_positive_int("num_mixtures", num_mixtures, allow_none=True)
    sample_rate = _checks.check_positive_int("sample_rate", sample_rate)
    enrolment_samples = _checks.check_positive_int("enrolment_samples", enrolment_samples, allow_none=True)
    if not isinstance(enrolment, bool):
        raise ValueError(f"`enrolment` must be True or False. Received: enrolment={enrolment!r}")
    items = read_wsj0_2mix(root, subset)

    # Every utterance of the subset: its first file, and each speaker's utterances.
    files, by_speaker = {}, {}
    for item in items:
        for utterance, speaker, path in zip(_wsj0_utterances(item.name), item.speakers, item.sources):
            files.setdefault(utterance, path)
            by_speaker.setdefault(speaker, set()).add(utterance)
    by_speaker = {speaker: sorted(u) for speaker, u in by_speaker.items()}

    total = len(items)
    count = total if num_mixtures is None else min(num_mixtures, total)
    selected = [items[i * total // count] for i in range(count)]
    plan = []
    for item in selected:
        enrol = None
        if enrolment:
            enrol = []
            for k, (utterance, speaker) in enumerate(zip(_wsj0_utterances(item.name), item.speakers)):
                others = [u for u in by_speaker[speaker] if u != utterance]
                if not others:
                    raise ValueError(
                        f"WSJ0-2mix mixture {item.name} in {subset!r}: speaker {speaker!r} has no "
                        f"utterance other than {utterance} in the subset, so source {k + 1} has no "
                        "enrolment. Use the full subset, or enrolment=False."
                    )
                pick = zlib.crc32(f"{item.name}/{k}".encode("utf-8")) % len(others)
                enrol.append(files[others[pick]])
        plan.append((item, None if enrol is None else tuple(enrol)))

    def load(entry):
        item, enrol = entry
        mixture = _read(item.mixture, sample_rate)
        sources = [_read(path, sample_rate) for path in item.sources]
        lengths = [mixture.shape[0]] + [s.shape[0] for s in sources]
        if len(set(lengths)) != 1:
            raise ValueError(
                f"WSJ0-2mix mixture {item.mixture} has {lengths[0]} samples but its sources have "
                f"{lengths[1:]}; the sources must have the mixture's length (use the corpus' "
                "'min' mode, e.g. .../wav16k/min)."
            )
        references = None
        if enrol is not None:
            references = _stack_enrolment(
                [_read(path, sample_rate) for path in enrol], enrolment_samples,
                np.random.default_rng(zlib.crc32(item.name.encode("utf-8"))),
            )
        return EvaluationMixture(
            item.name, mixture.astype(np.float32), np.stack(sources).astype(np.float32),
            tuple(item.speakers), references,
        )

    description = f"WSJ0-2mix {subset}, {count} of {total} mixtures"
    settings = {
        "source": "wsj0_2mix",
        "root": os.path.abspath(os.fspath(root)),
        "subset": subset,
        "num_mixtures": count,
        "sample_rate": sample_rate,
        "enrolment": enrolment,
        "enrolment_samples": enrolment_samples if enrolment else None,
    }
    return MixtureSet(plan, load, description, settings)


# --------------------------------------------------------------------------
# Reference estimates.
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _spectral_layers(sample_rate):
    """The recipe's STFT and its inverse at `sample_rate`: 32-ms frames every 10 ms."""
    from keras_spk.layers.stft import STFT
    from keras_spk.layers.stft import InverseSTFT

    frame = int(round(FRAME_LENGTH_MS * sample_rate / 1000))
    fft_length = max(FFT_LENGTH, 2 ** int(math.ceil(math.log2(frame))))
    kwargs = dict(
        frame_length_ms=FRAME_LENGTH_MS, frame_step_ms=FRAME_STEP_MS, fft_length=fft_length,
        sample_rate=sample_rate,
    )
    return STFT(**kwargs), InverseSTFT(**kwargs)


def ideal_ratio_mask(sources, mixture, sample_rate=16000):
    """The ideal ratio mask's estimates: each source's magnitude share, on the mixture.

    ```
    mask_k   = |S_k| / sum_j |S_j|          (1 / K where every |S_j| is 0)
    estimate = InverseSTFT(mask_k * |X|, angle(X))
    ```

    with `S_k` and `X` the STFTs of the sources and of the mixture (32-ms
    Hann frames every 10 ms, FFT 512 at 16 kHz, as the separation recipe
    analyses; `keras_spk.layers.STFT`). An oracle: it needs the clean
    sources, and bounds what a magnitude mask with the mixture's phase
    reaches.

    Args:
        sources: float `[K, samples]`, the clean sources.
        mixture: float `[samples]`, their mixture.
        sample_rate: int, the signals' rate. Defaults to `16000`.

    Returns:
        float32 numpy array `[K, samples]`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> sources = rng.normal(size=(2, 8000)).astype("float32")
    >>> ideal_ratio_mask(sources, sources.sum(axis=0)).shape
    (2, 8000)
    """
    import keras

    from keras_spk.models.separation import apply_mask

    sources = np.asarray(sources, dtype=np.float32)
    mixture = np.asarray(mixture, dtype=np.float32)
    if sources.ndim != 2 or mixture.ndim != 1 or sources.shape[1] != mixture.shape[0]:
        raise ValueError(
            "`sources` must be [K, samples] and `mixture` [samples], with the same number of "
            f"samples. Received: sources.shape={sources.shape}, mixture.shape={mixture.shape}"
        )
    stft, inverse = _spectral_layers(sample_rate)
    magnitude, phase = stft(mixture[None])
    source_magnitude = keras.ops.convert_to_numpy(stft(sources)[0]).astype(np.float64)
    total = source_magnitude.sum(axis=0)
    mask = np.where(
        total > 0, source_magnitude / np.where(total > 0, total, 1.0), 1.0 / sources.shape[0]
    )
    estimates = apply_mask(
        mask[None].astype(np.float32), magnitude, phase, length=mixture.shape[0], inverse_stft=inverse
    )
    return keras.ops.convert_to_numpy(estimates)[0].astype(np.float32)


# --------------------------------------------------------------------------
# Scoring.
# --------------------------------------------------------------------------


def _estimates(separate, item):
    mixture = item.mixture[None]
    enrolment = None if item.enrolment is None else item.enrolment[None]
    output = separate(mixture, enrolment)
    try:
        import keras

        output = keras.ops.convert_to_numpy(output) if keras.ops.is_tensor(output) else output
    except ImportError:  # pragma: no cover - keras is a dependency
        pass
    output = np.asarray(output)
    expected = (1,) + item.sources.shape
    if output.shape != expected:
        raise ValueError(
            f"Mixture {item.name}: the separator returned shape {output.shape}; expected "
            f"[1, K, samples] = {list(expected)}, the mixture's {expected[1]} sources at its "
            f"{expected[2]} samples (for a mask network, give the mixture's length to "
            "InverseSTFT / apply_mask)."
        )
    if not np.all(np.isfinite(output)):
        raise ValueError(f"Mixture {item.name}: the separator returned NaN or infinite samples.")
    return output[0]


def _pesq_note(pesq, sample_rate):
    if not pesq:
        return "PESQ not computed (pesq=False)."
    if sample_rate != separation_metrics.PESQ_SAMPLE_RATE:
        return f"PESQ not computed: wideband PESQ is defined at 16 kHz, the signals are at {sample_rate} Hz."
    if not separation_metrics.pesq_available():
        return (
            "PESQ not computed: the optional `pesq` package is not installed "
            "(`pip install keras_spk[separation]`)."
        )
    return None


def evaluate_separation(
    separate,
    mixtures,
    pesq=True,
    sample_rate=16000,
    label="separator",
    references=True,
    progress=False,
):
    """Scores a separator on evaluation mixtures: SDRi, SI-SDRi and PESQi, with reference rows.

    For every mixture, `separate(mixture, enrolment)` gives the estimated
    sources; they are assigned to the clean sources by the permutation of
    best mean SDR, and scored against the mixture as the baseline:

    ```
    SDRi    = mean_k SDR(s_k, estimate_pi(k)) - SDR(s_k, mixture)    (BSS-eval v3)
    SI-SDRi = the same with SI-SDR
    PESQi   = the same with wideband PESQ
    ```

    each averaged over the mixtures (so over mixtures and both sources).
    With `references`, the rows of the mixture itself (0 exactly) and of
    the ideal ratio mask (`ideal_ratio_mask`, an oracle upper bound) are
    computed on the same mixtures, in the same pass.

    Args:
        separate: callable `(mixture, enrolment) -> estimates`: `mixture`
            float32 `[1, samples]`, `enrolment` float32
            `[1, K, enrolment_samples]` (one clean utterance of each
            source's speaker, in source order) or `None` when the mixtures
            have none; `estimates` `[1, K, samples]` (array or tensor), in
            any order. `None`: only the reference rows.
        mixtures: iterable of `EvaluationMixture` (e.g. `speaker_mixtures`,
            `wsj0_2mix_mixtures`).
        pesq: bool, compute PESQi (needs the optional `pesq` package and
            16-kHz signals; otherwise PESQi is `None` and the row has a
            `"note"` saying why). Defaults to `True`.
        sample_rate: int, the signals' rate. Defaults to `16000`.
        label: str, the separator's row name. Defaults to `"separator"`.
        references: bool, add the two reference rows. Defaults to `True`.
        progress: bool, show a `keras.utils.Progbar`.

    Returns:
        A list of row dicts, the separator's first, then the references:
        `system` (label), `reference` (bool), `sdri`, `si_sdri` (dB),
        `pesqi` (MOS points, or `None`), `sdr` (mean SDR of the estimates,
        dB), `n_mixtures`, `mixtures` (the set's description, when it has
        one) and, when PESQ was not computed, `note`.

    Raises:
        ValueError: no mixtures, a separator output of the wrong shape or
            with NaN, a silent source, or PESQ failing on a mixture (named).

    Example:

    ```python
    mixtures = speaker_mixtures(utterances, 100, 16000, enrolment_samples=48000)
    rows = evaluate_separation(lambda x, e: model({"mixture": x, "enrolment": e}),
                               mixtures, label="VoiceFilter")
    print(format_separation_table(rows))
    ```

    Reference:
        - Han, Chung and Kang, MIRNet: learning multiple identities
          representations in overlapped speech, Interspeech 2020, section
          4.2, Table 2
        - Vincent, Gribonval and Fevotte, IEEE TASLP 2006 (BSS-eval)
    """
    if separate is not None and not callable(separate):
        raise ValueError(
            "`separate` must be a callable (mixture [1, samples], enrolment [1, K, samples] or "
            f"None) -> estimates [1, K, samples], or None. Received: separate={separate!r}"
        )
    if not isinstance(pesq, bool) or not isinstance(references, bool):
        raise ValueError(
            f"`pesq` and `references` must be True or False. Received: pesq={pesq!r}, "
            f"references={references!r}"
        )
    sample_rate = _checks.check_positive_int("sample_rate", sample_rate)
    systems = []
    if separate is not None:
        systems.append((str(label), False, lambda item: _estimates(separate, item)))
    if references:
        systems.append(
            (MIXTURE_LABEL, True, lambda item: np.stack([item.mixture] * item.sources.shape[0]))
        )
        systems.append(
            (IDEAL_RATIO_MASK_LABEL, True,
             lambda item: ideal_ratio_mask(item.sources, item.mixture, sample_rate))
        )
    if not systems:
        raise ValueError("Nothing to score: `separate` is None and `references` is False.")
    note = _pesq_note(pesq, sample_rate)
    sums = np.zeros((len(systems), 4))  # sdri, si_sdri, pesqi, sdr
    count = 0
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(len(mixtures) if hasattr(mixtures, "__len__") else None,
                                  unit_name="mixture")
    for item in mixtures:
        sources, mixture = item.sources, item.mixture
        for index, (_, _, estimate) in enumerate(systems):
            estimates = estimate(item)
            sdri, details = separation_metrics.sdr_improvement(
                sources, estimates, mixture, return_details=True
            )
            permutation = details["permutation"]
            si_sdri = float(np.mean(
                separation_metrics.si_sdr(sources, estimates[permutation])
                - separation_metrics.si_sdr(sources, mixture)
            ))
            pesqi = 0.0
            if note is None:
                try:
                    pesqi = separation_metrics.pesq_improvement(
                        sources, estimates, mixture, sample_rate, permutation=permutation
                    )
                except ValueError as error:
                    raise ValueError(
                        f"Mixture {item.name}: {error} Leave PESQ out with pesq=False."
                    ) from error
            sums[index] += (sdri, si_sdri, pesqi, float(np.mean(details["sdr"])))
        count += 1
        if bar is not None:
            bar.add(1)
    if count == 0:
        raise ValueError("`mixtures` holds no mixtures; give at least one.")
    means = sums / count
    description = getattr(mixtures, "description", None)
    rows = []
    for (name, reference, _), (sdri, si_sdri, pesqi, sdr) in zip(systems, means):
        row = {
            "system": name,
            "reference": reference,
            "sdri": float(sdri),
            "si_sdri": float(si_sdri),
            "pesqi": None if note is not None else float(pesqi),
            "sdr": float(sdr),
            "n_mixtures": count,
        }
        if description is not None:
            row["mixtures"] = description
        if note is not None:
            row["note"] = note
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Tables and files.
# --------------------------------------------------------------------------


def format_separation_table(rows):
    """An aligned text table of `evaluate_separation` rows, with any notes under it.

    ```
    system                     SDRi dB  SI-SDRi dB   PESQi  mixtures
    ----------------------------------------------------------------
    voicefilter                  6.147       5.902   0.480       100
    mixture (no separation)      0.000       0.000   0.000       100
    ideal ratio mask (oracle)   12.310      11.980   1.210       100
    ```

    A `recipe_system` key (a `systems:` run's merged rows) adds a first
    column; a `None` PESQi shows `-`.

    Args:
        rows: non-empty list of row dicts.

    Returns:
        The table as one string, without a trailing newline.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("`rows` must hold at least one separation result row.")
    with_system = any("recipe_system" in row for row in rows)
    header = (["recipe system"] if with_system else []) + [
        "system", "SDRi dB", "SI-SDRi dB", "PESQi", "mixtures"
    ]

    def number(value):
        return "-" if value is None else f"{value:.3f}"

    lines = [
        ([str(row.get("recipe_system") or "-")] if with_system else [])
        + [str(row["system"]), number(row["sdri"]), number(row["si_sdri"]),
           number(row.get("pesqi")), str(row["n_mixtures"])]
        for row in rows
    ]
    text_columns = 2 if with_system else 1
    widths = [max(len(line[i]) for line in [header] + lines) for i in range(len(header))]

    def render(cells):
        return "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [render(header), "-" * len(render(header))] + [render(line) for line in lines]
    notes = []
    for row in rows:
        for key in ("mixtures", "note"):
            if row.get(key) and row[key] not in notes:
                notes.append(row[key])
    return "\n".join(out + [f"* {n}" for n in notes])


def write_separation_results(rows, directory, metadata=None):
    """Writes `separation_table.txt` and `separation_results.{json,csv}` into `directory`.

    Args:
        rows: `evaluate_separation` rows (non-empty).
        directory: output folder (created if missing).
        metadata: optional JSON-serialisable dict stored beside the rows.

    Returns:
        The paths written (table, JSON, CSV).
    """
    from keras_spk.utils.files import write_result_files

    return write_result_files(
        directory, format_separation_table(rows), rows, table_stem=SEPARATION_TABLE,
        results_stem=SEPARATION_RESULTS, metadata=metadata,
    )
