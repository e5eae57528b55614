import keras
import numpy as np
import pytest

from keras_spk.layers import SpecAugment
from keras_spk.layers import get
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _masked(y):
    """(zeroed bins per row, zeroed frames per row) of an output whose input was all ones."""
    zero = np.asarray(y) == 0
    return zero.all(axis=1).sum(axis=1), zero.all(axis=2).sum(axis=1)


def test_masks_stay_within_their_bounds_in_training():
    x = np.ones((64, 120, 40), "float32")
    layer = SpecAugment(freq_masks=2, freq_width=8, time_masks=3, time_width=10, seed=1)
    y = to_numpy(layer(x, training=True))
    bins, frames = _masked(y)
    assert bins.max() <= 2 * 8 and frames.max() <= 3 * 10
    # Every zero lies in a fully masked bin column or frame row: masks are bands.
    zero = y == 0
    explained = zero.all(axis=1)[:, None, :] | zero.all(axis=2)[:, :, None]
    np.testing.assert_array_equal(zero, explained)
    # Widths are drawn up to the maximum: some rows mask something, most mask several bins.
    assert bins.mean() > 4 and frames.mean() > 6
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_only_one_kind_of_mask():
    x = np.ones((16, 50, 30), "float32")
    y = to_numpy(SpecAugment(freq_masks=1, freq_width=5, time_masks=0, seed=0)(x, training=True))
    bins, frames = _masked(y)
    assert frames.max() == 0 and 0 < bins.max() <= 5
    y = to_numpy(SpecAugment(freq_masks=0, time_masks=1, time_width=7, seed=0)(x, training=True))
    bins, frames = _masked(y)
    assert bins.max() == 0 and 0 < frames.max() <= 7


def test_width_is_capped_at_the_axis():
    x = np.ones((8, 4, 6), "float32")
    y = to_numpy(SpecAugment(freq_masks=1, freq_width=100, time_masks=1, time_width=100, seed=3)(
        x, training=True
    ))
    assert y.shape == x.shape


def test_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(4, 50, 20)).astype("float32")
    layer = SpecAugment(seed=0)
    np.testing.assert_array_equal(to_numpy(layer(x)), x)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    model = keras.Sequential([keras.Input((None, 20)), SpecAugment(seed=0)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_seeded_layers_repeat_and_calls_differ():
    x = np.ones((8, 60, 30), "float32")
    a = to_numpy(SpecAugment(seed=5)(x, training=True))
    b = to_numpy(SpecAugment(seed=5)(x, training=True))
    np.testing.assert_array_equal(a, b)
    layer = SpecAugment(seed=5)
    first, second = to_numpy(layer(x, training=True)), to_numpy(layer(x, training=True))
    assert not np.array_equal(first, second)


def test_standard_layer_checks():
    x = np.random.default_rng(1).normal(size=(2, 30, 16)).astype("float32")
    out = run_layer_test(
        lambda: SpecAugment(2, 4, 2, 5, seed=0), x, expected_output_shape=(2, 30, 16),
        call_kwargs={"training": False},
    )
    np.testing.assert_array_equal(out, x)


def test_config_round_trip_and_registry():
    layer = SpecAugment(1, 6, 3, 12, seed=9, name="specaug")
    config = layer.get_config()
    names = ("freq_masks", "freq_width", "time_masks", "time_width", "seed")
    assert tuple(config[name] for name in names) == (1, 6, 3, 12, 9)
    clone = SpecAugment.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(SpecAugment) == "keras_spk>SpecAugment"
    assert get("spec_augment") is SpecAugment


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graph inspection")
def test_no_random_op_in_an_inference_graph():
    import tensorflow as tf

    layer = SpecAugment(seed=0)
    graph = tf.function(lambda x: layer(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, None, 20])
    ).graph
    assert not [op.type for op in graph.get_operations() if "Random" in op.type]
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec([None, None, 20])
    ).graph
    assert [op.type for op in graph.get_operations() if "Random" in op.type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"freq_masks": -1}, {"freq_width": 1.5}, {"time_masks": True}, {"time_width": None},
        {"seed": "0"},
    ],
)
def test_bad_arguments_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"Received: {name}="):
        SpecAugment(**kwargs)


def test_bad_rank_raises():
    with pytest.raises(ValueError, match="Received: input_shape="):
        SpecAugment()(np.ones((2, 10), "float32"))


BACKEND_CASES = {
    "inference identity": lambda: (
        SpecAugment(2, 8, 2, 10, seed=0),
        np.random.default_rng(0).normal(size=(2, 40, 24)).astype("float32"),
        {"training": False},
    ),
}
