"""Training precision: the `train.precision` setting and a float32 embedder for export.

```yaml
train:
  precision: mixed_float16      # float32 | mixed_float16 | mixed_bfloat16
```

`set_precision(name)` sets Keras's global dtype policy before the models
are built (a layer takes the global policy when it is created), and
`precision_scope(name)` does so for a block and puts the previous policy
back afterwards. Under a mixed policy the convolutions, recurrent and dense
layers compute in float16 or bfloat16 and keep float32 variables, while the
layers of `keras_spk` that need the range or the precision compute in
float32 whatever the policy: the feature front-ends (FFT, log), the
temporal poolings (sums and variances over time), the classification heads
and every layer adding a loss; the losses of `keras_spk.losses` compute in
float32 as well. Under `mixed_float16` `Model.compile` wraps the optimizer
in a `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling, which
skips the steps whose gradients overflow while it finds its scale);
`mixed_bfloat16` has float32's range and needs none.

`float32_embedder(model)` gives the model to evaluate and export: float32
inputs and float32 outputs whatever the policy it was built under, so
embeddings, scores and the exported SavedModel's signature are float32.
"""

import contextlib

from keras_spk.config import choice

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# The key every recipe may have (`keras_spk.recipe.runner.recipe_constraints` merges it).
CONSTRAINTS = {
    "train.precision": choice(
        list(PRECISIONS),
        fix="float32 trains in full precision; mixed_float16 (GPUs) or mixed_bfloat16 "
        "(TPUs, recent GPUs and CPUs) compute in half precision with float32 weights.",
    ),
}


def check_precision(name):
    """`name` if it is one of `PRECISIONS`, else a `ValueError` listing them."""
    if not isinstance(name, str) or name not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {', '.join(PRECISIONS)}. Received: precision={name!r}"
        )
    return name


def set_precision(name):
    """Sets Keras's global dtype policy to `name`; returns the previous policy's name.

    Models built afterwards compute in that precision. Set it before
    building (or loading) the models: a layer keeps the policy it was
    created with.

    Args:
        name: one of `PRECISIONS`: `"float32"`, `"mixed_float16"` or
            `"mixed_bfloat16"`.

    Returns:
        The name of the policy in force before the call (e.g. `"float32"`),
        to give back to `set_precision` or
        `keras.mixed_precision.set_dtype_policy`.

    Raises:
        ValueError: `name` is not one of `PRECISIONS`.
    """
    import keras

    check_precision(name)
    previous = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_dtype_policy(name)
    return previous


@contextlib.contextmanager
def precision_scope(name):
    """`set_precision(name)` for the block; the previous policy is put back on leaving it.

    Example:

    ```python
    with precision_scope(config["train"]["precision"]):
        trainer, embedder = build_model(...)
        ...
    ```
    """
    import keras

    check_precision(name)
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _is_half(dtype):
    import keras

    return keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16")


def float32_embedder(model):
    """`model` with float32 inputs and float32 outputs, whatever its dtype policy.

    A model built under a mixed policy ends in a layer computing in float16
    or bfloat16, so its embeddings (and an exported SavedModel's outputs)
    would be half precision. Each float16 or bfloat16 output gets
    a float32 linear activation (`keras.layers.Activation("linear",
    dtype="float32")`, the cast Keras's mixed precision guide puts on a
    model's outputs); the layers and weights stay shared with `model`, so
    the result is the same network, for evaluation and export. A model
    without a float16 or bfloat16 input or output is returned as it is.

    The result is a functional model named like `model`, sharing its
    layers: without a half-precision input, the same graph with the cast
    layers added (so `get_layer` finds the same layers); with one, new
    float32 inputs that call `model` as one layer.

    Args:
        model: a functional or `Sequential` `keras.Model` (built: it has
            `inputs` and `outputs`).

    Returns:
        A `keras.Model` whose inputs and outputs are not half precision.

    Raises:
        ValueError: `model` has no symbolic inputs and outputs (a subclassed
            model), so there is no graph to add the cast to.
    """
    import keras

    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            "float32_embedder needs a functional or built Sequential model with symbolic "
            f"inputs and outputs. Received: {type(model).__name__} {model.name!r}"
        )
    half_inputs = any(_is_half(x.dtype) for x in inputs)
    half_outputs = any(_is_half(y.dtype) for y in outputs)
    if not half_inputs and not half_outputs:
        return model

    taken = {layer.name for layer in model.layers}

    def cast_name(index):
        base = "float32_output" if len(outputs) == 1 else f"float32_output_{index}"
        name, suffix = base, 1
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        return name

    if half_inputs:
        # A half-precision input: float32 inputs in front, `model` called as a layer.
        new_inputs = [
            keras.Input(
                batch_shape=tuple(x.shape),
                dtype="float32" if _is_half(x.dtype) else x.dtype,
                name=getattr(x, "name", None),
            )
            for x in inputs
        ]
        result = model(new_inputs if len(new_inputs) > 1 else new_inputs[0])
        inputs = new_inputs
    else:
        result = model.output
    flat = keras.tree.flatten(result)
    cast = [
        keras.layers.Activation("linear", dtype="float32", name=cast_name(i))(y)
        if _is_half(y.dtype)
        else y
        for i, y in enumerate(flat)
    ]
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        keras.tree.pack_sequence_as(result, cast),
        name=model.name,
    )
