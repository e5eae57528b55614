"""A formant speech synthesiser: voices, sessions and utterances drawn from a seed.

It makes the audio of the demo corpus (`keras_spk.data.demo_corpus`):
`synthesize_utterance(seed, speaker, session, utterance, duration)` gives
16 kHz float samples, each speaker, session and utterance drawn from its
own random stream (`random_stream(seed, kind, ...)`), so any utterance can
be generated on its own.

How a voice is modelled
-----------------------

Speech is produced by a classic *source-filter* synthesiser:

* **Source.** A glottal flow pulse (Rosenberg shape) repeated at the
  fundamental frequency f0. Its time derivative is the excitation; an extra
  one-pole low-pass sets the spectral tilt (a "soft" versus "pressed"
  voice). Jitter (period-to-period f0 noise), shimmer (period-to-period
  amplitude noise) and aspiration noise gated by the open phase (breathiness)
  are added. Unvoiced sounds use white noise instead: aspiration for /h/
  and stop releases, band-passed frication for /s/, /S/, /f/, bursts.
* **Filter.** The vocal tract is a cascade of five second-order resonators
  (formants F1..F5). Each phone has F1..F3 targets; formant tracks are
  smoothed between phones to give natural transitions. The resonators are
  updated every 5 ms while their state is carried across updates.

What makes one **speaker** differ from another:

* sex, mean f0 (about 85-155 Hz for male and 165-255 Hz for female voices)
  and intonation range;
* vocal-tract length, i.e. one scale factor applied to all formants (about
  0.85-1.2), plus small speaker-specific offsets of each vowel's formants
  (accent / articulation habits) and formant bandwidths;
* glottal pulse shape (open quotient, skew), spectral tilt, breathiness,
  jitter and shimmer;
* speaking rate;
* a habitual recording noise floor.

What makes two utterances of the same speaker differ:

* **content**: a random phone sequence (syllables of consonants and vowels
  from a shared inventory, grouped into words separated by optional pauses,
  with stressed and reduced vowels), a new intonation contour, and a few
  hundred milliseconds of leading/trailing silence;
* **session** ("video"): a random channel (spectral tilt, two peaking EQ
  bands, high-pass and optional band limitation), a background noise colour
  and level, a recording gain and a slight shift of the speaker's f0 and
  vocal effort.

A model has to learn to ignore the content and the channel and keep the
voice, which is exactly the speaker-verification problem (on a much easier
scale than real recordings).
"""

import numpy as np
from scipy import signal

__all__ = [
    "SAMPLE_RATE",
    "random_stream",
    "render_utterance",
    "session_conditions",
    "speaker_voice",
    "synthesize_utterance",
]

SAMPLE_RATE = 16000

# The synthesiser updates its control parameters once per block.
_BLOCK = 80  # 5 ms at 16 kHz
_BLOCK_S = _BLOCK / SAMPLE_RATE

# Integer tags mixed into the seed so that every random stream is
# independent and each item can be generated on its own. Other users of the
# same seed (the demo corpus's layout and trials) take other tags.
STREAM_SPEAKER = 1
STREAM_SESSION = 2
STREAM_UTTERANCE = 3

# ---------------------------------------------------------------------------
# Phone inventory
# ---------------------------------------------------------------------------

# Vowel formant targets F1, F2, F3 in Hz for an adult male vocal tract
# (classic averages for American English vowels); other speakers are scaled.
_VOWELS = {
    "i": (270, 2290, 3010),
    "I": (390, 1990, 2550),
    "e": (530, 1840, 2480),
    "ae": (660, 1720, 2410),
    "a": (730, 1090, 2440),
    "o": (570, 840, 2410),
    "U": (440, 1020, 2240),
    "u": (300, 870, 2240),
    "V": (640, 1190, 2390),
    "3": (490, 1350, 1690),
}
# Unstressed vowels drift towards the neutral vocal tract.
_SCHWA = (500, 1500, 2500)

# Consonants: kind, formant targets (loci for the transitions), and for
# noise sources the frication band in Hz.
#   kind: "nasal", "approx" (voiced, vowel-like), "fric" (voiceless
#   frication), "vfric" (voiced frication), "stop" (voiceless: closure, burst,
#   aspiration), "vstop" (voiced: closure with voice bar, short burst),
#   "h" (aspiration through the vocal tract of the next vowel).
_CONSONANTS = {
    "m": ("nasal", (250, 1100, 2200), None),
    "n": ("nasal", (250, 1600, 2600), None),
    "N": ("nasal", (250, 2000, 2700), None),
    "l": ("approx", (360, 1300, 2700), None),
    "r": ("approx", (420, 1300, 1600), None),
    "w": ("approx", (300, 610, 2200), None),
    "j": ("approx", (260, 2070, 3020), None),
    "s": ("fric", (320, 1700, 2600), (4200, 7600)),
    "S": ("fric", (300, 1900, 2500), (2300, 5500)),
    "f": ("fric", (300, 1000, 2300), (1200, 7000)),
    "z": ("vfric", (320, 1700, 2600), (4200, 7600)),
    "v": ("vfric", (300, 1000, 2300), (1200, 7000)),
    "p": ("stop", (250, 800, 2200), (400, 2500)),
    "t": ("stop", (250, 1800, 2600), (2800, 7000)),
    "k": ("stop", (250, 2000, 2400), (1400, 3500)),
    "b": ("vstop", (200, 800, 2200), (400, 2500)),
    "d": ("vstop", (200, 1800, 2600), (2800, 7000)),
    "g": ("vstop", (200, 2000, 2400), (1400, 3500)),
    "h": ("h", None, None),
}
# Frication level relative to the RMS of the vowels, in dB, per phone kind.
_FRICATION_DB = {"s": -8.0, "S": -6.0, "f": -18.0, "z": -14.0, "v": -22.0}
_BURST_DB = -4.0

# /N/ ("ng") does not start syllables.
_ONSETS = [c for c in _CONSONANTS if c != "N"]
_CODAS = ["m", "n", "N", "l", "r", "s", "S", "f", "z", "v", "p", "t", "k", "b", "d", "g"]
_CLUSTERS = [("s", "t"), ("s", "p"), ("s", "k"), ("p", "l"), ("b", "r"),
             ("t", "r"), ("k", "l"), ("g", "r"), ("f", "l"), ("d", "r")]

# ---------------------------------------------------------------------------
# Random parameter draws
# ---------------------------------------------------------------------------


def random_stream(seed, *keys):
    """An independent random generator for one item: `seed` and integer `keys` (a stream tag first)."""
    return np.random.default_rng([seed, *keys])


def _sample_speaker(rng):
    """Draws the parameters that define one voice.

    Args:
        rng: `np.random.Generator` reserved for this speaker.

    Returns:
        A dict of speaker parameters (see the module docstring).
    """
    female = bool(rng.random() < 0.5)
    if female:
        f0 = rng.uniform(165.0, 255.0)
        formant_scale = rng.uniform(1.03, 1.2)
        open_quotient = rng.uniform(0.55, 0.8)
    else:
        f0 = rng.uniform(85.0, 155.0)
        formant_scale = rng.uniform(0.85, 1.03)
        open_quotient = rng.uniform(0.4, 0.65)
    # Speaker-specific articulation: each vowel's formants are shifted by a
    # few percent, consistently for this speaker.
    vowel_offsets = {
        v: np.exp(rng.normal(0.0, 0.05, size=3)) for v in sorted(_VOWELS)
    }
    return {
        "female": female,
        "f0": f0,
        # Intonation excursions in semitones are scaled by this factor.
        "f0_range": rng.uniform(0.5, 1.6),
        "formant_scale": formant_scale,
        "vowel_offsets": vowel_offsets,
        # Higher formants depend on the individual larynx/pharynx shape.
        "f4_offset": np.exp(rng.normal(0.0, 0.04)),
        "bandwidth_scale": rng.uniform(0.75, 1.5),
        "open_quotient": open_quotient,
        # Ratio of opening to closing time of the glottal pulse.
        "speed_quotient": rng.uniform(1.5, 3.5),
        "tilt": rng.uniform(0.0, 0.75),
        "breathiness": rng.uniform(0.02, 0.3) * (1.5 if female else 1.0),
        "jitter": rng.uniform(0.003, 0.015),
        "shimmer": rng.uniform(0.02, 0.1),
        "rate": rng.uniform(0.8, 1.25),
        "snr_db": rng.uniform(20.0, 40.0),
        "nasal_level": rng.uniform(0.25, 0.5),
    }


def _sample_session(rng, speaker):
    """Draws the recording conditions of one session ("video").

    Args:
        rng: `np.random.Generator` reserved for this session.
        speaker: the speaker dict from `_sample_speaker`.

    Returns:
        A dict with the channel filter (`sos`), noise and gain settings and
        the speaker's state on that day (f0 and vocal effort shifts).
    """
    sos = [_tilt_section(rng.uniform(-0.5, 0.5))]
    for _ in range(2):
        sos.append(
            _peaking_section(
                freq=np.exp(rng.uniform(np.log(200.0), np.log(5000.0))),
                gain_db=rng.uniform(-8.0, 8.0),
                q=rng.uniform(0.7, 2.5),
            )
        )
    sos.extend(
        signal.butter(
            2, rng.uniform(50.0, 200.0), btype="highpass", fs=SAMPLE_RATE,
            output="sos",
        )
    )
    if rng.random() < 0.5:
        # Band-limited microphone or codec.
        sos.extend(
            signal.butter(
                4, rng.uniform(3600.0, 7200.0), btype="lowpass",
                fs=SAMPLE_RATE, output="sos",
            )
        )
    return {
        "channel_sos": np.array(sos, dtype=np.float64),
        "snr_db": float(np.clip(speaker["snr_db"] + rng.normal(0.0, 5.0), 12.0, 45.0)),
        # Noise colour: 0 = white, towards 1 = brown-ish (low-frequency hum).
        "noise_colour": rng.uniform(0.0, 0.97),
        "peak": rng.uniform(0.35, 0.65),
        "f0_shift": np.exp(rng.normal(0.0, 0.04)),
        "tilt_shift": rng.normal(0.0, 0.08),
        "rate_shift": np.exp(rng.normal(0.0, 0.05)),
    }


def _tilt_section(amount):
    """First-order spectral tilt as one second-order section.

    `amount > 0` attenuates high frequencies, `< 0` boosts them. The gain is
    normalised to 1 at 1 kHz so only the slope changes.
    """
    # A zero at z = -amount tilts the spectrum: H(z) = 1 + amount * z^-1.
    b = np.array([1.0, amount, 0.0])
    w = 2.0 * np.pi * 1000.0 / SAMPLE_RATE
    gain = abs(1.0 + amount * np.exp(-1j * w))
    return np.concatenate([b / gain, [1.0, 0.0, 0.0]])


def _peaking_section(freq, gain_db, q):
    """Peaking equaliser (a bell-shaped boost or cut) as a biquad section.

    Args:
        freq: centre frequency in Hz.
        gain_db: gain at `freq` in dB.
        q: quality factor; larger means a narrower bell.

    Returns:
        A length-6 array `[b0, b1, b2, 1, a1, a2]`.
    """
    amp = 10.0 ** (gain_db / 40.0)
    w = 2.0 * np.pi * freq / SAMPLE_RATE
    alpha = np.sin(w) / (2.0 * q)
    b = np.array([1.0 + alpha * amp, -2.0 * np.cos(w), 1.0 - alpha * amp])
    a = np.array([1.0 + alpha / amp, -2.0 * np.cos(w), 1.0 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])


# ---------------------------------------------------------------------------
# Utterance content: phone sequence and control tracks
# ---------------------------------------------------------------------------


def _sample_word(rng):
    """Returns one random word as a list of `(phone, stressed)` tuples."""
    num_syllables = rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])
    stressed_syllable = rng.integers(num_syllables)
    vowels = sorted(_VOWELS)
    phones = []
    for syl in range(num_syllables):
        stressed = syl == stressed_syllable
        r = rng.random()
        if r < 0.12:
            onset = list(_CLUSTERS[rng.integers(len(_CLUSTERS))])
        elif r < 0.85:
            onset = [_ONSETS[rng.integers(len(_ONSETS))]]
        else:
            onset = []
        phones += [(c, stressed) for c in onset]
        phones.append((vowels[rng.integers(len(vowels))], stressed))
        if rng.random() < 0.35:
            phones.append((_CODAS[rng.integers(len(_CODAS))], stressed))
    return phones


def _segment(dur, formants=None, av=0.0, ah=0.0, af=0.0, band=None,
             vowel=False, stressed=False, nasal=False):
    """One stretch of constant synthesis targets.

    Args:
        dur: duration in seconds (rescaled later to fill the utterance).
        formants: F1..F3 targets in Hz, or None to hold the neighbours'.
        av: voicing amplitude.
        ah: aspiration amplitude (noise through the vocal tract).
        af: frication amplitude (band-passed noise, see `band`).
        band: phone whose frication band is used, or None.
        vowel: True for vowel nuclei (used for level calibration and
            pitch accents).
        stressed: True within a stressed syllable.
        nasal: True for nasal murmurs (wider formant bandwidths).

    Returns:
        A dict with those keys.
    """
    return {"dur": dur, "formants": formants, "av": av, "ah": ah, "af": af,
            "band": band, "vowel": vowel, "stressed": stressed, "nasal": nasal}


def _vowel_formants(vowel, speaker):
    """F1..F3 of `vowel` as pronounced by `speaker` (before VTL scaling)."""
    return np.array(_VOWELS[vowel], dtype=np.float64) * speaker["vowel_offsets"][vowel]


def _phone_segments(phone, stressed, next_vowel, speaker, rate, rng):
    """Expands one phone into synthesis segments.

    Args:
        phone: phone symbol from `_VOWELS` or `_CONSONANTS`.
        stressed: whether the phone belongs to a stressed syllable.
        next_vowel: formant targets of the next vowel (used by /h/).
        speaker: speaker dict.
        rate: duration multiplier (speaker, session and utterance tempo).
        rng: random generator of the utterance.

    Returns:
        A list of segment dicts (see `_segment`).
    """

    def seg(dur, formants=None, **kwargs):
        # Every phone instance gets its own duration.
        dur = dur * rate * np.exp(rng.normal(0.0, 0.15))
        return _segment(dur, formants, stressed=stressed, **kwargs)

    if phone in _VOWELS:
        f = _vowel_formants(phone, speaker)
        if not stressed:
            f = 0.7 * f + 0.3 * np.array(_SCHWA)
        dur = rng.uniform(0.11, 0.19) if stressed else rng.uniform(0.055, 0.095)
        return [seg(dur, f, av=1.0 if stressed else 0.8, vowel=True)]

    kind, formants, band = _CONSONANTS[phone]
    f = None if formants is None else np.array(formants, dtype=np.float64)
    if kind == "nasal":
        return [seg(rng.uniform(0.05, 0.08), f, av=speaker["nasal_level"], nasal=True)]
    if kind == "approx":
        return [seg(rng.uniform(0.04, 0.07), f, av=0.6)]
    if kind == "fric":
        return [seg(rng.uniform(0.08, 0.12), f, af=1.0, band=phone)]
    if kind == "vfric":
        return [seg(rng.uniform(0.06, 0.09), f, av=0.35, af=1.0, band=phone)]
    if kind == "h":
        return [seg(rng.uniform(0.05, 0.08), next_vowel, ah=0.5)]
    if kind == "stop":
        return [
            seg(rng.uniform(0.05, 0.08), f),  # closure: silence
            seg(0.012, f, af=1.0, band=phone),  # release burst
            seg(rng.uniform(0.03, 0.05), f, ah=0.35),  # aspiration
        ]
    # Voiced stop: a low "voice bar" during the closure, then a short burst.
    return [
        seg(rng.uniform(0.04, 0.06), (200.0, f[1], f[2]), av=0.12),
        seg(0.008, f, af=0.6, band=phone),
    ]


def _utterance_segments(rng, speaker, session, speech_dur):
    """Draws a random phone sequence filling about `speech_dur` seconds.

    Returns:
        The list of segment dicts (see `_segment`), with pause segments
        between some words.
    """
    rate = speaker["rate"] * session["rate_shift"] * np.exp(rng.normal(0.0, 0.05))
    segments, total = [], 0.0
    while total < speech_dur:
        if segments:
            # Connected speech: most words follow each other without a gap.
            r = rng.random()
            if r < 0.15:
                pause = rng.uniform(0.2, 0.4)
            elif r < 0.4:
                pause = rng.uniform(0.04, 0.15)
            else:
                pause = 0.0
            if pause > 0.0:
                segments.append(_segment(pause))
                total += pause
        word = _sample_word(rng)
        # Words are not all spoken equally loud.
        level = np.exp(rng.normal(0.0, 0.2))
        for i, (phone, stressed) in enumerate(word):
            next_vowel = next(
                (_vowel_formants(p, speaker) for p, _ in word[i + 1:] if p in _VOWELS),
                np.array(_SCHWA, dtype=np.float64),
            )
            for s in _phone_segments(phone, stressed, next_vowel, speaker, rate, rng):
                for key in ("av", "ah", "af"):
                    s[key] *= level
                segments.append(s)
                total += s["dur"]
    return segments


def _control_tracks(segments, num_blocks, speaker):
    """Turns segments into per-block control tracks.

    Segment durations are rescaled so that the segments fill exactly
    `num_blocks` blocks.

    Returns:
        A dict of arrays of length `num_blocks`: `formants` (num_blocks, 3),
        `av`, `ah`, `af`, `band` (index into the list `bands`), `vowel`,
        `stressed`, `nasal`, plus the list `bands` of phone symbols used for
        frication.
    """
    durs = np.array([s["dur"] for s in segments])
    edges = np.round(np.cumsum(durs) / durs.sum() * num_blocks).astype(int)
    starts = np.concatenate([[0], edges[:-1]])

    formants = np.full((num_blocks, 3), np.nan)
    av = np.zeros(num_blocks)
    ah = np.zeros(num_blocks)
    af = np.zeros(num_blocks)
    band = np.full(num_blocks, -1)
    vowel = np.zeros(num_blocks, dtype=bool)
    stressed = np.zeros(num_blocks, dtype=bool)
    nasal = np.zeros(num_blocks, dtype=bool)
    bands = []
    for s, a, b in zip(segments, starts, edges):
        if b <= a:
            continue
        if s["formants"] is not None:
            formants[a:b] = s["formants"]
        av[a:b], ah[a:b], af[a:b] = s["av"], s["ah"], s["af"]
        vowel[a:b] = s["vowel"]
        stressed[a:b] = s["stressed"] and s["vowel"]
        nasal[a:b] = s["nasal"]
        if s["band"] is not None:
            if s["band"] not in bands:
                bands.append(s["band"])
            band[a:b] = bands.index(s["band"])

    # Pauses keep the formants of the neighbouring phones (hold forward, then
    # backward for a leading pause), so transitions stay smooth.
    formants = _fill_nan_rows(formants, default=np.array(_SCHWA, dtype=np.float64))
    formants *= speaker["formant_scale"]
    # Smooth in the log domain: about 40 ms formant transitions.
    formants = np.exp(_moving_average(np.log(formants), 9))
    return {"formants": formants, "av": av, "ah": ah, "af": af, "band": band,
            "bands": bands, "vowel": vowel, "stressed": stressed, "nasal": nasal}


def _fill_nan_rows(x, default):
    """Replaces NaN rows by the previous valid row (or the next, at the start)."""
    valid = ~np.isnan(x[:, 0])
    if not valid.any():
        return np.tile(default, (x.shape[0], 1))
    idx = np.where(valid, np.arange(x.shape[0]), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.flatnonzero(valid)[0]
    return x[idx]


def _moving_average(x, width):
    """Centred moving average along axis 0 with edge padding."""
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    pad = width // 2
    if x.ndim == 1:
        padded = np.pad(x, (pad, width - 1 - pad), mode="edge")
        return np.convolve(padded, kernel, mode="valid")
    return np.stack([_moving_average(x[:, i], width) for i in range(x.shape[1])], axis=1)


def _f0_contour(rng, tracks, speaker, session):
    """Per-block f0 in Hz: declination, pitch accents, phrase end, wander.

    Args:
        rng: random generator of the utterance.
        tracks: control tracks from `_control_tracks`.
        speaker: speaker dict.
        session: session dict.

    Returns:
        A float array of f0 values (one per block).
    """
    n = tracks["av"].shape[0]
    t = np.linspace(0.0, 1.0, n)
    decl = rng.uniform(1.0, 4.0)
    semitones = decl * (0.5 - t)
    # Pitch accents on a random subset of the stressed vowels.
    stressed = tracks["stressed"]
    starts = np.flatnonzero(stressed & ~np.concatenate([[False], stressed[:-1]]))
    for s in starts:
        if rng.random() < 0.6:
            width = rng.uniform(10, 25)  # blocks (50-125 ms)
            semitones += rng.uniform(1.0, 4.0) * np.exp(
                -0.5 * ((np.arange(n) - s - width) / width) ** 2
            )
    if rng.random() < 0.2:
        # Question-like final rise.
        semitones += rng.uniform(2.0, 5.0) * np.clip((t - 0.85) / 0.15, 0.0, 1.0)
    # Slow random wander.
    wander = _moving_average(rng.normal(0.0, 1.0, n), 41) * 4.0
    semitones = _moving_average(semitones + wander, 11) * speaker["f0_range"]
    f0 = speaker["f0"] * session["f0_shift"] * 2.0 ** (semitones / 12.0)
    # Jitter: period-to-period perturbation (not smoothed).
    f0 *= np.exp(rng.normal(0.0, speaker["jitter"], n))
    return np.clip(f0, 60.0, 400.0)


# ---------------------------------------------------------------------------
# Signal generation
# ---------------------------------------------------------------------------


def _glottal_source(rng, f0_blocks, speaker, session, num_samples):
    """Voiced excitation: derivative of a Rosenberg glottal flow.

    Returns:
        A tuple `(excitation, open_phase)`: the excitation signal with unit
        RMS and a boolean mask of the samples where the glottis is open
        (used to gate breath noise).
    """
    block_centres = (np.arange(f0_blocks.shape[0]) + 0.5) * _BLOCK
    f0 = np.interp(np.arange(num_samples), block_centres, f0_blocks)
    phase = np.cumsum(f0 / SAMPLE_RATE)
    period = phase.astype(np.int64)
    frac = phase - period

    oq = speaker["open_quotient"]
    sq = speaker["speed_quotient"]
    t_open = oq * sq / (1.0 + sq)
    t_close = oq / (1.0 + sq)
    flow = np.zeros(num_samples)
    rising = frac < t_open
    flow[rising] = 0.5 * (1.0 - np.cos(np.pi * frac[rising] / t_open))
    falling = ~rising & (frac < t_open + t_close)
    flow[falling] = np.cos(0.5 * np.pi * (frac[falling] - t_open) / t_close)
    # Shimmer: amplitude changes from one period to the next. Scaling whole
    # pulses keeps the closed phase at zero, so no discontinuities appear.
    shimmer = np.exp(rng.normal(0.0, speaker["shimmer"], period[-1] + 1))
    flow *= shimmer[period]

    excitation = np.diff(flow, prepend=0.0)
    tilt = float(np.clip(speaker["tilt"] + session["tilt_shift"], 0.0, 0.9))
    excitation = signal.lfilter([1.0 - tilt], [1.0, -tilt], excitation)
    excitation /= np.sqrt(np.mean(excitation**2)) + 1e-12
    return excitation, frac < oq


def _resonator_sos(freqs, bandwidths):
    """Formant resonators with unit gain at DC, as second-order sections.

    Args:
        freqs: array (..., k) of centre frequencies in Hz.
        bandwidths: array (..., k) of -3 dB bandwidths in Hz.

    Returns:
        An array (..., k, 6) of sections `[A, 0, 0, 1, -B, -C]` with
        `A = 1 - B - C`, i.e. `y[n] = A x[n] + B y[n-1] + C y[n-2]`.
    """
    c = -np.exp(-2.0 * np.pi * bandwidths / SAMPLE_RATE)
    b = 2.0 * np.exp(-np.pi * bandwidths / SAMPLE_RATE) * np.cos(
        2.0 * np.pi * freqs / SAMPLE_RATE
    )
    a = 1.0 - b - c
    zeros = np.zeros_like(a)
    ones = np.ones_like(a)
    return np.stack([a, zeros, zeros, ones, -b, -c], axis=-1)


def _vocal_tract(excitation, tracks, speaker):
    """Filters the excitation through the time-varying formant cascade.

    The five resonators are updated once per block; their state `zi` is
    carried from block to block so the output stays continuous.
    """
    n_blocks = tracks["formants"].shape[0]
    scale = speaker["formant_scale"]
    f = np.empty((n_blocks, 5))
    f[:, :3] = tracks["formants"]
    f[:, 3] = 3400.0 * scale * speaker["f4_offset"]
    f[:, 4] = 4500.0 * scale * speaker["f4_offset"]
    # Keep the formants ordered and below Nyquist.
    f[:, 1] = np.maximum(f[:, 1], f[:, 0] + 150.0)
    f[:, 2] = np.maximum(f[:, 2], f[:, 1] + 200.0)
    f[:, 3] = np.maximum(f[:, 3], f[:, 2] + 300.0)
    f[:, 4] = np.minimum(np.maximum(f[:, 4], f[:, 3] + 400.0), 7400.0)
    bw = np.array([70.0, 100.0, 140.0, 250.0, 350.0]) * speaker["bandwidth_scale"]
    bw = np.broadcast_to(bw, f.shape).copy()
    # Nasal murmur: broader bandwidths (losses in the nasal cavity).
    bw[tracks["nasal"]] *= 1.8
    sos = _resonator_sos(f, bw)

    out = np.empty_like(excitation)
    zi = np.zeros((5, 2))
    for i in range(n_blocks):
        a, b = i * _BLOCK, (i + 1) * _BLOCK
        out[a:b], zi = signal.sosfilt(sos[i], excitation[a:b], zi=zi)
    return out


def _frication(rng, tracks, speaker, num_samples):
    """Band-passed noise for fricatives and stop bursts (per-sample signal)."""
    out = np.zeros(num_samples)
    noise = rng.normal(0.0, 1.0, num_samples)
    scale = np.sqrt(speaker["formant_scale"])
    for index, phone in enumerate(tracks["bands"]):
        low, high = _CONSONANTS[phone][2]
        low = low * scale
        high = min(high * scale, 7600.0)
        sos = signal.butter(2, [low, high], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        gate = _blocks_to_samples(
            np.where(tracks["band"] == index, tracks["af"], 0.0), num_samples, smooth=2
        )
        band_noise = signal.sosfilt(sos, noise)
        band_noise /= np.sqrt(np.mean(band_noise**2)) + 1e-12
        level_db = _FRICATION_DB.get(phone, _BURST_DB)
        out += band_noise * gate * 10.0 ** (level_db / 20.0)
    return out


def _blocks_to_samples(values, num_samples, smooth=3):
    """Upsamples a per-block track to samples with short linear ramps."""
    values = _moving_average(values.astype(np.float64), smooth)
    centres = (np.arange(values.shape[0]) + 0.5) * _BLOCK
    return np.interp(np.arange(num_samples), centres, values)


def _coloured_noise(rng, colour, num_samples):
    """Unit-RMS noise from white (`colour=0`) towards brown (`colour -> 1`)."""
    noise = signal.lfilter([1.0], [1.0, -colour], rng.normal(0.0, 1.0, num_samples))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _synthesize_speech(rng, speaker, session, num_blocks):
    """Generates the dry speech signal (no channel, no noise) for `num_blocks`.

    Returns:
        The speech samples, scaled so that the vowels have unit RMS.
    """
    num_samples = num_blocks * _BLOCK
    segments = _utterance_segments(
        rng, speaker, session, num_blocks * _BLOCK_S
    )
    tracks = _control_tracks(segments, num_blocks, speaker)
    f0 = _f0_contour(rng, tracks, speaker, session)

    voiced, open_phase = _glottal_source(rng, f0, speaker, session, num_samples)
    breath = rng.normal(0.0, 1.0, num_samples) * open_phase * speaker["breathiness"] * 2.0
    aspiration = rng.normal(0.0, 1.0, num_samples)
    av = _blocks_to_samples(tracks["av"], num_samples)
    ah = _blocks_to_samples(tracks["ah"], num_samples)
    excitation = av * (voiced + breath) + ah * aspiration
    speech = _vocal_tract(excitation, tracks, speaker)

    vowel_mask = _blocks_to_samples(tracks["vowel"].astype(np.float64), num_samples, 1) > 0.5
    ref = np.sqrt(np.mean(speech[vowel_mask] ** 2)) if vowel_mask.any() else 1.0
    speech = speech / (ref + 1e-12)
    speech += _frication(rng, tracks, speaker, num_samples)
    return speech


def synthesize_utterance(seed, speaker, session, utterance, duration):
    """Synthesises one utterance as float samples in `[-1, 1]`.

    Args:
        seed: corpus seed.
        speaker: integer speaker index (its voice is drawn from the seed).
        session: integer session index of that speaker.
        utterance: integer utterance index of that speaker.
        duration: length in seconds (rounded to whole samples).

    Returns:
        A float64 NumPy array of `round(duration * 16000)` samples whose peak
        is between 0.3 and 0.7.

    Example:

    >>> x = synthesize_utterance(seed=0, speaker=3, session=1, utterance=0,
    ...                          duration=2.5)
    >>> x.shape
    (40000,)
    """
    voice = speaker_voice(seed, speaker)
    conditions = session_conditions(seed, speaker, session, voice)
    return render_utterance(seed, speaker, utterance, voice, conditions, duration)


def speaker_voice(seed, speaker):
    """The parameters of the voice of speaker number `speaker` (a dict; see the module doc)."""
    return _sample_speaker(random_stream(seed, STREAM_SPEAKER, speaker))


def session_conditions(seed, speaker, session, voice):
    """The recording conditions of session `session` of a speaker whose voice is `voice`.

    Args:
        seed: corpus seed.
        speaker: integer speaker index.
        session: integer session index of that speaker.
        voice: `speaker_voice(seed, speaker)`.

    Returns:
        A dict: the channel filter, noise and gain, and the speaker's f0,
        effort and tempo shifts on that day.
    """
    return _sample_session(random_stream(seed, STREAM_SESSION, speaker, session), voice)


def render_utterance(seed, speaker, utterance, voice, conditions, duration):
    """Utterance number `utterance` of a speaker, in the given voice and session conditions.

    `synthesize_utterance` draws `voice` and `conditions` itself; a caller
    making many utterances of one speaker draws them once.

    Args:
        seed: corpus seed.
        speaker: integer speaker index.
        utterance: integer utterance index of that speaker (its content).
        voice: `speaker_voice(seed, speaker)`.
        conditions: `session_conditions(seed, speaker, session, voice)`.
        duration: length in seconds (rounded to whole samples).

    Returns:
        A float64 array of `round(duration * 16000)` samples, peak 0.3-0.7.
    """
    return _render(random_stream(seed, STREAM_UTTERANCE, speaker, utterance), voice, conditions, duration)


def _render(rng, speaker, session, duration):
    """Full utterance: silences, speech, noise, channel and peak level."""
    num_samples = int(round(duration * SAMPLE_RATE))
    # A few hundred milliseconds of silence (noise floor only) at each end.
    lead = int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)
    trail = int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)
    num_blocks = max(1, (num_samples - lead - trail) // _BLOCK)
    speech = _synthesize_speech(rng, speaker, session, num_blocks)
    lead = min(lead, num_samples - speech.shape[0])

    x = np.zeros(num_samples)
    x[lead : lead + speech.shape[0]] = speech
    # Background noise relative to the speech level (RMS of the active part).
    active = np.sqrt(np.mean(speech**2))
    noise = _coloured_noise(rng, session["noise_colour"], num_samples)
    x += noise * active * 10.0 ** (-session["snr_db"] / 20.0)
    x = signal.sosfilt(session["channel_sos"], x)

    peak = float(np.clip(session["peak"] * np.exp(rng.normal(0.0, 0.1)), 0.3, 0.7))
    return x * (peak / (np.max(np.abs(x)) + 1e-12))

