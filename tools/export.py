"""Exports a trained speaker embedder as a TF SavedModel and/or ONNX.

    python tools/export.py --weights W.weights.h5 --builder module:function
                           [--builder-kwargs JSON] [--output DIR/export/1] [--onnx model.onnx]
    python tools/export.py --model M.keras [--output DIR/export/1] [--onnx model.onnx]

The SavedModel (for TF Serving: `--output <model>/<version>`) is always
written by a TensorFlow subprocess, so weights trained under any backend
work; ONNX export runs in this process under the PyTorch backend (the tool
selects it when --onnx is given). Prints each path written. A model whose
embeddings are `[batch, dim]`, or `[batch, K, dim]` for a multi-identity
model (one embedding per speaker of a mixture), exports either way.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="weights file written by model.save_weights()")
    source.add_argument("--model", help=".keras file written by model.save()")
    parser.add_argument("--builder", help="'module:function' building the embedder (with --weights)")
    parser.add_argument("--builder-kwargs", default="{}", help="JSON object of keyword arguments for --builder")
    parser.add_argument("--output", help="SavedModel folder to create, e.g. exports/speaker/1")
    parser.add_argument("--onnx", help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--onnx-fixed-samples",
        type=int,
        help="export ONNX with the time axis fixed to this many samples (needed for recurrent "
        "layers other than standard GRUs, e.g. LSTM; GRU models such as RawNet keep a dynamic "
        "time axis)",
    )
    parser.add_argument("--no-padded-signature", action="store_true", help="omit the embed_padded signature")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    if args.weights and not args.builder:
        parser.error("--weights needs --builder module:function")
    if args.model and args.builder:
        parser.error("--builder is only used with --weights")
    if not (args.output or args.onnx):
        parser.error("nothing to do: give --output and/or --onnx")
    try:
        args.builder_kwargs = json.loads(args.builder_kwargs)
    except json.JSONDecodeError as error:
        parser.error(f"--builder-kwargs is not valid JSON: {error}")
    if not isinstance(args.builder_kwargs, dict):
        parser.error("--builder-kwargs must be a JSON object")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.onnx:
        os.environ["KERAS_BACKEND"] = "torch"
    # The builder's module is imported by path, as from the current folder.
    sys.path.insert(0, os.getcwd())
    from keras_spk import export

    if args.output:
        if args.weights:
            written = export.export_from_weights(
                args.builder,
                args.weights,
                args.output,
                builder_kwargs=args.builder_kwargs,
                lengths_signature=not args.no_padded_signature,
                overwrite=args.overwrite,
            )
        else:
            written = export.export_from_model_file(
                args.model,
                args.output,
                lengths_signature=not args.no_padded_signature,
                overwrite=args.overwrite,
            )
        print(f"SavedModel: {written}")
    if args.onnx:
        from keras_spk.export import savedmodel

        spec = {"model": args.model, "builder": args.builder, "builder_kwargs": args.builder_kwargs, "weights": args.weights}
        embedder = savedmodel._load_embedder(spec)
        fixed = args.onnx_fixed_samples
        written = export.export_onnx(
            embedder,
            args.onnx,
            opset=args.opset,
            overwrite=args.overwrite,
            fixed_length=fixed is not None,
            **({"example_samples": fixed} if fixed is not None else {}),
        )
        print(f"ONNX: {written}")


if __name__ == "__main__":
    main()
