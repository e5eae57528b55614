"""Computes every BACKEND_CASES entry of the test suite under the current backend.

    KERAS_BACKEND=torch python -m tests.backend_runner OUT.npz

Used by tests/cross_backend_test.py to compare backends in separate processes
(a process has one Keras backend).
"""

import importlib
import pathlib
import sys

import numpy as np

from tests.test_case import run_backend_case

ROOT = pathlib.Path(__file__).resolve().parent
CASE_FOLDERS = ("layers", "losses")


def case_modules():
    """Names of the test modules that may define BACKEND_CASES."""
    names = []
    for folder in CASE_FOLDERS:
        for path in sorted((ROOT / folder).glob("*_test.py")):
            names.append(f"tests.{folder}.{path.stem}")
    return names


def all_cases():
    """{"module::case": factory} over every test module."""
    cases = {}
    for name in case_modules():
        module = importlib.import_module(name)
        for case, factory in getattr(module, "BACKEND_CASES", {}).items():
            cases[f"{name}::{case}"] = factory
    return cases


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for k in sorted(value):
            flatten(f"{prefix}|{k}", value[k], out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            flatten(f"{prefix}|{i}", v, out)
    else:
        out[prefix] = np.asarray(value)


def compute_all():
    out = {}
    for key, factory in all_cases().items():
        flatten(key, run_backend_case(factory), out)
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **compute_all())
