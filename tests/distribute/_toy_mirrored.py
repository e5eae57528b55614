"""The runner's toy recipe under `train.distribution: mirrored` on two logical CPU devices.

    python _toy_mirrored.py RECIPE ARGS...
"""

import os
import sys

if __name__ == "__main__":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.helpers import toy_recipe

    toy_recipe.main(sys.argv[1:])
