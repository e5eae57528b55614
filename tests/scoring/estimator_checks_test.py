"""scikit-learn conformance of the cosine, LDA and PLDA back-ends.

Every check of `parametrize_with_checks` (scikit-learn 1.9, legacy checks
included) passes for these configurations, so no check is excepted:
`_expected_failed_checks` returns an empty dict and `xfail_strict=True`
would turn any future exception list into a claim that is checked. The only
skips are scikit-learn's array-API checks, which it skips itself unless
`SCIPY_ARRAY_API=1` is set.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from keras_spk.scoring.cosine import CosineScorer
from keras_spk.scoring.lda import LDA
from keras_spk.scoring.plda import PLDA

ESTIMATORS = [
    CosineScorer(),
    CosineScorer(center=False, length_norm=False),
    LDA(),
    LDA(n_components=1, whiten=False, wccn=True, length_norm=False),
    LDA(solver="eigen", shrinkage="auto"),
    PLDA(),
    PLDA(n_iter=0),
]


def _expected_failed_checks(estimator):
    return {}


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=_expected_failed_checks, xfail_strict=True
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
