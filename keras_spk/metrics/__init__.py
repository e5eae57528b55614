"""Speaker-verification metrics (NumPy only)."""

from keras_spk.metrics.verification import dcf_key
from keras_spk.metrics.verification import det_curve
from keras_spk.metrics.verification import eer
from keras_spk.metrics.verification import error_rates
from keras_spk.metrics.verification import min_dcf
from keras_spk.metrics.verification import verification_metrics

_CALLBACK_EXPORTS = ("VerificationCallback", "cosine_trial_scores")


def __getattr__(name):  # Lazy: the callback module imports keras.
    if name in _CALLBACK_EXPORTS:
        from keras_spk.metrics import verification_callback

        return getattr(verification_callback, name)
    raise AttributeError(f"module 'keras_spk.metrics' has no attribute {name!r}")
