"""Exporting a waveform -> embedding model to ONNX (PyTorch backend).

Uses PyTorch's dynamo-based exporter (`torch.onnx.export(..., dynamo=True)`),
which needs the `onnx` and `onnxscript` packages (not installed with
keras_spk: see `export_onnx`); the file runs with `onnxruntime` alone.
"""

import contextlib
import os
import tempfile

import keras

DEFAULT_OPSET = 18
INPUT_NAME = "waveforms"
OUTPUT_NAME = "embeddings"


def _squeeze_dim_translation():
    """ONNX translation of `aten.squeeze.dim` with PyTorch's semantics.

    `torch.squeeze(x, dim)` is a no-op when `x.shape[dim] != 1`; Keras's
    PyTorch `ops.take(x, indices, axis)` relies on that (`index_select(...)
    .squeeze(axis)`). The exporter's default translation emits an ONNX
    `Squeeze`, which fails at run time when that axis is dynamic and not 1
    (e.g. gathering the frames of a variable-length waveform). This one
    squeezes a static axis only if it is 1 and reshapes a dynamic axis to a
    shape that drops it only if it is 1.
    """
    import numpy as np
    import onnx
    from onnxscript import opset18 as op

    def squeeze_dim(self, dim: int):
        rank = len(self.shape)
        if rank == 0:
            return op.Identity(self)
        dim = dim % rank
        size = self.shape[dim]
        if isinstance(size, int):
            return op.Squeeze(self, op.Constant(value_ints=[dim])) if size == 1 else op.Identity(self)
        shape = op.Shape(self)
        size = op.Shape(self, start=dim, end=dim + 1)
        keep = op.Not(op.Equal(size, op.Constant(value_ints=[1])))
        before = op.Constant(value=onnx.numpy_helper.from_array(np.ones(dim, dtype=bool)))
        after = op.Constant(value=onnx.numpy_helper.from_array(np.ones(rank - dim - 1, dtype=bool)))
        mask = op.Concat(before, keep, after, axis=0)
        return op.Reshape(self, op.Compress(shape, mask, axis=0))

    return squeeze_dim


_GRU_OP = None


def _gru_op():
    """PyTorch's fused GRU as an opaque custom op (`keras_spk::gru`), created once.

    `torch.export` keeps a custom op as one node with symbolic shapes, where
    it would unroll Keras's Python loop over the time steps (or decompose
    `aten.gru`) to the example's length.
    """
    global _GRU_OP
    if _GRU_OP is not None:
        return _GRU_OP
    import torch
    from torch import Tensor

    @torch.library.custom_op("keras_spk::gru", mutates_args=())
    def gru(
        inputs: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
    ) -> tuple[Tensor, Tensor]:
        out, h = torch._VF.gru(
            inputs, h0.unsqueeze(0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, False, False, True
        )
        return out.contiguous(), h.squeeze(0).contiguous()

    @gru.register_fake
    def _(inputs, h0, w_ih, w_hh, b_ih, b_hh):
        units = w_hh.shape[1]
        return inputs.new_empty((inputs.shape[0], inputs.shape[1], units)), inputs.new_empty(
            (inputs.shape[0], units)
        )

    _GRU_OP = gru
    return gru


def _gru_translation():
    """ONNX translation of `keras_spk::gru`: one ONNX `GRU` node with a dynamic time axis.

    PyTorch's GRU applies the reset gate after the recurrent projection,
    `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`, which is ONNX's
    `GRU(linear_before_reset=1)`; PyTorch orders the gates `[r, z, n]`,
    ONNX `[z, r, h]`.
    """
    from onnxscript import opset18 as op

    def gru(inputs, h0, w_ih, w_hh, b_ih, b_hh):
        hidden = w_hh.shape[1]

        def zrn(w):
            r = op.Slice(w, [0], [hidden], [0])
            z = op.Slice(w, [hidden], [2 * hidden], [0])
            n = op.Slice(w, [2 * hidden], [3 * hidden], [0])
            return op.Concat(z, r, n, axis=0)

        x = op.Transpose(inputs, perm=[1, 0, 2])  # batch-major -> time-major
        w = op.Unsqueeze(zrn(w_ih), [0])
        r = op.Unsqueeze(zrn(w_hh), [0])
        b = op.Unsqueeze(op.Concat(zrn(b_ih), zrn(b_hh), axis=0), [0])
        y, y_h = op.GRU(
            x, w, r, b, initial_h=op.Unsqueeze(h0, [0]), hidden_size=hidden, linear_before_reset=1
        )
        return op.Transpose(op.Squeeze(y, [1]), perm=[1, 0, 2]), op.Squeeze(y_h, [0])

    return gru


@contextlib.contextmanager
def _exportable_gru():
    """Routes Keras's PyTorch GRU (tanh / sigmoid, `reset_after=True`) through `keras_spk::gru`.

    Same function as Keras's CPU loop (which its GPU path also computes with
    `torch._VF.gru`), but exported as one node with a dynamic time axis.
    """
    import importlib

    import torch
    from keras.src import activations

    # The module, not the `rnn` function that `keras.src.backend.torch` also exports.
    rnn = importlib.import_module("keras.src.backend.torch.rnn")
    original = rnn._fallback_gru
    op = _gru_op()

    def exportable(inputs, initial_state, kernel, recurrent_kernel, bias, activation,
                   recurrent_activation, return_sequences):
        standard = activation in (activations.tanh, torch.tanh, keras.ops.tanh) and (
            recurrent_activation in (activations.sigmoid, torch.sigmoid, keras.ops.sigmoid)
        )
        if not standard:
            return original(inputs, initial_state, kernel, recurrent_kernel, bias, activation,
                            recurrent_activation, return_sequences)
        params = rnn.prepare_gru_params(kernel, recurrent_kernel, bias, inputs.device)
        outputs, h = op(inputs, initial_state, *params)
        return h, (outputs if return_sequences else h.unsqueeze(1)), [h]

    rnn._fallback_gru = exportable
    try:
        yield
    finally:
        rnn._fallback_gru = original


def _unexportable_recurrent_layers(model):
    """Recurrent layers whose time loop `torch.export` would unroll (all but standard GRUs)."""
    found = []
    for layer in model._flatten_layers():
        if not isinstance(layer, keras.layers.RNN):
            continue
        standard_gru = (
            isinstance(layer, keras.layers.GRU)
            and layer.cell.reset_after
            and keras.activations.serialize(layer.cell.activation) == "tanh"
            and keras.activations.serialize(layer.cell.recurrent_activation) == "sigmoid"
        )
        if not standard_gru:
            if isinstance(layer, keras.layers.GRU):  # say which setting keeps it off the fused path
                found.append(
                    f"{layer.name} (GRU with reset_after={layer.cell.reset_after}, recurrent_activation="
                    f"{keras.activations.serialize(layer.cell.recurrent_activation)!r})"
                )
            else:
                found.append(layer.name)
    return found


def export_onnx(
    embedder,
    path,
    *,
    opset=DEFAULT_OPSET,
    example_samples=16000,
    fixed_length=False,
    overwrite=False,
):
    """Writes `embedder` as an ONNX model with dynamic batch and time axes.

    The graph has one input, `waveforms` float32 `[batch, samples]`, and one
    output, `embeddings` float32 `[batch, dim]`, or `[batch, K, dim]` for a
    multi-identity embedder (one embedding per speaker of a mixture); both
    `batch` and `samples` are symbolic, so any batch size and any length (of at least one frame of
    the front-end) can be fed. All rows of a batch are embedded on the full
    (common) length; embed padded batches one utterance at a time.

    The model is traced with PyTorch's `torch.export` on an example batch of
    2 rows of `example_samples` samples; shape-dependent Python branches in
    the model are fixed at that trace.

    Recurrent layers: on CPU, Keras's PyTorch backend runs a GRU or LSTM as a
    Python loop over the time steps, which `torch.export` would unroll to
    the example's number of steps (the graph would then silently use that
    many frames of a longer input). GRUs with tanh / sigmoid activations and
    `reset_after=True` (Keras's defaults, RawNet's GRU) are exported as one
    ONNX `GRU` node instead, with a dynamic time axis. Other recurrent layers
    (e.g. LSTM) are refused unless `fixed_length=True`, which exports a graph
    whose time axis is fixed to `example_samples` (other lengths are then
    rejected by the ONNX runtime). The file is written beside `path`
    under a temporary name and renamed to `path` when complete.

    Args:
        embedder: Keras model mapping float32 waveforms `[batch, samples]` to
            embeddings `[batch, dim]` or `[batch, K, dim]`, built under the
            PyTorch backend.
        path: the `.onnx` file to write.
        opset: ONNX opset version. Defaults to `18` (the opset PyTorch's
            exporter is implemented with; others are converted to).
        example_samples: int, length of the example input used for tracing.
        fixed_length: bool, export with the time axis fixed to
            `example_samples` (required for recurrent layers other than
            standard GRUs).
        overwrite: bool, replace an existing `path`.

    Returns:
        The absolute path written.

    Raises:
        RuntimeError: if the Keras backend is not PyTorch.
        ImportError: if `onnx` / `onnxscript` are not installed.
        FileExistsError: if `path` exists and `overwrite` is `False`.
        ValueError: if the model has recurrent layers other than standard
            GRUs and `fixed_length` is `False`, or its embeddings are
            neither `[batch, dim]` nor `[batch, K, dim]`.

    Example:

    >>> export_onnx(embedder, "exports/speaker.onnx")  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("exports/speaker.onnx")
    >>> session.run(["embeddings"], {"waveforms": waveforms})  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend != "torch":
        raise RuntimeError(
            f"export_onnx() needs the PyTorch backend; the current backend is {backend!r}. "
            "Run it with KERAS_BACKEND=torch after loading the model or its weights "
            "(weights saved with model.save_weights() load under any backend)."
        )
    recurrent = _unexportable_recurrent_layers(embedder)
    if recurrent and not fixed_length:
        raise ValueError(
            f"{embedder.name!r} has recurrent layers {recurrent}: their PyTorch loop over time steps "
            "is unrolled by torch.export, so the ONNX graph would silently use only as many frames "
            f"as the {example_samples}-sample example (only standard GRUs export with a dynamic "
            "time axis: reset_after=True, tanh and sigmoid gates). Pass fixed_length=True (and example_samples=<the length you will feed>) "
            "for a fixed-length graph, or serve the SavedModel (keras_spk.export.export_saved_model), "
            "which takes any length."
        )
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists. Pass overwrite=True to replace it.")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        # torch 2.13's exporter needs onnxscript >= 0.6, whose dependencies ask for a
        # newer ml_dtypes than TensorFlow 2.17 declares, so pip cannot resolve them together.
        raise ImportError(
            "ONNX export needs the `onnx` and `onnxscript` packages (tested: onnx 1.19.1, "
            "onnxscript 0.6.2, onnx-ir 0.1.16, ml_dtypes 0.5.4, installed with --no-deps "
            "next to TensorFlow 2.17)."
        ) from error
    import torch

    class _Embed(torch.nn.Module):
        # Fixes training=False and names the graph input "waveforms".
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, waveforms):
            return self.model(waveforms, training=False)

    module = _Embed(embedder).eval()
    example = torch.zeros((2, int(example_samples)), dtype=torch.float32)
    with torch.no_grad():
        shape = tuple(module(example).shape)
    if len(shape) not in (2, 3) or shape[0] != example.shape[0]:
        raise ValueError(
            f"{embedder.name!r} must map [batch, samples] waveforms to [batch, dim] embeddings, or "
            "to [batch, K, dim] (K identities, e.g. the speakers of a mixture). Received: output "
            f"shape {shape} for a batch of {example.shape[0]} waveforms of {example.shape[1]} samples"
        )
    time_axis = torch.export.Dim.STATIC if fixed_length else torch.export.Dim.DYNAMIC
    dynamic_shapes = {"waveforms": {0: torch.export.Dim.DYNAMIC, 1: time_axis}}

    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".partial")
    os.close(fd)
    try:
        _gru_op()  # registers torch.ops.keras_spk.gru
        with torch.no_grad(), _exportable_gru():
            torch.onnx.export(
                module,
                (example,),
                tmp,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=int(opset),
                external_data=False,
                verbose=False,
                custom_translation_table={
                    torch.ops.aten.squeeze.dim: _squeeze_dim_translation(),
                    torch.ops.keras_spk.gru.default: _gru_translation(),
                },
            )
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return path
