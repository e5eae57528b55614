"""The back-end registry and the comparison table (keras_spk.scoring.backends)."""

import csv
import json
import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from keras_spk import metrics
from keras_spk.scoring import backends as lib
from keras_spk.scoring.cosine import CosineScorer
from keras_spk.scoring.dcae import DCAE
from keras_spk.scoring.dnn import DNNPairClassifier
from keras_spk.scoring.lda import LDA
from keras_spk.scoring.pairs import BVector
from keras_spk.scoring.pairs import ConcatMul
from keras_spk.scoring.pairs import sample_pairs
from keras_spk.scoring.pairs import stack_pairs
from keras_spk.scoring.plda import PLDA

DIM = 8


def speaker_set(rng, n_speakers, per_speaker, noise):
    """Speaker centres N(0, 3^2 I) around a shared offset, plus N(0, noise^2 I) per utterance."""
    speakers = np.repeat(np.arange(n_speakers), per_speaker)
    centres = 3.0 * rng.standard_normal((n_speakers, DIM)) + 1.0
    return centres[speakers] + noise * rng.standard_normal((speakers.size, DIM)), speakers


def all_trials(speakers):
    enroll, test = np.triu_indices(speakers.size, 1)
    return enroll, test, (speakers[enroll] == speakers[test]).astype(int)


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(3)
    X_train, y_train = speaker_set(rng, 30, 6, noise=2.5)
    X, y = speaker_set(rng, 10, 5, noise=2.5)
    return X_train, y_train, X, *all_trials(y)


def test_registry_names_labels_and_how_they_learn():
    assert set(lib.BACKENDS) == {
        "cosine", "cosine_centered", "lda", "plda", "lda_plda",
        "bvector", "rbvector", "concat_mul", "dcae",
    }  # fmt: skip
    labels = {name: spec.label for name, spec in lib.BACKENDS.items()}
    assert labels == {
        "cosine": "cosine",
        "cosine_centered": "cosine (centred)",
        "lda": "LDA + cosine",
        "dcae": "DCAE + cosine",
        "plda": "PLDA",
        "lda_plda": "LDA/PLDA",
        "bvector": "b-vector",
        "rbvector": "rb-vector",
        "concat_mul": "concat&mul",
    }
    learns = {name: spec.learns for name, spec in lib.BACKENDS.items()}
    assert learns["cosine"] == "nothing"
    assert {n for n, how in learns.items() if how == "pairs"} == {"bvector", "rbvector", "concat_mul"}
    assert lib.system_label("concat_mul") == "concat&mul (logistic)"
    assert lib.system_label("concat_mul", {"pair_classifier": "dnn"}) == "concat&mul"
    assert lib.system_label("lda_plda", {"pair_classifier": "logistic"}) == "LDA/PLDA"


def test_build_backend_passes_the_settings_on():
    lda = lib.build_backend("lda", lda_dim=3)
    assert [name for name, _ in lda.steps] == ["lda", "cosine"]
    assert lda[0].n_components == 3 and lda[1].center is False

    logistic = lib.build_backend("bvector")
    assert isinstance(logistic[0], BVector) and isinstance(logistic[1], LogisticRegression)

    dnn = lib.build_backend(
        "concat_mul", seed=5, pair_classifier="dnn", dnn_hidden_units=(8, 4), dnn_epochs=2
    )
    assert isinstance(dnn[0], ConcatMul) and isinstance(dnn[1], DNNPairClassifier)
    expected = {**DNNPairClassifier().get_params(), "hidden_units": (8, 4), "epochs": 2, "seed": 5}
    assert dnn[1].get_params() == expected  # unset settings keep the class defaults

    dcae = lib.build_backend("dcae", seed=7, verbose=2, dcae_dim=4, dcae_epochs=3, lda_dim=2)
    assert isinstance(dcae[0], DCAE) and isinstance(dcae[1], CosineScorer) and dcae[1].center
    expected = {**DCAE().get_params(), "n_components": 4, "epochs": 3, "seed": 7, "verbose": 2}
    assert dcae[0].get_params() == expected


def test_unknown_names_and_settings_list_the_valid_ones(noisy):
    X_train, y_train, X, enroll, test, labels = noisy
    valid = ", ".join(sorted(lib.BACKENDS))
    with pytest.raises(ValueError, match=f"Unknown back-end 'svm'. Valid back-ends: {valid}."):
        lib.build_backend("svm")
    with pytest.raises(ValueError, match="Unknown back-end 'svm'. Valid back-ends: bvector, "):
        lib.evaluate_backends(["cosine", "svm"], X_train, y_train, X, enroll, test, labels)
    with pytest.raises(ValueError, match="Unknown back-end setting.*'lda_dims'.*Valid settings: lda_dim, "):
        lib.build_backend("lda", lda_dims=3)
    with pytest.raises(ValueError, match="pair_classifier"):
        lib.build_backend("bvector", pair_classifier="svm")


def test_evaluate_gives_zero_eer_on_separable_speakers():
    rng = np.random.default_rng(0)
    X, y = speaker_set(rng, 6, 4, noise=0.01)
    enroll, test, labels = all_trials(y)
    result = lib.evaluate_backends(["cosine"], None, None, X, enroll, test, labels)
    (row,) = result.rows
    assert row["backend"] == "cosine" and row["system"] == "cosine"
    assert row["eer"] == 0.0 and row["min_dcf_0.01"] == 0.0 and row["min_dcf_0.05"] == 0.0
    assert row["n_trials"] == len(labels) == 276
    assert row["fit_seconds"] >= 0.0 and row["score_seconds"] >= 0.0
    assert isinstance(result.backends["cosine"], CosineScorer)


def test_evaluate_matches_metrics_computed_by_hand(noisy):
    X_train, y_train, X, enroll, test, labels = noisy
    names = ["cosine", "lda", "plda", "bvector"]
    result = lib.evaluate_backends(
        names, X_train, y_train, X, enroll, test, labels,
        settings={"lda_dim": 4, "n_pairs": 2000}, seed=1, p_targets=(0.01, 0.1),
    )  # fmt: skip
    assert [r["backend"] for r in result.rows] == names
    assert [r["system"] for r in result.rows] == ["cosine", "LDA + cosine", "PLDA", "b-vector (logistic)"]
    assert list(result.scores) == list(result.backends) == names
    rows = {r["backend"]: r for r in result.rows}
    assert set(rows["plda"]) == {
        "backend", "system", "eer", "min_dcf_0.01", "min_dcf_0.1",
        "n_trials", "fit_seconds", "score_seconds",
    }  # fmt: skip

    # Cosine, by hand with NumPy.
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cosine = np.einsum("ij,ij->i", unit[enroll], unit[test])
    np.testing.assert_allclose(result.scores["cosine"], cosine, rtol=1e-12)
    # PLDA fitted directly; every number of its row recomputed with keras_spk.metrics.
    plda_scores = PLDA().fit(X_train, y_train).score_pairs(X[enroll], X[test])
    np.testing.assert_allclose(result.scores["plda"], plda_scores, rtol=1e-9, atol=1e-9)
    assert rows["plda"]["eer"] == pytest.approx(metrics.eer(plda_scores, labels), abs=1e-12)
    for p in (0.01, 0.1):
        assert rows["plda"][f"min_dcf_{p}"] == pytest.approx(
            metrics.min_dcf(plda_scores, labels, p_target=p), abs=1e-12
        )
    # LDA + cosine and the b-vector back-end, rebuilt from their parts.
    projected = LDA(n_components=4).fit(X_train, y_train).transform(X)  # unit length
    expected = np.einsum("ij,ij->i", projected[enroll], projected[test])
    np.testing.assert_allclose(result.scores["lda"], expected, rtol=1e-9, atol=1e-12)
    a, b, same = sample_pairs(y_train, n_pairs=2000, seed=1)
    bvector = Pipeline([("b", BVector()), ("c", LogisticRegression(max_iter=1000))])
    bvector.fit(stack_pairs(X_train[a], X_train[b]), same)
    expected = bvector.decision_function(stack_pairs(X[enroll], X[test]))
    np.testing.assert_allclose(result.scores["bvector"], expected, rtol=1e-9, atol=1e-12)
    assert rows["bvector"]["eer"] == pytest.approx(metrics.eer(expected, labels), abs=1e-12)
    # Noisy enough to be a real test, and learning helps.
    assert 0.05 < rows["cosine"]["eer"] < 0.5
    assert rows["plda"]["eer"] < rows["cosine"]["eer"]


def test_dcae_through_the_registry_scores_like_its_pipeline(noisy):
    pytest.importorskip("keras")
    X_train, y_train, X, enroll, test, labels = noisy
    settings = {"dcae_dim": 4, "dcae_hidden_units": (8,), "dcae_epochs": 2, "dcae_batch_size": 64}
    result = lib.evaluate_backends(["dcae"], X_train, y_train, X, enroll, test, labels, settings=settings)
    (row,) = result.rows
    assert row["system"] == "DCAE + cosine"
    backend = result.backends["dcae"]
    assert backend[0].n_components_ == 4 and len(backend[0].loss_curve_) == 2
    codes = backend[0].transform(X)
    centred = codes - backend[0].transform(X_train).mean(axis=0)  # CosineScorer(center=True)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    expected = np.einsum("ij,ij->i", unit[enroll], unit[test])
    np.testing.assert_allclose(result.scores["dcae"], expected, rtol=1e-9, atol=1e-9)
    assert row["eer"] == pytest.approx(metrics.eer(expected, labels), abs=1e-12)


def test_evaluate_input_errors(noisy):
    X_train, y_train, X, enroll, test, labels = noisy
    with pytest.raises(ValueError, match="plda, lda learn from data: give train_X and train_speakers"):
        lib.evaluate_backends(["cosine", "plda", "lda"], None, None, X, enroll, test, labels)
    with pytest.raises(ValueError, match="cosine listed more than once"):
        lib.evaluate_backends(["cosine", "cosine"], None, None, X, enroll, test, labels)
    with pytest.raises(ValueError, match="train_X has 3-dimensional embeddings but trial_X 8"):
        lib.evaluate_backends(["plda"], X_train[:, :3], y_train, X, enroll, test, labels)
    with pytest.raises(ValueError, match="one label per row of `train_X`"):
        lib.evaluate_backends(["plda"], X_train, y_train[:-1], X, enroll, test, labels)
    with pytest.raises(ValueError, match="`test_index` refers to rows outside trial_X, which has 50 rows"):
        lib.evaluate_backends(["cosine"], None, None, X, enroll, test + 1, labels)
    with pytest.raises(ValueError, match="one length"):
        lib.evaluate_backends(["cosine"], None, None, X, enroll, test, labels[:-1])


def test_format_table_content():
    rows = [
        {"backend": "cosine", "system": "cosine", "eer": 0.04812, "min_dcf_0.01": 0.51234,
         "min_dcf_0.05": 0.3, "n_trials": 10},
        {"backend": "concat_mul", "system": "concat&mul", "eer": 0.125, "min_dcf_0.01": 1.0,
         "min_dcf_0.05": 0.0, "n_trials": 10},
    ]  # fmt: skip
    assert lib.format_table(rows).splitlines() == [
        "back-end    system        EER %  minDCF0.01  minDCF0.05",
        "-------------------------------------------------------",
        "cosine      cosine         4.81      0.5123      0.3000",
        "concat_mul  concat&mul    12.50      1.0000      0.0000",
    ]
    timed = [dict(r, fit_seconds=1.5, score_seconds=0.25) for r in rows]
    lines = lib.format_table(timed).splitlines()
    assert lines[0].endswith("minDCF0.05    fit s  score s")
    assert lines[3].endswith("0.0000     1.50     0.25")
    with pytest.raises(ValueError, match="at least one result row"):
        lib.format_table([])


def test_write_results_writes_the_same_numbers_to_every_file(noisy, tmp_path):
    X_train, y_train, X, enroll, test, labels = noisy
    result = lib.evaluate_backends(["cosine", "plda"], X_train, y_train, X, enroll, test, labels)
    out = tmp_path / "results"
    written = lib.write_results(
        result.rows, result.scores, labels, out, metadata={"settings": {"seed": 0}}, title="test"
    )
    assert sorted(os.listdir(out)) == ["det.png", "results.csv", "results.json", "table.txt"]
    assert sorted(os.path.basename(p) for p in written) == sorted(os.listdir(out))

    assert (out / "table.txt").read_text() == lib.format_table(result.rows) + "\n"
    document = json.loads((out / "results.json").read_text())
    assert document == {"settings": {"seed": 0}, "results": result.rows}
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["backend"] for r in table] == ["cosine", "plda"]
    assert [r["system"] for r in table] == ["cosine", "PLDA"]
    for written_row, row in zip(table, result.rows):
        for key in ("eer", "min_dcf_0.01", "min_dcf_0.05", "fit_seconds"):
            assert float(written_row[key]) == row[key]
        assert int(written_row["n_trials"]) == len(labels)
    with open(out / "det.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    lib.write_results(result.rows[:1], result.scores, labels, tmp_path / "no_plot", plot=False)
    assert sorted(os.listdir(tmp_path / "no_plot")) == ["results.csv", "results.json", "table.txt"]
    with pytest.raises(ValueError, match="No scores for back-end.*plda"):
        lib.write_results(result.rows, {"cosine": result.scores["cosine"]}, labels, tmp_path / "x")
    with pytest.raises(ValueError, match="'results' key"):
        lib.write_results(result.rows, result.scores, labels, tmp_path / "x", metadata={"results": 1})
    assert not (tmp_path / "x").exists()
