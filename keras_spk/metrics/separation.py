"""Speech-separation metrics: BSS-eval SDR, SI-SDR, and their improvements, PESQ.

NumPy only (no Keras, TensorFlow or PyTorch import at module level), so the
metrics score separated waveforms from any backend, or files on disk.

Convention shared by every function in this module
---------------------------------------------------

* Waveforms are real arrays with time on the last axis; ``reference`` is
  the clean source, ``estimate`` the separated signal (BSS-eval's order).
* Everything is computed in float64 and returned in decibels (PESQ in MOS).
* An all-zero reference or estimate has no defined ratio and raises
  ``ValueError`` rather than returning NaN or infinity.
* The improvement of a separated set over its mixture is averaged over the
  sources, under the assignment of estimates to references that maximises
  the average score (the estimates of a separator come in no fixed order).

SDR is BSS-eval v3's (``mir_eval.separation.bss_eval_sources``): the
estimate is projected on the span of 512 delayed copies of the reference
(a time-invariant distortion filter of 512 taps), and
``SDR = 10 log10(|s_target|^2 / |estimate - s_target|^2)``. It is computed
by the ``fast_bss_eval`` package, which solves the same Toeplitz system in
the frequency domain and agrees with ``mir_eval`` to about 1e-7 dB.
PESQ (ITU-T P.862.2, wideband, 16 kHz) needs the optional ``pesq`` package:
``pip install keras_spk[separation]``.
"""

import importlib
import itertools

import numpy as np

from keras_spk.utils import _checks

__all__ = [
    "pesq_available",
    "pesq_improvement",
    "sdr",
    "sdr_improvement",
    "si_sdr",
]

# BSS-eval v3's distortion filter length (mir_eval's default).
DEFAULT_FILTER_LENGTH = 512
PESQ_SAMPLE_RATE = 16000
_PESQ_INSTALL = (
    "PESQ needs the optional `pesq` package: install the separation extra with "
    "`pip install keras_spk[separation]` (or `pip install pesq`)."
)


# --------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------


def _as_signals(name, value, ndim=None):
    """`value` as a float64 array with time on the last axis; finite, non-empty."""
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"`{name}` must be a real array of samples. Received: {name}.dtype={array.dtype}"
        )
    array = array.astype(np.float64)
    if ndim is not None and array.ndim != ndim:
        shape = {1: "[samples]", 2: "[sources, samples]"}[ndim]
        raise ValueError(f"`{name}` must have shape {shape}. Received: {name}.shape={array.shape}")
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(
            f"`{name}` must hold at least one sample on its last (time) axis. "
            f"Received: {name}.shape={array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"`{name}` holds NaN or infinite samples; check the signal that produced it."
        )
    return array


def _check_not_silent(name, array):
    """Raises when any signal of `array` ([..., samples]) is all zeros."""
    silent = ~np.any(array != 0.0, axis=-1)
    if np.any(silent):
        index = tuple(int(i) for i in np.argwhere(silent)[0]) if array.ndim > 1 else ()
        where = f" (at index {index})" if index else ""
        raise ValueError(
            f"`{name}` has an all-zero signal{where}: the distortion ratio is undefined. "
            "Leave silent segments out of the evaluation."
        )


def _pair(reference, estimate):
    reference = _as_signals("reference", reference)
    estimate = _as_signals("estimate", estimate)
    if reference.shape[-1] != estimate.shape[-1]:
        raise ValueError(
            "`reference` and `estimate` must have the same number of samples; trim or pad "
            f"the estimate to the reference. Received: reference.shape={reference.shape}, "
            f"estimate.shape={estimate.shape}"
        )
    try:
        reference, estimate = np.broadcast_arrays(reference, estimate)
    except ValueError:
        raise ValueError(
            "`reference` and `estimate` must have the same (or broadcastable) shapes. "
            f"Received: reference.shape={reference.shape}, estimate.shape={estimate.shape}"
        ) from None
    _check_not_silent("reference", reference)
    _check_not_silent("estimate", estimate)
    return reference, estimate


def _check_filter_length(filter_length, num_samples):
    _checks.check_positive_int("filter_length", filter_length)
    if filter_length > num_samples:
        raise ValueError(
            "`filter_length` must not exceed the signals' length: the distortion filter "
            f"would be longer than the signal. Received: filter_length={filter_length}, "
            f"samples={num_samples}"
        )
    return int(filter_length)


def _separation_inputs(references, estimates, mixture):
    references = _as_signals("references", references, ndim=2)
    estimates = _as_signals("estimates", estimates, ndim=2)
    mixture = _as_signals("mixture", mixture, ndim=1)
    if references.shape != estimates.shape or references.shape[1] != mixture.shape[0]:
        raise ValueError(
            "`references` and `estimates` must both be [sources, samples] and `mixture` "
            "[samples], with the same number of samples; trim or pad the estimates to the "
            f"mixture. Received: references.shape={references.shape}, "
            f"estimates.shape={estimates.shape}, mixture.shape={mixture.shape}"
        )
    if references.shape[0] > 8:
        raise ValueError(
            "At most 8 sources are supported (every assignment of estimates to references "
            f"is tried). Received: {references.shape[0]} sources"
        )
    for name, array in (("references", references), ("estimates", estimates), ("mixture", mixture)):
        _check_not_silent(name, array)
    return references, estimates, mixture


def _best_assignment(scores):
    """(permutation, mean score) maximising the mean of `scores[i, permutation[i]]`.

    `scores[i, j]` is the score of estimate `j` against reference `i`. Ties
    keep the first permutation in lexicographic order (the identity first).
    """
    num = scores.shape[0]
    best, best_mean = None, -np.inf
    for permutation in itertools.permutations(range(num)):
        mean = float(np.mean(scores[np.arange(num), permutation]))
        if mean > best_mean:
            best, best_mean = permutation, mean
    return np.array(best, dtype=np.int64), best_mean


# --------------------------------------------------------------------------
# Signal-to-distortion ratios.
# --------------------------------------------------------------------------


def sdr(reference, estimate, filter_length=DEFAULT_FILTER_LENGTH):
    """BSS-eval v3 signal-to-distortion ratio of `estimate` against `reference`, in dB.

    ```
    s_target = P_ref(estimate)    # projection on the span of the `filter_length`
                                  # delayed copies of the reference
    SDR      = 10 log10(|s_target|^2 / |estimate - s_target|^2)
    ```

    The distortion filter lets the estimate differ from the reference by a
    short time-invariant filter (gain, small delay, colouring) without
    penalty; whatever it cannot explain (interference, artefacts, noise)
    counts as distortion. This is the SDR of `mir_eval`'s
    `bss_eval_sources` (v3), which depends only on the reference and the
    estimate; it is computed with `fast_bss_eval`.

    Args:
        reference: clean signal, `[samples]` or `[..., samples]`.
        estimate: estimated signal with the same number of samples;
            leading axes broadcast against the reference's.
        filter_length: positive int <= samples, taps of the distortion
            filter. Defaults to `512` (BSS-eval v3); `1` gives a plain
            scale-invariant projection (SI-SDR without mean removal).

    Returns:
        float (1-D inputs) or float64 array of the broadcast leading shape;
        `+inf` when the estimate is exactly a filtered reference.

    Example:

    >>> t = np.arange(16000) / 16000
    >>> clean = np.sin(2 * np.pi * 200 * t)
    >>> noise = np.random.default_rng(0).normal(size=16000)
    >>> round(sdr(clean, clean + 0.1 * noise), 1) > 15
    True

    Reference:
        - Vincent, Gribonval and Fevotte, Performance measurement in blind
          audio source separation, IEEE TASLP 2006
        - Scheibler, SDR - medium rare with fast computations, ICASSP 2022
          (`fast_bss_eval`)
    """
    reference, estimate = _pair(reference, estimate)
    filter_length = _check_filter_length(filter_length, reference.shape[-1])
    import fast_bss_eval  # imported here: it loads PyTorch when installed.

    # One reference and one estimate per item: the [..., 1, samples] channel
    # axis that fast_bss_eval expects, and its negative SDR for matched pairs.
    # SDR does not depend on either signal's scale; unit norms keep very quiet
    # signals clear of fast_bss_eval's 1e-6 floor on the norm.
    reference = reference / np.linalg.norm(reference, axis=-1, keepdims=True)
    estimate = estimate / np.linalg.norm(estimate, axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):  # an exact estimate gives +inf, as documented
        neg_sdr = fast_bss_eval.numpy.sdr_loss(
            estimate[..., None, :], reference[..., None, :], filter_length=filter_length
        )
    values = -np.asarray(neg_sdr, dtype=np.float64)[..., 0]
    return float(values) if values.ndim == 0 else values


def si_sdr(reference, estimate, zero_mean=True):
    """Scale-invariant signal-to-distortion ratio, in dB.

    ```
    alpha    = <estimate, reference> / |reference|^2
    SI-SDR   = 10 log10(|alpha reference|^2 / |estimate - alpha reference|^2)
    ```

    after removing each signal's mean (`zero_mean=True`), as recommended by
    Le Roux et al. Unlike `sdr`, no filter is allowed: only a gain.

    Args:
        reference: clean signal, `[samples]` or `[..., samples]`.
        estimate: estimated signal with the same number of samples;
            leading axes broadcast against the reference's.
        zero_mean: bool, subtract each signal's mean first. Defaults to
            `True`.

    Returns:
        float (1-D inputs) or float64 array of the broadcast leading shape.
        An estimate orthogonal to the reference gives `-inf`; one
        proportional to it gives `+inf`.

    Example:

    >>> x = np.array([1.0, -1.0, 2.0, -2.0])
    >>> noise = np.array([0.1, 0.1, -0.1, -0.1])  # orthogonal to x: alpha = 1
    >>> round(si_sdr(x, x + noise), 3)  # 10 log10(10 / 0.04)
    23.979

    Reference:
        - Le Roux, Wisdom, Erdogan and Hershey, SDR - half-baked or well
          done?, ICASSP 2019
    """
    if not isinstance(zero_mean, bool):
        raise ValueError(f"`zero_mean` must be True or False. Received: zero_mean={zero_mean!r}")
    reference, estimate = _pair(reference, estimate)
    if zero_mean:
        reference = reference - reference.mean(axis=-1, keepdims=True)
        estimate = estimate - estimate.mean(axis=-1, keepdims=True)
        _check_not_silent("reference (after removing its mean)", reference)
    alpha = np.sum(estimate * reference, axis=-1, keepdims=True) / np.sum(
        reference * reference, axis=-1, keepdims=True
    )
    target = alpha * reference
    with np.errstate(divide="ignore"):
        values = 10.0 * (
            np.log10(np.sum(target * target, axis=-1))
            - np.log10(np.sum((estimate - target) ** 2, axis=-1))
        )
    return float(values) if values.ndim == 0 else values


def _sdr_matrix(references, candidates, filter_length):
    """`[K, C]`: SDR of candidate `j` against reference `i`, one pair per call.

    Pair by pair on purpose: identical candidates (an estimate equal to
    the mixture) go through identical arithmetic and score bit-for-bit
    the same, so an identity mask's improvement is exactly 0.
    """
    out = np.empty((references.shape[0], candidates.shape[0]))
    for i, reference in enumerate(references):
        for j, candidate in enumerate(candidates):
            out[i, j] = sdr(reference, candidate, filter_length)
    return out


def sdr_improvement(
    references, estimates, mixture, filter_length=DEFAULT_FILTER_LENGTH, return_details=False
):
    """SDRi: mean over sources of SDR(estimate) - SDR(mixture), best assignment, in dB.

    ```
    SDRi = max_pi 1/K sum_i [SDR(s_i, estimate_pi(i)) - SDR(s_i, mixture)]
    ```

    Each reference is scored against the mixture itself as the baseline,
    and the estimates are assigned to references by the permutation that
    maximises the mean SDR (so the order of a separator's outputs does not
    matter). An identity mask (every estimate equal to the mixture) gives
    exactly 0 dB.

    Args:
        references: clean sources, `[K, samples]` (K <= 8).
        estimates: separated signals, `[K, samples]`, in any order.
        mixture: the mixture, `[samples]`.
        filter_length: taps of BSS-eval's distortion filter (see `sdr`).
            Defaults to `512`.
        return_details: also return a dict with `"permutation"` (`[K]`,
            the estimate matched with each reference), `"sdr"` (`[K]`, the
            matched estimates' SDR) and `"mixture_sdr"` (`[K]`).

    Returns:
        float, the SDR improvement in dB; with `return_details`,
        `(improvement, details)`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> sources = rng.normal(size=(2, 4000))
    >>> mixture = sources.sum(axis=0)
    >>> sdr_improvement(sources, np.stack([mixture, mixture]), mixture)
    0.0

    Reference:
        - Han, Chung and Kang, MIRNet: learning multiple identities
          representations in overlapped speech, Interspeech 2020, section 4.2
        - Vincent, Gribonval and Fevotte, IEEE TASLP 2006 (BSS-eval)
    """
    references, estimates, mixture = _separation_inputs(references, estimates, mixture)
    filter_length = _check_filter_length(filter_length, mixture.shape[0])
    scores = _sdr_matrix(references, np.concatenate([estimates, mixture[None]]), filter_length)
    estimate_sdr, mixture_sdr = scores[:, :-1], scores[:, -1]
    permutation, _ = _best_assignment(estimate_sdr)
    matched = estimate_sdr[np.arange(len(permutation)), permutation]
    improvement = float(np.mean(matched - mixture_sdr))
    if not return_details:
        return improvement
    return improvement, {"permutation": permutation, "sdr": matched, "mixture_sdr": mixture_sdr}


# --------------------------------------------------------------------------
# PESQ (optional package).
# --------------------------------------------------------------------------


def pesq_available():
    """True when the optional `pesq` package can be imported.

    Lets a caller report "PESQ: not installed" instead of failing.

    Returns:
        bool.
    """
    try:
        importlib.import_module("pesq")
    except ImportError:
        return False
    return True


def _pesq_module():
    try:
        return importlib.import_module("pesq")
    except ImportError as error:
        raise ImportError(_PESQ_INSTALL) from error


def _pesq_score(module, reference, degraded, what):
    try:
        return float(module.pesq(PESQ_SAMPLE_RATE, reference, degraded, "wb"))
    except Exception as error:  # the package's own error types vary between versions
        raise ValueError(
            f"PESQ failed on {what} ({type(error).__name__}: {error}); PESQ needs speech "
            "(at least about 0.25 s of it) in the reference."
        ) from error


def pesq_improvement(
    references,
    estimates,
    mixture,
    sample_rate=PESQ_SAMPLE_RATE,
    permutation=None,
    return_details=False,
):
    """PESQi: mean over sources of PESQ(estimate) - PESQ(mixture), wideband.

    ```
    PESQi = 1/K sum_i [PESQ_wb(s_i, estimate_pi(i)) - PESQ_wb(s_i, mixture)]
    ```

    with `pi` the given `permutation` (e.g. the one `sdr_improvement`
    chose, so both metrics score the same assignment) or, when `None`, the
    permutation that maximises the mean PESQ.

    Args:
        references: clean sources, `[K, samples]` (K <= 8).
        estimates: separated signals, `[K, samples]`.
        mixture: the mixture, `[samples]`.
        sample_rate: must be 16000: wideband PESQ (ITU-T P.862.2) is
            defined at 16 kHz; resample first.
        permutation: `None` or a sequence of K distinct indices,
            `permutation[i]` being the estimate matched with reference `i`.
        return_details: also return a dict with `"permutation"`, `"pesq"`
            (`[K]`, the matched estimates' scores) and `"mixture_pesq"`.

    Returns:
        float, the PESQ improvement (MOS-LQO points); with
        `return_details`, `(improvement, details)`.

    Raises:
        ImportError: when the optional `pesq` package is not installed
            (`pip install keras_spk[separation]`); check with
            `pesq_available()` first.

    Reference:
        - ITU-T P.862.2, Wideband extension to P.862 for the assessment of
          wideband telephone networks and speech codecs, 2007
        - Han, Chung and Kang, Interspeech 2020, section 4.2
    """
    if sample_rate != PESQ_SAMPLE_RATE or not _checks.is_int(sample_rate):
        raise ValueError(
            "`sample_rate` must be 16000: wideband PESQ is defined at 16 kHz; resample the "
            f"signals first. Received: sample_rate={sample_rate!r}"
        )
    references, estimates, mixture = _separation_inputs(references, estimates, mixture)
    num = references.shape[0]
    if permutation is not None:
        permutation = np.asarray(permutation)
        if permutation.shape != (num,) or sorted(permutation.tolist()) != list(range(num)):
            raise ValueError(
                f"`permutation` must list each of the {num} estimate indices once. "
                f"Received: permutation={permutation.tolist()}"
            )
    module = _pesq_module()

    def score(i, degraded, what):
        return _pesq_score(module, references[i], degraded, f"{what} against source {i}")

    mixture_pesq = np.array([score(i, mixture, "the mixture") for i in range(num)])
    if permutation is None:
        scores = np.array(
            [[score(i, estimates[j], f"estimate {j}") for j in range(num)] for i in range(num)]
        )
        permutation, _ = _best_assignment(scores)
        matched = scores[np.arange(num), permutation]
    else:
        matched = np.array(
            [score(i, estimates[j], f"estimate {j}") for i, j in enumerate(permutation)]
        )
    improvement = float(np.mean(matched - mixture_pesq))
    if not return_details:
        return improvement
    return improvement, {
        "permutation": np.asarray(permutation, dtype=np.int64),
        "pesq": matched,
        "mixture_pesq": mixture_pesq,
    }
