"""RawNet's input (section 4.2).

Training: raw waveforms cropped to `data.crop_samples` (59,049 in the
paper), an utterance shorter than that repeated ("duplicated") until long
enough, no normalisation (pre-emphasis is the model's first layer): the
shared `RecipeData.training_dataset`. Evaluation: whole utterances, no
length adjustment.
"""

from keras_spk.config import check_config
from keras_spk.config import int_range
from keras_spk.recipe.evaluation import duration_list

# The CNN divides the time axis by 3 seven times (strided convolution and six
# max-pools): an utterance needs 3**7 samples for one frame.
MIN_SAMPLES = 3**7

# The recipe's `data` and duration keys, tighter than the shared ones: every
# crop and every duration-limited cut must give the CNN one frame.
CONSTRAINTS = {
    "data.crop_samples": int_range(
        min=MIN_SAMPLES,
        fix=(
            f"The CNN needs at least {MIN_SAMPLES} samples per frame: use 59049 (the paper) or "
            f"another power of 3 >= {MIN_SAMPLES}, e.g. --data.crop_samples=19683."
        ),
    ),
    "evaluation.enroll_durations": duration_list(MIN_SAMPLES),
    "evaluation.test_durations": duration_list(MIN_SAMPLES),
}


def check_crop(config):
    """`data.crop_samples` must give RawNet at least one frame (`CONSTRAINTS`); returns it."""
    check_config(config, {"data.crop_samples": CONSTRAINTS["data.crop_samples"]})
    return config["data"]["crop_samples"]
