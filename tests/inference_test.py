"""keras_spk.inference: whole-utterance embedding of files and waveforms."""

import keras
import numpy as np
import pytest

from keras_spk.data import AudioError
from keras_spk.data import read_audio
from keras_spk.data import write_wav
from keras_spk.inference import crop_offsets
from keras_spk.inference import embed_crops
from keras_spk.inference import embed_files
from keras_spk.inference import embed_waveforms
from keras_spk.inference import find_min_samples
from keras_spk.inference import model_sample_rate
from keras_spk.inference import utterance_crops
from keras_spk.layers import LogMelFilterbank
from tests.helpers.embedders import DIM
from tests.helpers.embedders import K
from tests.helpers.embedders import build_tiny_embedder
from tests.helpers.embedders import build_tiny_multi_embedder
from tests.helpers.embedders import keras_embed
from tests.helpers.embedders import tone


def moments(waveforms):
    """A hand-checkable 'embedder': [mean, max, length] of each row."""
    x = np.asarray(waveforms, dtype="float64")
    return np.stack([x.mean(1), x.max(1), np.full(len(x), x.shape[1])], axis=1)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inference")
    rng = np.random.default_rng(0)
    paths = []
    for i, (n, frequency) in enumerate(((4000, 300), (5321, 1100), (6400, 2500))):
        paths.append(str(folder / f"utt{i}.wav"))
        write_wav(paths[-1], tone(rng, n, frequency), 16000)
    # At 8 kHz: read back resampled to 16 kHz.
    paths.append(str(folder / "utt_8k.wav"))
    write_wav(paths[-1], tone(rng, 2000, 700, 8000), 8000)
    return folder, paths


def test_embed_files_equals_the_model_on_each_whole_utterance(wavs):
    _, paths = wavs
    model = build_tiny_embedder()
    embeddings = embed_files(model, paths, progress=False)
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(paths), DIM)
    for row, path in zip(embeddings, paths):
        np.testing.assert_allclose(row, keras_embed(model, read_audio(path)), atol=1e-5, rtol=0)
    # Rows differ from file to file, so the order is checked too.
    gaps = np.abs(embeddings[:, None] - embeddings[None]).max(-1)
    assert gaps[~np.eye(len(paths), dtype=bool)].min() > 1e-2


def test_embed_files_with_a_callable_sees_each_file_alone_and_resampled(wavs):
    _, paths = wavs
    # 4000 samples is the shortest utterance here, so min_samples=4000 passes all.
    embeddings = embed_files(moments, paths, sample_rate=16000, progress=False, min_samples=4000)
    # Lengths: 4000, 5321, 6400 samples, and 2000 samples at 8 kHz -> 4000 at 16 kHz.
    np.testing.assert_array_equal(embeddings[:, 2], [4000, 5321, 6400, 4000])
    for row, path in zip(embeddings, paths):
        waveform = read_audio(path).astype("float64")
        np.testing.assert_allclose(row[:2], [waveform.mean(), waveform.max()], rtol=1e-6, atol=1e-7)


def test_embed_waveforms_one_at_a_time():
    rng = np.random.default_rng(1)
    waves = [rng.normal(size=n).astype("float32") for n in (3, 5)]
    out = embed_waveforms(moments, waves)
    np.testing.assert_allclose(out, [[w.mean(), w.max(), len(w)] for w in waves], rtol=1e-6)
    model = build_tiny_embedder()
    waves = [tone(rng, n, f).astype("float32") for n, f in ((4000, 500), (4500, 900))]
    out = embed_waveforms(model, waves, progress=True)
    np.testing.assert_allclose(out[1], keras_embed(model, waves[1]), atol=1e-5, rtol=0)


def test_missing_and_corrupt_files_are_named(wavs):
    folder, paths = wavs
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        embed_files(moments, paths + [str(folder / "nowhere.wav")], progress=False)
    junk = folder / "junk.wav"
    junk.write_bytes(b"no audio here " * 10)
    with pytest.raises(AudioError, match=r"junk\.wav: not a supported audio file"):
        embed_files(moments, [paths[0], str(junk), paths[1]], progress=False)
    # The FLAC decoder's own error does not name the file; embed_files adds it.
    broken_flac = folder / "broken.flac"
    broken_flac.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    with pytest.raises(AudioError, match=r"broken\.flac: cannot decode audio"):
        embed_files(moments, [paths[0], paths[1], str(broken_flac)], progress=False)


def test_short_utterances_are_an_error_naming_the_file(wavs):
    _, paths = wavs
    message = r"utt0\.wav: 4000 samples \(0\.250 s at 16000 Hz\), fewer than the minimum of 4001 "
    with pytest.raises(AudioError, match=message):
        embed_files(moments, paths[1::-1], progress=False, min_samples=4001)


def test_bad_model_outputs_are_errors_naming_the_utterance(wavs):
    _, paths = wavs
    names = ["a.wav", "b.wav"]
    waves = [np.ones(3), np.ones(4)]
    with pytest.raises(ValueError, match=r"a\.wav: the model must map .* shape \(3,\)"):
        embed_waveforms(lambda x: moments(x)[0], waves, names=names)
    with pytest.raises(ValueError, match=r"b\.wav: embedding of size 2, but the earlier ones have size 3"):
        embed_waveforms(lambda x: moments(x)[:, : 3 if x.shape[1] == 3 else 2], waves, names=names)
    with pytest.raises(ValueError, match=r"utt0\.wav: the embedding holds NaN"):
        embed_files(lambda x: moments(x) * np.nan, paths[:1], progress=False)


def test_argument_errors(wavs):
    _, paths = wavs
    with pytest.raises(ValueError, match="empty list"):
        embed_files(moments, [], progress=False)
    with pytest.raises(ValueError, match="sample_rate"):
        embed_files(moments, paths, sample_rate=0, progress=False)
    with pytest.raises(ValueError, match="model_or_callable"):
        embed_files("model.keras", paths, progress=False)
    with pytest.raises(ValueError, match=r"waveform 1: expected a non-empty 1-D waveform"):
        embed_waveforms(moments, [np.ones(3), np.ones((2, 3))])
    with pytest.raises(ValueError, match="2 names for 1 waveforms"):
        embed_waveforms(moments, [np.ones(3)], names=["a", "b"])


def _framed(minimum, short_output):
    """A callable embedder needing `minimum` samples; shorter input gives `short_output(x)`."""

    def embed(x):
        if x.shape[1] < minimum:
            return short_output(x)
        return moments(x)

    return embed


@pytest.mark.parametrize(
    "short_output",
    [
        lambda x: np.full((1, 3), np.nan),
        lambda x: np.zeros((1, 3)),
        lambda x: np.array([[0.5, -1.0, 2.0]]),  # a constant: e.g. a Dense layer's bias alone
        lambda x: np.array([[1.0, 1.0, 1.0]]) * (1 + 1e-8 * x.std()),  # depends on audio by rounding only
        lambda x: np.ones((1, 3)) @ np.ones((2, 3)),  # raises, as a convolution longer than the input does
    ],
    ids=["nan", "zeros", "constant", "rounding", "error"],
)
@pytest.mark.parametrize("minimum", [1, 2, 3, 160, 400, 2187, 3001])
def test_find_min_samples_finds_the_shortest_usable_length(minimum, short_output):
    assert find_min_samples(_framed(minimum, short_output)) == minimum


def test_find_min_samples_of_a_mel_model_is_one_frame():
    # 25-ms frames: 400 samples at 16 kHz.
    assert find_min_samples(build_tiny_embedder()) == 400


def test_find_min_samples_when_nothing_is_usable():
    same = "no usable embedding for any input of up to 1000 samples: at 1000 samples it gave the same"
    with pytest.raises(ValueError, match=same):
        find_min_samples(lambda x: np.ones((1, 4)), max_samples=1000)
    with pytest.raises(ValueError, match="up to 64 samples: at 64 samples it raised RuntimeError: broken"):
        find_min_samples(lambda x: (_ for _ in ()).throw(RuntimeError("broken")), max_samples=64)
    with pytest.raises(ValueError, match=r"at 8 samples it gave an output of shape \(3,\)"):
        find_min_samples(lambda x: moments(x)[0], max_samples=8)


def test_min_samples_auto_refuses_what_the_model_cannot_embed(wavs):
    _, paths = wavs
    # 4000 samples is the shortest file: a model needing 4001 refuses it, naming it.
    embedder = _framed(4001, lambda x: np.zeros((1, 3)))
    refusal = r"utt0\.wav: 4000 samples .* fewer than the minimum of 4001 samples \(0\.250 s\)"
    with pytest.raises(AudioError, match=refusal):
        embed_files(embedder, paths, progress=False, min_samples="auto")
    embedder = _framed(4000, lambda x: np.zeros((1, 3)))
    embeddings = embed_files(embedder, paths[:1], progress=False, min_samples="auto")
    np.testing.assert_allclose(embeddings[0], moments(read_audio(paths[0])[None])[0], rtol=1e-6)


def test_an_all_zero_embedding_is_never_returned(wavs):
    _, paths = wavs
    # Zero for one file only (e.g. a ReLU embedding of silence); the error names it.
    zero_for_5321 = lambda x: moments(x) * (x.shape[1] != 5321)  # noqa: E731
    with pytest.raises(ValueError, match=r"utt1\.wav: the embedding is all zeros"):
        embed_files(zero_for_5321, paths[:2], progress=False)
    zero_for_4 = lambda x: moments(x) * (x.shape[1] != 4)  # noqa: E731
    with pytest.raises(ValueError, match=r"b\.wav: the embedding is all zeros"):
        embed_waveforms(zero_for_4, [np.ones(3), np.ones(4)], names=["a.wav", "b.wav"])


def test_a_front_end_at_another_sample_rate_is_refused(wavs):
    _, paths = wavs
    model = build_tiny_embedder()
    assert model_sample_rate(model) == 16000
    with pytest.raises(ValueError, match=r"front-end works at 16000 Hz, but sample_rate=8000 was given"):
        embed_files(model, paths, sample_rate=8000, progress=False)
    assert model_sample_rate(moments) is None
    waveforms = keras.Input((None,))
    x = LogMelFilterbank(sample_rate=8000)(waveforms)
    inner = keras.Model(waveforms, keras.layers.GlobalAveragePooling1D()(x))
    outer_input = keras.Input((None,))
    mixed = keras.Model(
        outer_input,
        keras.layers.Concatenate()([inner(outer_input), LogMelFilterbank()(outer_input)[:, 0]]),
    )
    with pytest.raises(ValueError, match="different sample rates: 8000 Hz in log_mel_filterbank.*16000 Hz"):
        model_sample_rate(mixed)


# === Multi-identity embedders: [1, K, dim] per utterance ===


def two_speakers(x):
    """A hand-checkable multi-identity 'embedder': `moments` of each half of the row, [1, 2, 3]."""
    if x.shape[1] < 2:
        raise ValueError(f"two_speakers needs at least 2 samples, got {x.shape[1]}")
    half = x.shape[1] // 2
    return np.stack([moments(x[:, :half]), moments(x[:, half:])], axis=1)


def test_embed_files_of_a_multi_identity_model_equals_the_model_on_each_file(wavs):
    _, paths = wavs
    model = build_tiny_multi_embedder()
    embeddings = embed_files(model, paths, progress=False)
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(paths), K, DIM)
    for row, path in zip(embeddings, paths):
        expected = keras.ops.convert_to_numpy(model(read_audio(path)[None], training=False))[0]
        assert expected.shape == (K, DIM)
        np.testing.assert_allclose(row, expected, atol=1e-5, rtol=0)
    # The identities differ within a file, and the files differ from each other.
    assert np.abs(embeddings[:, 0] - embeddings[:, 1]).max(-1).min() > 1e-2
    gaps = np.abs(embeddings[:, None] - embeddings[None]).max((-2, -1))
    assert gaps[~np.eye(len(paths), dtype=bool)].min() > 1e-3
    # The model needs one 400-sample frame, probed through every identity.
    assert find_min_samples(model) == 400


def test_embed_waveforms_of_a_multi_identity_callable():
    rng = np.random.default_rng(2)
    waves = [rng.normal(size=n).astype("float32") for n in (6, 9)]
    out = embed_waveforms(two_speakers, waves)
    assert out.shape == (2, K, 3)
    for row, w in zip(out, waves):
        first, second = w[: len(w) // 2], w[len(w) // 2 :]
        np.testing.assert_allclose(row[0], [first.mean(), first.max(), len(first)], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(row[1], [second.mean(), second.max(), len(second)], rtol=1e-6, atol=1e-7)


def test_multi_identity_errors_name_the_file_and_the_identity(wavs):
    _, paths = wavs
    names = ["a.wav", "b.wav"]
    waves = [np.ones(6), np.ones(8)]
    # Another number of identities (or size) than the earlier files.
    def three_for_8(x):
        out = two_speakers(x)
        return np.concatenate([out, out[:, :1]], axis=1) if x.shape[1] == 8 else out

    message = (
        r"b\.wav: embeddings of shape \[3, 3\] \(3 identities of size 3\), "
        r"but the earlier ones have shape \[2, 3\]"
    )
    with pytest.raises(ValueError, match=message):
        embed_waveforms(three_for_8, waves, names=names)
    one_then_two = lambda x: moments(x) if x.shape[1] == 6 else two_speakers(x)  # noqa: E731
    with pytest.raises(ValueError, match=r"b\.wav: embeddings of shape \[2, 3\] .* earlier ones .* \[3\]"):
        embed_waveforms(one_then_two, waves, names=names)
    # One identity all zeros, for one file only: the file and the identity are named.
    silent_second = lambda x: two_speakers(x) * np.array([1, x.shape[1] != 5321])[None, :, None]  # noqa: E731
    with pytest.raises(ValueError, match=r"utt1\.wav: the embedding of identity 1 \(of 2\) is all zeros"):
        embed_files(silent_second, paths[:2], progress=False)
    nan_first = lambda x: two_speakers(x) * np.array([np.nan, 1.0])[None, :, None]  # noqa: E731
    with pytest.raises(ValueError, match=r"utt0\.wav: the embedding of identity 0 \(of 2\) holds NaN"):
        embed_files(nan_first, paths[:1], progress=False)
    # Short files are refused for multi-identity models too.
    with pytest.raises(AudioError, match=r"utt0\.wav: 4000 samples .* fewer than the minimum of 4001"):
        embed_files(two_speakers, paths, progress=False, min_samples=4001)


@pytest.mark.parametrize(
    "output, shape",
    [
        (lambda x: moments(x)[:, 0], r"\(1,\)"),
        (lambda x: two_speakers(x)[:, :, None], r"\(1, 2, 1, 3\)"),
        (lambda x: np.zeros((1, 2, 0)), r"\(1, 2, 0\)"),
        (lambda x: np.concatenate([two_speakers(x)] * 2), r"\(2, 2, 3\)"),
    ],
    ids=["rank1", "rank4", "empty", "two-rows"],
)
def test_outputs_of_another_rank_are_errors_naming_the_file(wavs, output, shape):
    _, paths = wavs
    expected = (
        r"utt0\.wav: the model must map a waveform \[1, samples\] to one embedding \[1, dim\] "
        r"\(or one per identity, \[1, K, dim\]\)\. Received an output of shape "
    )
    with pytest.raises(ValueError, match=expected + shape):
        embed_files(output, paths[:1], progress=False)


def test_find_min_samples_needs_every_identity_to_depend_on_the_audio():
    # The second identity is a constant (its bias alone) below 300 samples.
    def embed(x):
        out = two_speakers(x)
        if x.shape[1] < 300:
            out[:, 1] = [0.5, -1.0, 2.0]
        return out

    assert find_min_samples(embed) == 300
    with pytest.raises(ValueError, match=r"at 8 samples it gave an output of shape \(1, 2, 1, 3\) "
                                         r"\(expected \[1, dim\] or \[1, K, dim\]\)"):
        find_min_samples(lambda x: two_speakers(x)[:, :, None], max_samples=8)


# === Multi-crop embedding: [num_crops, dim] per utterance ===


def test_crop_offsets_spread_evenly_and_rounded_down():
    # 10 s at 16 kHz, 3-s crops: i * 112000 / 9 rounded down.
    offsets = crop_offsets(160000, 48000, 10)
    assert offsets.dtype == np.int64
    np.testing.assert_array_equal(
        offsets, [0, 12444, 24888, 37333, 49777, 62222, 74666, 87111, 99555, 112000]
    )
    np.testing.assert_array_equal(offsets, np.floor(np.linspace(0, 112000, 10)).astype(int))
    # Whole values stay whole (9 * 3 = 27 samples to spread: 0, 3, ..., 27).
    np.testing.assert_array_equal(crop_offsets(30, 3, 10), np.arange(0, 30, 3))
    # An utterance as long as the crop, or shorter (repeated up to it), gives all zeros.
    np.testing.assert_array_equal(crop_offsets(48000, 48000, 10), np.zeros(10))
    np.testing.assert_array_equal(crop_offsets(20000, 48000, 4), np.zeros(4))
    # One crop starts at the beginning; more crops than spare samples repeat offsets.
    np.testing.assert_array_equal(crop_offsets(100, 10, 1), [0])
    np.testing.assert_array_equal(crop_offsets(12, 10, 5), [0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"`num_crops` must be a positive integer. Received: num_crops=0"):
        crop_offsets(100, 10, 0)
    with pytest.raises(ValueError, match=r"`crop_samples` must be a positive integer"):
        crop_offsets(100, 2.5, 3)


def test_utterance_crops_cut_at_the_offsets_and_repeat_short_utterances():
    waveform = np.arange(10.0)
    crops = utterance_crops(waveform, 4, 3)  # offsets 0, 3, 6
    assert crops.dtype == np.float32 and crops.shape == (3, 4)
    np.testing.assert_array_equal(crops, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    # 3 samples repeated end to end up to 7: every crop is that repetition.
    np.testing.assert_array_equal(utterance_crops([1.0, 2.0, 3.0], 7, 2), [[1, 2, 3, 1, 2, 3, 1]] * 2)
    # Exactly one crop long: the utterance itself, num_crops times.
    np.testing.assert_array_equal(utterance_crops(waveform, 10, 2), [waveform, waveform])
    with pytest.raises(ValueError, match=r"`waveform` must be a non-empty 1-D array"):
        utterance_crops(np.ones((2, 5)), 3, 2)


class MeanAndFirst(keras.layers.Layer):
    """A hand-checkable 'embedder' layer: [mean, first sample] of each waveform."""

    def call(self, x):
        return keras.ops.stack([keras.ops.mean(x, axis=1), x[:, 0]], axis=1)


def mean_and_first_model():
    waveforms = keras.Input((None,), name="waveforms")
    return keras.Model(waveforms, MeanAndFirst()(waveforms))


def test_embed_crops_of_a_keras_model_embeds_each_crop_at_its_offset(wavs):
    _, paths = wavs
    embeddings = embed_crops(mean_and_first_model(), paths, num_crops=4, crop_samples=1000, progress=False)
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(paths), 4, 2)
    for row, path in zip(embeddings, paths):
        waveform = read_audio(path)
        offsets = crop_offsets(len(waveform), 1000, 4)
        assert offsets[-1] == len(waveform) - 1000
        expected = [[waveform[o : o + 1000].mean(), waveform[o]] for o in offsets]
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)


def test_embed_crops_repeats_utterances_shorter_than_the_crop(wavs):
    _, paths = wavs
    # utt0 and the 8-kHz file have 4000 samples (after resampling): repeated up to 5000.
    embeddings = embed_crops(moments, paths, num_crops=3, crop_samples=5000, progress=False)
    assert embeddings.shape == (len(paths), 3, 3)
    np.testing.assert_array_equal(embeddings[:, :, 2], 5000)  # every crop is 5000 samples long
    for row, path in zip(embeddings, paths):
        waveform = read_audio(path).astype("float64")
        if len(waveform) < 5000:
            repeated = np.concatenate([waveform, waveform[:1000]])
            crops = [repeated] * 3
        else:
            crops = [waveform[o : o + 5000] for o in crop_offsets(len(waveform), 5000, 3)]
        expected = [[c.mean(), c.max(), 5000] for c in crops]
        np.testing.assert_allclose(row, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(embeddings[0, 0], embeddings[0, 2])


def test_embed_crops_batch_equals_each_crop_alone_and_defaults_to_3_s_crops(wavs):
    _, paths = wavs
    model = build_tiny_embedder()
    embeddings = embed_crops(model, paths[1:3], num_crops=5, crop_samples=2000, progress=False)
    for row, path in zip(embeddings, paths[1:3]):
        waveform = read_audio(path)
        for crop, offset in zip(row, crop_offsets(len(waveform), 2000, 5)):
            np.testing.assert_allclose(crop, keras_embed(model, waveform[offset : offset + 2000]), atol=1e-5, rtol=0)
    # Ten crops of 3 s by default: every file here is shorter, so each is its repetition.
    default = embed_crops(moments, paths[:1], progress=False)
    assert default.shape == (1, 10, 3)
    np.testing.assert_array_equal(default[0, :, 2], 48000)
    np.testing.assert_allclose(default[0], np.repeat(default[0, :1], 10, axis=0))


def test_embed_crops_refuses_what_embed_files_refuses(wavs):
    folder, paths = wavs
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        embed_crops(moments, paths + [str(folder / "nowhere.wav")], progress=False)
    junk = folder / "junk_crops.wav"
    junk.write_bytes(b"no audio here " * 10)
    with pytest.raises(AudioError, match=r"junk_crops\.wav: not a supported audio file"):
        embed_crops(moments, [paths[0], str(junk)], num_crops=2, crop_samples=100, progress=False)
    # The file's own length counts, not its repetition.
    with pytest.raises(AudioError, match=r"utt0\.wav: 4000 samples .* fewer than the minimum of 4001"):
        embed_crops(moments, paths[1::-1], crop_samples=8000, progress=False, min_samples=4001)
    with pytest.raises(ValueError, match="embed_crops needs at least one audio file"):
        embed_crops(moments, [], progress=False)
    with pytest.raises(ValueError, match=r"front-end works at 16000 Hz, but sample_rate=8000"):
        embed_crops(build_tiny_embedder(), paths, sample_rate=8000, progress=False)


def test_embed_crops_argument_and_output_errors_name_the_file_and_crop(wavs):
    _, paths = wavs
    with pytest.raises(ValueError, match=r"`num_crops` must be a positive integer. Received: num_crops=0"):
        embed_crops(moments, paths, num_crops=0, progress=False)
    message = r"`crop_samples` must be at least the 400 samples .* Received: crop_samples=399"
    with pytest.raises(ValueError, match=message):
        embed_crops(moments, paths, crop_samples=399, min_samples=400, progress=False)
    # A model needing one 25-ms frame: "auto" finds 400 samples, and refuses shorter crops.
    with pytest.raises(ValueError, match=r"at least the 400 samples \(0\.025 s at 16000 Hz\)"):
        embed_crops(build_tiny_embedder(), paths, crop_samples=300, min_samples="auto", progress=False)
    nan_third = lambda x: moments(x) * np.array([1.0, 1.0, np.nan])[:, None]  # noqa: E731
    with pytest.raises(ValueError, match=r"utt0\.wav \(crop 3 of 3\): the embedding holds NaN"):
        embed_crops(nan_third, paths, num_crops=3, crop_samples=1000, progress=False)
    message = r"utt0\.wav: the model must map the 3 crops .* Received an output of shape \(1, 3\)"
    with pytest.raises(ValueError, match=message):
        embed_crops(lambda x: moments(x[:1]), paths, num_crops=3, crop_samples=1000, progress=False)
    # The second file's crops have another size than the first's.
    sizes = iter([3, 2])
    message = r"utt1\.wav \(crop 1 of 2\): embedding of size 2, but the earlier ones have size 3"
    with pytest.raises(ValueError, match=message):
        embed_crops(lambda x: moments(x)[:, : next(sizes)], paths[:2], num_crops=2, crop_samples=1000,
                    progress=False)
