"""The engine kit: atomic checkpoint folders, finding the newest complete one, RNG state, stopping."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from enginekit.checkpoints import atomic_folder, checkpoint_dir, latest_checkpoint, prune_checkpoints
from enginekit.runs import DistEnv, rng_state, set_rng_state, stop_everywhere

MARKER = "state.json"


def _complete(out, step):
    with atomic_folder(checkpoint_dir(out, step)) as tmp:
        (tmp / "weights.bin").write_bytes(b"w" * 10)
        (tmp / MARKER).write_text(str(step))


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_half_folder(tmp_path):
    _complete(tmp_path, 2)
    def save_then_die() -> None:
        with atomic_folder(checkpoint_dir(tmp_path, 4)) as tmp:
            (tmp / "weights.bin").write_bytes(b"partial")
            raise RuntimeError("killed mid-save")

    with pytest.raises(RuntimeError):
        save_then_die()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-2"]
    assert latest_checkpoint(tmp_path, MARKER) == checkpoint_dir(tmp_path, 2)


def test_the_newest_complete_checkpoint_wins_and_unmarked_folders_are_ignored(tmp_path):
    for step in (2, 10, 4):
        _complete(tmp_path, step)
    checkpoint_dir(tmp_path, 12).mkdir()  # a folder without its marker is not a checkpoint
    (tmp_path / "checkpoints" / "step-x").mkdir()
    assert latest_checkpoint(tmp_path, MARKER).name == "step-10"
    assert latest_checkpoint(tmp_path / "nothing", MARKER) is None
    _complete(tmp_path, 10)  # a re-save replaces the folder in one rename
    assert (checkpoint_dir(tmp_path, 10) / MARKER).read_text() == "10"
    prune_checkpoints(tmp_path, MARKER, keep=2)
    assert {p.name for p in (tmp_path / "checkpoints").iterdir() if (p / MARKER).exists()} == {"step-4", "step-10"}


def test_rng_state_round_trips_every_source_and_loads_without_pickled_code(tmp_path):
    gen = torch.Generator().manual_seed(7)
    saved = rng_state(gen)
    torch.save(saved, tmp_path / "rng.pt")
    first = (random.random(), float(np.random.rand()), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), gen)
    again = (random.random(), float(np.random.rand()), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    assert first == again


def test_rank_zero_decides_when_to_stop():
    assert stop_everywhere(lambda: True, DistEnv()) is True
    assert stop_everywhere(None, DistEnv()) is False
    # A non-main rank never asks: the answer reaches it through the all-reduce.
    assert stop_everywhere(lambda: True, DistEnv(rank=1, world_size=1)) is False


def test_metrics_file_drops_the_rows_a_resume_replays_and_writes_nothing_off_rank_0(tmp_path):
    from enginekit.metrics import MetricsFile

    metrics = MetricsFile(tmp_path / "run" / "metrics.jsonl")
    for step in (1, 2, 3):
        metrics.append({"step": step, "kind": "train", "loss": 1.0 / step})
    metrics.append({"step": 3, "kind": "eval", "accuracy": 0.5})
    metrics.truncate_after(2)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["kind"]) for r in rows] == [(1, "train"), (2, "train")]
    MetricsFile(tmp_path / "other.jsonl", enabled=False).append({"step": 1, "kind": "train"})
    assert not (tmp_path / "other.jsonl").exists()


def test_read_new_lines_waits_for_a_half_line_and_rereads_a_file_a_resume_cut(tmp_path):
    from enginekit.metrics import MetricsFile, read_new_lines

    path = tmp_path / "metrics.jsonl"
    assert read_new_lines(path, 0) == ([], 0)  # not written yet
    metrics = MetricsFile(path)
    for step in (1, 2, 3):
        metrics.append({"step": step, "kind": "train"})
    with path.open("a") as fh:
        fh.write('{"step": 4')  # a line still being written
    lines, offset = read_new_lines(path, 0)
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    assert read_new_lines(path, offset) == ([], offset)
    with path.open("a") as fh:
        fh.write(', "kind": "train"}\n')
    lines, offset = read_new_lines(path, offset)
    assert [json.loads(x)["step"] for x in lines] == [4]
    metrics.truncate_after(1)  # a resumed engine drops the steps it replays, the file shrinks
    metrics.append({"step": 2, "kind": "train"})
    lines, _ = read_new_lines(path, offset)
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
