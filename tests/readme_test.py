"""The README's library example runs as written, on the current backend."""

import os
import re

import keras
import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_layers_example_builds_trains_and_embeds():
    text = open(README, encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [b for b in blocks if "FeaturePyramid(" in b]
    assert len(example) == 1, "the README should hold one FeaturePyramid example"
    namespace = {}
    exec(example[0], namespace)
    waves = np.random.default_rng(0).normal(0, 0.1, (4, 16000)).astype("float32")
    embeddings = keras.ops.convert_to_numpy(namespace["embedder"](waves))
    assert embeddings.shape == (4, 128)
    history = namespace["trainer"].fit([waves, np.array([0, 1, 2, 3])], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
