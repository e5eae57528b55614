"""Audio reading, dataset readers, trial lists and tf.data pipelines."""

from keras_spk.data.audio import SUPPORTED_EXTENSIONS
from keras_spk.data.audio import AudioError
from keras_spk.data.audio import decode_audio
from keras_spk.data.audio import find_bad_audio
from keras_spk.data.audio import load_audio
from keras_spk.data.audio import read_audio
from keras_spk.data.audio import resample
from keras_spk.data.audio import write_wav
from keras_spk.data.pipeline import crop_or_repeat
from keras_spk.data.pipeline import evaluation_dataset
from keras_spk.data.pipeline import pk_dataset
from keras_spk.data.pipeline import training_dataset
from keras_spk.data.readers import READERS
from keras_spk.data.readers import SpeakerMap
from keras_spk.data.readers import UtteranceList
from keras_spk.data.readers import check_speaker_overlap
from keras_spk.data.readers import read_dataset
from keras_spk.data.readers import read_librispeech
from keras_spk.data.readers import read_manifest
from keras_spk.data.readers import read_voxceleb
from keras_spk.data.sampler import PKSampler
from keras_spk.data.trials import Trials
from keras_spk.data.trials import read_trials
from keras_spk.data.trials import write_trials
