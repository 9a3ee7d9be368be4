"""The baseline learner (rewardtrain.engine.baseline): learns a visible label, not a shuffled one."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from rewardtrain.engine.baseline import BaselineConfig, load_baseline, train_baseline

from .conftest import make_snapshot

# Tiny and fast: 32 px images, a narrow network, at most 80 steps (a few seconds on one thread).
FAST = BaselineConfig(image_size=32, channels=8, embed_dim=8, max_steps=80, batch_size=16, lr=3e-3,
                      eval_every=20, patience=4)


def _snapshot(root: Path, shuffled: bool) -> Path:
    snap = make_snapshot(root, n_train=96, n_val=24, n_test=60, size=32, seed=3)
    if shuffled:  # the control: swap winner and loser on a random half, so no label is a function of pixels
        rng = random.Random(11)
        rows = [json.loads(line) for line in (snap / "pairs.jsonl").read_text().splitlines()]
        for row in rows:
            if rng.random() < 0.5:
                row["winner"], row["loser"] = row["loser"], row["winner"]
        (snap / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return snap


def test_a_visible_label_is_learned_and_the_folder_reloads(tmp_path):
    card = train_baseline(FAST, _snapshot(tmp_path / "snap", shuffled=False), tmp_path / "model")
    report = card["evaluation"]
    assert report["split"] == "test" and report["pairs"] == 60
    assert report["overall_accuracy"] > 0.8, report["table"]
    # Every task x criterion of the snapshot has a cell with its count and a Wilson interval around it.
    assert report["counts"] == {"fill": {"consistency": 20, "text_alignment": 20}, "removal": {"removal_quality": 20}}
    for task, crits in report["accuracy"].items():
        for criterion, acc in crits.items():
            lo, hi = report["interval"][task][criterion]
            assert 0.0 <= lo <= acc <= hi <= 1.0
    assert card["kind"] == "baseline" and card["config"] == FAST.to_dict()
    assert set(report["vocabulary"]["tasks"]) == {"fill", "removal"}  # the evaluated cells' names
    assert "fill/consistency" in report["table"]

    model, loaded = load_baseline(tmp_path / "model")
    assert loaded["evaluation"]["overall_accuracy"] == report["overall_accuracy"]
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    cond = torch.tensor([0, 1])
    with torch.no_grad():  # order symmetry is exact: P(a beats b) = 1 - P(b beats a)
        assert torch.allclose(model(a, b, cond), -model(b, a, cond))


def test_a_shuffled_label_stays_near_chance(tmp_path):
    report = train_baseline(FAST, _snapshot(tmp_path / "snap", shuffled=True), tmp_path / "model")["evaluation"]
    lo, hi = report["overall_interval"]
    assert lo <= 0.5 <= hi or report["overall_accuracy"] < 0.7, report["table"]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown baseline setting.*stepz"):
        BaselineConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="lr must be positive"):
        BaselineConfig(lr=0)
