"""scikit-learn conformance of the pair, DNN, normalisation and calibration estimators.

Excepted checks, and why
------------------------
Pair transformers (`BVector`, `ConcatMul`, `RBVector`) take trial rows
`[enroll | test]`, so `X` must have an even number of columns; an odd width
is a user error and raises `ValueError` (tested in pairs_test.py). The checks
below build their data with 3 or 5 columns (`make_blobs` with 3-D centres,
`X[:, :3]`, ...) and so fail on input validation before testing what they
are about. pairs_test.py::test_pair_transformers_on_stacked_pairs and
::test_pair_transformers_bad_inputs test the same properties on valid
stacked pairs: row-by-row and permuted transforms equal the batch one,
lists accepted, float32 preserved, pickle round trip, refit idempotent, NaN
and width mismatches raise `ValueError`.

`ScoreCalibrator` accepts a 1-D `X` on purpose: a vector of scores of one
system (`fit(scores, labels)`), read as one column. `check_fit1d` expects a
1-D `X` to be rejected, and `check_fit2d_predict1d` expects the message
"Reshape your data" (it gets a `ValueError` about the number of features).

`DNNPairClassifier` passes every check (none excepted). Under TensorFlow
each `fit` costs about 0.7 s of graph tracing, so there the checks that fit
many times (several data sets or dtypes) run only with `--run-slow` (the
DNN's checks take about 45 s in all on two CPU cores); under PyTorch all of
them run by default (about 10 s).

Excepted checks are run in strict xfail mode: one that starts passing fails
the suite, so the lists above stay exact.
"""

import functools

import keras
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from keras_spk.scoring.calibration import ScoreCalibrator
from keras_spk.scoring.dnn import DNNPairClassifier
from keras_spk.scoring.normalization import ScoreNormalizer
from keras_spk.scoring.pairs import BVector
from keras_spk.scoring.pairs import ConcatMul
from keras_spk.scoring.pairs import RBVector

_ODD_WIDTH = (
    "builds X with an odd number of columns; stacked pairs [enroll | test] need an even number"
)
PAIR_TRANSFORMER_EXCEPTIONS = {
    name: _ODD_WIDTH
    for name in (
        "check_fit_score_takes_y",
        "check_dont_overwrite_parameters",
        "check_estimators_dtypes",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_transformer_preserve_dtypes",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_dict_unchanged",
        "check_fit2d_predict1d",
    )
}
CALIBRATOR_EXCEPTIONS = {
    "check_fit1d": "a 1-D X is one system's scores, accepted on purpose",
    "check_fit2d_predict1d": "a 1-D X is read as one score column (ValueError on the feature count)",
}
# Checks that fit the DNN several times: under TensorFlow, run with --run-slow
# (dnn_test.py covers their subjects quickly: labels, classes, NaN).
SLOW_DNN_CHECKS = {
    "check_classifiers_train",
    "check_classifiers_classes",
    "check_estimators_dtypes",
    "check_classifier_data_not_an_array",
    "check_supervised_y_2d",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
}

ESTIMATORS = [
    BVector(),
    ConcatMul(),
    RBVector(n_representatives=2, n_components=1),
    ScoreNormalizer(),
    ScoreNormalizer(method="adaptive_s_norm", top_k=2, scoring="dot"),
    ScoreCalibrator(),
    # Small and fast, yet accurate enough for check_classifiers_train (> 0.83).
    DNNPairClassifier(
        hidden_units=(16,),
        epochs=2,
        batch_size=64,
        learning_rate=0.05,
        dropout=0.0,
        input_dropout=0.0,
    ),
]


def expected_failed_checks(estimator):
    if isinstance(estimator, (BVector, ConcatMul, RBVector)):
        return PAIR_TRANSFORMER_EXCEPTIONS
    if isinstance(estimator, ScoreCalibrator):
        return CALIBRATOR_EXCEPTIONS
    return {}


def _check_name(check):
    while isinstance(check, functools.partial):
        check = check.func
    return check.__name__


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_sklearn_compatible(estimator, check, request):
    if (
        isinstance(estimator, DNNPairClassifier)
        and _check_name(check) in SLOW_DNN_CHECKS
        and keras.backend.backend() == "tensorflow"
        and not request.config.getoption("--run-slow")
    ):
        pytest.skip("slow under TensorFlow: fits the Keras model many times; run with --run-slow")
    check(estimator)
