"""FPM recipe: Jung et al., "Improving Multi-Scale Aggregation Using Feature
Pyramid Module for Robust Speaker Verification of Variable-Duration
Utterances", Interspeech 2020."""
