"""What every paper recipe shares: run folder, data, training stages, evaluation, export.

A recipe's `train.py` opens a run (`open_run`), reads its data
(`load_data`), trains one or more stages (`fit_stage`, checkpointed every
epoch and resumable), then embeds the trial utterances
(`extract_embeddings`), prints and saves the back-end table
(`backend_table`), optionally evaluates on speech-duration-limited test
utterances (`evaluate_durations`), and exports the embedder
(`export_embedder`).
See `papers/rawnet/train.py` for the pattern.
"""

from keras_spk.evaluation.durations import cut_to_speech
from keras_spk.evaluation.durations import duration_conditions
from keras_spk.evaluation.durations import evaluate_durations
from keras_spk.evaluation.durations import format_duration_table
from keras_spk.evaluation.durations import write_duration_results
from keras_spk.recipe.data import RecipeData
from keras_spk.recipe.data import load_data
from keras_spk.recipe.data import stage_options
from keras_spk.recipe.data import start_run
from keras_spk.recipe.evaluation import backend_settings
from keras_spk.recipe.evaluation import backend_table
from keras_spk.recipe.evaluation import evaluate_and_export
from keras_spk.recipe.evaluation import export_embedder
from keras_spk.recipe.evaluation import extract_embeddings
from keras_spk.recipe.evaluation import save_embedder
from keras_spk.recipe.evaluation import select_per_speaker
from keras_spk.recipe.run import Run
from keras_spk.recipe.run import RunError
from keras_spk.recipe.run import open_run
from keras_spk.recipe.run import recipe_parser
from keras_spk.recipe.training import EpochCheckpoint
from keras_spk.recipe.training import fit_stage
from keras_spk.recipe.training import get_random_state
from keras_spk.recipe.training import list_checkpoints
from keras_spk.recipe.training import restore_checkpoint
from keras_spk.recipe.training import set_random_state
