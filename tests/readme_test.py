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


def test_readme_scoring_example_fits_scores_and_saves(tmp_path, monkeypatch):
    text = open(README, encoding="utf-8").read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "PLDA()" in b]
    assert len(blocks) == 1, "the README should hold one PLDA example"
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(200), 5)
    X = rng.normal(size=(200, 160))[speakers] + 0.5 * rng.normal(size=(1000, 160))
    namespace = {"X": X, "speakers": speakers, "enroll": X[:10], "test": X[10:20]}
    monkeypatch.chdir(tmp_path)
    exec(blocks[0], namespace)
    from keras_spk.scoring import load_backend

    restored = load_backend(tmp_path / "lda_plda.npz")
    np.testing.assert_array_equal(
        namespace["score_pairs"](restored, X[:10], X[10:20]), namespace["scores"]
    )
    assert namespace["scores"].shape == (10,)
