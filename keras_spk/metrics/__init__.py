"""Speaker-verification metrics (NumPy only)."""

from keras_spk.metrics.verification import det_curve
from keras_spk.metrics.verification import eer
from keras_spk.metrics.verification import error_rates
from keras_spk.metrics.verification import min_dcf
