"""Saving fitted scoring back-ends as one `.npz` file, without pickle.

A back-end (a scikit-learn style estimator, a `Pipeline` of them, or an
estimator holding other estimators as parameters) is written as ONE `.npz`
archive:

* entry `__header__`: UTF-8 JSON bytes (a uint8 array) describing the
  object tree;
* entries `a0`, `a1`, ...: every numpy array (and numpy scalar, as a 0-d
  array) of that tree, referenced from the header by name.

Header fields:

```
{
  "format": "keras_spk.backend",      # FORMAT_NAME
  "format_version": 1,                # FORMAT_VERSION
  "keras_spk_version": "0.1.0",
  "sklearn_version": "1.9.1",         # a different one on load only warns
  "numpy_version": "1.26.4",
  "root": <estimator node>
}
<estimator node> = {"__type__": "estimator", "id": 0,
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {name: <value>},       # get_params(deep=False)
                    "attributes": {name: <value>}}   # fitted state (vars() minus params)
<value> = null | true/false | int | float | string | [<value>, ...]
        | {"__type__": "float", "value": "nan" | "inf" | "-inf"}
        | {"__type__": "ndarray", "key": "a3"}          # also numpy scalars ("scalar": true)
        | {"__type__": "tuple", "items": [...]}
        | {"__type__": "dict", "items": [[<key>, <value>], ...]}
        | {"__type__": "ref", "id": 0}                   # the same estimator again
        | {"__type__": "keras", "config": {...}, "weights": ["a4", "a5"]}
        | <estimator node>
```

Loading bounds what a file can make it do: the header may be at most
`MAX_HEADER_BYTES` long and nest at most `MAX_HEADER_DEPTH` levels, and
every array's declared shape and dtype must match the bytes its archive
member really holds, checked before anything is allocated. A file breaking
any of these is refused with an error naming it.

Classes are re-created only from an allow-list (`allowed_classes()`): the
estimators defined in the `keras_spk.scoring` modules listed in
`SCORING_MODULES`, and the scikit-learn estimators in `SKLEARN_CLASSES`.
A file naming any other class is refused. Keras models (e.g. a `model_`
attribute) are stored as their Keras config plus weight arrays and rebuilt
with `keras` (imported only then) in safe mode, so numpy-only back-ends load
without importing Keras.

Example:

>>> from sklearn.linear_model import LogisticRegression
>>> model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
>>> save_backend(model, "backend.npz")  # doctest: +SKIP
>>> load_backend("backend.npz").predict([[0.9]])  # doctest: +SKIP
array([1])
"""

import importlib
import io
import json
import math
import os
import re
import sys
import warnings
import zipfile

import numpy as np

from keras_spk.utils.files import atomic_open
from keras_spk.version import __version__

__all__ = ["save_backend", "load_backend", "allowed_classes", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "keras_spk.backend"
FORMAT_VERSION = 1
HEADER_KEY = "__header__"

# Bounds on what a back-end file may declare, checked before parsing or
# allocating. Real headers are kilobytes and nest ~20 levels (a Pipeline
# holding a Keras model); arrays must hold the bytes their shape declares.
MAX_HEADER_BYTES = 64 * 2**20
MAX_HEADER_DEPTH = 200
# Deflate cannot expand data more than ~1032 times; a member declaring more
# uncompressed bytes than that of its compressed size is lying.
_MAX_DEFLATE_RATIO = 1100

# keras_spk.scoring modules whose estimator classes may be re-created.
SCORING_MODULES = (
    "keras_spk.scoring.cosine",
    "keras_spk.scoring.lda",
    "keras_spk.scoring.plda",
    "keras_spk.scoring.pairs",
    "keras_spk.scoring.dnn",
    "keras_spk.scoring.dcae",
    "keras_spk.scoring.normalization",
    "keras_spk.scoring.calibration",
)

# Public path -> (module, name). Only estimators whose whole fitted state is
# arrays / scalars / strings (checked by round-trip tests) are listed.
SKLEARN_CLASSES = {
    "sklearn.pipeline.Pipeline": ("sklearn.pipeline", "Pipeline"),
    "sklearn.preprocessing.StandardScaler": ("sklearn.preprocessing", "StandardScaler"),
    "sklearn.preprocessing.Normalizer": ("sklearn.preprocessing", "Normalizer"),
    "sklearn.decomposition.PCA": ("sklearn.decomposition", "PCA"),
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis": (
        "sklearn.discriminant_analysis",
        "LinearDiscriminantAnalysis",
    ),
    "sklearn.linear_model.LogisticRegression": ("sklearn.linear_model", "LogisticRegression"),
    "sklearn.svm.SVC": ("sklearn.svm", "SVC"),
    "sklearn.svm.LinearSVC": ("sklearn.svm", "LinearSVC"),
}

_SCORING_CLASS_PATH = re.compile(r"^(keras_spk\.scoring\.[a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
_ARRAY_KEY = re.compile(r"^a[0-9]+$")


class _FileError(ValueError):
    """A problem with the file's content, reported with the file's name by `load_backend`."""


def _is_estimator(value):
    return hasattr(value, "get_params") and not isinstance(value, type)


def _is_keras_layer(value):
    keras = sys.modules.get("keras")  # not imported: cannot be a Keras object
    return keras is not None and isinstance(value, keras.layers.Layer)


def _scoring_class(path):
    """The class at `path` if it is an estimator defined in a SCORING_MODULES module, else None."""
    match = _SCORING_CLASS_PATH.match(path)
    if not match or match.group(1) not in SCORING_MODULES:
        return None
    try:
        module = importlib.import_module(match.group(1))
    except ModuleNotFoundError:
        return None
    cls = vars(module).get(match.group(2))
    if isinstance(cls, type) and cls.__module__ == match.group(1) and hasattr(cls, "get_params"):
        return cls
    return None


def _resolve_class(path, extra_classes):
    """The allowed class named `path`, or None."""
    for cls in extra_classes:
        if _class_path(cls) == path:
            return cls
    if path in SKLEARN_CLASSES:
        module, name = SKLEARN_CLASSES[path]
        return getattr(importlib.import_module(module), name)
    return _scoring_class(path)


def _class_path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _path_for(cls, extra_classes):
    """The allow-listed path naming `cls`, or None when it is not allowed."""
    if cls in extra_classes:
        return _class_path(cls)
    for path, (module, name) in SKLEARN_CLASSES.items():
        if cls.__module__.split(".")[0] == "sklearn" and cls.__name__ == name:
            if getattr(importlib.import_module(module), name) is cls:
                return path
    path = _class_path(cls)
    return path if _scoring_class(path) is cls else None


def allowed_classes():
    """The class paths `load_backend` re-creates, as a sorted list.

    scikit-learn's are listed one by one; for keras_spk, every estimator
    class defined in one of `SCORING_MODULES` (those importable now).
    """
    paths = set(SKLEARN_CLASSES)
    for module_name in SCORING_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for name, cls in vars(module).items():
            if isinstance(cls, type) and cls.__module__ == module_name and hasattr(cls, "get_params"):
                paths.add(f"{module_name}.{name}")
    return sorted(paths)


# === Saving ===


class _Encoder:
    def __init__(self, extra_classes):
        self.extra_classes = tuple(extra_classes)
        self.arrays = {}
        self.seen = {}  # id(object) -> node id, so a shared estimator is stored once

    def add_array(self, array):
        key = f"a{len(self.arrays)}"
        self.arrays[key] = array
        return key

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and not isinstance(value, np.generic):
            return value
        if isinstance(value, float) and not isinstance(value, np.generic):
            if math.isfinite(value):
                return value
            return {"__type__": "float", "value": repr(value)}  # 'nan', 'inf', '-inf'
        if isinstance(value, np.generic):
            return self.encode_array(np.asarray(value), where, scalar=True)
        if isinstance(value, np.ndarray):
            return self.encode_array(value, where)
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {
                "__type__": "tuple",
                "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)],
            }
        if isinstance(value, dict):
            return {
                "__type__": "dict",
                "items": [
                    [self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ],
            }
        if _is_keras_layer(value):
            return self.encode_keras(value, where)
        if _is_estimator(value):
            return self.encode_estimator(value, where)
        raise TypeError(
            f"Cannot save {where}: values of type {type(value).__module__}.{type(value).__qualname__} "
            "are not supported without pickle. Store learned state as numpy arrays, Python "
            "scalars, strings, lists/tuples/dicts of those, estimators or Keras models."
        )

    def encode_array(self, array, where, scalar=False):
        node = {"__type__": "ndarray"}
        if array.dtype == object:
            if not all(isinstance(v, str) for v in array.flat):
                raise TypeError(
                    f"Cannot save {where}: an object array can be saved only when it holds "
                    "strings (it would need pickle otherwise). Convert it to a numeric or "
                    "string dtype."
                )
            array = array.astype(str)
            node["object"] = True
        if array.dtype.hasobject or array.dtype.names is not None:
            raise TypeError(
                f"Cannot save {where}: structured arrays (dtype {array.dtype}) are not supported."
            )
        node["key"] = self.add_array(array)
        if scalar:
            node["scalar"] = True
        return node

    def encode_keras(self, layer, where):
        import keras

        if id(layer) in self.seen:
            return {"__type__": "ref", "id": self.seen[id(layer)]}
        self.seen[id(layer)] = node_id = len(self.seen)
        config = keras.saving.serialize_keras_object(layer)
        try:
            json.dumps(config)
        except (TypeError, ValueError) as error:
            raise TypeError(f"Cannot save {where}: its Keras config is not JSON ({error}).") from error
        weights = [self.add_array(np.asarray(w)) for w in layer.get_weights()]
        return {"__type__": "keras", "id": node_id, "config": config, "weights": weights}

    def encode_estimator(self, estimator, where):
        if id(estimator) in self.seen:
            return {"__type__": "ref", "id": self.seen[id(estimator)]}
        cls = type(estimator)
        path = _path_for(cls, self.extra_classes)
        if path is None:
            raise TypeError(
                f"Cannot save {where}: class {_class_path(cls)} is not in the back-end allow-list, "
                "so it could not be loaded again. Allowed: estimators defined in "
                f"{', '.join(SCORING_MODULES)}, and {', '.join(sorted(SKLEARN_CLASSES))} "
                "(or pass extra_classes=...)."
            )
        self.seen[id(estimator)] = node_id = len(self.seen)
        params = estimator.get_params(deep=False)
        name = cls.__name__
        encoded_params = {k: self.encode(v, f"{where}.{k} ({name} parameter)") for k, v in params.items()}
        # Everything else in the instance is fitted state (`coef_`, and the private
        # attributes some scikit-learn estimators predict with, e.g. SVC's `_gamma`).
        attributes = {
            k: self.encode(v, f"{where}.{k} ({name} attribute)")
            for k, v in vars(estimator).items()
            if k not in params and not k.startswith("__")
        }
        return {
            "__type__": "estimator",
            "id": node_id,
            "class": path,
            "params": encoded_params,
            "attributes": attributes,
        }


def _versions():
    import sklearn

    return {
        "keras_spk_version": __version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
    }


def save_backend(estimator, path, extra_classes=()):
    """Saves a (fitted or not) back-end to one `.npz` file, atomically, without pickle.

    Args:
        estimator: a scikit-learn style estimator (`get_params()`, fitted
            state in attributes) whose class is in the allow-list, e.g. a
            `keras_spk.scoring` back-end or a `Pipeline` of allowed steps.
            Estimators found in its parameters or attributes are saved
            recursively; Keras models as config + weights.
        path: destination file (conventionally `*.npz`). Written to a temporary
            name and renamed, so a failure never leaves a partial file.
        extra_classes: further classes to allow (e.g. your own estimator);
            `load_backend` must then be given them too.

    Returns:
        The path written, as a str.

    Raises:
        TypeError: a class outside the allow-list, or a value that cannot be
            stored without pickle (the message names where it is).
    """
    path = os.fspath(path)
    encoder = _Encoder(extra_classes)
    root = encoder.encode_estimator(estimator, type(estimator).__name__)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **_versions(), "root": root}
    header_bytes = json.dumps(header, allow_nan=False, sort_keys=False).encode("utf-8")
    entries = {HEADER_KEY: np.frombuffer(header_bytes, dtype=np.uint8), **encoder.arrays}
    with atomic_open(path, "wb") as f:
        np.savez(f, **entries)
    return path


# === Loading ===


class _Decoder:
    def __init__(self, archive, extra_classes):
        self.archive = archive
        self.extra_classes = tuple(extra_classes)
        self.objects = {}

    def array(self, key):
        if not isinstance(key, str) or not _ARRAY_KEY.match(key):
            raise _FileError(f"the header refers to an invalid array entry {key!r}")
        if key not in self.archive.files:
            raise _FileError(f"array entry {key!r} named by the header is missing")
        return _read_entry(self.archive, key)

    def decode(self, value, where):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, where) for v in value]
        if not isinstance(value, dict) or "__type__" not in value:
            raise _FileError(f"unexpected JSON value at {where}: {str(value)[:80]}")
        kind = value["__type__"]
        try:
            if kind == "float":
                if value["value"] not in ("nan", "inf", "-inf"):
                    raise _FileError(f"bad float value {value['value']!r} at {where}")
                return float(value["value"])
            if kind == "ndarray":
                array = self.array(value["key"])
                if value.get("object"):
                    array = array.astype(object)
                return array[()] if value.get("scalar") else array
            if kind == "tuple":
                return tuple(self.decode(v, where) for v in value["items"])
            if kind == "dict":
                return {self.decode(k, where): self.decode(v, f"{where}[{k!r}]") for k, v in value["items"]}
            if kind == "ref":
                if value["id"] not in self.objects:
                    raise _FileError(f"reference to unknown object id {value['id']!r} at {where}")
                return self.objects[value["id"]]
            if kind == "keras":
                return self.decode_keras(value, where)
            if kind == "estimator":
                return self.decode_estimator(value, where)
        except (KeyError, TypeError) as error:
            raise _FileError(
                f"malformed {kind!r} entry at {where} ({type(error).__name__}: {error})"
            ) from error
        raise _FileError(f"unknown value type {kind!r} at {where}")

    def decode_keras(self, node, where):
        import keras  # only back-ends holding a Keras model need it

        weights = [self.array(key) for key in node["weights"]]
        try:
            layer = keras.saving.deserialize_keras_object(node["config"], safe_mode=True)
            layer.set_weights(weights)
        except Exception as error:  # Keras raises many types; all mean "cannot rebuild"
            raise _FileError(
                f"cannot rebuild the Keras model at {where} ({type(error).__name__}: {error})"
            ) from error
        self.objects[node["id"]] = layer
        return layer

    def decode_estimator(self, node, where):
        path = node["class"]
        cls = _resolve_class(path, self.extra_classes) if isinstance(path, str) else None
        if cls is None:
            raise _FileError(
                f"class {path!r} at {where} is not in the back-end allow-list; refusing to create it. "
                f"Allowed: estimators defined in {', '.join(SCORING_MODULES)}, and "
                f"{', '.join(sorted(SKLEARN_CLASSES))}"
            )
        name = path.rsplit(".", 1)[-1]
        params = {k: self.decode(v, f"{where}.{k}") for k, v in node["params"].items()}
        try:
            estimator = cls(**params)
        except TypeError as error:
            raise _FileError(f"{path} does not accept the stored parameters ({error})") from error
        self.objects[node["id"]] = estimator
        for key, value in node["attributes"].items():
            if not key.isidentifier() or key.startswith("__"):
                raise _FileError(f"invalid attribute name {key[:80]!r} at {where}")
            setattr(estimator, key, self.decode(value, f"{where}.{key} ({name} attribute)"))
        return estimator


def _format_bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _check_entry(archive, key, max_bytes=None):
    """Checks entry `key`'s declared shape and dtype against its member's real size.

    Reads only the member's `.npy` header, so a declared 800 GB array is
    refused before anything is allocated.
    """
    try:
        info = archive.zip.getinfo(f"{key}.npy")
    except KeyError:
        raise _FileError(f"entry {key!r} is not a .npy array") from None
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size
    else:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * max(info.compress_size, 1)
    if not plausible:
        raise _FileError(
            f"entry {key!r} declares {_format_bytes(info.file_size)} uncompressed from "
            f"{_format_bytes(info.compress_size)} stored, which is impossible"
        )
    try:
        with archive.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise _FileError(f"entry {key!r} has .npy format version {version}, not 1.0 or 2.0")
            data_bytes = info.file_size - member.tell()
    except _FileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, SyntaxError) as error:
        raise _FileError(
            f"entry {key!r} cannot be read; the file may be truncated or corrupted "
            f"({type(error).__name__}: {error})"
        ) from error
    if dtype.hasobject:
        raise _FileError(
            f"entry {key!r} cannot be read: it holds Python objects (dtype {dtype}), which would "
            "need pickle"
        )
    declared = dtype.itemsize * math.prod(int(n) for n in shape)
    where = f"entry {key!r} declares a {tuple(shape)} {dtype} array ({_format_bytes(declared)})"
    if declared != data_bytes:
        raise _FileError(f"{where} but holds {_format_bytes(max(data_bytes, 0))} of data")
    if max_bytes is not None and declared > max_bytes:
        raise _FileError(f"{where}, more than the {_format_bytes(max_bytes)} allowed")


def _read_entry(archive, key, max_bytes=None):
    _check_entry(archive, key, max_bytes)
    try:
        return archive[key]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        # ValueError also covers an object array, which would need pickle.
        raise _FileError(
            f"entry {key!r} cannot be read; the file may be truncated or corrupted "
            f"({type(error).__name__}: {error})"
        ) from error


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_depth(raw):
    """The deepest `[`/`{` nesting of JSON bytes (strings skipped), without recursion."""
    code = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = np.isin(code, (ord("["), ord("{"))).astype(np.int64) - np.isin(code, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _read_header(archive):
    if HEADER_KEY not in archive.files:
        raise _FileError(f"no {HEADER_KEY!r} entry: not a keras_spk back-end file")
    raw = _read_entry(archive, HEADER_KEY, max_bytes=MAX_HEADER_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _FileError(f"the {HEADER_KEY!r} entry is not UTF-8 JSON bytes")
    raw = raw.tobytes()
    depth = _json_depth(raw)
    if depth > MAX_HEADER_DEPTH:
        raise _FileError(
            f"the header nests {depth} levels deep, more than the {MAX_HEADER_DEPTH} allowed"
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # also UnicodeDecodeError, JSONDecodeError
        raise _FileError(f"the header is not valid JSON ({type(error).__name__}: {error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else None
        raise _FileError(f"format is {found!r}, expected {FORMAT_NAME!r}")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise _FileError(
            f"format version {version!r} is not supported (this keras_spk {__version__} reads "
            f"version {FORMAT_VERSION}; the file was written by keras_spk "
            f"{header.get('keras_spk_version')!r})"
        )
    if not isinstance(header.get("root"), dict) or header["root"].get("__type__") != "estimator":
        raise _FileError("the header has no estimator at its root")
    return header


def load_backend(path, extra_classes=()):
    """Loads a back-end written by `save_backend`, never unpickling anything.

    Args:
        path: the `.npz` file.
        extra_classes: classes to allow besides the allow-list (the same
            ones given to `save_backend`).

    Returns:
        The estimator, with its parameters and fitted state; it predicts and
        scores exactly as the saved one did.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is truncated or not an `.npz`, its header is
            missing / not JSON / of another format or format version / longer
            than `MAX_HEADER_BYTES` / nested deeper than `MAX_HEADER_DEPTH`,
            an array it names is missing or declares another size than it
            holds, or it names a class outside the allow-list. The message
            names the file and the problem.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Back-end file {path} does not exist.")
    with open(path, "rb") as f:
        data = f.read()
    try:
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise _FileError(
                f"the file is truncated or not an .npz archive ({type(error).__name__}: {error})"
            ) from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _FileError("the file is a single .npy array, not an .npz archive")
        with archive:
            header = _read_header(archive)
            if header.get("sklearn_version") != _versions()["sklearn_version"]:
                warnings.warn(
                    f"{path} was saved with scikit-learn {header.get('sklearn_version')}; "
                    f"this is {_versions()['sklearn_version']}. scikit-learn estimators may "
                    "behave differently across versions.",
                    UserWarning,
                    stacklevel=2,
                )
            return _Decoder(archive, extra_classes).decode(header["root"], "root")
    except _FileError as error:
        raise ValueError(
            f"Cannot load back-end {path}: {error}. Re-create it with save_backend, or load "
            "one from a trusted source."
        ) from error.__cause__
