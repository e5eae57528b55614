"""tools/extract.py end to end: a tiny embedder over a few WAVs, then tools/score.py."""

import importlib.util
import os

import keras
import numpy as np
import pytest

from keras_spk import metrics
from keras_spk.data import read_audio
from keras_spk.data import write_wav
from keras_spk.scoring.embeddings import load_embeddings
from tests.inference_test import build_tiny_embedder
from tests.inference_test import keras_embed
from tests.inference_test import tone

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
    names, X, _ = extract.main(
        ["--model", exported, "--audio-root", corpus["audio"], "--trials", corpus["trials"],
         "--output", str(tmp_path / "saved.npz"), "--quiet"]
    )
    np.testing.assert_allclose(X, _expected(corpus["model"], corpus["audio"], names), atol=1e-4, rtol=0)
    assert load_embeddings(tmp_path / "saved.npz")[0] == names


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
