"""A tiny recipe built on the runner, for its tests: three stages around one embedder.

1. `softmax`: the embedder with a `SoftmaxHead`, random crops;
2. `metric`: the same embedder (its layers, trained on) with a `SoftmaxHead`
   (loss weight 0.1) and a triplet loss through `LossHead`, P x K batches,
   its own learning rate;
3. `head` (0 epochs unless a test asks): a new softmax head on the
   embedder of stage 2, which is frozen (`frozen: [metric]`).

It declares only what a paper's `train.py` declares: its configs, how to
build each stage's trainer, and the embedder to evaluate.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "configs", "toy.yaml")


def build_embedder(config):
    import keras

    model = config["model"]
    waveforms = keras.Input((None,), name="waveforms")
    x = keras.layers.Reshape((-1, 1))(waveforms)
    x = keras.layers.Conv1D(model["filters"], 64, strides=32, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    embeddings = keras.layers.Dense(model["embedding_dim"], name="embedding")(x)
    return keras.Model(waveforms, embeddings, name="toy_embedder")


def build_stage(name, context):
    import keras

    from keras_spk.layers import LossHead
    from keras_spk.layers import SoftmaxHead
    from keras_spk.losses import TripletLoss

    config = context.config
    if name == "softmax":
        context.shared["embedder"] = build_embedder(config)
    embedder = context.shared["embedder"]
    waveforms = keras.Input((None,), name="waveforms")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = embedder(waveforms)
    if name == "softmax":
        outputs = SoftmaxHead(context.num_speakers, name="softmax")([embeddings, labels])
    elif name == "metric":
        # LossHead passes its input through: chained, it is part of the graph.
        embeddings = LossHead(
            TripletLoss(margin=0.5, distance="cosine"),
            weight=config["model"]["triplet_weight"],
            name="triplet",
        )([embeddings, labels])
        outputs = SoftmaxHead(
            context.num_speakers, loss_weight=config["model"]["softmax_weight"], name="softmax"
        )([embeddings, labels])
    else:  # a new head on the frozen embedder of stage `metric`
        outputs = SoftmaxHead(context.num_speakers, name="new_softmax")([embeddings, labels])
    return keras.Model([waveforms, labels], outputs, name=f"toy_{name}")


def embedder(context):
    return context.shared["embedder"]


def recipe():
    from keras_spk.recipe import Recipe

    return Recipe(
        name="toy",
        default_config=CONFIG,
        demo_config=CONFIG,
        description="A tiny test recipe.",
        build_stage=build_stage,
        embedder=embedder,
        min_samples=64,
    )


def main(argv=None, callbacks=()):
    from keras_spk.recipe import run_recipe

    return run_recipe(recipe(), argv, callbacks)
