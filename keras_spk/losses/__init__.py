"""Speaker-embedding losses (keras.ops only: TensorFlow and PyTorch backends).

Each loss is a registered `keras.losses.Loss` taking integer speaker labels
as `y_true` and embeddings as `y_pred`, with a functional form beside it.
Losses that learn parameters of their own live in layers (`GE2EHead` here;
the margin heads in `keras_spk.layers`). Every loss is reachable by a
lower-case name through `get(name)` (for YAML configs).
"""

from keras_spk.losses.angular_loss import AngularLoss
from keras_spk.losses.angular_loss import angular_loss
from keras_spk.losses.ge2e_loss import GE2EHead
from keras_spk.losses.ge2e_loss import GE2ELoss
from keras_spk.losses.ge2e_loss import ge2e_loss
from keras_spk.losses.ge2e_loss import ge2e_similarity
from keras_spk.losses.multi_metric_loss import PAPER_WEIGHTS
from keras_spk.losses.multi_metric_loss import MultiMetricLoss
from keras_spk.losses.multi_metric_loss import multi_metric_loss
from keras_spk.losses.npair_loss import NPairLoss
from keras_spk.losses.npair_loss import npair_loss
from keras_spk.losses.npair_loss import npair_tuplets
from keras_spk.losses.permutation_invariant_loss import PermutationInvariantLoss
from keras_spk.losses.permutation_invariant_loss import pairwise_speaker_losses
from keras_spk.losses.permutation_invariant_loss import permutation_invariant_loss
from keras_spk.losses.triplet_loss import TripletLoss
from keras_spk.losses.triplet_loss import triplet_loss
from keras_spk.utils.registry import lookup

LOSSES = {
    "ge2e": GE2ELoss,
    "triplet": TripletLoss,
    "npair": NPairLoss,
    "angular": AngularLoss,
    "multi_metric": MultiMetricLoss,
    "permutation_invariant": PermutationInvariantLoss,
    "pit": PermutationInvariantLoss,
}


def get(name):
    """The loss class registered under `name` (see `LOSSES`); unknown names raise ValueError."""
    return lookup(LOSSES, name, "loss")
