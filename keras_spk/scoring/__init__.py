"""Scoring back-ends: embeddings to verification decisions.

The back-ends are scikit-learn estimators, so they go into a `Pipeline`,
`clone` and grid-search like any other; trial scoring is `score_pairs`
(`score` keeps its scikit-learn meaning). Fitted back-ends are saved and
loaded without pickle (`save_backend` / `load_backend`). `BACKENDS` names
the standard back-ends; `evaluate_backends` compares several of them on one
trial list (the back-end tables of the paper recipes and `tools/score.py`).
"""

from keras_spk.scoring.backends import BACKENDS
from keras_spk.scoring.backends import BackendEvaluation
from keras_spk.scoring.backends import BackendSpec
from keras_spk.scoring.backends import build_backend
from keras_spk.scoring.backends import evaluate_backends
from keras_spk.scoring.backends import fit_backend
from keras_spk.scoring.backends import format_table
from keras_spk.scoring.backends import score_trials
from keras_spk.scoring.backends import write_results
from keras_spk.scoring.calibration import ScoreCalibrator
from keras_spk.scoring.calibration import bayes_threshold
from keras_spk.scoring.calibration import threshold_at_false_alarm
from keras_spk.scoring.calibration import threshold_at_min_dcf
from keras_spk.scoring.cosine import CosineScorer
from keras_spk.scoring.cosine import length_normalize
from keras_spk.scoring.dcae import DCAE
from keras_spk.scoring.dnn import DNNPairClassifier
from keras_spk.scoring.embeddings import load_embeddings
from keras_spk.scoring.embeddings import save_embeddings
from keras_spk.scoring.lda import LDA
from keras_spk.scoring.normalization import ScoreNormalizer
from keras_spk.scoring.normalization import adaptive_s_norm
from keras_spk.scoring.normalization import s_norm
from keras_spk.scoring.normalization import t_norm
from keras_spk.scoring.normalization import z_norm
from keras_spk.scoring.pairs import BVector
from keras_spk.scoring.pairs import ConcatMul
from keras_spk.scoring.pairs import RBVector
from keras_spk.scoring.pairs import sample_pairs
from keras_spk.scoring.pairs import split_pairs
from keras_spk.scoring.pairs import stack_pairs
from keras_spk.scoring.persistence import load_backend
from keras_spk.scoring.persistence import save_backend
from keras_spk.scoring.plda import PLDA
from keras_spk.scoring.plda import score_matrix
from keras_spk.scoring.plda import score_pairs
from keras_spk.scoring.plots import det_coordinates
from keras_spk.scoring.plots import plot_det
from keras_spk.scoring.plots import plot_score_histograms
