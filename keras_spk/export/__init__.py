"""Exporting speaker embedders for serving: TensorFlow SavedModel and ONNX.

- `export_saved_model(embedder, path)`: SavedModel for TF Serving (TensorFlow
  backend), with a `serving_default` and an `embed_padded` signature.
- `export_from_weights(build_fn, weights_path, path)` and
  `export_from_model_file(model_path, path)`: the same from any backend
  (e.g. a PyTorch-trained model), re-built under TensorFlow in a subprocess.
- `export_onnx(embedder, path)`: ONNX with dynamic batch and time axes
  (PyTorch backend; needs the `onnx` and `onnxscript` packages).

This is the one library module (besides the tf.data pipeline) that imports
TensorFlow or PyTorch, and only inside the export functions.
"""

from keras_spk.export.onnx import export_onnx
from keras_spk.export.savedmodel import PADDED_SIGNATURE
from keras_spk.export.savedmodel import SERVING_SIGNATURE
from keras_spk.export.savedmodel import export_from_model_file
from keras_spk.export.savedmodel import export_from_weights
from keras_spk.export.savedmodel import export_saved_model
