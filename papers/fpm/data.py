"""The FPM recipe's input (section 4.2).

Training: 3-s waveform crops (300 frames of 25 ms every 10 ms), a shorter
utterance repeated; the 64-band log-mel front-end and its sliding mean
normalisation are the model's first layer, so the shared
`RecipeData.training_dataset` gives waveforms. Testing: whole utterances
("the entire utterance is evaluated at once").
"""

from keras_spk.config import int_range
from keras_spk.recipe.evaluation import duration_list

# One 25-ms frame at 16 kHz: the shortest utterance the front-end accepts.
FRAME_SAMPLES = 400


def min_samples(config):
    """The shortest utterance (in samples) the model accepts: one front-end frame."""
    return int(round(FRAME_SAMPLES * config["data"]["sample_rate"] / 16000))


# The recipe's `data` and duration keys, tighter than the shared ones: every
# crop and every duration-limited cut must hold one 25-ms front-end frame.
CONSTRAINTS = {
    "data.crop_samples": int_range(min=min_samples),
    "evaluation.enroll_durations": duration_list(min_samples),
    "evaluation.test_durations": duration_list(min_samples),
}
