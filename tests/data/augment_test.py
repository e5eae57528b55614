"""On-the-fly augmentation: noise at its SNR, babble, reverberation, speed, determinism."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_spk.data import audio
from keras_spk.data import augment
from keras_spk.data import demo_corpus
from keras_spk.data.augment import Augmentation
from keras_spk.data.augment import augmentation_from_config
from keras_spk.data.augment import speed_perturb
from keras_spk.data.wav import write_wav

RATE = 16000
L = 4000  # 0.25 s crops: spectral bins every 4 Hz
TONES = [400 + 300 * i for i in range(8)]  # one babble "speaker" per tone, all on bins
CLICK, PEAK, PRE_ECHO = 1000, 100, 60  # a click's place; the RIR's peak and an echo before it


def _tone(freq, n, phase=0.0):
    return np.sin(2 * np.pi * freq * np.arange(n) / RATE + phase)


@pytest.fixture(scope="module")
def musan(tmp_path_factory):
    root = tmp_path_factory.mktemp("musan")
    rng = np.random.default_rng(0)
    for i in range(2):
        (root / "noise" / "free").mkdir(parents=True, exist_ok=True)
        write_wav(root / "noise" / "free" / f"noise-{i}.wav", rng.normal(0, 0.2, 3 * RATE), RATE)
    (root / "music").mkdir()
    write_wav(root / "music" / "music-0.wav", 0.5 * _tone(440, 2 * RATE), RATE)
    (root / "speech").mkdir()
    for i, f in enumerate(TONES):
        write_wav(root / "speech" / f"speech-{i}.wav", (0.1 + 0.05 * i) * _tone(f, RATE, i), RATE)
    # A file shorter than a crop, to be repeated.
    (root / "short" / "noise").mkdir(parents=True)
    write_wav(root / "short" / "noise" / "short.wav", rng.uniform(-0.5, 0.5, 1600), RATE)
    return root


@pytest.fixture(scope="module")
def rir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rirs")
    folder = root / "simulated_rirs" / "smallroom" / "Room001"
    folder.mkdir(parents=True)
    h = np.zeros(1100)
    h[PRE_ECHO] = 0.2
    h[PEAK] = 0.9
    h[PEAK + 1 :] = np.random.default_rng(1).normal(0, 0.2, 999) * np.exp(-np.arange(999) / 150)
    path = folder / "Room001-00001.wav"
    write_wav(path, h, RATE)
    # Files of the noise recordings beside real responses are skipped without simulated_rirs/.
    real = root / "real"
    real.mkdir()
    write_wav(real / "RVB2014_type1_rir_room.wav", h, RATE)
    write_wav(real / "RVB2014_type1_noise_room.wav", 0.1 * _tone(100, 800), RATE)
    return root, audio.read_audio(path, RATE)


def _speechlike(rows, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.1, (rows, n)) * (1 + np.sin(np.arange(n) / 300.0))).astype("float32")


def _seed(a=1, b=2):
    return tf.constant([a, b], tf.int64)


def _noise_only(musan, category, snr_db, count=(1, 1), probability=1.0):
    files = augment.musan_files(musan, [category])
    settings = {name: {"weight": 0.0} for name in augment.NOISE_CATEGORIES}
    settings[category] = {"snr_db": list(snr_db), "count": list(count), "weight": 1.0}
    return Augmentation(
        RATE, probability=probability, noise_files=files, noise_probability=1.0,
        noise_settings=settings,
    )


def _snr(clean, noisy):
    added = noisy - clean
    with np.errstate(divide="ignore"):  # rows without noise: +inf
        return 10 * np.log10(np.mean(clean**2, axis=1) / np.mean(added**2, axis=1))


def _tone_fit(y, freq):
    """(amplitude, residual RMS) of the least-squares fit of a `freq` Hz sinusoid to `y`."""
    n = np.arange(len(y)) / RATE
    basis = np.stack([np.sin(2 * np.pi * freq * n), np.cos(2 * np.pi * freq * n)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return np.hypot(*coef), np.sqrt(np.mean((y - basis @ coef) ** 2))


def _tone_count(noise):
    magnitude = np.abs(np.fft.rfft(noise, axis=1))
    bins = [f * L // RATE for f in TONES]
    return (magnitude[:, bins] > 0.5 * magnitude.max(axis=1, keepdims=True)).sum(axis=1)


# === Additive noise ===
@pytest.mark.parametrize("category", ["noise", "music", "babble"])
def test_fixed_snr_is_met(musan, category):
    crops = _speechlike(6, L)
    out, labels = _noise_only(musan, category, (5, 5), (3, 3))(crops, np.arange(6), _seed())
    np.testing.assert_allclose(_snr(crops, out.numpy()), 5.0, atol=0.01)
    np.testing.assert_array_equal(labels, np.arange(6))


def test_snr_spans_its_range(musan):
    crops = _speechlike(64, L)
    out, _ = _noise_only(musan, "noise", (0, 15))(crops, np.zeros(64), _seed())
    snr = _snr(crops, out.numpy())
    assert snr.min() >= -0.01 and snr.max() <= 15.01
    assert snr.min() < 3 and snr.max() > 12


def test_babble_sums_three_to_seven_distinct_speakers(musan):
    crops = _speechlike(64, L)
    out, _ = _noise_only(musan, "babble", (13, 20), (3, 7))(crops, np.zeros(64), _seed(3, 4))
    counts = _tone_count(out.numpy() - crops)
    assert set(counts) == {3, 4, 5, 6, 7}
    snr = _snr(crops, out.numpy())
    assert snr.min() >= 12.99 and snr.max() <= 20.01
    # Each speaker is scaled to the same power before the sum, whatever its file's level.
    out, _ = _noise_only(musan, "babble", (0, 0), (5, 5))(crops[:8], np.zeros(8), _seed())
    noise = out.numpy() - crops[:8]
    assert (_tone_count(noise) == 5).all()
    magnitude = np.abs(np.fft.rfft(noise, axis=1))[:, [f * L // RATE for f in TONES]]
    peaks = np.sort(magnitude, axis=1)[:, -5:]
    np.testing.assert_allclose(peaks / peaks[:, -1:], 1.0, rtol=0.02)


def test_short_noise_files_are_repeated(musan):
    files = {"noise": augment.musan_files(musan / "short", ["noise"])["noise"]}
    aug = Augmentation(
        RATE, probability=1.0, noise_files=files, noise_probability=1.0,
        noise_settings={
            "noise": {"snr_db": [0, 0]}, "music": {"weight": 0}, "babble": {"weight": 0}
        },
    )
    crops = _speechlike(3, L)
    noise = aug(crops, np.zeros(3), _seed())[0].numpy() - crops
    np.testing.assert_allclose(noise[:, :-1600], noise[:, 1600:], atol=1e-6)
    assert np.abs(noise).max(axis=1).min() > 0


def test_probability_draws(musan, rir):
    """`probability` picks the rows; one uniform u: reverb if u < p_r, noise if u >= 1 - p_n."""
    crops = np.zeros((128, L), "float32")
    crops[:, CLICK] = 1.0
    crops += _speechlike(128, L) * 0.01
    files = augment.musan_files(musan, ["noise"])
    settings = {"noise": {"snr_db": [20, 20]}, "music": {"weight": 0}, "babble": {"weight": 0}}

    def kinds(probability, p_reverb, p_noise):
        aug = Augmentation(
            RATE, probability=probability, noise_files=files, noise_probability=p_noise,
            noise_settings=settings, rir_files=augment.rir_files(rir[0]),
            reverb_probability=p_reverb,
        )
        out = aug(crops, np.zeros(128), _seed(7, 8))[0].numpy()
        same_power = np.isclose(np.mean(out**2, 1), np.mean(crops**2, 1), rtol=1e-4)
        changed = np.abs(out - crops).max(axis=1) > 0
        noise_only = np.isclose(_snr(crops, out), 20.0, atol=0.01)
        reverb_only = same_power & changed
        return changed, reverb_only, noise_only

    changed, reverb_only, noise_only = kinds(1.0, 0.5, 0.5)
    assert changed.all() and not (reverb_only & noise_only).any()
    assert (reverb_only | noise_only).all() and 40 < reverb_only.sum() < 88
    changed, reverb_only, noise_only = kinds(1.0, 0.5, 1.0)
    assert changed.all() and not reverb_only.any() and 40 < noise_only.sum() < 88
    changed, _, noise_only = kinds(0.3, 0.0, 1.0)
    assert (changed == noise_only).all() and 20 < changed.sum() < 60


# === Reverberation ===
def test_a_click_is_aligned_on_the_rir_peak_and_coloured_by_it(rir):
    root, h = rir
    aug = Augmentation(
        RATE, probability=1.0, rir_files=augment.rir_files(root), reverb_probability=1.0
    )
    assert aug.uses_reverb and not aug.uses_noise
    click = np.zeros((1, L), "float32")
    click[0, CLICK] = 0.5
    y = aug(click, np.zeros(1), _seed())[0].numpy()[0]
    # Not delayed: the direct path stays on the click; the echo before the peak comes first.
    assert np.argmax(np.abs(y)) == CLICK
    expected = np.zeros(L)
    expected[CLICK - PEAK : CLICK - PEAK + len(h)] = h
    scale = np.sqrt(np.mean(click**2) / np.mean(expected**2))  # the click's power is kept
    np.testing.assert_allclose(y, scale * expected, atol=1e-6)
    assert abs(y[CLICK - PEAK + PRE_ECHO] / y[CLICK] - h[PRE_ECHO] / h[PEAK]) < 1e-4
    np.testing.assert_allclose(np.mean(y**2), np.mean(click**2), rtol=1e-5)
    # Coloured as the RIR: the output's magnitude spectrum is the RIR's (scaled).
    spectrum = np.abs(np.fft.rfft(y))
    np.testing.assert_allclose(spectrum, scale * np.abs(np.fft.rfft(expected)), atol=1e-4)
    low, high = spectrum[: len(spectrum) // 8].mean(), spectrum[-len(spectrum) // 8 :].mean()
    rir_spectrum = np.abs(np.fft.rfft(h, 2 * L))
    eighth = len(rir_spectrum) // 8
    rir_tilt = rir_spectrum[:eighth].mean() / rir_spectrum[-eighth:].mean()
    np.testing.assert_allclose(low / high, rir_tilt, rtol=0.05)


def test_rir_layouts(rir):
    root, _ = rir
    assert [pathlib.Path(p).name for p in augment.rir_files(root)] == ["Room001-00001.wav"]
    assert [pathlib.Path(p).name for p in augment.rir_files(root / "real")] == [
        "RVB2014_type1_rir_room.wav"
    ]


def test_a_silent_rir_fails_naming_it(tmp_path):
    path = tmp_path / "silent.wav"
    write_wav(path, np.zeros(100), RATE)
    aug = Augmentation(RATE, probability=1.0, rir_files=[path], reverb_probability=1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="silent.wav: the impulse response"):
        aug(_speechlike(2, L), np.zeros(2), _seed())


# === Speed perturbation ===
@pytest.mark.parametrize("speed", [0.9, 1.0, 1.1])
def test_speed_perturb_changes_duration_and_pitch(speed):
    x = _tone(1000, RATE).astype("float32")
    y = speed_perturb(x, speed, RATE).numpy()
    assert len(y) == round(RATE / speed)
    assert abs(len(y) / len(x) - 1 / speed) < 1e-4
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * RATE / len(y) - 1000 * speed) < 1.0
    # Band-limited: a pure tone at full level, away from the waveform's ends.
    amplitude, residual = _tone_fit(y[100:-100], 1000 * speed)
    assert abs(amplitude - 1.0) < 1e-3 and residual < 1e-3
    if speed == 1.0:
        np.testing.assert_allclose(y, x, atol=1e-6)


def test_speed_perturb_in_a_graph_and_its_errors():
    fn = tf.function(lambda x: speed_perturb(x, 1.1, RATE), input_signature=[tf.TensorSpec([None])])
    assert fn(tf.zeros([11000])).shape == (10000,)
    for bad in (0.3, 1.234, "1.1", float("nan")):
        with pytest.raises(ValueError, match="Received: speed="):
            speed_perturb(np.zeros(10, "float32"), bad, RATE)


def test_speeds_as_new_speakers():
    num_speakers = 10
    aug = Augmentation(RATE, speeds=[0.9, 1.0, 1.1], num_speakers=num_speakers)
    assert aug.uses_speed and aug.changes_length and aug.classes_per_speaker == 3
    read = aug.read_samples(L)
    assert read > 1.1 * L
    crops = np.stack([_tone(1000, read, i) for i in range(32)]).astype("float32")
    labels = np.arange(32) % num_speakers
    out, new_labels = aug(crops, labels, _seed())
    out, new_labels = out.numpy(), new_labels.numpy()
    assert out.shape == (32, L) and new_labels.dtype == np.int64
    spectrum = np.abs(np.fft.rfft(out * np.hanning(L), axis=1))
    speeds = np.round(np.argmax(spectrum, axis=1) * RATE / L / 1000, 2)
    assert set(speeds) == {0.9, 1.0, 1.1}
    block = {1.0: 0, 0.9: 1, 1.1: 2}  # 1.0 keeps the label; the others in list order
    np.testing.assert_array_equal(new_labels, labels + [block[s] * num_speakers for s in speeds])
    # Band-limited: pure full-level tones, even at the crops' edges.
    for row, speed in zip(out, speeds):
        amplitude, residual = _tone_fit(row, 1000 * speed)
        assert abs(amplitude - 1.0) < 1e-3 and residual < 1e-3
    # The same speeds without new speakers keep the labels.
    same = Augmentation(RATE, speeds=[0.9, 1.0, 1.1], as_new_speakers=False)
    assert same.classes_per_speaker == 1
    np.testing.assert_array_equal(same(crops, labels, _seed())[1], labels)


# === Determinism and data-parallel rows ===
@pytest.fixture(scope="module")
def everything(musan, rir):
    return augmentation_from_config(
        {
            "probability": 0.8,
            "noise": {"root": str(musan), "probability": 0.6},
            "reverb": {"root": str(rir[0]), "probability": 0.6, "max_seconds": 0.1},
            "speed": {"speeds": [1.0, 0.9, 1.1]},
        },
        sample_rate=RATE, crop_samples=L, num_speakers=5,
    )


def test_same_seed_same_batch_other_seed_other_batch(everything):
    crops = _speechlike(8, everything.read_samples(L))
    labels = np.arange(8) % 5
    a, la = everything(crops, labels, _seed(5, 6))
    b, lb = everything(crops, labels, _seed(5, 6))
    c, _ = everything(crops, labels, _seed(5, 7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.allclose(a, c)


def test_rows_of_a_global_batch_match_the_whole_batch(everything):
    crops = _speechlike(8, everything.read_samples(L), seed=1)
    labels = np.arange(8) % 5
    whole, whole_labels = everything(crops, labels, _seed(9, 9))
    first, first_labels = everything(crops[:4], labels[:4], _seed(9, 9), rows=(0, 8))
    second, second_labels = everything(crops[4:], labels[4:], _seed(9, 9), rows=(4, 8))
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_array_equal(np.concatenate([first_labels, second_labels]), whole_labels)
    # Inside a tf.data map, as the pipeline runs it.
    dataset = tf.data.Dataset.from_tensors((crops, labels, _seed(9, 9))).map(everything)
    np.testing.assert_array_equal(next(iter(dataset))[0], whole)
    with pytest.raises(ValueError, match="Received: rows="):
        everything(crops[:4], labels[:4], _seed(), rows=(6, 8))


# === Config ===
def test_defaults_disable_everything_and_every_key_has_a_constraint():
    assert augmentation_from_config(None, sample_rate=RATE, crop_samples=L, num_speakers=3) is None
    assert augmentation_from_config(
        {"probability": 0.5, "noise": {"probability": 0.0}, "reverb": {"probability": 0.0}},
        sample_rate=RATE, crop_samples=L, num_speakers=3,
    ) is None
    assert augment.spec_augment_from_config({}) is None

    def leaves(mapping, where):
        for key, value in mapping.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{where}.{key}")
            else:
                yield f"{where}.{key}"

    assert set(leaves(augment.DEFAULTS, "data.augment")) == set(augment.CONSTRAINTS)


def test_spec_augment_from_config():
    layer = augment.spec_augment_from_config(
        {"spec_augment": {"freq_masks": 2, "time_masks": 1, "time_width": 5}}, seed=3
    )
    config = layer.get_config()
    names = ("freq_masks", "freq_width", "time_masks", "time_width")
    assert tuple(config[name] for name in names) == (2, 8, 1, 5)


@pytest.mark.parametrize(
    "section, key",
    [
        ({"probability": 1.5}, "data.augment.probability"),
        ({"noise": {"music": {"snr_db": [15, 5]}}}, "data.augment.noise.music.snr_db"),
        ({"noise": {"babble": {"count": [0, 3]}}}, "data.augment.noise.babble.count"),
        ({"noise": {"noise": {"weight": -1}}}, "data.augment.noise.noise.weight"),
        ({"reverb": {"max_seconds": 0}}, "data.augment.reverb.max_seconds"),
        ({"speed": {"speeds": [1.0, 0.333]}}, "data.augment.speed.speeds"),
        ({"speed": {"speeds": [1.0, 3.0]}}, "data.augment.speed.speeds"),
        ({"speed": {"speeds": []}}, "data.augment.speed.speeds"),
        ({"speed": {"as_new_speakers": "yes"}}, "data.augment.speed.as_new_speakers"),
        ({"spec_augment": {"freq_masks": -1}}, "data.augment.spec_augment.freq_masks"),
        (
            {"noise": {"probability": 1.0, **{c: {"weight": 0} for c in augment.NOISE_CATEGORIES}}},
            "data.augment.noise.probability",
        ),
    ],
)
def test_bad_values_name_their_key(section, key):
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        augmentation_from_config(section, sample_rate=RATE, crop_samples=L, num_speakers=3)


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="'data.augment.noize'.*Did you mean 'noise'"):
        augmentation_from_config({"noize": {}}, sample_rate=RATE, crop_samples=L, num_speakers=3)
    with pytest.raises(ValueError, match="'data.augment.reverb.room'"):
        augmentation_from_config(
            {"reverb": {"room": 1}}, sample_rate=RATE, crop_samples=L, num_speakers=3
        )


@pytest.mark.parametrize("kind, words", [("noise", "MUSAN"), ("reverb", "RIRS_NOISES")])
def test_a_null_root_on_user_data_names_the_key_and_the_fix(kind, words):
    other = "reverb" if kind == "noise" else "noise"
    section = {"probability": 0.6, other: {"probability": 0.0}}
    with pytest.raises(ValueError, match=f"data.augment.{kind}.root is null.*{words}"):
        augmentation_from_config(section, sample_rate=RATE, crop_samples=L, num_speakers=3)


def test_missing_folders_and_categories_name_the_folder(musan, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        augment.musan_files(tmp_path / "nowhere")
    (tmp_path / "noise").mkdir()
    write_wav(tmp_path / "noise" / "n.wav", np.zeros(100), RATE)
    section = {"probability": 1.0, "reverb": {"probability": 0.0}, "noise": {"root": str(tmp_path)}}
    with pytest.raises(ValueError, match=f"{tmp_path / 'music'}: no audio files .*'music'"):
        augmentation_from_config(section, sample_rate=RATE, crop_samples=L, num_speakers=3)
    section["noise"].update(music={"weight": 0}, babble={"weight": 0})
    aug = augmentation_from_config(section, sample_rate=RATE, crop_samples=L, num_speakers=3)
    assert aug.uses_noise and not aug.uses_reverb
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no impulse responses"):
        augment.rir_files(tmp_path / "empty")
    with pytest.raises(ValueError, match="num_speakers"):
        Augmentation(RATE, speeds=[1.0, 1.1])


def test_a_bad_noise_file_fails_like_any_audio(tmp_path):
    (tmp_path / "music").mkdir()
    bad = tmp_path / "music" / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    aug = _noise_only(tmp_path, "music", (5, 5))
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        aug(_speechlike(2, L), np.zeros(2), _seed())
    message = audio.audio_check_failure(error.value)
    assert message is not None and message.startswith(f"{bad}: ")


# === The demo's noises and impulse responses ===
def test_demo_augmentation_set(tmp_path):
    root = tmp_path / "demo"
    folder = pathlib.Path(demo_corpus.ensure_demo_augmentation(root))
    assert folder == root / "augment"
    info = json.loads((folder / "augment.json").read_text())
    assert info["version"] == demo_corpus.AUGMENT_VERSION
    files = sorted(folder.rglob("*.wav"))
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    musan = augment.musan_files(folder / "musan")
    assert {k: len(v) for k, v in musan.items()} == {"noise": 7, "music": 4, "babble": 10}
    rirs = augment.rir_files(folder / "rirs")
    assert len(rirs) == 18 and {pathlib.Path(p).parts[-3] for p in rirs} == {
        "smallroom", "mediumroom", "largeroom"
    }
    for path in rirs[::6]:
        h = audio.read_audio(path, RATE)
        peak = int(np.argmax(np.abs(h)))
        # The propagation delay's silence, then the direct path.
        assert peak > 20 and np.abs(h[: peak - 1]).max() == 0
    mtime = (folder / "augment.json").stat().st_mtime_ns
    assert demo_corpus.ensure_demo_augmentation(root) == str(folder)
    assert (folder / "augment.json").stat().st_mtime_ns == mtime  # reused, not rebuilt
    # A corpus made afterwards in the same folder keeps the set.
    demo_corpus.ensure_demo_corpus(
        root, num_train_speakers=2, num_train_utterances=2, num_test_speakers=2,
        num_test_utterances=2, min_duration=1.0, max_duration=1.0,
    )
    assert (folder / "augment.json").stat().st_mtime_ns == mtime
    # Null roots with the demo corpus take the set.
    aug = augmentation_from_config(
        {"probability": 1.0}, sample_rate=RATE, crop_samples=L, num_speakers=2, demo_root=root
    )
    assert aug.uses_noise and aug.uses_reverb and len(aug.rir_files) == 18
    out, _ = aug(_speechlike(4, L), np.zeros(4), _seed())
    assert out.shape == (4, L) and np.isfinite(out.numpy()).all()
