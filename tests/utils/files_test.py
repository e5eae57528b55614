"""Tests of keras_spk.utils.files: atomic writes and the result files."""

import json
import os

import pytest

from keras_spk.utils import files
from keras_spk.utils.files import check_result_metadata
from keras_spk.utils.files import write_result_files

ROWS = [
    {"system": "cosine", "eer": 0.05, "seconds": None},
    {"system": "a,b", "eer": 0.125, "extra": 'say "hi"'},
]


def _listing(folder):
    return sorted(os.listdir(folder))


def test_write_result_files_writes_table_json_and_csv(tmp_path):
    folder = tmp_path / "new" / "results"
    written = write_result_files(
        folder, "eer table", iter(ROWS), table_stem="t", results_stem="r", metadata={"seed": 3}
    )
    assert written == [str(folder / "t.txt"), str(folder / "r.json"), str(folder / "r.csv")]
    assert _listing(folder) == ["r.csv", "r.json", "t.txt"]
    assert (folder / "t.txt").read_text() == "eer table\n"
    # Metadata first, then the rows, in the order given (not sorted), indented by 2.
    text = (folder / "r.json").read_text()
    assert text.splitlines()[:4] == ["{", '  "seed": 3,', '  "results": [', "    {"]
    assert text.endswith("}\n")
    assert json.loads(text) == {"seed": 3, "results": ROWS}
    # Columns in first-seen order; None and a missing key are empty cells; quoting as csv does.
    assert (folder / "r.csv").read_text() == (
        'system,eer,seconds,extra\ncosine,0.05,,\n"a,b",0.125,,"say ""hi"""\n'
    )


def test_default_names_and_no_metadata(tmp_path):
    written = write_result_files(tmp_path, "x", ROWS[:1])
    assert [os.path.basename(p) for p in written] == ["table.txt", "results.json", "results.csv"]
    assert json.loads((tmp_path / "results.json").read_text()) == {"results": ROWS[:1]}
    assert (tmp_path / "results.csv").read_text() == "system,eer,seconds\ncosine,0.05,\n"


def test_rewriting_replaces_every_file(tmp_path):
    write_result_files(tmp_path, "old", ROWS)
    write_result_files(tmp_path, "new", ROWS[1:])
    assert (tmp_path / "table.txt").read_text() == "new\n"
    assert json.loads((tmp_path / "results.json").read_text()) == {"results": ROWS[1:]}
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == "system,eer,extra"


def test_check_result_metadata():
    assert check_result_metadata(None) is None
    metadata = {"backend": "torch"}
    assert check_result_metadata(metadata) is metadata
    for bad in ({"results": 1}, [("seed", 1)], "seed=1"):
        with pytest.raises(ValueError, match="`metadata` must be a dict without a 'results' key"):
            check_result_metadata(bad)


def test_bad_arguments_are_named_and_write_nothing(tmp_path):
    folder = tmp_path / "out"
    with pytest.raises(ValueError, match="without a 'results' key"):
        write_result_files(folder, "x", ROWS, metadata={"results": []})
    with pytest.raises(ValueError, match=r"`rows` must be a non-empty list of dicts.*rows=\[\]"):
        write_result_files(folder, "x", [])
    with pytest.raises(ValueError, match=r"non-dict rows at positions \[1\]"):
        write_result_files(folder, "x", [ROWS[0], ("eer", 0.1)])
    with pytest.raises(TypeError, match="`table` must be a string"):
        write_result_files(folder, ["x"], ROWS)
    with pytest.raises(ValueError, match=r"`table_stem` .* Received: table_stem='a/b'"):
        write_result_files(folder, "x", ROWS, table_stem="a/b")
    with pytest.raises(ValueError, match=r"Received: results_stem=''"):
        write_result_files(folder, "x", ROWS, results_stem="")
    assert not folder.exists()


def test_unserialisable_rows_raise_before_any_file_is_written(tmp_path):
    folder = tmp_path / "out"
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_result_files(folder, "x", [{"eer": object()}])
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_result_files(folder, "x", ROWS, metadata={"model": object()})
    assert not folder.exists()


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    # A lone surrogate cannot be encoded as UTF-8: the first file fails while being written.
    with pytest.raises(UnicodeEncodeError):
        write_result_files(tmp_path, "bad \ud800", ROWS)
    assert _listing(tmp_path) == []


def test_a_failed_rename_keeps_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    write_result_files(tmp_path, "old", ROWS)
    old_json = (tmp_path / "results.json").read_text()
    replace = os.replace

    def failing_replace(src, dst):
        if os.fspath(dst).endswith(".json"):
            raise OSError("disk full")
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_result_files(tmp_path, "new", ROWS[:1])
    # The table before the failure is new; the JSON is the old one; nothing else is there.
    assert _listing(tmp_path) == ["results.csv", "results.json", "table.txt"]
    assert (tmp_path / "table.txt").read_text() == "new\n"
    assert (tmp_path / "results.json").read_text() == old_json
