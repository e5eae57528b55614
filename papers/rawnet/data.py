"""RawNet's input (section 4.2).

Training: raw waveforms cropped to `data.crop_samples` (59,049 in the
paper), an utterance shorter than that repeated ("duplicated") until long
enough, no normalisation (pre-emphasis is the model's first layer): the
shared `RecipeData.training_dataset`. Evaluation: whole utterances, no
length adjustment.
"""

# The CNN divides the time axis by 3 seven times (strided convolution and six
# max-pools): an utterance needs 3**7 samples for one frame.
MIN_SAMPLES = 3**7


def check_crop(config):
    """`data.crop_samples` must give RawNet at least one frame."""
    crop = config["data"]["crop_samples"]
    if crop < MIN_SAMPLES:
        raise ValueError(
            f"data.crop_samples={crop} is too short for RawNet: the CNN needs at least "
            f"{MIN_SAMPLES} samples per frame. Use 59049 (the paper) or another power of 3 "
            f">= {MIN_SAMPLES}."
        )
    return crop
