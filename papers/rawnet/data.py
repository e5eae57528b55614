"""RawNet's input pipeline (section 4.2).

Training: raw waveforms cropped to `data.crop_samples` (59,049 in the
paper), an utterance shorter than that repeated ("duplicated") until long
enough; no normalisation (pre-emphasis is the model's first layer).
Evaluation: whole utterances, no length adjustment (the recipe's
`keras_spk.recipe.extract_embeddings` embeds them one at a time).
"""

from keras_spk.data import training_dataset

# The CNN divides the time axis by 3 seven times (strided convolution and six
# max-pools): an utterance needs 3**7 samples for one frame.
MIN_SAMPLES = 3**7


def steps_per_epoch(recipe_data, config):
    """Full batches per epoch."""
    return len(recipe_data.train) // config["data"]["batch_size"]


def training_data(recipe_data, config, start_epoch=0):
    """Endless stream of training epochs from `start_epoch` (see `training_dataset`).

    Args:
        recipe_data: `keras_spk.recipe.RecipeData`.
        config: the resolved config (`data` and `seed` sections).
        start_epoch: int, the first epoch of the stream.

    Returns:
        A `tf.data.Dataset` of `((waveforms [batch, crop], labels [batch]),)`
        elements: the trainer takes `[waveform, labels]` as its inputs and
        adds its own losses, so there is no separate target.
    """
    data = config["data"]
    if data["crop_samples"] < MIN_SAMPLES:
        raise ValueError(
            f"data.crop_samples={data['crop_samples']} is too short for RawNet: the CNN needs at "
            f"least {MIN_SAMPLES} samples per frame. Use 59049 (the paper) or another power of 3 "
            f">= {MIN_SAMPLES}."
        )
    dataset = training_dataset(
        recipe_data.train.paths,
        recipe_data.labels(),
        data["crop_samples"],
        data["batch_size"],
        sample_rate=data["sample_rate"],
        seed=config["seed"],
        start_epoch=start_epoch,
    )
    return dataset.map(lambda waveforms, labels: ((waveforms, labels),))
