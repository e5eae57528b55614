"""Scoring back-ends: embeddings to verification decisions.

The back-ends are scikit-learn estimators, so they go into a `Pipeline`,
`clone` and grid-search like any other; trial scoring is `score_pairs`
(`score` keeps its scikit-learn meaning). Fitted back-ends are saved and
loaded without pickle (`save_backend` / `load_backend`). `BACKENDS` names
the standard back-ends (`backend_registry`); `build_backend`,
`fit_backend` and `score_trials` use them by name (`backends`);
`evaluate_backends` compares several of them on one trial list
(`comparison`: the back-end tables of the paper recipes and
`tools/score.py`); `format_table` and `write_results` report the results,
on one trial list or several (`results`). `multi_crop_scores` scores trials
by the crop embeddings of both utterances (`multi_crop`, the multi-crop
test protocol).

Names are imported on first use, so e.g. `format_table` does not load
scikit-learn.
"""

from keras_spk.utils.lazy import lazy_module_exports

_EXPORTS = {
    "backend_registry": ("BACKENDS", "BackendSpec"),
    "backends": ("build_backend", "fit_backend", "score_trials"),
    "comparison": ("BackendEvaluation", "evaluate_backends"),
    "results": ("format_table", "result_key", "write_results"),
    "calibration": ("ScoreCalibrator", "bayes_threshold", "threshold_at_false_alarm", "threshold_at_min_dcf"),
    "cosine": ("CosineScorer", "length_normalize"),
    "dcae": ("DCAE",),
    "dnn": ("DNNPairClassifier",),
    "embeddings": ("load_embeddings", "save_embeddings"),
    "lda": ("LDA",),
    "multi_crop": ("multi_crop_scores",),
    "normalization": ("ScoreNormalizer", "adaptive_s_norm", "s_norm", "t_norm", "z_norm"),
    "pairs": ("BVector", "ConcatMul", "RBVector", "sample_pairs", "split_pairs", "stack_pairs"),
    "persistence": ("load_backend", "save_backend"),
    "plda": ("PLDA", "score_matrix", "score_pairs"),
    "plots": ("det_coordinates", "plot_det", "plot_score_histograms"),
}
# The modules the package imported eagerly before, still reachable as attributes.
_SUBMODULES = (
    "backend_registry",
    "backends",
    "calibration",
    "comparison",
    "cosine",
    "dcae",
    "dnn",
    "embeddings",
    "lda",
    "multi_crop",
    "normalization",
    "pairs",
    "persistence",
    "plda",
    "plots",
    "results",
)

__getattr__, __dir__, __all__ = lazy_module_exports(__name__, _EXPORTS, submodules=_SUBMODULES)
