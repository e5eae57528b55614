"""Evaluation protocols: ways of scoring an embedder on a trial list beyond one EER.

* `keras_spk.evaluation.durations`: the duration-limited table (Jung et al.,
  2020, Tables 5-6): trial utterances cut by the energy VAD to a given
  amount of speech, embedded, and cosine-scored under every (enrolment,
  test) duration condition.
* `keras_spk.evaluation.centroids`: training speakers' centroids, their
  pairwise cosines and a t-SNE with the speaker bases (Heo et al., 2019,
  Figures 1-2).
"""

from keras_spk.evaluation.centroids import impostor_cosines
from keras_spk.evaluation.centroids import plot_centroid_cosines
from keras_spk.evaluation.centroids import plot_speaker_tsne
from keras_spk.evaluation.centroids import speaker_centroids

from keras_spk.evaluation.durations import cut_to_speech
from keras_spk.evaluation.durations import duration_conditions
from keras_spk.evaluation.durations import duration_label
from keras_spk.evaluation.durations import evaluate_durations
from keras_spk.evaluation.durations import format_duration_table
from keras_spk.evaluation.durations import write_duration_results

from keras_spk.evaluation.mixtures import min_distance_scores
from keras_spk.evaluation.mixtures import mixture_segment
from keras_spk.evaluation.mixtures import mixture_triples
from keras_spk.evaluation.mixtures import mixture_verification

from keras_spk.evaluation.separation import EvaluationMixture
from keras_spk.evaluation.separation import MixtureSet
from keras_spk.evaluation.separation import evaluate_separation
from keras_spk.evaluation.separation import format_separation_table
from keras_spk.evaluation.separation import ideal_ratio_mask
from keras_spk.evaluation.separation import speaker_mixtures
from keras_spk.evaluation.separation import write_separation_results
from keras_spk.evaluation.separation import wsj0_2mix_mixtures

__all__ = [
    "impostor_cosines",
    "plot_centroid_cosines",
    "plot_speaker_tsne",
    "speaker_centroids",
    "cut_to_speech",
    "duration_conditions",
    "duration_label",
    "evaluate_durations",
    "format_duration_table",
    "write_duration_results",
    "min_distance_scores",
    "mixture_segment",
    "mixture_triples",
    "mixture_verification",
    "EvaluationMixture",
    "MixtureSet",
    "evaluate_separation",
    "format_separation_table",
    "ideal_ratio_mask",
    "speaker_mixtures",
    "write_separation_results",
    "wsj0_2mix_mixtures",
]
