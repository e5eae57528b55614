"""Speaker-verification and speech-separation metrics (NumPy only)."""

from keras_spk.metrics.separation import pesq_available
from keras_spk.metrics.separation import pesq_improvement
from keras_spk.metrics.separation import sdr
from keras_spk.metrics.separation import sdr_improvement
from keras_spk.metrics.separation import si_sdr
from keras_spk.metrics.verification import dcf_key
from keras_spk.metrics.verification import det_curve
from keras_spk.metrics.verification import eer
from keras_spk.metrics.verification import error_rates
from keras_spk.metrics.verification import min_dcf
from keras_spk.metrics.verification import verification_metrics
from keras_spk.utils.lazy import lazy_module_exports

# Lazy: the callback module imports keras.
__getattr__, __dir__, __all__ = lazy_module_exports(
    __name__, {"verification_callback": ("VerificationCallback", "cosine_trial_scores")}
)
__all__ = sorted(
    [
        "dcf_key",
        "det_curve",
        "eer",
        "error_rates",
        "min_dcf",
        "pesq_available",
        "pesq_improvement",
        "sdr",
        "sdr_improvement",
        "si_sdr",
        "verification_metrics",
        *__all__,
    ]
)
