import os
import pickle

import numpy as np
import pytest

from keras_spk.scoring.embeddings import load_embeddings
from keras_spk.scoring.embeddings import save_embeddings

NAMES = ["id1/a/00001.wav", "id1/b/00002.wav", "id2/c/00001.wav", "idé/ü/3.wav"]
EMB = np.arange(12, dtype=np.float32).reshape(4, 3) / 7


def test_round_trip_keeps_names_order_values_and_dtype(tmp_path):
    path = tmp_path / "emb.npz"
    assert save_embeddings(path, NAMES, EMB) == str(path)
    names, embeddings = load_embeddings(path)
    assert names == NAMES and all(type(n) is str for n in names)
    assert embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, EMB)
    _, _, speakers = load_embeddings(path, with_speakers=True)
    assert speakers is None


def test_speakers_round_trip_and_file_holds_only_plain_arrays(tmp_path, monkeypatch):
    path = tmp_path / "train.npz"
    save_embeddings(path, np.array(NAMES), EMB.astype(np.float64), speakers=["id1", "id1", "id2", "idé"])
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"format", "format_version", "names", "embeddings", "speakers"}
        assert archive["names"].dtype.kind == "U"
        assert str(archive["format"]) == "keras_spk.embeddings" and int(archive["format_version"]) == 1

    monkeypatch.setattr(pickle, "loads", None)  # reading must not unpickle
    names, embeddings, speakers = load_embeddings(path, with_speakers=True)
    assert speakers == ["id1", "id1", "id2", "idé"]
    assert embeddings.dtype == np.float64 and names == NAMES


@pytest.mark.parametrize(
    "names, embeddings, speakers, message",
    [
        (NAMES[:3], EMB, None, "3 names but 4 embedding rows"),
        (
            NAMES[:2] + NAMES[:2],
            EMB,
            None,
            r"2 duplicate name\(s\), e.g. \['id1/a/00001.wav', 'id1/b/00002.wav'\]",
        ),
        (NAMES[:3] + [""], EMB, None, r"1 empty name\(s\), e.g. at row 3"),
        (
            NAMES,
            np.where(np.eye(4, 3) > 0, np.nan, EMB),
            None,
            r"3 embedding\(s\) hold NaN or Inf, e.g. row 0",
        ),
        (NAMES, np.full((4, 3), np.inf), None, "NaN or Inf"),
        (NAMES, EMB[:, 0], None, "must be a 2-D array"),
        (NAMES, EMB.reshape(4, 3, 1, 1), None, r"or 3-D \(one \[K, dim\] row of K identities per name\)"),
        (
            NAMES,
            np.where(np.arange(24).reshape(4, 2, 3) == 20, np.nan, 1.0),  # row 3, identity 0
            None,
            r"1 embedding\(s\) hold NaN or Inf, e.g. row 3",
        ),
        (NAMES, EMB, ["a", "b"], "2 speakers for 4 names"),
        ([1, 2, 3, 4], EMB, None, "`names` must be strings"),
        ([], np.zeros((0, 3)), None, "no embeddings"),
    ],
)
def test_save_refuses_bad_content(tmp_path, names, embeddings, speakers, message):
    path = tmp_path / "emb.npz"
    with pytest.raises(ValueError, match=message):
        save_embeddings(path, names, embeddings, speakers=speakers)
    assert not os.listdir(tmp_path)  # nothing written, no temporary left


def test_load_checks_files_written_by_other_means(tmp_path):
    path = tmp_path / "raw.npz"
    np.savez(path, names=np.array(["a", "a"]), embeddings=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=f"Embedding file {path}: 1 duplicate name"):
        load_embeddings(path)
    np.savez(path, names=np.array(["a", "b"]), embeddings=np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"row 0 \('a'\)"):
        load_embeddings(path)
    np.savez(path, embeddings=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=f"Cannot read embeddings {path}: no 'names' entry"):
        load_embeddings(path)
    np.savez(path, names=np.array(["a", "b"], dtype=object), embeddings=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="pickled objects"):
        load_embeddings(path)
    np.savez(path, names=np.array(["a"]), embeddings=np.zeros((1, 2)), format_version=np.array(7))
    with pytest.raises(ValueError, match="format version 7 is not supported"):
        load_embeddings(path)


def test_truncated_missing_and_non_npz_files(tmp_path):
    path = tmp_path / "emb.npz"
    save_embeddings(path, NAMES, EMB)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"Cannot read embeddings {path}: truncated"):
        load_embeddings(path)
    path.write_text("not an archive")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_embeddings(path)
    with pytest.raises(FileNotFoundError, match="nothere.npz does not exist"):
        load_embeddings(tmp_path / "nothere.npz")


def test_multi_identity_embeddings_round_trip_only_when_asked(tmp_path):
    # [n, K, dim]: two identities (speakers of a mixture) per utterance.
    multi = np.arange(24, dtype=np.float32).reshape(4, 2, 3) / 5
    path = tmp_path / "mixtures.npz"
    save_embeddings(path, NAMES, multi, speakers=["a", "b", "c", "d"])
    with np.load(path, allow_pickle=False) as archive:
        assert archive["embeddings"].shape == (4, 2, 3)
    names, embeddings, speakers = load_embeddings(path, with_speakers=True, multi_identity=True)
    assert names == NAMES and speakers == ["a", "b", "c", "d"]
    assert embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, multi)
    # A reader expecting one embedding per utterance (scoring) is told what the file holds.
    message = (
        rf"Embedding file {path} holds 2 embeddings per utterance \(shape \(4, 2, 3\).*"
        r"load_embeddings\(path, multi_identity=True\)"
    )
    with pytest.raises(ValueError, match=message):
        load_embeddings(path)
    # 2-D files read the same either way.
    save_embeddings(tmp_path / "flat.npz", NAMES, EMB)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "flat.npz", multi_identity=True)[1], EMB)
