"""Helpers shared by the test files: tiny corpora, a tiny test recipe, reference checks.

Test files import helpers from here, never from another `*_test.py` file.
One module per topic:

- `audio`: the coded corpus waveforms of the pipeline tests, WAV bytes built by hand;
- `embedders`: tiny seeded embedders and tones of the inference and extraction tests;
- `export`: small embedders and keras-free serving checks of the export tests;
- `frontend`: numpy references of the front-end layers;
- `heads`: toy problem and checks of the classification heads and embedding losses;
- `metric_losses`: toy batches and numpy references of the metric-learning losses;
- `numpy_reference`: numpy convolutions and resizing of the feature pyramid tests;
- `pooling`: checks shared by the temporal pooling layers;
- `corpus`, `recipes`, `toy_recipe`: tiny corpora and a tiny test recipe.

Their file names match neither `test_*.py` nor `*_test.py`, so pytest does not
collect them, and no helper's name starts with `test_`, so importing one into
a test module adds no test.
"""
