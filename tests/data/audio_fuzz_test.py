"""Mutated audio files through the reader and the training pipeline (see tests/data/audio_fuzz.py).

Every file must end as a named error or as plausible audio: no hang (30 s a
case), no memory blow-up (3 GB resident), no crash, no error without the
file's name, no implausible audio.
"""

import pytest

from tests.data import audio_fuzz


def fuzz(tmp_path, count, seed):
    cases = audio_fuzz.make_cases(str(tmp_path), count, seed)
    results = audio_fuzz.run_cases(cases, time_limit=30.0, memory_limit=3 * 2**30)
    counts, bad = audio_fuzz.summarise(cases, results)
    assert not bad, "\n".join(bad[:20])
    for through in ("reader", "training", "dataset"):
        # The generator makes both kinds: files that still decode and files that cannot.
        assert counts[through]["named"] > 0 and counts[through]["ok"] > 0, counts
    expected = {"reader": count, "training": count, "dataset": (count + 19) // 20}
    assert {t: sum(c.values()) for t, c in counts.items()} == expected
    return counts


def test_mutated_files_are_named_errors_or_plausible_audio(tmp_path):
    fuzz(tmp_path, 280, seed=1)


@pytest.mark.slow
def test_full_size_fuzz_run(tmp_path):
    fuzz(tmp_path, 1200, seed=0)
