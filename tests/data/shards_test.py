"""Tests of sharded corpora: packing, resuming, random access with every sampler, streaming."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from keras_spk.data import evaluation_dataset
from keras_spk.data import read_audio
from keras_spk.data import read_dataset
from keras_spk.data import training_dataset
from keras_spk.data import write_wav
from keras_spk.data import shards
from keras_spk.data.audio import audio_error_message
from keras_spk.data.pipeline import _epoch_stream
from keras_spk.data.samplers import sampler_dataset

CROP = 400
SHARD_SIZE = 6  # 22 utterances -> 4 shards of 5 or 6


def make_corpus(root):
    """VoxCeleb layout, 4 speakers: 16-kHz WAVs (some shorter than the crop, all ending in
    zero bytes), a FLAC and an 8-kHz WAV (the general decoder)."""
    rng = np.random.default_rng(0)
    for s in range(4):
        for u in range(5):
            x = 0.1 * rng.standard_normal(250 + 83 * (5 * s + u)).clip(-3, 3)
            x[-16:] = 0.0
            write_wav(root / f"id{s}" / f"v{u % 2}" / f"{u}.wav", x, 16000)
    soundfile.write(root / "id1" / "v0" / "9.flac", 0.1 * np.sin(np.arange(900) * 0.3), 16000,
                    subtype="PCM_16")
    write_wav(root / "id2" / "v1" / "9.wav", 0.1 * np.sin(np.arange(500) * 0.2), 8000)
    return read_dataset("voxceleb", root)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    files = make_corpus(folder / "corpus")
    summary = shards.write_shards(files, folder / "shards", shard_size=SHARD_SIZE, workers=2)
    return files, folder / "shards", summary


def contents_of(paths):
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(shards.read_contents)
    return [bytes(x) for x in dataset.as_numpy_iterator()]


def test_shards_hold_the_files_bytes(packed):
    files, folder, summary = packed
    assert (summary.utterances, summary.speakers, summary.shards) == (22, 4, 4)
    assert (summary.written, summary.kept) == (4, 0)
    listed = read_dataset("shards", folder)
    assert listed.speakers == files.speakers and listed.root == str(folder)
    originals = [open(p, "rb").read() for p in files.paths]
    assert all(o.endswith(b"\0" * 8) for o in originals[:5])  # trailing zeros survive
    assert [shards.read_record(p) for p in listed.paths] == originals
    # Shard references and plain paths alike, in one graph.
    assert contents_of(listed.paths + files.paths[:3]) == originals + originals[:3]
    # A listed utterance is named by its key, as the file is by its relative path.
    assert listed.relative_paths() == [
        os.path.relpath(p, files.root).replace(os.sep, "/") for p in files.paths
    ]
    shard, offset, length, crc32, key = shards.parse_shard_reference(listed.paths[7])
    assert key == os.path.relpath(files.paths[7], files.root).replace(os.sep, "/")
    assert os.path.dirname(shard) == str(folder) and length == len(originals[7])
    with open(shard, "rb") as f:  # the file's bytes as they are, inside the shard
        f.seek(offset)
        assert f.read(length) == originals[7]
    assert listed.paths[7] == shards.shard_reference(shard, offset, length, crc32, key)


@pytest.mark.parametrize("name, settings", [
    ("random", {}),
    ("pk", {"num_speakers": 2, "num_utterances": 2}),
])
def test_the_same_epochs_from_shards_and_from_files(packed, name, settings):
    files, folder, _ = packed
    listed = read_dataset("shards", folder)
    batches = []
    for corpus in (files, listed):
        dataset, steps = sampler_dataset(
            name, corpus.paths, corpus.labels(), crop_samples=CROP, batch_size=4, seed=3,
            start_epoch=1, **settings,
        )
        batches.append([tuple(np.asarray(t) for t in inputs)
                        for (inputs,) in dataset.take(2 * steps).as_numpy_iterator()])
    assert len(batches[0]) == 2 * steps == 10
    for from_files, from_shards in zip(*batches):
        for a, b in zip(from_files, from_shards):
            np.testing.assert_array_equal(a, b)
    assert np.abs(batches[0][0][0]).max() > 0.01  # real audio, not silence


def test_evaluation_reads_shard_references(packed):
    files, folder, _ = packed
    listed = read_dataset("shards", folder)
    picks = [0, 20, 21]  # a WAV, the FLAC, the 8-kHz WAV
    got = [w[0] for _, w, _ in evaluation_dataset([listed.paths[i] for i in picks]).as_numpy_iterator()]
    for i, waveform in zip(picks, got):
        np.testing.assert_array_equal(waveform, read_audio(files.paths[i]))


def streamed_positions(source, batch_size, seed, start_epoch, epochs, replica=None, **kwargs):
    settings = {"shuffle_buffer": 5, "cycle_length": 2, **kwargs}
    batches, steps = shards._stream_epochs(
        source, None, batch_size, seed, start_epoch, replica, settings["shuffle_buffer"],
        settings["cycle_length"], tf.data.AUTOTUNE,
    )
    elements = list(batches.take(epochs * steps).as_numpy_iterator())
    return [[int(i) for e in elements[k * steps : (k + 1) * steps] for i in e[3]]
            for k in range(epochs)], elements, steps


def test_a_streamed_epoch_holds_the_random_samplers_utterances(packed):
    files, folder, _ = packed
    labels = files.labels()
    positions, elements, steps = streamed_positions(folder, 6, seed=3, start_epoch=2, epochs=2)
    assert steps == 22 // 6
    order, _, _ = _epoch_stream(list(range(22)), labels, 6, 3, True, 2)
    sampled = [int(p) for p, _ in order.take(2 * steps * 6).as_numpy_iterator()]
    for k in range(2):
        assert sorted(positions[k]) == sorted(sampled[k * 18 : (k + 1) * 18])
    assert positions[0] != sampled[:18]  # streamed in another order
    for contents, names, batch_labels, batch_positions, _ in elements:
        np.testing.assert_array_equal(batch_labels, labels[batch_positions])
        for name, position in zip(names, batch_positions):
            assert name.decode().endswith("#" + files.relative_paths()[position].replace(os.sep, "/"))
    # A function of (seed, epoch): epoch 3 on its own is the second epoch above.
    assert streamed_positions(folder, 6, seed=3, start_epoch=3, epochs=1)[0][0] == positions[1]
    # The crops: batches of the shape asked, labelled.
    dataset, steps = shards.shard_stream_dataset(folder, CROP, 6, seed=3, start_epoch=2,
                                                 shuffle_buffer=5, cycle_length=2)
    crops, batch_labels = next(iter(dataset))
    assert crops.shape == (6, CROP) and steps == 3
    np.testing.assert_array_equal(batch_labels, labels[positions[0][:6]])


def test_a_stream_of_a_subset_keeps_to_it(packed):
    files, folder, _ = packed
    subset = read_dataset("shards", folder).select(range(0, 22, 2))
    positions, _, steps = streamed_positions(subset, 5, seed=0, start_epoch=0, epochs=1)
    order, _, _ = _epoch_stream(list(range(0, 22, 2)), subset.labels(), 5, 0, True, 0)
    assert steps == 2
    assert sorted(positions[0]) == sorted(int(p) for p, _ in order.take(10).as_numpy_iterator())


def test_replicas_stream_disjoint_shards_covering_all(packed):
    files, folder, _ = packed
    index = shards.load_shard_index(folder)
    for count in (2, 3, 4):
        owned = [shards.replica_shards(4, (r, count)) for r in range(count)]
        assert sorted(sum(owned, [])) == [0, 1, 2, 3]
        assert all(i % count == r for r, mine in enumerate(owned) for i in mine)
    seen = []
    for r in range(2):
        positions, _, steps = streamed_positions(folder, 4, seed=1, start_epoch=0, epochs=1,
                                                 replica=(r, 2))
        assert steps == 5  # the smaller share: 11 records // 2 per batch
        assert {int(index.shard[p]) % 2 for p in positions[0]} == {r}
        seen.append(set(positions[0]))
    assert not seen[0] & seen[1]
    with pytest.raises(ValueError, match="5 workers cannot each stream their own shards from 4"):
        shards.shard_stream_dataset(folder, CROP, 5, replica=(0, 5))


def test_an_interrupted_writer_resumes(tmp_path, packed, monkeypatch):
    files, reference, _ = packed
    folder = tmp_path / "shards"
    write = shards._write_shard

    def failing(out_dir, name, *args):
        if name.startswith("shard-00002"):
            raise OSError("disk full")
        return write(out_dir, name, *args)

    monkeypatch.setattr(shards, "_write_shard", failing)
    with pytest.raises(OSError, match="disk full"):
        shards.write_shards(files, folder, shard_size=SHARD_SIZE, workers=1)
    monkeypatch.undo()
    assert not (folder / "index.json").exists()  # the index comes last
    done = sorted(p.name for p in folder.glob("*.tfrecord"))
    assert "shard-00002-of-00004.tfrecord" not in done and done
    mtimes = {name: os.stat(folder / name).st_mtime_ns for name in done}
    (folder / ".shard-00002-of-00004.tfrecord.1.2.tmp").write_bytes(b"half a shard")

    summary = shards.write_shards(files, folder, shard_size=SHARD_SIZE, workers=2)
    assert (summary.written, summary.kept) == (4 - len(done), len(done))
    assert {name: os.stat(folder / name).st_mtime_ns for name in done} == mtimes
    assert not list(folder.glob(".*.tmp"))
    for name in ["index.json"] + [f"shard-0000{i}-of-00004.tfrecord" for i in range(4)]:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name

    # Index and one shard lost: the shard alone is written again.
    (folder / "index.json").unlink()
    (folder / "shard-00001-of-00004.tfrecord").unlink()
    mtimes = {p.name: os.stat(p).st_mtime_ns for p in folder.glob("*.tfrecord")}
    summary = shards.write_shards(files, folder, shard_size=SHARD_SIZE, workers=2)
    assert (summary.written, summary.kept) == (1, 3)
    assert {name: os.stat(folder / name).st_mtime_ns for name in mtimes} == mtimes
    assert (folder / "index.json").read_bytes() == (reference / "index.json").read_bytes()
    # Nothing left to do.
    assert shards.write_shards(files, folder, shard_size=SHARD_SIZE).written == 0


def test_another_corpus_is_not_packed_over(tmp_path, packed):
    files, _, _ = packed
    shards.write_shards(files.select(range(10)), tmp_path, shard_size=SHARD_SIZE)
    for other, size in ((files, SHARD_SIZE), (files.select(range(10)), 3)):
        with pytest.raises(ValueError, match="holds the shards of another corpus"):
            shards.write_shards(other, tmp_path, shard_size=size)


def flip_byte(folder, position, at):
    index = json.loads((folder / "index.json").read_text())
    columns = index["utterances"]
    shard = folder / index["shards"][columns["shard"][position]]["file"]
    data = bytearray(shard.read_bytes())
    data[columns["offset"][position] + at] ^= 0x40
    shard.write_bytes(bytes(data))
    return str(shard), columns["key"][position]


def test_a_damaged_shard_is_an_error_naming_shard_and_key(tmp_path, packed):
    files, reference, _ = packed
    folder = tmp_path / "damaged"
    shutil.copytree(reference, folder)
    shard, key = flip_byte(folder, 7, at=120)
    listed = read_dataset("shards", folder)  # the size is right: found on reading
    with pytest.raises(ValueError) as info:
        shards.read_record(listed.paths[7])
    message = str(info.value)
    assert f"{shard} (record {key!r}" in message and "checksum mismatch" in message
    dataset = training_dataset(listed.paths, listed.labels(), CROP, 22, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(dataset)
    assert audio_error_message(info.value) == message
    problems = shards.verify_shards(folder)
    assert len(problems) == 3 and problems[1] == message
    assert problems[0].startswith(f"{shard}: the shard's SHA-256 differs")
    assert problems[2].startswith(f"{shard}: its records cannot be read through (corrupted record")
    assert shards.verify_shards(reference) == []


def test_a_truncated_index_or_shard_is_a_clear_error(tmp_path, packed):
    _, reference, _ = packed
    folder = tmp_path / "truncated"
    shutil.copytree(reference, folder)
    text = (folder / "index.json").read_text()
    (folder / "index.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"index.json: the shard index is truncated or corrupt"):
        read_dataset("shards", folder)
    (folder / "index.json").write_text(text)
    shard = folder / "shard-00003-of-00004.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"{shard}: the shard is .* bytes, the index says"):
        read_dataset("shards", folder)
    (folder / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="holds no index.json"):
        read_dataset("shards", folder)
