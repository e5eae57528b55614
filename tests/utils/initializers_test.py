"""Every weight gets its own draw, even when layers share one initializer argument.

A Keras initializer without a seed draws its seed when it is constructed, so
reusing one instance for two weights of the same shape gives them the same
values. The layers and backbones that build several weights from one
`kernel_initializer` must not do that.
"""

import itertools

import keras
import numpy as np
import pytest

from keras_spk.layers import FeaturePyramid
from keras_spk.layers import MultiScaleAggregation
from keras_spk.layers import RawNetBlock
from keras_spk.layers import SqueezeExcitation
from keras_spk.models import ResNetBackbone
from keras_spk.utils._initializers import fresh_initializer
from tests.test_case import to_numpy


def _identical_kernels(weights):
    kernels = [(w.path, to_numpy(w)) for w in weights if w.path.endswith("kernel")]
    return [
        (a, b)
        for (a, x), (b, y) in itertools.combinations(kernels, 2)
        if x.shape == y.shape and np.array_equal(x, y)
    ]


def test_reusing_one_unseeded_instance_repeats_its_values():
    # The Keras behaviour that fresh_initializer exists for.
    initializer = keras.initializers.HeNormal()
    np.testing.assert_array_equal(to_numpy(initializer((4, 4))), to_numpy(initializer((4, 4))))


@pytest.mark.parametrize("identifier", ["he_normal", {"class_name": "GlorotUniform", "config": {}}])
def test_identifiers_give_new_instances_with_new_values(identifier):
    a, b = fresh_initializer(identifier), fresh_initializer(identifier)
    assert a is not b
    assert not np.array_equal(to_numpy(a((8, 8))), to_numpy(b((8, 8))))


def test_an_unseeded_instance_is_copied_with_a_new_seed():
    original = keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")
    copy = fresh_initializer(original)
    assert isinstance(copy, keras.initializers.VarianceScaling)
    assert (copy.scale, copy.mode, copy.distribution) == (1 / 3, "fan_in", "uniform")
    values, copied = to_numpy(original((64, 32))), to_numpy(copy((64, 32)))
    assert not np.array_equal(values, copied)
    # Same distribution: U(-sqrt(3 s / fan_in), +...) with s = 1/3 -> bound 1/8.
    assert np.abs(copied).max() <= 0.125 and np.abs(copied).max() > 0.12


def test_a_seeded_instance_stays_seeded():
    seeded = keras.initializers.RandomNormal(seed=3)
    np.testing.assert_array_equal(
        to_numpy(fresh_initializer(seeded)((5, 5))), to_numpy(seeded((5, 5)))
    )


def test_resnet_backbone_kernels_are_all_different():
    keras.utils.set_random_seed(0)
    # Two blocks per stage: their 3x3 convolutions have the same shapes.
    backbone = ResNetBackbone(
        stackwise_num_filters=[8, 8],
        stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2],
        stem_filters=8,
        feature_shape=(None, 16, 1),
        kernel_initializer=keras.initializers.HeNormal(),  # one instance for every convolution
    )
    # Stem, two 3x3 per block, the stride-2 stage's 1x1 shortcut.
    assert len([w for w in backbone.weights if w.path.endswith("kernel")]) == 1 + 4 * 2 + 1
    assert _identical_kernels(backbone.weights) == []


def test_pyramid_aggregation_block_and_excitation_kernels_are_all_different():
    keras.utils.set_random_seed(0)
    maps = {f"C{n}": keras.Input((None, 32 // 2 ** (n - 3), 8)) for n in (3, 4, 5)}
    pyramid = FeaturePyramid(channels=8, upsampling="transposed", kernel_initializer="he_normal")
    aggregation = MultiScaleAggregation(mode="msea", embedding_dim=4, projection_channels=8)
    aggregation(pyramid(maps))
    # 3 laterals, 3 output and 2 transposed convolutions (the last five 3x3 8 -> 8).
    assert len(pyramid.weights) == 16
    assert _identical_kernels(pyramid.weights) == []
    assert _identical_kernels(aggregation.weights) == []

    block = RawNetBlock(filters=8, pool_size=3, kernel_initializer="he_normal")
    block.build((None, 27, 8))  # conv1 and conv2 both 3 x 8 x 8
    assert _identical_kernels(block.weights) == []

    excitation = SqueezeExcitation(ratio=1, kernel_initializer=keras.initializers.Orthogonal())
    excitation.build((None, 10, 6))  # squeeze 6 x 6 and excite 6 x 6
    assert _identical_kernels(excitation.weights) == []
