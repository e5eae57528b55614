"""The one message for files that are not there (keras_spk.utils.file_checks)."""

import pytest

from keras_spk.utils.file_checks import check_files_exist
from keras_spk.utils.file_checks import files_not_found_error


def test_check_files_exist_returns_the_paths_joined_to_the_root(tmp_path):
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"")
    assert check_files_exist(["a.wav", "b.wav"], root=str(tmp_path)) == [
        str(tmp_path / "a.wav"),
        str(tmp_path / "b.wav"),
    ]
    absolute = [tmp_path / "a.wav"]
    assert check_files_exist(absolute) == [str(tmp_path / "a.wav")]


def test_the_message_counts_names_and_gives_the_fix(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "folder.wav").mkdir()  # a folder is not a file
    with pytest.raises(FileNotFoundError) as info:
        check_files_exist(["a.wav", "x.wav", "folder.wav"], root=str(tmp_path), source="list.txt", fix="Fix it.")
    assert str(info.value) == f"list.txt: 2 of 3 audio file(s) not found under {tmp_path}: x.wav; folder.wav. Fix it."
    with pytest.raises(FileNotFoundError) as info:
        check_files_exist([str(tmp_path / "gone.flac")], what="trial audio file")
    assert str(info.value) == (
        f"1 of 1 trial audio file(s) not found: {tmp_path / 'gone.flac'}. "
        "Check the paths and the folder they are relative to."
    )


def test_only_the_first_ten_are_named():
    missing = [f"line {i}: 'f{i}.wav'" for i in range(1, 14)]
    error = files_not_found_error(missing, "listed file")
    assert isinstance(error, FileNotFoundError)
    message = str(error)
    assert message.startswith("13 listed file(s) not found: line 1: 'f1.wav'; line 2: 'f2.wav'; ")
    assert message.endswith("line 10: 'f10.wav'; ... (3 more). Check the paths and the folder they are relative to.")
    assert "f11.wav" not in message and message.count("line ") == 10
    with pytest.raises(ValueError, match="at least one missing file"):
        files_not_found_error([])
