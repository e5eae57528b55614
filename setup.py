"""Packaging for keras_spk."""

import pathlib

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent


def _requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    requirements = (ln.split("#", 1)[0].strip() for ln in lines)
    return [r for r in requirements if r]


def _version():
    for line in (HERE / "keras_spk" / "version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("keras_spk/version.py has no __version__")


setup(
    name="keras_spk",
    version=_version(),
    description="Deep speaker verification for Keras 3 (TensorFlow and PyTorch backends).",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_spk", "keras_spk.*"]),
    python_requires=">=3.10",
    install_requires=_requirements(),
    extras_require={
        "test": ["pytest>=7"],
        # 2.13.0 is the CPU build used for testing; other versions pull CUDA wheels.
        "torch": ["torch==2.13.0"],
        # Wideband PESQ in keras_spk.metrics.separation; a source distribution
        # (built with a C compiler against the installed numpy).
        "separation": ["pesq>=0.0.4,<0.1"],
    },
    license="Apache-2.0",
)
