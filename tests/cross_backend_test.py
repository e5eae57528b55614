"""The same layer with the same weights gives the same output on both backends.

Every `BACKEND_CASES` entry of tests/layers and tests/losses is computed in
this process and, in a subprocess, under the other backend; the harness sets
identical seeded weights in both (tests/test_case.py: set_seeded_weights).
"""

import keras
import numpy as np
import pytest

from tests import backend_runner
from tests.test_case import OTHER_BACKEND
from tests.test_case import run_python


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory):
    here = keras.backend.backend()
    if here not in OTHER_BACKEND:
        pytest.skip(f"no second backend to compare with {here}")
    path = tmp_path_factory.mktemp("backends") / "other.npz"
    run_python(["-m", "tests.backend_runner", path], backend=OTHER_BACKEND[here], timeout=900)
    with np.load(path) as other:
        return backend_runner.compute_all(), {k: other[k] for k in other.files}


def test_every_layer_has_a_backend_case():
    cases = backend_runner.all_cases()
    covered = {key.split("::")[0] for key in cases}
    missing = [m for m in backend_runner.case_modules() if m not in covered and "layers" in m]
    assert not missing, f"layer test modules without BACKEND_CASES: {missing}"


def test_outputs_agree_across_backends(both_backends):
    here, other = both_backends
    assert set(here) == set(other)
    assert here, "no cases found"
    for key in sorted(here):
        np.testing.assert_allclose(
            here[key], other[key], rtol=1e-5, atol=1e-5, err_msg=f"{key} differs between backends"
        )
