"""Shared checks for keras_spk layers, built on public Keras only.

`run_layer_test` puts a layer through what every layer of the package must
survive: config round trip, eager and symbolic calls with matching output
shapes, a `.keras` save/load round trip with identical outputs, and one
`fit` step. `set_seeded_weights` gives a built layer reproducible weights,
so the same layer can be compared across backends (tests/cross_backend_test.py).
`run_python` runs a script in a fresh process, under either backend.
"""

import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTHER_BACKEND = {"tensorflow": "torch", "torch": "tensorflow"}


def run_python(args, backend=None, timeout=300):
    """Runs `python *args` in a fresh process from the repository root; it must succeed.

    The child runs under `backend` (default: this process's), with the
    repository first on `PYTHONPATH` and TensorFlow's logging quiet. A
    non-zero exit fails the calling test with the end of the child's stderr.

    Returns:
        The `subprocess.CompletedProcess` (text output captured).
    """
    env = dict(
        os.environ,
        KERAS_BACKEND=backend or keras.backend.backend(),
        PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    result = subprocess.run(
        [sys.executable, *(str(a) for a in args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def to_numpy(x):
    """A backend tensor (or array) as a numpy array."""
    return keras.ops.convert_to_numpy(x)


def _to_numpy(x):
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_numpy(v) for v in x]
    return np.asarray(keras.ops.convert_to_numpy(x))


def _shapes(x):
    if isinstance(x, dict):
        return {k: _shapes(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_shapes(v) for v in x]
    return tuple(x.shape)


def _symbolic_shape(array):
    """Per-example shape with the time axis (axis 1 of float inputs of rank >= 3) unknown."""
    shape = list(array.shape[1:])
    if array.ndim >= 3 and np.issubdtype(array.dtype, np.floating):
        shape[0] = None
    return tuple(shape)


def _input_dtype(array):
    return "int32" if np.issubdtype(array.dtype, np.integer) else "float32"


def _assert_shapes_match(actual, expected, what):
    """Compares concrete shapes with shapes that may hold None (unknown dims)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"{what}: keys {set(actual)} != {set(expected)}"
        for k in expected:
            _assert_shapes_match(actual[k], expected[k], f"{what}[{k}]")
        return
    if isinstance(expected, list) or (
        isinstance(expected, tuple) and expected and isinstance(expected[0], (tuple, list))
    ):
        assert len(actual) == len(expected), f"{what}: {actual} != {expected}"
        for a, e in zip(actual, expected):
            _assert_shapes_match(a, e, what)
        return
    assert len(actual) == len(expected), f"{what}: shape {actual} != {expected}"
    for a, e in zip(actual, expected):
        assert e is None or a is None or a == e, f"{what}: shape {actual} != {expected}"


def run_layer_test(
    layer_factory,
    inputs,
    expected_output_shape=None,
    call_kwargs=None,
    fit=True,
    fit_loss="mse",
    symbolic_input_shapes=None,
    rtol=1e-5,
    atol=1e-5,
):
    """Runs the standard checks on a layer and returns its eager output (numpy).

    Args:
        layer_factory: zero-argument callable returning a new layer.
        inputs: numpy array or list of arrays (e.g. `[embeddings, labels]`).
        expected_output_shape: shape (or nested shapes) of the eager output.
        call_kwargs: extra call arguments (e.g. `{"training": False}`).
        fit: run one `model.fit` step on a functional model of the layer.
        fit_loss: the compile loss for that step; `None` for layers that
            only add their own loss (heads).
        symbolic_input_shapes: per-input shapes (without batch) for the
            functional model; default: the inputs' shapes with the time axis
            of float inputs of rank >= 3 unknown.
    """
    call_kwargs = dict(call_kwargs or {})
    arrays = _as_list(inputs)
    single = not isinstance(inputs, (list, tuple))

    # Config round trip.
    layer = layer_factory()
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config, "from_config(get_config()) changed the config"
    name = keras.saving.get_registered_name(layer.__class__)
    assert name.startswith("keras_spk>"), f"{layer.__class__.__name__} is not registered: {name}"

    # Eager call.
    eager_in = arrays[0] if single else arrays
    output = layer(eager_in, **call_kwargs)
    output_np = _to_numpy(output)
    if expected_output_shape is not None:
        _assert_shapes_match(_shapes(output_np), expected_output_shape, "eager output")
    in_shapes = tuple(arrays[0].shape) if single else [tuple(a.shape) for a in arrays]
    computed = layer.compute_output_shape(in_shapes)
    _assert_shapes_match(_shapes(output_np), computed, "compute_output_shape")

    # Symbolic call in a functional model, outputs equal to the eager layer's.
    shapes = symbolic_input_shapes or [_symbolic_shape(a) for a in arrays]
    model_inputs = [
        keras.Input(shape, dtype=_input_dtype(a), name=f"input_{i}")
        for i, (shape, a) in enumerate(zip(shapes, arrays))
    ]
    fresh = layer_factory()
    symbolic_out = fresh(model_inputs[0] if single else model_inputs, **call_kwargs)
    model = keras.Model(model_inputs[0] if single else model_inputs, symbolic_out)
    # Same construction, so the same weights in the same order.
    model.set_weights(layer.get_weights())
    model_out = _to_numpy(model(eager_in, **call_kwargs))
    _assert_close(model_out, output_np, rtol, atol, "functional model vs eager layer")

    # .keras save / load round trip.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path, compile=False)
    restored_out = _to_numpy(restored(eager_in, **call_kwargs))
    _assert_close(restored_out, model_out, rtol, atol, ".keras round trip")

    if fit:
        _fit_one_step(model, arrays, model_out, fit_loss)
    return output_np


def _assert_close(actual, expected, rtol, atol, what):
    if isinstance(expected, dict):
        for k in expected:
            _assert_close(actual[k], expected[k], rtol, atol, f"{what}[{k}]")
        return
    if isinstance(expected, list):
        for a, e in zip(actual, expected):
            _assert_close(a, e, rtol, atol, what)
        return
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _fit_one_step(model, arrays, reference_output, fit_loss):
    x = arrays[0] if len(arrays) == 1 else arrays
    if fit_loss is None:
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=None)
        history = model.fit(x, epochs=1, batch_size=len(arrays[0]), verbose=0)
    else:
        outputs = reference_output if isinstance(reference_output, list) else [reference_output]
        if isinstance(reference_output, dict):
            outputs = [reference_output[k] for k in sorted(reference_output)]
        targets = [np.zeros_like(o, dtype="float32") for o in outputs]
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=fit_loss)
        y = targets[0] if len(targets) == 1 else targets
        if isinstance(reference_output, dict):
            y = {k: np.zeros_like(reference_output[k], dtype="float32") for k in reference_output}
        history = model.fit(x, y, epochs=1, batch_size=len(arrays[0]), verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), f"fit step gave a non-finite loss: {loss}"


def set_seeded_weights(layer, seed=0, scale=0.5):
    """Sets every weight of a built layer (trainable or not) to seeded random values.

    Variances and other weights that must stay positive (names containing
    "variance") get positive values, so the same weights are valid on every
    backend. Returns the list of arrays set.
    """
    rng = np.random.default_rng(seed)
    values = []
    for v in layer.weights:
        shape = tuple(v.shape)
        if "variance" in v.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif np.issubdtype(np.dtype(v.dtype), np.integer):
            value = np.asarray(keras.ops.convert_to_numpy(v))
        else:
            value = rng.normal(0.0, scale, shape)
        values.append(np.asarray(value, dtype=v.dtype))
    layer.set_weights(values)
    return values


def run_backend_case(factory, seed=0):
    """Builds a `BACKEND_CASES` entry, seeds its weights and returns its output (numpy)."""
    layer, inputs, call_kwargs = factory()
    call_kwargs = dict(call_kwargs or {})
    layer(inputs, **call_kwargs)  # build
    set_seeded_weights(layer, seed)
    return _to_numpy(layer(inputs, **call_kwargs))
