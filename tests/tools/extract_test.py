"""tools/extract.py end to end: a tiny embedder over a few WAVs, then tools/score.py."""

import importlib.util
import os
import shutil

import keras
import numpy as np
import pytest

from keras_spk import metrics
from keras_spk.data import read_audio
from keras_spk.data import write_wav
from keras_spk.layers._framing import frame_signal
from keras_spk.scoring.embeddings import load_embeddings
from tests.helpers.embedders import build_tiny_embedder
from tests.helpers.embedders import build_tiny_multi_embedder
from tests.helpers.embedders import keras_embed
from tests.helpers.embedders import tone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


extract = _load_tool("extract")
score = _load_tool("score")

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export_saved_model runs under the TensorFlow backend only",
)

# (speaker, frequency of its voice in Hz)
SPEAKERS = (("id00", 300), ("id01", 900), ("id02", 2100))
TRIALS = """\
# VoxCeleb format: label enrolment test
1 id00/vid0/00000.wav id00/vid1/00001.wav
0 id00/vid0/00000.wav id01/vid1/00001.wav
1 id01/vid0/00000.wav id01/vid1/00001.wav
0 id01/vid0/00000.wav id02/vid1/00001.wav
1 id02/vid0/00000.wav id02/vid1/00001.wav
0 id02/vid0/00000.wav id00/vid1/00001.wav
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six WAVs in VoxCeleb layout, a trial list, a .keras embedder and a run folder."""
    folder = tmp_path_factory.mktemp("extract")
    audio = folder / "audio"
    rng = np.random.default_rng(5)
    for s, (speaker, frequency) in enumerate(SPEAKERS):
        for u in range(2):
            samples = 4000 + 700 * s + 300 * u
            waveform = tone(rng, samples, frequency * (1 + 0.05 * u))
            write_wav(audio / speaker / f"vid{u}" / f"{u:05d}.wav", waveform, 16000)
    (folder / "trials.txt").write_text(TRIALS)
    model = build_tiny_embedder()
    model.save(folder / "embedder.keras")
    run = folder / "runs" / "tiny-run"
    run.mkdir(parents=True)
    model.save(run / "embedder.keras")
    return {
        "folder": folder,
        "audio": str(audio),
        "trials": str(folder / "trials.txt"),
        "model": model,
        "run": str(run),
    }


def _run_folder(path, sample_rate, model=None):
    """A recipe run folder: run.json, config.yaml with data.sample_rate, optionally embedder.keras."""
    path.mkdir(parents=True)
    (path / "run.json").write_text('{"name": "tiny"}')
    (path / "config.yaml").write_text(f"seed: 0\ndata:\n  sample_rate: {sample_rate}\n")
    if model is not None:
        model.save(path / "embedder.keras")
    return path


@keras.saving.register_keras_serializable(package="extract_test")
class FramePooling(keras.layers.Layer):
    """Mean over frames of tanh(frame @ kernel): zeros when the input is shorter than a frame.

    A raw-waveform front-end with no sample rate; like a GRU over zero time
    steps, it gives zeros (not NaN) for an input with no complete frame.
    """

    def __init__(self, units=8, frame_length=160, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.frame_length = frame_length

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(self.frame_length, self.units), name="kernel")

    def call(self, waveforms):
        frames = frame_signal(waveforms, self.frame_length, self.frame_length // 2)
        activations = keras.ops.tanh(keras.ops.matmul(frames, self.kernel))
        count = keras.ops.maximum(keras.ops.cast(keras.ops.shape(frames)[1], "float32"), 1.0)
        return keras.ops.sum(activations, axis=1) / count

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "frame_length": self.frame_length}


def build_raw_embedder(frame_length=160, use_bias=True, seed=4):
    """A raw-waveform embedder whose layers store no sample rate; shortest input `frame_length`.

    A shorter input embeds as all zeros (`use_bias=False`) or as the Dense
    bias alone: a vector that does not depend on the audio.
    """
    waveforms = keras.Input((None,))
    x = FramePooling(8, frame_length)(waveforms)
    model = keras.Model(waveforms, keras.layers.Dense(4, use_bias=use_bias)(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _expected(model, audio, names):
    return np.stack([keras_embed(model, read_audio(os.path.join(audio, name))) for name in names])


def test_trial_utterances_from_a_keras_file_score_with_score_py(corpus, tmp_path, capsys):
    output = tmp_path / "trials.npz"
    extract.main(
        ["--model", str(corpus["folder"] / "embedder.keras"), "--audio-root", corpus["audio"],
         "--trials", corpus["trials"], "--output", str(output)]
    )
    assert f"embedding 6 utterances from {corpus['audio']}" in capsys.readouterr().out
    names, X, speakers = load_embeddings(output, with_speakers=True)
    lines = [line.split() for line in TRIALS.splitlines() if not line.startswith("#")]
    assert names == sorted({name for line in lines for name in line[1:]})
    assert speakers is None
    np.testing.assert_allclose(X, _expected(corpus["model"], corpus["audio"], names), atol=1e-5, rtol=0)

    (row,) = score.main(["--embeddings", str(output), "--trials", corpus["trials"]])
    position = {name: i for i, name in enumerate(names)}
    enroll = [position[line[1]] for line in lines]
    test = [position[line[2]] for line in lines]
    labels = np.array([int(line[0]) for line in lines])
    expected = metrics.eer(metrics.cosine_trial_scores(X, enroll, test), labels)
    assert row["n_trials"] == 6
    assert row["eer"] == pytest.approx(expected, abs=1e-12)


def test_voxceleb_folder_from_a_run_folder_stores_speakers_for_training(corpus, tmp_path):
    output = tmp_path / "train.npz"
    names, X, speakers = extract.main(
        ["--model", corpus["run"], "--audio-root", corpus["audio"], "--voxceleb",
         "--output", str(output), "--quiet"]
    )
    stored_names, stored_X, stored_speakers = load_embeddings(output, with_speakers=True)
    assert stored_names == names and len(names) == 6
    assert stored_speakers == speakers == [name.split("/")[0] for name in names]
    np.testing.assert_array_equal(stored_X, X)
    assert sorted(set(stored_speakers)) == [s for s, _ in SPEAKERS]
    expected = _expected(corpus["model"], corpus["audio"], names)
    np.testing.assert_allclose(stored_X, expected, atol=1e-5, rtol=0)
    # A training file for back-ends that learn: cosine on centred embeddings.
    (row,) = score.main(
        ["--embeddings", str(output), "--trials", corpus["trials"], "--backend", "cosine_centered",
         "--train-embeddings", str(output)]
    )
    position = {name: i for i, name in enumerate(names)}
    lines = [line.split() for line in TRIALS.splitlines() if not line.startswith("#")]
    centred = stored_X - stored_X.mean(0)
    enroll = [position[line[1]] for line in lines]
    test = [position[line[2]] for line in lines]
    scores = metrics.cosine_trial_scores(centred, enroll, test)
    labels = np.array([int(line[0]) for line in lines])
    assert row["eer"] == pytest.approx(metrics.eer(scores, labels), abs=1e-12)


def test_list_file_names_are_stored_as_written(corpus, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# two files\nid02/vid1/00001.wav\n\n  id00/vid0/00000.wav  \n")
    output = tmp_path / "list.npz"
    extract.main(
        ["--model", str(corpus["folder"] / "embedder.keras"), "--audio-root", corpus["audio"],
         "--list", str(listing), "--output", str(output), "--quiet"]
    )
    names, X = load_embeddings(output)
    assert names == ["id02/vid1/00001.wav", "id00/vid0/00000.wav"]
    np.testing.assert_allclose(X, _expected(corpus["model"], corpus["audio"], names), atol=1e-5, rtol=0)


@TF_ONLY
def test_saved_model_gives_the_keras_embeddings(corpus, tmp_path):
    from keras_spk.export import export_saved_model

    exported = export_saved_model(corpus["model"], tmp_path / "export" / "1", lengths_signature=False)
    common = ["--model", exported, "--audio-root", corpus["audio"], "--trials", corpus["trials"],
              "--output", str(tmp_path / "saved.npz"), "--quiet"]
    # A SavedModel outside its run folder does not say its sample rate.
    with pytest.raises(ValueError, match=r"export/1 does not say its sample rate .* give --sample-rate"):
        extract.main(common)
    names, X, _ = extract.main([*common, "--sample-rate", "16000"])
    np.testing.assert_allclose(X, _expected(corpus["model"], corpus["audio"], names), atol=1e-4, rtol=0)
    assert load_embeddings(tmp_path / "saved.npz")[0] == names

    # At <run>/export/1, the run's config.yaml tells it.
    run = _run_folder(tmp_path / "run", sample_rate=16000)
    os.rename(tmp_path / "export", run / "export")
    common[1] = str(run / "export" / "1")
    extract.main([*common, "--overwrite"])
    np.testing.assert_array_equal(load_embeddings(tmp_path / "saved.npz")[1], X)
    with pytest.raises(ValueError, match=r"--sample-rate 8000 is not the model's sample rate: 16000 Hz "
                                         r"\(data\.sample_rate in .*run.config\.yaml\)"):
        extract.main([*common, "--overwrite", "--sample-rate", "8000"])


def _expected_multi(model, audio, names):
    """The model's `[K, dim]` embeddings of each file, called on it alone."""
    waveforms = [read_audio(os.path.join(audio, name))[None] for name in names]
    return np.stack([keras.ops.convert_to_numpy(model(x, training=False))[0] for x in waveforms])


def test_a_multi_identity_model_stores_n_k_dim_embeddings(corpus, tmp_path, capsys):
    model = build_tiny_multi_embedder()
    model.save(tmp_path / "mixture.keras")
    output = tmp_path / "mixtures.npz"
    names, X, _ = extract.main(
        ["--model", str(tmp_path / "mixture.keras"), "--audio-root", corpus["audio"], "--voxceleb",
         "--output", str(output), "--sample-rate", "16000"]
    )
    assert X.shape == (6, 2, 8)
    assert "6 utterances, 2 embeddings of size 8 each" in capsys.readouterr().out
    stored_names, stored, speakers = load_embeddings(output, with_speakers=True, multi_identity=True)
    assert stored_names == names and speakers == [name.split("/")[0] for name in names]
    np.testing.assert_array_equal(stored, X)
    np.testing.assert_allclose(stored, _expected_multi(model, corpus["audio"], names), atol=1e-5, rtol=0)
    # Scoring, which compares one embedding per utterance, refuses the file and says why.
    with pytest.raises(ValueError, match="2 embeddings per utterance"):
        score.main(["--embeddings", str(output), "--trials", corpus["trials"]])

    if keras.backend.backend() != "tensorflow":
        return
    # The same model as a SavedModel serving [batch, 2, 8].
    from keras_spk.export import export_saved_model

    exported = export_saved_model(model, tmp_path / "export" / "1", lengths_signature=False)
    names, X, _ = extract.main(
        ["--model", exported, "--audio-root", corpus["audio"], "--voxceleb", "--overwrite",
         "--output", str(output), "--sample-rate", "16000", "--quiet"]
    )
    assert X.shape == (6, 2, 8)
    np.testing.assert_allclose(X, stored, atol=1e-4, rtol=0)


def test_model_path_errors(corpus, tmp_path):
    common = ["--audio-root", corpus["audio"], "--trials", corpus["trials"],
              "--output", str(tmp_path / "e.npz")]
    with pytest.raises(FileNotFoundError, match=r"--model .*nowhere\.keras does not exist"):
        extract.main(["--model", str(tmp_path / "nowhere.keras"), *common])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"neither a SavedModel \(no saved_model\.pb\) nor a run folder"):
        extract.main(["--model", str(tmp_path / "empty"), *common])
    (tmp_path / "model.weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model\.weights\.h5 is not a \.keras file"):
        extract.main(["--model", str(tmp_path / "model.weights.h5"), *common])
    assert not os.path.exists(tmp_path / "e.npz")


def test_input_errors_name_the_file_and_leave_no_output(corpus, tmp_path):
    model = str(corpus["folder"] / "embedder.keras")
    output = tmp_path / "out.npz"
    common = ["--model", model, "--audio-root", corpus["audio"], "--output", str(output), "--quiet"]
    listing = tmp_path / "list.txt"
    listing.write_text("id00/vid0/00000.wav\nid00/vid0/missing.wav\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: 'id00/vid0/missing.wav'.*relative to --audio-root"):
        extract.main([*common, "--list", str(listing)])
    listing.write_text("id00/vid0/00000.wav\nid00/vid0/00000.wav\n")
    with pytest.raises(ValueError, match="line 2: 'id00/vid0/00000.wav' is already listed on line 1"):
        extract.main([*common, "--list", str(listing)])
    bad_trials = tmp_path / "trials.txt"
    bad_trials.write_text("1 id00/vid0/00000.wav id09/vid0/00000.wav\n")
    with pytest.raises(FileNotFoundError, match=r"line 1: test file 'id09/vid0/00000.wav'.*--audio-root"):
        extract.main([*common, "--trials", str(bad_trials)])

    junk_root = tmp_path / "audio"
    for name, content in (("a.wav", None), ("junk.wav", b"RIFF" + b"\0" * 50)):
        (junk_root / "spk" / "vid").mkdir(parents=True, exist_ok=True)
        if content is None:
            write_wav(junk_root / "spk" / "vid" / name, np.zeros(4000), 16000)
        else:
            (junk_root / "spk" / "vid" / name).write_bytes(content)
    listing.write_text("spk/vid/a.wav\nspk/vid/junk.wav\n")
    common[3] = str(junk_root)
    with pytest.raises(ValueError, match=r"junk\.wav: not a supported audio file"):
        extract.main([*common, "--list", str(listing)])
    listing.write_text("spk/vid/a.wav\n")
    with pytest.raises(ValueError, match=r"a\.wav: 4000 samples .* fewer than the minimum of 8000"):
        extract.main([*common, "--list", str(listing), "--min-samples", "8000"])
    assert not os.path.exists(output)


def test_existing_output_needs_overwrite(corpus, tmp_path):
    output = tmp_path / "out.npz"
    output.write_bytes(b"keep me")
    listing = tmp_path / "list.txt"
    listing.write_text("id01/vid0/00000.wav\n")
    args = ["--model", corpus["run"], "--audio-root", corpus["audio"], "--list", str(listing),
            "--output", str(output), "--quiet"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        extract.main(args)
    with pytest.raises(ValueError, match="is a folder"):
        extract.main([*args[:-2], str(tmp_path), "--overwrite"])
    assert output.read_bytes() == b"keep me"
    extract.main([*args, "--overwrite"])
    assert load_embeddings(output)[0] == ["id01/vid0/00000.wav"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# === Refusals: the model's sample rate and shortest input ===


def _exit_message(argv):
    """The message `extract.py` exits with (non-zero status) for `argv`."""
    with pytest.raises(SystemExit) as info:
        extract.cli(argv)
    assert isinstance(info.value.code, str)  # sys.exit(message): exit status 1
    assert info.value.code.startswith("extract.py: error: ")
    return info.value.code


@pytest.mark.parametrize("use_bias", [False, True], ids=["zeros", "bias"])
def test_a_file_shorter_than_a_frame_is_refused_naming_it(tmp_path, use_bias):
    # Shorter than one frame, this model gives zeros or its bias alone (no NaN to notice).
    root = tmp_path / "audio"
    rng = np.random.default_rng(2)
    write_wav(root / "spk" / "vid" / "long.wav", tone(rng, 4000, 500), 16000)
    write_wav(root / "spk" / "vid" / "short.wav", tone(rng, 100, 500), 16000)
    model_file = tmp_path / "raw.keras"
    build_raw_embedder(frame_length=160, use_bias=use_bias).save(model_file)
    output = tmp_path / "out.npz"
    argv = ["--model", str(model_file), "--audio-root", str(root), "--voxceleb",
            "--output", str(output), "--sample-rate", "16000", "--quiet"]
    with pytest.raises(ValueError, match=r"short\.wav: 100 samples"):
        extract.main(argv)
    assert not output.exists()
    message = _exit_message(argv)
    assert f"{root / 'spk' / 'vid' / 'short.wav'}: 100 samples (0.006 s at 16000 Hz)" in message
    assert "fewer than the minimum of 160 samples (0.010 s)" in message
    if use_bias:
        return
    # --min-samples may raise the minimum, never lower it below the model's.
    message = _exit_message([*argv, "--min-samples", "50"])
    assert "--min-samples 50 is below the model's minimum of 160 samples (0.010 s at 16000 Hz)" in message
    assert "long.wav: 4000 samples" in _exit_message([*argv, "--min-samples", "4001"])
    assert not output.exists()
    os.remove(root / "spk" / "vid" / "short.wav")
    _, X, _ = extract.cli(argv)
    assert X.shape == (1, 4) and output.exists()


def test_the_probed_minimum_of_the_mel_model_is_its_frame(corpus, tmp_path, capsys):
    root = tmp_path / "audio"
    rng = np.random.default_rng(3)
    write_wav(root / "spk" / "vid" / "a.wav", tone(rng, 400, 500), 16000)
    write_wav(root / "spk" / "vid" / "b.wav", tone(rng, 399, 500), 16000)
    argv = ["--model", str(corpus["folder"] / "embedder.keras"), "--audio-root", str(root),
            "--voxceleb", "--output", str(tmp_path / "out.npz")]
    # 25-ms frames at 16 kHz.
    refusal = r"b\.wav: 399 samples \(0\.025 s at 16000 Hz\), fewer than the minimum of 400 samples"
    with pytest.raises(ValueError, match=refusal):
        extract.main(argv)
    assert "(16000 Hz, utterances of at least 400 samples): embedding 2 utterances" in capsys.readouterr().out


def test_a_sample_rate_other_than_the_models_is_refused(corpus, tmp_path):
    common = ["--audio-root", corpus["audio"], "--trials", corpus["trials"],
              "--output", str(tmp_path / "e.npz"), "--quiet"]
    keras_file = str(corpus["folder"] / "embedder.keras")
    with pytest.raises(ValueError, match="--sample-rate 8000 is not the model's sample rate"):
        extract.main(["--model", keras_file, *common, "--sample-rate", "8000"])
    message = _exit_message(["--model", keras_file, *common, "--sample-rate", "8000"])
    assert "--sample-rate 8000 is not the model's sample rate: 16000 Hz (its front-end layers)" in message
    assert "leave --sample-rate out or give --sample-rate 16000" in message
    # Repeating the model's rate is fine.
    names, _, _ = extract.cli(["--model", keras_file, *common, "--sample-rate", "16000"])
    assert len(names) == 6

    # A run folder whose config disagrees with the model's front-end.
    run = _run_folder(tmp_path / "run8k", sample_rate=8000, model=corpus["model"])
    message = _exit_message(["--model", str(run), *common, "--overwrite"])
    assert "declares two sample rates: 8000 Hz (data.sample_rate in" in message
    assert "16000 Hz (its front-end layers)" in message

    # A raw-waveform model says its rate only through its run folder.
    raw = build_raw_embedder()
    raw_file = tmp_path / "raw.keras"
    raw.save(raw_file)
    message = _exit_message(["--model", str(raw_file), *common, "--overwrite"])
    assert f"--model {raw_file} does not say its sample rate" in message and "give --sample-rate" in message
    run = _run_folder(tmp_path / "raw_run", sample_rate=16000, model=raw)
    for model in (run, run / "embedder.keras"):
        message = _exit_message(["--model", str(model), *common, "--overwrite", "--sample-rate", "22050"])
        assert "--sample-rate 22050 is not the model's sample rate: 16000 Hz (data.sample_rate in " in message
        assert str(run / "config.yaml") in message
    names, X, _ = extract.cli(["--model", str(run), *common, "--overwrite"])
    np.testing.assert_allclose(X, _expected(raw, corpus["audio"], names), atol=1e-5, rtol=0)


def test_a_voxceleb_tree_of_flac_ogg_and_mp3_files(corpus, tmp_path):
    fixtures = os.path.join(ROOT, "tests", "data", "fixtures")
    root = tmp_path / "audio"
    files = {"id1/v1/a.flac": "sine_16k_pcm16.flac", "id1/v2/b.mp3": "sine_16k.mp3",
             "id2/v1/c.ogg": "sine_8k_vorbis.ogg"}
    for name, fixture in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.join(fixtures, fixture), root / name)
    args = ["--model", corpus["run"], "--audio-root", str(root), "--voxceleb", "--quiet"]
    names, X, speakers = extract.main([*args, "--output", str(tmp_path / "all.npz")])
    assert names == sorted(files) and speakers == ["id1", "id1", "id2"]
    np.testing.assert_allclose(X, _expected(corpus["model"], str(root), names), atol=1e-5, rtol=0)
    names, _, _ = extract.main([*args, "--output", str(tmp_path / "flac.npz"), "--extensions", "flac"])
    assert names == ["id1/v1/a.flac"]


def test_help_says_models_are_code_from_a_trusted_source(capsys):
    with pytest.raises(SystemExit):
        extract.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "A SavedModel is a program" in help_text and "trusted source" in help_text
    assert "trusted source" in extract.load_saved_model.__doc__
