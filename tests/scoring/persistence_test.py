import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from keras_spk.scoring.persistence import FORMAT_NAME
from keras_spk.scoring.persistence import FORMAT_VERSION
from keras_spk.scoring.persistence import SKLEARN_CLASSES
from keras_spk.scoring.persistence import allowed_classes
from keras_spk.scoring.persistence import load_backend
from keras_spk.scoring.persistence import save_backend

RNG = np.random.default_rng(0)
X = RNG.standard_normal((90, 6))
Y = np.arange(90) % 3
X[Y == 1] += 1.5
X_NEW = RNG.standard_normal((25, 6))


class PairScorer(BaseEstimator):
    """A dummy back-end: an estimator parameter, a fitted clone of it, and odd-typed state."""

    def __init__(self, classifier=None, scale=1.0, names=("a", "b")):
        self.classifier = classifier
        self.scale = scale
        self.names = names

    def fit(self, X, y):
        self.classifier_ = clone(self.classifier).fit(X, y)
        self.shift_ = np.float32(0.25)
        self.table_ = {1: "one", "two": (2, 2.5), "three": [np.arange(3), None]}
        self.limits_ = (float("-inf"), float("nan"), float("inf"))
        self.labels_ = np.array(["x", "yy", "zzz"], dtype=object)
        self.matrices_ = [np.eye(2, dtype=np.float32), np.arange(6, dtype=np.int16).reshape(2, 3)]
        self.flag_ = np.bool_(True)
        return self

    def score_pairs(self, enroll, test):
        check_is_fitted(self)
        return self.scale * (self.classifier_.decision_function(enroll * test)[:, 0] + self.shift_)


def _outputs(estimator, X_in):
    """Every output the estimator has on X_in."""
    out = {}
    for method in ("predict", "predict_proba", "decision_function", "transform", "score_pairs"):
        if hasattr(estimator, method):
            args = (X_in, X_in[::-1]) if method == "score_pairs" else (X_in,)
            out[method] = getattr(estimator, method)(*args)
    assert out
    return out


def _assert_same_outputs(a, b, X_in=X_NEW):
    out_a, out_b = _outputs(a, X_in), _outputs(b, X_in)
    assert out_a.keys() == out_b.keys()
    for method in out_a:
        assert out_a[method].dtype == out_b[method].dtype, method
        np.testing.assert_array_equal(out_a[method], out_b[method], err_msg=method)


SKLEARN_CASES = {
    "logistic": LogisticRegression(C=0.3),
    "lda": LinearDiscriminantAnalysis(n_components=2),
    "pca_whiten": PCA(n_components=3, whiten=True),
    "svc_rbf": SVC(gamma="scale"),
    "linear_svc": LinearSVC(),
    "pipeline": make_pipeline(StandardScaler(), Normalizer(), PCA(4), LinearDiscriminantAnalysis()),
}


@pytest.mark.parametrize("name", sorted(SKLEARN_CASES))
def test_sklearn_round_trip_gives_identical_outputs(tmp_path, name):
    estimator = clone(SKLEARN_CASES[name]).fit(X, Y)
    path = tmp_path / "backend.npz"
    assert save_backend(estimator, path) == str(path)
    loaded = load_backend(path)
    assert type(loaded) is type(estimator)
    assert loaded is not estimator
    assert loaded.get_params(deep=False).keys() == estimator.get_params(deep=False).keys()
    _assert_same_outputs(estimator, loaded)


def test_every_listed_sklearn_class_is_covered_by_a_round_trip_case():
    covered = set()
    for estimator in SKLEARN_CASES.values():
        stack = [estimator]
        while stack:
            e = stack.pop()
            covered.add(f"{type(e).__module__.split('.')[0]}.{type(e).__name__}")
            stack.extend(step for _, step in getattr(e, "steps", []))
    listed = {f"sklearn.{path.rsplit('.', 1)[1]}" for path in SKLEARN_CLASSES}
    assert listed <= covered


def test_nested_estimator_and_odd_types_round_trip(tmp_path):
    estimator = PairScorer(LogisticRegression(C=0.5), scale=2.0, names=("p", "q")).fit(X, Y)
    save_backend(estimator, tmp_path / "b.npz", extra_classes=[PairScorer])
    loaded = load_backend(tmp_path / "b.npz", extra_classes=[PairScorer])

    _assert_same_outputs(estimator, loaded)
    assert isinstance(loaded.classifier, LogisticRegression) and loaded.classifier.C == 0.5
    assert not hasattr(loaded.classifier, "coef_")  # the unfitted parameter stays unfitted
    np.testing.assert_array_equal(loaded.classifier_.coef_, estimator.classifier_.coef_)
    assert loaded.names == ("p", "q")
    assert type(loaded.shift_) is np.float32 and loaded.shift_ == np.float32(0.25)
    assert type(loaded.flag_) is np.bool_ and loaded.flag_
    assert loaded.table_.keys() == {1, "two", "three"}
    assert loaded.table_[1] == "one" and loaded.table_["two"] == (2, 2.5)
    np.testing.assert_array_equal(loaded.table_["three"][0], np.arange(3))
    assert loaded.table_["three"][1] is None
    lo, nan, hi = loaded.limits_
    assert lo == float("-inf") and np.isnan(nan) and hi == float("inf")
    assert loaded.labels_.dtype == object and loaded.labels_.tolist() == ["x", "yy", "zzz"]
    for a, b in zip(loaded.matrices_, estimator.matrices_):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_pipeline_with_a_custom_final_step(tmp_path):
    pipeline = Pipeline([("scale", StandardScaler()), ("pairs", PairScorer(LogisticRegression()))]).fit(X, Y)
    save_backend(pipeline, tmp_path / "p.npz", extra_classes=[PairScorer])
    loaded = load_backend(tmp_path / "p.npz", extra_classes=[PairScorer])
    assert [name for name, _ in loaded.steps] == ["scale", "pairs"]
    front = loaded[:-1]
    np.testing.assert_array_equal(
        loaded[-1].score_pairs(front.transform(X_NEW), front.transform(X_NEW[::-1])),
        pipeline[-1].score_pairs(pipeline[:-1].transform(X_NEW), pipeline[:-1].transform(X_NEW[::-1])),
    )


def test_an_estimator_shared_twice_is_loaded_once(tmp_path):
    scaler = StandardScaler().fit(X)
    estimator = PairScorer(classifier=scaler, names=(scaler, "x"))
    save_backend(estimator, tmp_path / "b.npz", extra_classes=[PairScorer])
    loaded = load_backend(tmp_path / "b.npz", extra_classes=[PairScorer])
    assert loaded.names[0] is loaded.classifier
    np.testing.assert_array_equal(loaded.classifier.mean_, scaler.mean_)


def test_unfitted_estimator_round_trips_its_parameters(tmp_path):
    save_backend(LogisticRegression(C=0.125, max_iter=7), tmp_path / "u.npz")
    loaded = load_backend(tmp_path / "u.npz")
    assert loaded.get_params() == LogisticRegression(C=0.125, max_iter=7).get_params()
    assert not hasattr(loaded, "coef_")


def test_file_layout_is_json_header_plus_plain_arrays(tmp_path):
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)
    path = save_backend(estimator, tmp_path / "b.npz")
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    header = json.loads(entries.pop("__header__").tobytes().decode("utf-8"))
    assert header["format"] == FORMAT_NAME == "keras_spk.backend"
    assert header["format_version"] == FORMAT_VERSION == 1
    assert {"keras_spk_version", "sklearn_version", "numpy_version"} <= header.keys()
    root = header["root"]
    assert root["class"] == "sklearn.pipeline.Pipeline"
    step = root["params"]["steps"][1]["items"][1]
    assert step["class"] == "sklearn.linear_model.LogisticRegression"
    assert step["params"]["C"] == 1.0
    coef_key = step["attributes"]["coef_"]["key"]
    np.testing.assert_array_equal(entries[coef_key], estimator[-1].coef_)
    assert all(a.dtype != object for a in entries.values())


def test_save_and_load_never_use_pickle(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("dump", "dumps", "load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    estimator = PairScorer(LogisticRegression()).fit(X, Y)
    save_backend(estimator, tmp_path / "b.npz", extra_classes=[PairScorer])
    _assert_same_outputs(estimator, load_backend(tmp_path / "b.npz", extra_classes=[PairScorer]))


def test_numpy_only_backend_loads_without_importing_keras(tmp_path):
    path = save_backend(LogisticRegression().fit(X, Y), tmp_path / "b.npz")
    code = (
        "import sys; from keras_spk.scoring.persistence import load_backend; "
        f"load_backend({str(path)!r}); print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_keras_model_attribute_round_trips(tmp_path):
    keras = pytest.importorskip("keras")

    class KerasScorer(BaseEstimator):
        def __init__(self, units=3):
            self.units = units

        def fit(self, X, y=None):
            keras.utils.set_random_seed(1)
            inputs = keras.Input((X.shape[1],))
            hidden = keras.layers.Dense(self.units, activation="tanh")(inputs)
            self.model_ = keras.Model(inputs, keras.layers.Dense(1)(hidden))
            return self

        def score_pairs(self, enroll, test):
            return self.model_.predict(enroll * test, verbose=0)[:, 0]

    estimator = KerasScorer().fit(X)
    save_backend(estimator, tmp_path / "k.npz", extra_classes=[KerasScorer])
    loaded = load_backend(tmp_path / "k.npz", extra_classes=[KerasScorer])
    assert loaded.model_ is not estimator.model_
    for a, b in zip(loaded.model_.get_weights(), estimator.model_.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.score_pairs(X_NEW, X_NEW), estimator.score_pairs(X_NEW, X_NEW))


# === Refusals ===


class NotAllowed(BaseEstimator):
    def fit(self, X, y=None):
        self.mean_ = X.mean(axis=0)
        return self


def test_save_refuses_a_class_outside_the_allow_list(tmp_path):
    with pytest.raises(TypeError, match="NotAllowed is not in the back-end allow-list"):
        save_backend(NotAllowed().fit(X), tmp_path / "n.npz")
    with pytest.raises(TypeError, match="NotAllowed is not in the back-end allow-list"):
        save_backend(make_pipeline(NotAllowed()), tmp_path / "n.npz")
    assert not os.listdir(tmp_path)


def test_save_refuses_unpicklable_free_state_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "b.npz"
    save_backend(LogisticRegression().fit(X, Y), path)
    before = path.read_bytes()
    estimator = NotAllowed().fit(X)
    estimator.rng_ = np.random.RandomState(0)
    with pytest.raises(TypeError, match=r"NotAllowed\.rng_ .*RandomState"):
        save_backend(estimator, path, extra_classes=[NotAllowed])
    estimator = NotAllowed().fit(X)
    estimator.ragged_ = np.array([np.zeros(2), "a"], dtype=object)
    with pytest.raises(TypeError, match="object array"):
        save_backend(estimator, path, extra_classes=[NotAllowed])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["b.npz"]  # no temporary file left behind


def _rewrite(path, change):
    """Rewrites an .npz after `change(entries, header)` edits it in place."""
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    header = json.loads(entries["__header__"].tobytes())
    change(entries, header)
    if "__header__" in entries and not isinstance(entries["__header__"], bytes):
        entries["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    elif "__header__" in entries:
        entries["__header__"] = np.frombuffer(entries["__header__"], np.uint8)
    np.savez(path, **entries)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "b.npz"
    save_backend(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y), path)
    return path


def _set(entries, key, value):
    entries[key] = value


def _set_class(header, path):
    header["root"]["params"]["steps"][1]["items"][1]["class"] = path


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda e, h: _set(e, "__header__", b"{not json"), "not valid JSON"),
        (lambda e, h: e.pop("__header__"), "no '__header__' entry"),
        (lambda e, h: e.pop("a0"), "array entry 'a0' named by the header is missing"),
        (lambda e, h: h.update(format_version=2), "format version 2 is not supported"),
        (lambda e, h: h.update(format="something.else"), "format is 'something.else'"),
        (
            lambda e, h: _set_class(h, "builtins.eval"),
            "'builtins.eval' at root.*not in the back-end allow-list",
        ),
        (lambda e, h: _set_class(h, "os.system"), "'os.system' .*not in the back-end allow-list"),
        (
            lambda e, h: _set_class(h, "sklearn.svm.NuSVC"),
            "'sklearn.svm.NuSVC' .*not in the back-end allow-list",
        ),
        (
            lambda e, h: _set_class(h, "keras_spk.scoring.persistence.save_backend"),
            "not in the back-end allow-list",
        ),
        (lambda e, h: h["root"].pop("params"), "malformed 'estimator' entry"),
        (lambda e, h: _set(e, "a0", np.array([object()], dtype=object)), "entry 'a0' cannot be read"),
    ],
)
def test_tampered_file_gives_a_clear_error(saved, change, problem):
    if problem == "entry 'a0' cannot be read":
        with np.load(saved, allow_pickle=False) as archive:
            entries = {key: archive[key] for key in archive.files}
        entries["a0"] = np.array([object()], dtype=object)
        np.savez(saved, **entries)  # np.savez pickles object arrays
    else:
        _rewrite(saved, change)
    with pytest.raises(ValueError, match=f"Cannot load back-end {saved}: .*{problem}"):
        load_backend(saved)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_gives_a_clear_error(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=f"Cannot load back-end {saved}: .*truncated"):
        load_backend(saved)


def test_corrupted_array_bytes_give_a_clear_error(saved):
    # Flip bytes inside the stored data: the zip CRC check catches it.
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("a0.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 130
    data[start : start + 8] = b"\xff" * 8
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"Cannot load back-end {saved}: .*a0"):
        load_backend(saved)


def test_not_an_npz_and_missing_file(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(
        ValueError, match=f"Cannot load back-end {text}: the file is truncated or not an .npz"
    ):
        load_backend(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load_backend(single)
    with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
        load_backend(tmp_path / "missing.npz")


def test_extra_classes_are_needed_to_load_a_custom_class(tmp_path):
    save_backend(NotAllowed().fit(X), tmp_path / "n.npz", extra_classes=[NotAllowed])
    with pytest.raises(ValueError, match="NotAllowed' at root is not in the back-end allow-list"):
        load_backend(tmp_path / "n.npz")
    np.testing.assert_array_equal(
        load_backend(tmp_path / "n.npz", extra_classes=[NotAllowed]).mean_, X.mean(axis=0)
    )


def test_allowed_classes_lists_sklearn_and_scoring_estimators():
    allowed = allowed_classes()
    assert set(SKLEARN_CLASSES) <= set(allowed)
    assert all(path.startswith(("sklearn.", "keras_spk.scoring.")) for path in allowed)


# === keras_spk.scoring back-ends (skipped while a module is missing) ===

SPEAKERS = np.repeat(np.arange(15), 6)
SPEAKER_X = 2.0 * np.random.default_rng(1).standard_normal((15, 6))[SPEAKERS] + np.random.default_rng(
    2
).standard_normal((90, 6))


def _pairs(X, speakers, n=300):
    pairs = pytest.importorskip("keras_spk.scoring.pairs")
    a, b, same = pairs.sample_pairs(speakers, n_pairs=n, seed=0)
    return pairs.stack_pairs(X[a], X[b]), same


def _scores(backend, enroll, test):
    plda = pytest.importorskip("keras_spk.scoring.plda")
    return plda.score_pairs(backend, enroll, test)  # through a Pipeline's front-end too


@pytest.mark.parametrize("name", ["cosine", "lda_cosine", "plda", "lda_plda"])
def test_scoring_backends_round_trip_exactly(tmp_path, name):
    cosine = pytest.importorskip("keras_spk.scoring.cosine")
    lda = pytest.importorskip("keras_spk.scoring.lda")
    plda = pytest.importorskip("keras_spk.scoring.plda")
    backend = {
        "cosine": lambda: cosine.CosineScorer(center=True),
        "lda_cosine": lambda: Pipeline(
            [("lda", lda.LDA(n_components=4, wccn=True)), ("cos", cosine.CosineScorer())]
        ),
        "plda": lambda: plda.PLDA(n_iter=3),
        "lda_plda": lambda: Pipeline([("lda", lda.LDA(n_components=4)), ("plda", plda.PLDA())]),
    }[name]().fit(SPEAKER_X, SPEAKERS)
    save_backend(backend, tmp_path / "b.npz")
    loaded = load_backend(tmp_path / "b.npz")
    enroll, test = SPEAKER_X[:40], SPEAKER_X[50:]
    np.testing.assert_array_equal(_scores(loaded, enroll, test), _scores(backend, enroll, test))
    index = (np.arange(40) % 7, np.arange(40) % 11)
    np.testing.assert_array_equal(
        plda.score_pairs(loaded, SPEAKER_X, SPEAKER_X, index=index),
        plda.score_pairs(backend, SPEAKER_X, SPEAKER_X, index=index),
    )


@pytest.mark.parametrize("transformer", ["BVector", "ConcatMul", "RBVector"])
def test_pair_backends_round_trip_exactly(tmp_path, transformer):
    pairs = pytest.importorskip("keras_spk.scoring.pairs")
    X_pairs, same = _pairs(SPEAKER_X, SPEAKERS)
    step = getattr(pairs, transformer)(
        **({"n_representatives": 4, "n_components": 3} if transformer == "RBVector" else {})
    )
    backend = Pipeline([("features", step), ("lr", LogisticRegression(max_iter=500))]).fit(X_pairs, same)
    save_backend(backend, tmp_path / "b.npz")
    loaded = load_backend(tmp_path / "b.npz")
    np.testing.assert_array_equal(loaded.decision_function(X_pairs), backend.decision_function(X_pairs))
    np.testing.assert_array_equal(loaded[0].transform(X_pairs), backend[0].transform(X_pairs))


def test_dnn_pair_classifier_round_trips_its_keras_model(tmp_path):
    dnn = pytest.importorskip("keras_spk.scoring.dnn")
    pairs = pytest.importorskip("keras_spk.scoring.pairs")
    X_pairs, same = _pairs(SPEAKER_X, SPEAKERS, n=200)
    backend = Pipeline(
        [
            ("concat_mul", pairs.ConcatMul()),
            ("dnn", dnn.DNNPairClassifier(hidden_units=(16, 8), epochs=2, batch_size=50)),
        ]
    ).fit(X_pairs, same)
    save_backend(backend, tmp_path / "dnn.npz")
    loaded = load_backend(tmp_path / "dnn.npz")
    assert loaded[-1].model_ is not backend[-1].model_
    assert loaded[-1].loss_curve_ == backend[-1].loss_curve_
    np.testing.assert_array_equal(loaded.decision_function(X_pairs), backend.decision_function(X_pairs))
    np.testing.assert_array_equal(loaded.predict_proba(X_pairs), backend.predict_proba(X_pairs))


def test_library_classes_are_allowed_without_extra_classes():
    allowed = set(allowed_classes())
    for module, name in [
        ("keras_spk.scoring.cosine", "CosineScorer"),
        ("keras_spk.scoring.lda", "LDA"),
        ("keras_spk.scoring.plda", "PLDA"),
        ("keras_spk.scoring.pairs", "BVector"),
        ("keras_spk.scoring.pairs", "RBVector"),
        ("keras_spk.scoring.pairs", "ConcatMul"),
        ("keras_spk.scoring.dnn", "DNNPairClassifier"),
        ("keras_spk.scoring.normalization", "ScoreNormalizer"),
        ("keras_spk.scoring.calibration", "ScoreCalibrator"),
    ]:
        if importlib.util.find_spec(module) is not None:
            assert f"{module}.{name}" in allowed


@pytest.mark.parametrize("method, top_k", [("s_norm", None), ("adaptive_s_norm", 10)])
def test_score_normalizer_round_trips_and_refuses_a_callable_scoring(tmp_path, method, top_k):
    normalization = pytest.importorskip("keras_spk.scoring.normalization")
    normalizer = normalization.ScoreNormalizer(method=method, top_k=top_k).fit(SPEAKER_X[:60])
    save_backend(normalizer, tmp_path / "n.npz")
    loaded = load_backend(tmp_path / "n.npz")
    np.testing.assert_array_equal(
        loaded.score_pairs(SPEAKER_X[60:75], SPEAKER_X[75:]),
        normalizer.score_pairs(SPEAKER_X[60:75], SPEAKER_X[75:]),
    )
    custom = normalization.ScoreNormalizer(scoring=lambda a, b: (a * b).sum(1)).fit(SPEAKER_X[:60])
    with pytest.raises(TypeError, match=r"ScoreNormalizer\.scoring \(ScoreNormalizer parameter\).*function"):
        save_backend(custom, tmp_path / "custom.npz")


def test_score_calibrator_round_trips(tmp_path):
    calibration = pytest.importorskip("keras_spk.scoring.calibration")
    scores = np.column_stack([SPEAKER_X[:, 0], SPEAKER_X[:, 1]])
    labels = (SPEAKER_X[:, 2] > 0).astype(int)
    calibrator = calibration.ScoreCalibrator(p_target=0.05).fit(scores, labels)
    save_backend(calibrator, tmp_path / "c.npz")
    loaded = load_backend(tmp_path / "c.npz")
    for method in ("predict_llr", "decision_function", "predict_proba", "predict"):
        np.testing.assert_array_equal(getattr(loaded, method)(scores), getattr(calibrator, method)(scores))


def test_keras_code_in_a_file_is_refused_on_load(tmp_path):
    keras = pytest.importorskip("keras")
    estimator = NotAllowed().fit(X)
    inputs = keras.Input((3,))
    estimator.model_ = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    save_backend(estimator, tmp_path / "lambda.npz", extra_classes=[NotAllowed])
    # Keras safe mode: a serialized Python lambda (bytecode) is never executed.
    with pytest.raises(ValueError, match=r"lambda.npz: cannot rebuild the Keras model at root.model_ .*safe"):
        load_backend(tmp_path / "lambda.npz", extra_classes=[NotAllowed])


# === Bounds on what a file may declare ===


def _entries(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _write_members(path, members):
    """Writes an .npz whose members are given as raw .npy bytes or arrays."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in members.items():
            if isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                value = buffer.getvalue()
            archive.writestr(f"{key}.npy", value)


def _npy_declaring(shape, dtype, data):
    """.npy bytes whose header declares `shape` and `dtype` but which hold only `data`."""
    buffer = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def _header(root):
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "root": root}


def _header_bytes(text):
    return np.frombuffer(text.encode(), np.uint8)


TRUSTED = "Re-create it with save_backend, or load one from a trusted source"


def test_a_header_nested_100k_deep_is_refused_by_name(tmp_path):
    path = tmp_path / "deep.npz"
    deep = "[" * 100_000 + "]" * 100_000
    text = json.dumps(_header({"__type__": "estimator"}))[:-1] + f', "x": {deep}}}'
    _write_members(path, {"__header__": _header_bytes(text)})
    with pytest.raises(ValueError) as info:
        load_backend(path)
    message = str(info.value)
    assert f"Cannot load back-end {path}: the header nests 100001 levels deep" in message
    assert "more than the 200 allowed" in message and TRUSTED in message
    # The same depth inside a string is text, not nesting.
    estimator = PairScorer(LogisticRegression(), names=(deep, "b")).fit(X, Y)
    save_backend(estimator, tmp_path / "text.npz", extra_classes=[PairScorer])
    assert load_backend(tmp_path / "text.npz", extra_classes=[PairScorer]).names[0] == deep


def test_nesting_is_bounded_below_the_recursion_limit(saved):
    # Deep but parseable JSON: without the bound, decoding it recurses past Python's limit.
    nested = '{"__type__": "tuple", "items": [' * 450 + "1" + "]}" * 450

    def change(entries, header):
        text = json.dumps(header)
        entries["__header__"] = text.replace('"params": {', f'"params": {{"deep": {nested}, ', 1).encode()

    _rewrite(saved, change)
    with pytest.raises(ValueError, match=f"{saved}: the header nests 903 levels deep, more than the 200"):
        load_backend(saved)


def test_an_800_gb_array_is_refused_before_allocating(saved):
    entries = _entries(saved)
    members = dict(entries)
    members["a0"] = _npy_declaring((100_000_000_000,), "<f8", entries["a0"].tobytes())
    _write_members(saved, members)
    with pytest.raises(ValueError) as info:
        load_backend(saved)
    message = str(info.value)
    declared = "entry 'a0' declares a (100000000000,) float64 array (800.0 GB)"
    assert f"Cannot load back-end {saved}: {declared}" in message
    assert f"but holds {entries['a0'].nbytes} bytes of data" in message and TRUSTED in message


def test_an_800_gb_header_is_refused_before_allocating(saved):
    members = _entries(saved)
    members["__header__"] = _npy_declaring((800_000_000_000,), "u1", members["__header__"].tobytes())
    _write_members(saved, members)
    declared = r"entry '__header__' declares a \(800000000000,\) uint8 array \(800\.0 GB\)"
    with pytest.raises(ValueError, match=f"{saved}: {declared} but holds"):
        load_backend(saved)


def test_header_size_is_bounded(saved, monkeypatch):
    from keras_spk.scoring import persistence

    size = _entries(saved)["__header__"].size
    monkeypatch.setattr(persistence, "MAX_HEADER_BYTES", size - 1)
    with pytest.raises(ValueError, match=rf"entry '__header__' declares a \({size},\) uint8 .*more than the"):
        load_backend(saved)
    monkeypatch.setattr(persistence, "MAX_HEADER_BYTES", size)
    assert isinstance(load_backend(saved), Pipeline)


def test_a_member_declaring_more_than_it_holds_is_refused(saved):
    data = bytearray(saved.read_bytes())
    # The central directory record of a0.npy: its uncompressed size field set to 4 GB.
    position = data.index(b"PK\x01\x02")
    while data[position + 46 : position + 52] != b"a0.npy":
        position = data.index(b"PK\x01\x02", position + 4)
    data[position + 24 : position + 28] = (2**32 - 2).to_bytes(4, "little")
    saved.write_bytes(bytes(data))
    declared = r"entry 'a0' declares 4\.3 GB uncompressed from .* stored, which is impossible"
    with pytest.raises(ValueError, match=f"{saved}: {declared}"):
        load_backend(saved)


def test_invalid_attribute_names_are_refused(saved):
    def change(entries, header):
        header["root"]["attributes"]["__dict__"] = {"__type__": "dict", "items": []}

    _rewrite(saved, change)
    with pytest.raises(ValueError, match=f"{saved}: invalid attribute name '__dict__' at root"):
        load_backend(saved)


def test_a_header_with_a_huge_number_is_a_named_error(saved):
    # Python refuses to parse an integer of more than 4300 digits (a ValueError).
    huge = b', "n": ' + b"9" * 5000 + b"}"
    _rewrite(saved, lambda e, h: _set(e, "__header__", json.dumps(h)[:-1].encode() + huge))
    with pytest.raises(ValueError, match=f"Cannot load back-end {saved}: the header is not valid JSON"):
        load_backend(saved)
