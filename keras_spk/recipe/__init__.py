"""What every paper recipe shares: run folder, data, samplers, stages, systems, evaluation, export.

A recipe's `train.py` declares a `Recipe` (its configs, its own config
constraints, `build_stage(name, context)` returning each stage's trainer,
and `embedder(context)` returning the model to evaluate) and calls
`run_recipe`. The runner opens (or resumes) the run folder (`start_run`),
reads the data (`load_data`: layouts, several training folders, held-out
utterances, several trial lists), trains each system of `systems:` through
the ordered `stages:` of its config (`run_stages`: the optimizer registry of
`keras_spk.recipe.optimizers`, the samplers of `keras_spk.data.samplers`,
`fit_stage` with a checkpoint every epoch and exact resumption), runs the
evaluation protocols of `evaluation.protocols` (`keras_spk.recipe.protocols`:
the back-end table with its reference row, the duration table, and any a
recipe registers) and exports the embedder. See `docs/adding_a_recipe.md`
and `papers/rawnet/train.py`.
"""

from keras_spk.evaluation.durations import cut_to_speech
from keras_spk.evaluation.durations import duration_conditions
from keras_spk.evaluation.durations import evaluate_durations
from keras_spk.evaluation.durations import format_duration_table
from keras_spk.evaluation.durations import write_duration_results
from keras_spk.recipe.data import RecipeData
from keras_spk.recipe.data import load_data
from keras_spk.recipe.data import read_training_data
from keras_spk.recipe.data import split_holdout
from keras_spk.recipe.evaluation import backend_settings
from keras_spk.recipe.evaluation import backend_table
from keras_spk.recipe.evaluation import export_embedder
from keras_spk.recipe.evaluation import extract_embeddings
from keras_spk.recipe.evaluation import save_embedder
from keras_spk.recipe.evaluation import select_per_speaker
from keras_spk.recipe.evaluation import trial_indices
from keras_spk.recipe.optimizers import OPTIMIZERS
from keras_spk.recipe.optimizers import SCHEDULES
from keras_spk.recipe.optimizers import build_optimizer
from keras_spk.recipe.protocols import PROTOCOLS
from keras_spk.recipe.protocols import Evaluation
from keras_spk.recipe.protocols import evaluate_and_export
from keras_spk.recipe.protocols import register_protocol
from keras_spk.recipe.protocols import run_protocols
from keras_spk.recipe.run import Run
from keras_spk.recipe.run import RunError
from keras_spk.recipe.run import open_run
from keras_spk.recipe.run import recipe_parser
from keras_spk.recipe.runner import Recipe
from keras_spk.recipe.runner import check_data
from keras_spk.recipe.runner import main_guard
from keras_spk.recipe.runner import recipe_constraints
from keras_spk.recipe.runner import run_recipe
from keras_spk.recipe.runner import start_run
from keras_spk.recipe.runner import system_configs
from keras_spk.recipe.stages import StageContext
from keras_spk.recipe.stages import freeze
from keras_spk.recipe.stages import pk_batches_problem
from keras_spk.recipe.stages import run_stages
from keras_spk.recipe.stages import stage_plan
from keras_spk.recipe.stages import transfer_weights
from keras_spk.recipe.training import EpochCheckpoint
from keras_spk.recipe.training import fit_stage
from keras_spk.recipe.training import get_random_state
from keras_spk.recipe.training import list_checkpoints
from keras_spk.recipe.training import restore_checkpoint
from keras_spk.recipe.training import set_random_state
