"""Audio reading, dataset readers, trial lists and tf.data pipelines.

Names are imported on first use, so numpy-only parts (the demo corpus,
the P×K sampler) do not load TensorFlow.
"""

from keras_spk.utils.lazy import lazy_module_exports

_EXPORTS = {
    "audio": (
        "AudioError",
        "decode_audio",
        "find_bad_audio",
        "load_audio",
        "read_audio",
        "resample",
    ),
    "augment": ("Augmentation", "augmentation_from_config", "speed_perturb"),
    "formats": ("SUPPORTED_EXTENSIONS",),
    "wav": ("write_wav",),
    "pipeline": ("crop_or_repeat", "evaluation_dataset", "pk_dataset", "training_dataset"),
    "readers": (
        "READERS",
        "SeparationMixture",
        "SpeakerMap",
        "UtteranceList",
        "WSJ0_2MIX_SUBSETS",
        "check_speaker_overlap",
        "read_dataset",
        "read_librispeech",
        "read_manifest",
        "read_voxceleb",
        "read_wsj0_2mix",
    ),
    "sampler": ("PKSampler",),
    "shards": ("read_shards", "shard_stream_dataset", "verify_shards", "write_shards"),
    "mixture": ("MixtureSampler", "mixture_dataset", "wsj0_2mix_dataset"),
    "samplers": ("SAMPLERS", "sampler_dataset", "sampler_from_config"),
    "trials": ("Trials", "read_trials", "write_trials"),
    "demo_corpus": (
        "default_demo_dir", "ensure_demo_augmentation", "ensure_demo_corpus", "make_demo_corpus"
    ),
}
__getattr__, __dir__, __all__ = lazy_module_exports(__name__, _EXPORTS)
