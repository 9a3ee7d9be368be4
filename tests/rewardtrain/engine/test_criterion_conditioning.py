"""The reward model reads the criterion: two criteria that disagree about the SAME pairs.

On every pair, fill/consistency prefers the brighter image and fill/aesthetics the darker one.
A model that ignores the query ranks each pair the same way for both criteria, so its two
(order-symmetrised) held-out accuracies add up to 1: at most one of them can reach 0.9.
"""

import hashlib
import json
import random
from pathlib import Path

import pytest

from rewardtrain.engine.evaluate import evaluate, format_table
from rewardtrain.engine.train import train

from .conftest import _pair_images, _save_png

pytestmark = pytest.mark.slow  # trains the tiny reward model to accuracy: the full suite runs it, `make check` does not

BRIGHTER_WINS, DARKER_WINS = "consistency", "aesthetics"


def make_disagreeing_snapshot(root: Path, n_train: int, n_val: int, n_test: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i, split in enumerate(["train"] * n_train + ["val"] * n_val + ["test"] * n_test):
        bright, dark = (_save_png(img, images) for img in _pair_images(rng, 56))
        for criterion, winner, loser in ((BRIGHTER_WINS, bright, dark), (DARKER_WINS, dark, bright)):
            rows.append({"pair_id": f"p{i}-{criterion}", "split": split, "task": "fill", "criterion": criterion,
                         "prompt": "", "winner": winner, "loser": loser, "sample_id": f"s{i}", "votes": 3,
                         "agreement": 1.0})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"content_hash": hashlib.sha256((root / "pairs.jsonl").read_bytes()).hexdigest(),
                "counts": {"pairs": len(rows)}, "format_version": 1, "human_ceiling": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_reward_model_learns_two_criteria_that_disagree_on_the_same_pairs(base_config, tmp_path):
    snap = make_disagreeing_snapshot(tmp_path / "snap", n_train=48, n_val=8, n_test=48)
    # The default tiny recipe (LoRA r8, lr 3e-3, batch 8) at a constant rate: the criteria cancel
    # each other at the start (loss ln 2) until the model combines criterion and image, which takes
    # longer than the single-rule fixture's 60 steps.
    cfg = base_config.replace(snapshot_dir=str(snap), max_steps=120, lr_scheduler="constant", log_every=20)
    train(cfg)
    report = evaluate(Path(cfg.output_dir) / "final", snap, split="test")
    accuracy = report["accuracy"]["fill"]
    print(f"\nheld-out accuracy: {BRIGHTER_WINS} (brighter wins) {accuracy[BRIGHTER_WINS]:.3f}, "
          f"{DARKER_WINS} (darker wins) {accuracy[DARKER_WINS]:.3f}")
    assert report["counts"]["fill"] == {BRIGHTER_WINS: 48, DARKER_WINS: 48}
    assert accuracy[BRIGHTER_WINS] >= 0.9 and accuracy[DARKER_WINS] >= 0.9, format_table(report)
