"""tools/score.py end to end on a tiny synthetic embedding set."""

import csv
import importlib.util
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_spk import metrics
from keras_spk.scoring.embeddings import save_embeddings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "score.py")


def _load_tool():
    spec = importlib.util.spec_from_file_location("score_tool", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


score = _load_tool()

DIM = 10


def _speaker_set(rng, prefix, n_speakers, n_utts, spread=1.1):
    centres = rng.standard_normal((n_speakers, DIM)) * 1.5 + 0.8  # a shared offset, as real embeddings have
    names, rows, speakers = [], [], []
    for s in range(n_speakers):
        for u in range(n_utts):
            names.append(f"{prefix}{s:02d}/video/{u:05d}.wav")
            rows.append(centres[s] + spread * rng.standard_normal(DIM))
            speakers.append(f"{prefix}{s:02d}")
    return names, np.array(rows), speakers


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("score")
    names, X, speakers = _speaker_set(rng, "ev", 6, 4)
    train_names, X_train, train_speakers = _speaker_set(rng, "tr", 30, 6)
    save_embeddings(folder / "eval.npz", names, X)
    save_embeddings(folder / "train.npz", train_names, X_train, speakers=train_speakers)
    save_embeddings(folder / "train_nospk.npz", train_names, X_train)
    lines = ["# comment line, then a blank one", ""]
    enroll, test, labels = [], [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        if (i + j) % 3 == 0:  # a subset of all pairs
            label = int(speakers[i] == speakers[j])
            lines.append(f"{label} {names[i]} {names[j]}")
            enroll.append(i)
            test.append(j)
            labels.append(label)
    (folder / "trials.txt").write_text("\n".join(lines) + "\n")
    return {
        "folder": folder,
        "names": names,
        "X": X,
        "X_train": X_train,
        "train_speakers": train_speakers,
        "enroll": np.array(enroll),
        "test": np.array(test),
        "labels": np.array(labels),
        "emb": str(folder / "eval.npz"),
        "train": str(folder / "train.npz"),
        "trials": str(folder / "trials.txt"),
    }


def _numpy_cosine(X, enroll, test):
    E, T = X[enroll], X[test]
    return (E * T).sum(1) / np.sqrt((E * E).sum(1) * (T * T).sum(1))


def test_cosine_end_to_end_matches_numpy_and_writes_json_csv_scores(data, tmp_path, capsys):
    out = tmp_path / "run"
    rows = score.main(["--embeddings", data["emb"], "--trials", data["trials"], "--output", str(out)])
    expected_scores = _numpy_cosine(data["X"], data["enroll"], data["test"])
    expected = metrics.verification_metrics(expected_scores, data["labels"])
    assert len(rows) == 1 and rows[0]["backend"] == "cosine"
    for key in ("eer", "min_dcf_0.01", "min_dcf_0.05"):
        assert rows[0][key] == pytest.approx(expected[key], abs=1e-12)
    assert 0.0 < rows[0]["eer"] < 0.5  # neither trivial nor broken

    printed = capsys.readouterr().out
    assert "cosine" in printed and f"{100 * expected['eer']:7.2f}" in printed

    results = json.loads((out / "results.json").read_text())
    assert results["results"] == rows
    assert results["arguments"]["backend"] == ["cosine"]
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["backend"] for r in table] == ["cosine"]
    assert float(table[0]["eer"]) == pytest.approx(expected["eer"], abs=1e-12)
    assert int(table[0]["n_trials"]) == len(data["labels"])

    lines = (out / "scores_cosine.txt").read_text().splitlines()
    assert len(lines) == len(data["labels"])
    first = lines[0].split()
    assert first[:3] == [
        data["names"][data["enroll"][0]],
        data["names"][data["test"][0]],
        str(data["labels"][0]),
    ]
    np.testing.assert_allclose([float(line.split()[3]) for line in lines], expected_scores, rtol=1e-12)
    assert not (out / "det.png").exists()


def test_learning_backends_match_the_library_called_directly(data, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from keras_spk.scoring.lda import LDA
    from keras_spk.scoring.pairs import BVector
    from keras_spk.scoring.pairs import sample_pairs
    from keras_spk.scoring.pairs import stack_pairs
    from keras_spk.scoring.plda import PLDA

    names = ["cosine", "cosine_centered", "lda", "plda", "lda_plda", "bvector", "rbvector", "concat_mul"]
    out = tmp_path / "run"
    rows = score.main(
        [
            "--embeddings",
            data["emb"],
            "--trials",
            data["trials"],
            "--train-embeddings",
            data["train"],
            "--backend",
            *names,
            "--n-pairs",
            "3000",
            "--output",
            str(out),
            "--plot",
            "--save-backends",
        ]
    )
    by_name = {r["backend"]: r for r in rows}
    assert list(by_name) == names
    X, Xt, spk = data["X"], data["X_train"], data["train_speakers"]
    e, t, labels = data["enroll"], data["test"], data["labels"]

    # PLDA, independently fitted on the same training set.
    plda = PLDA().fit(Xt, spk)
    assert by_name["plda"]["eer"] == pytest.approx(
        metrics.eer(plda.score_pairs(X[e], X[t]), labels), abs=1e-12
    )
    # Centred cosine: subtract the training mean, by hand.
    centred = X - Xt.mean(axis=0)
    assert by_name["cosine_centered"]["eer"] == pytest.approx(
        metrics.eer(_numpy_cosine(centred, e, t), labels), abs=1e-12
    )
    # LDA then PLDA.
    lda_plda = Pipeline([("lda", LDA()), ("plda", PLDA())]).fit(Xt, spk)
    front = lda_plda[:-1]
    expected = lda_plda[-1].score_pairs(front.transform(X[e]), front.transform(X[t]))
    np.testing.assert_allclose(
        [float(line.split()[3]) for line in (out / "scores_lda_plda.txt").read_text().splitlines()],
        expected,
        rtol=1e-9,
        atol=1e-9,
    )
    # b-vector + logistic regression on the same sampled pairs.
    a, b, same = sample_pairs(spk, n_pairs=3000, seed=0)
    bvector = Pipeline([("b", BVector()), ("c", LogisticRegression(max_iter=1000))]).fit(
        stack_pairs(Xt[a], Xt[b]), same
    )
    assert by_name["bvector"]["eer"] == pytest.approx(
        metrics.eer(bvector.decision_function(stack_pairs(X[e], X[t])), labels), abs=1e-12
    )
    # Well-separated speakers: trained back-ends do well.
    assert by_name["plda"]["eer"] < 0.1 and by_name["lda_plda"]["eer"] < 0.1

    with open(out / "det.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # Saved back-ends reproduce the scores exactly.
    from keras_spk.scoring.persistence import load_backend

    for name in names:
        loaded = load_backend(out / f"backend_{name}.npz")
        scores = score.score_trials(name, loaded, X, e, t)
        written = [float(line.split()[3]) for line in (out / f"scores_{name}.txt").read_text().splitlines()]
        np.testing.assert_array_equal(scores, written)


def test_kaldi_trials_and_speakers_from_names(data, tmp_path):
    kaldi = tmp_path / "trials.kaldi"
    kaldi.write_text(
        "".join(
            f"{data['names'][i]} {data['names'][j]} {'target' if lab else 'nontarget'}\n"
            for i, j, lab in zip(data["enroll"], data["test"], data["labels"])
        )
    )
    train_nospk = str(data["folder"] / "train_nospk.npz")
    rows_kaldi = score.main(
        [
            "--embeddings",
            data["emb"],
            "--trials",
            str(kaldi),
            "--backend",
            "plda",
            "--train-embeddings",
            train_nospk,
            "--train-speakers",
            "from-names",
        ]
    )
    rows_vox = score.main(
        [
            "--embeddings",
            data["emb"],
            "--trials",
            data["trials"],
            "--backend",
            "plda",
            "--train-embeddings",
            data["train"],
        ]
    )
    assert rows_kaldi == rows_vox


def _run(data, *extra):
    return score.main(["--embeddings", data["emb"], "--trials", data["trials"], *extra])


def test_unknown_trial_name_reports_the_line_number(data, tmp_path):
    trials = tmp_path / "t.txt"
    lines = [f"1 {data['names'][0]} {data['names'][1]}", "", f"0 {data['names'][0]} ev99/x/1.wav"]
    trials.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError, match=r"1 trial name\(s\) are not in .*eval.npz: line 3: test 'ev99/x/1.wav'"
    ):
        score.main(["--embeddings", data["emb"], "--trials", str(trials)])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backend", "svm"], "Unknown back-end 'svm'. Valid back-ends: bvector, concat_mul, cosine, "),
        (["--backend", "plda"], "Back-end.* plda learn from data: give --train-embeddings"),
        (["--backend", "cosine", "cosine"], "lists a back-end twice"),
        (["--plot"], "--plot writes into the output folder: give --output"),
    ],
)
def test_argument_errors(data, extra, message):
    with pytest.raises(ValueError, match=message):
        _run(data, *extra)


def test_training_file_problems(data, tmp_path):
    with pytest.raises(
        ValueError, match="train_nospk.npz has no `speakers` array.*--train-speakers from-names"
    ):
        _run(data, "--backend", "lda", "--train-embeddings", str(data["folder"] / "train_nospk.npz"))
    small = tmp_path / "small.npz"
    save_embeddings(small, ["a/1", "b/1"], np.zeros((2, 3)), speakers=["a", "b"])
    with pytest.raises(ValueError, match="3-dimensional embeddings but --embeddings 10-dimensional"):
        _run(data, "--backend", "plda", "--train-embeddings", str(small))
    with pytest.raises(FileNotFoundError, match="nothing.npz does not exist"):
        _run(data, "--backend", "plda", "--train-embeddings", str(tmp_path / "nothing.npz"))


def test_command_line_exit_status_and_messages(data, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    ok = subprocess.run(
        [sys.executable, SCRIPT, "--embeddings", data["emb"], "--trials", data["trials"]],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "cosine" in ok.stdout and "EER %" in ok.stdout
    bad = subprocess.run(
        [sys.executable, SCRIPT, "--embeddings", str(tmp_path / "missing.npz"), "--trials", data["trials"]],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"score.py: error: Embedding file {tmp_path / 'missing.npz'} does not exist."


def test_concat_mul_with_the_dnn_pair_classifier(data, tmp_path):
    pytest.importorskip("keras")
    from keras_spk.scoring.persistence import load_backend

    out = tmp_path / "dnn"
    rows = _run(
        data,
        "--backend",
        "concat_mul",
        "--pair-classifier",
        "dnn",
        "--n-pairs",
        "300",
        "--train-embeddings",
        data["train"],
        "--output",
        str(out),
        "--save-backends",
    )
    assert rows[0]["backend"] == "concat_mul" and 0.0 <= rows[0]["eer"] <= 1.0
    loaded = load_backend(out / "backend_concat_mul.npz")
    assert type(loaded[-1]).__name__ == "DNNPairClassifier" and loaded[-1].seed == 0
    written = [float(line.split()[3]) for line in (out / "scores_concat_mul.txt").read_text().splitlines()]
    np.testing.assert_array_equal(
        score.score_trials("concat_mul", loaded, data["X"], data["enroll"], data["test"]), written
    )
