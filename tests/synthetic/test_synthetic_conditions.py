"""Conditions folder: contract format, deterministic splits, round trip."""

import json
from collections import Counter

import numpy as np
import pytest

from synthetic.conditions import read_conditions_folder, split_for, write_conditions_folder
from synthetic.oracles import score_all
from synthetic.scenes import make_condition, make_conditions


def test_round_trip(tmp_path):
    conds = make_conditions(12, seed=2) + [make_condition("extend", 1, with_prompt=False)]
    jsonl = write_conditions_folder(conds, tmp_path)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for row in rows:
        assert {"id", "task", "prompt", "source", "mask", "split"} <= set(row)
        assert row["source"].startswith("images/")
        assert (tmp_path / row["mask"]).is_file()
        assert row["split"] in {"train", "val", "test"}
    back = read_conditions_folder(tmp_path)
    assert [r.id for r in back] == [c.id for c in conds]
    for c, r in zip(conds, back, strict=True):
        assert (r.task, r.prompt, r.split) == (c.task, c.prompt, split_for(c.id))
        assert r.source.tobytes() == c.source.tobytes()
        assert r.mask.mode == "L"
        assert r.mask.tobytes() == c.mask.tobytes()
        assert r.target.tobytes() == c.target.tobytes()
        assert r.meta == c.meta
        # Oracles work on read-back records (meta survives JSON exactly).
        assert score_all(r, r.target) == pytest.approx(score_all(c, c.target))


def test_minimal_contract_rows_are_readable(tmp_path):
    c = make_condition("fill", 3)
    (tmp_path / "images").mkdir()
    c.source.save(tmp_path / "images/s.png")
    c.mask.save(tmp_path / "images/m.png")
    row = {
        "id": "x",
        "task": "fill",
        "prompt": c.prompt,
        "source": "images/s.png",
        "mask": "images/m.png",
        "split": "val",
    }
    (tmp_path / "conditions.jsonl").write_text(json.dumps(row) + "\n")
    (r,) = read_conditions_folder(tmp_path)
    assert r.target is None
    assert r.meta == {}
    assert r.split == "val"
    assert np.array_equal(np.asarray(r.mask), np.asarray(c.mask))


def test_path_traversal_rejected(tmp_path):
    row = {"id": "x", "task": "fill", "prompt": "", "source": "../evil.png", "mask": "images/m.png"}
    (tmp_path / "conditions.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="escapes"):
        read_conditions_folder(tmp_path)


def test_duplicate_ids_rejected(tmp_path):
    c = make_condition("fill", 1)
    with pytest.raises(ValueError, match="duplicate"):
        write_conditions_folder([c, c], tmp_path)


def test_split_is_deterministic_and_roughly_80_10_10():
    assert split_for("syn-fill-112-1") == split_for("syn-fill-112-1")
    counts = Counter(split_for(f"cond-{i}") for i in range(5000))
    assert abs(counts["train"] / 5000 - 0.8) < 0.03
    assert abs(counts["val"] / 5000 - 0.1) < 0.02
    assert abs(counts["test"] / 5000 - 0.1) < 0.02
