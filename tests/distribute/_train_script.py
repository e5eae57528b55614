"""A few training steps of a small model with a center loss, for the data-parallel tests.

    python _train_script.py OUT [--mirrored N]       # one process (N logical CPU replicas)
    torchrun --nproc_per_node 2 _train_script.py OUT  # data-parallel, PyTorch backend

Every run starts from the weights in OUT/init.npz (written by the first
run) and trains STEPS steps of SGD on global batches of BATCH rows, in
order; the result is OUT/<name>.npz (the weights, the centres included).
"""

import os
import sys

import numpy as np

STEPS, BATCH, FEATURES, CLASSES = 4, 8, 6, 3


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS * BATCH, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, STEPS * BATCH).astype("int32")
    return x, y


def build():
    import keras

    from keras_spk.layers import CenterLoss
    from keras_spk.layers import SoftmaxHead

    features = keras.Input((FEATURES,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(4, name="embedding")(features)
    embeddings = CenterLoss(CLASSES, alpha=0.5, weight=0.1, name="center")([embeddings, labels])
    outputs = SoftmaxHead(CLASSES, name="softmax")([embeddings, labels])
    return keras.Model([features, labels], outputs)


def initial_weights(model, out):
    path = os.path.join(out, "init.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            model.set_weights([f[f"w{i}"] for i in range(len(f.files))])
    else:
        np.savez(path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})


def save(model, out, name):
    np.savez(os.path.join(out, f"{name}.npz"), **{f"w{i}": w for i, w in enumerate(model.get_weights())})


def main(out, mirrored=0):
    if mirrored:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * mirrored
        )
    import keras

    from keras_spk.distribute import data_parallel_from_environment
    from keras_spk.distribute import mirrored_strategy

    keras.utils.set_random_seed(0)
    x, y = data()
    parallel = data_parallel_from_environment()
    if parallel is not None:
        parallel.setup()
        share = BATCH // parallel.world_size
        rows = np.concatenate(
            [np.arange(s * BATCH + parallel.rank * share, s * BATCH + (parallel.rank + 1) * share)
             for s in range(STEPS)]
        )
        model = build()
        initial_weights(model, out)
        model.compile(optimizer=parallel.wrap_optimizer(keras.optimizers.SGD(0.1)), loss=None)
        model.fit([x[rows], y[rows]], batch_size=share, epochs=1, shuffle=False, verbose=0,
                  callbacks=parallel.callbacks())
        if parallel.is_writer:
            save(model, out, f"data_parallel_{parallel.world_size}")
        parallel.shutdown()
        return
    if mirrored:
        import tensorflow as tf

        strategy = mirrored_strategy([f"/cpu:{i}" for i in range(mirrored)])
        with strategy.scope():
            model = build()
            initial_weights(model, out)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=None)
        dataset = tf.data.Dataset.from_tensor_slices(((x, y),)).batch(BATCH)
        model.fit(dataset, epochs=1, verbose=0)
        save(model, out, f"mirrored_{strategy.num_replicas_in_sync}")
        return
    model = build()
    initial_weights(model, out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=None)
    model.fit([x, y], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    save(model, out, "single")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    mirrored = int(sys.argv[sys.argv.index("--mirrored") + 1]) if "--mirrored" in sys.argv else 0
    main(sys.argv[1], mirrored)
