"""Dtype helpers of the layers and losses that compute in float32 under mixed precision.

Private module. Under a mixed dtype policy (`mixed_float16`,
`mixed_bfloat16`) a layer computes in half precision and keeps float32
weights. Some of the package's layers must not: the feature front-ends
(FFTs have no float16 kernels on CPU; the log of a small power underflows),
the temporal poolings (sums over hundreds of frames and squared deviations
overflow float16's 65,504; bfloat16 counts frames exactly only up to 256),
the classification heads and every layer adding a loss (a margin on a
cosine near 1, a softmax over thousands of classes, a center update).
These layers take the float32 policy unless a `dtype` is given, so their
weights are read, and their outputs returned, in float32; the layer after
them casts its inputs to its own compute dtype as usual. The losses cast
half-precision predictions to float32 before computing.
"""

from keras import backend
from keras import ops

HALF_DTYPES = ("float16", "bfloat16")


def float32_policy(kwargs):
    """Layer keyword arguments with `dtype="float32"` unless the caller chose a dtype."""
    if kwargs.get("dtype") is None:
        kwargs = dict(kwargs, dtype="float32")
    return kwargs


def at_least_float32(x):
    """`x` as float32 if it is a float16 or bfloat16 tensor, else unchanged (float64 stays)."""
    x = ops.convert_to_tensor(x)
    if backend.standardize_dtype(x.dtype) in HALF_DTYPES:
        return ops.cast(x, "float32")
    return x
