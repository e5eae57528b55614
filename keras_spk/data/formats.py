"""Audio file formats keras_spk reads."""

# Decoded by keras_spk.data.audio: WAV natively, the others through libsndfile (soundfile).
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
