"""Checks shared by the tests of the temporal pooling layers.

Used by tests/layers/{temporal_average_pooling,statistics_pooling,
self_attentive_pooling,attentive_statistics_pooling,
learnable_dictionary_encoding}_test.py. Every pooling takes a padded
`[batch, time, D]` batch with a Keras mask and/or per-row `lengths` and must
give each row exactly what the row gives alone; the checks below assert that
against each layer's own float64 `reference(frames)` (a function of one
unpadded `[time, D]` row), with the layer's own tolerances. Not a test module
itself (the name does not end in `_test.py`).
"""

import keras
import numpy as np

from tests.test_case import to_numpy

D = 3  # features of the rows of `make_rows`


def pad(rows, fill):
    lengths = np.array([len(r) for r in rows], "int32")
    x = np.full((len(rows), lengths.max(), rows[0].shape[-1]), fill, "float32")
    for i, row in enumerate(rows):
        x[i, : len(row)] = row
    return x, lengths


def make_rows(seed, lengths=(7, 1, 4)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(t, D)).astype("float32") for t in lengths]


def check_lengths_ignore_padding_even_nan(layer, reference, rtol, atol, alone_rtol=1e-6):
    """NaN padding beyond `lengths`: each row pools as it does alone and as `reference`."""
    rows = make_rows(0)
    x, lengths = pad(rows, np.nan)
    got = to_numpy(layer(x, lengths=lengths))
    for i, row in enumerate(rows):
        alone = to_numpy(layer(row[None]))[0]
        np.testing.assert_allclose(got[i], alone, rtol=alone_rtol, atol=1e-6)
        np.testing.assert_allclose(got[i], reference(row), rtol=rtol, atol=atol)


def check_mask_and_lengths_combine(layer, reference, rtol, atol):
    # The mask drops frame 2 of row 0 (not a suffix); lengths cut row 2 to
    # 2 frames although its mask says 4. A frame counts only if both agree.
    rows = make_rows(1)
    x, lengths = pad(rows, np.nan)
    mask = np.arange(x.shape[1])[None] < lengths[:, None]
    mask[0, 2] = False
    cut = lengths.copy()
    cut[2] = 2
    got = to_numpy(layer(x, mask=mask, lengths=cut))
    expected = [np.delete(rows[0], 2, axis=0), rows[1], rows[2][:2]]
    for i, row in enumerate(expected):
        np.testing.assert_allclose(got[i], reference(row), rtol=rtol, atol=atol)


def check_keras_mask_from_masking_layer(layer, reference, rtol, atol):
    """Zero padding masked by a `Masking` layer in a functional model."""
    rows = make_rows(2)
    x, _ = pad(rows, 0.0)
    inputs = keras.Input((None, D))
    pooled = layer(keras.layers.Masking(0.0)(inputs))
    # Pooling removes the time axis, so no mask may travel on.
    assert getattr(pooled, "_keras_mask", None) is None
    got = to_numpy(keras.Model(inputs, pooled)(x))
    for i, row in enumerate(rows):
        np.testing.assert_allclose(got[i], reference(row), rtol=rtol, atol=atol)


def check_compute_mask_and_output_shape(layer, output_features):
    """No mask out; `(batch, time, 16)` pools to `(batch, output_features)`."""
    assert layer.compute_mask(np.zeros((2, 5, D)), np.ones((2, 5), bool)) is None
    assert layer.compute_output_shape((4, None, 16)) == (4, output_features)
    assert tuple(layer(keras.Input((None, 16))).shape) == (None, output_features)


def _mean_task_rows(rng, labels):
    # Class = sign of the mean of feature 0 over each row's valid frames.
    return [
        rng.normal(size=(t, D)) + np.array([2.0 * y - 1.0, 0.0, 0.0])
        for t, y in zip(rng.integers(3, 12, 64), labels)
    ]


def _spread_task_rows(rng, labels):
    # Class = spread of feature 0 (std 0.3 or 2), same mean: only the
    # standard deviations separate the classes.
    return [
        rng.normal(size=(t, D)) * np.array([0.3 + 1.7 * y, 1.0, 1.0])
        for t, y in zip(rng.integers(4, 12, 64), labels)
    ]


TOY_TASKS = {"mean": _mean_task_rows, "spread": _spread_task_rows}


def check_toy_fit_reduces_loss(make_pooling, task, fill):
    """Pooling + logistic regression on 64 padded rows: 30 epochs halve the loss.

    `make_pooling()` is called after the global seed is set, so the
    pooling's initial weights are the same on every run.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 64)
    rows = TOY_TASKS[task](rng, labels)
    x, lengths = pad([r.astype("float32") for r in rows], fill)
    frames, lens = keras.Input((None, D)), keras.Input((), dtype="int32")
    outputs = keras.layers.Dense(1, activation="sigmoid")(make_pooling()(frames, lengths=lens))
    model = keras.Model([frames, lens], outputs)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    before = model.evaluate([x, lengths], labels, verbose=0)
    history = model.fit([x, lengths], labels, epochs=30, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < 0.5 * before
