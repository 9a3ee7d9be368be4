"""pairs.jsonl is read a line at a time: memory holds the requested split's rows, not the file."""

import json
import tracemalloc
from pathlib import Path

import pytest

from rewardtrain.engine.data import SnapshotError, read_pairs


def _big_snapshot(root: Path, n: int, n_test: int) -> Path:
    root.mkdir()
    with (root / "pairs.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({
                "pair_id": f"p{i:06d}", "split": "test" if i < n_test else "train", "task": "fill",
                "criterion": "structure", "prompt": "padding " * 20, "winner": f"images/{i}-w.png",
                "loser": f"images/{i}-l.png", "sample_id": f"s{i}", "votes": 3, "agreement": 1.0}) + "\n")
    return root


def test_read_pairs_streams_the_file_and_keeps_only_the_split(tmp_path, monkeypatch):
    snap = _big_snapshot(tmp_path / "snap", n=1_500, n_test=10)
    size = (snap / "pairs.jsonl").stat().st_size
    read_pairs(_big_snapshot(tmp_path / "warm", n=2, n_test=1))  # imports and caches before measuring
    for name in ("read_text", "read_bytes"):  # a whole-file read of pairs.jsonl fails the test
        original = getattr(Path, name)

        def guarded(self, *args, _original=original, **kwargs):
            assert self.name != "pairs.jsonl", "pairs.jsonl was read whole"
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Path, name, guarded)
    peaks = []
    for _ in range(3):  # the least of three: a stray allocation elsewhere in the process is not the reader's
        tracemalloc.start()
        try:
            rows = read_pairs(snap, split="test")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    peak = min(peaks)
    assert [r.pair_id for r in rows] == [f"p{i:06d}" for i in range(10)]
    assert peak < size / 10, f"peak {peak} bytes while reading a {size}-byte file"


def test_a_bad_line_is_reported_with_its_line_number_whatever_the_split(tmp_path):
    snap = _big_snapshot(tmp_path / "snap", n=5, n_test=2)
    with (snap / "pairs.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(SnapshotError, match=r"pairs.jsonl:6 is not valid JSON"):
        read_pairs(snap, split="test")
