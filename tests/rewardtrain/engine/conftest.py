"""Fixtures for the reward engine tests: a tiny Qwen2.5-VL folder and synthetic snapshots.

The synthetic criterion is learnable from pixels: the winner is brighter than the loser inside
the (central) mask, and both images share the same background.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)

CRITERIA_USED = [("fill", "consistency"), ("fill", "text_alignment"), ("removal", "removal_quality")]


def _save_png(img: Image.Image, images_dir: Path) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    name = hashlib.sha256(data).hexdigest() + ".png"
    (images_dir / name).write_bytes(data)
    return f"images/{name}"


def _pair_images(rng: random.Random, size: int) -> tuple[Image.Image, Image.Image]:
    """Same noisy background; the winner's masked centre is clearly brighter than the loser's."""
    bg = rng.randint(40, 215)
    base = Image.new("L", (size, size), bg)
    px = base.load()
    for y in range(size):
        for x in range(size):
            px[x, y] = max(0, min(255, bg + rng.randint(-20, 20)))
    lo = rng.randint(0, 140)
    hi = rng.randint(lo + 80, 255)
    q = size // 4
    winner, loser = base.copy(), base.copy()
    winner.paste(hi, (q, q, size - q, size - q))
    loser.paste(lo, (q, q, size - q, size - q))
    return winner.convert("RGB"), loser.convert("RGB")


def make_snapshot(
    root: Path, n_train: int = 48, n_val: int = 8, n_test: int = 24, size: int = 56, seed: int = 0
) -> Path:
    """Write a synthetic snapshot folder (contract layout) and return it."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    images = root / "images"
    images.mkdir(exist_ok=True)
    rows = []
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    for i, split in enumerate(splits):
        task, criterion = CRITERIA_USED[i % len(CRITERIA_USED)]
        winner, loser = _pair_images(rng, size)
        rows.append({
            "pair_id": f"p{i}", "split": split, "task": task, "criterion": criterion,
            "prompt": "a bright square" if criterion == "text_alignment" else "",
            "winner": _save_png(winner, images), "loser": _save_png(loser, images),
            "sample_id": f"s{i}", "votes": 3, "agreement": 1.0,
        })
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {
        "content_hash": hashlib.sha256((root / "pairs.jsonl").read_bytes()).hexdigest(),
        "created_at": "2026-01-01T00:00:00Z", "filter": {}, "aggregation": "majority",
        "counts": {"pairs": len(rows)}, "format_version": 1,
        "human_ceiling": {"fill": {"consistency": 0.9, "text_alignment": 0.95}, "removal": {"removal_quality": 0.92}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_qwen_model) -> Path:
    """The suite's tiny Qwen2.5-VL folder (tests/conftest.py), under this folder's name."""
    return tiny_qwen_model


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory) -> Path:
    return make_snapshot(tmp_path_factory.mktemp("snap") / "snapshot")


@pytest.fixture
def base_config(tiny_model_dir, snapshot_dir, tmp_path):
    """A fast tiny-model config; tests override fields with `.replace(...)`."""
    from rewardtrain.engine.config import RewardTrainConfig

    return RewardTrainConfig(
        base_model=str(tiny_model_dir), snapshot_dir=str(snapshot_dir), output_dir=str(tmp_path / "run"),
        lora_r=8, lora_alpha=16, lora_dropout=0.0, lr=3e-3, batch_size=8, max_steps=6,
        min_pixels=28 * 28, max_pixels=56 * 56, gradient_checkpointing=False,
        save_every=0, log_every=1, device="cpu", eval_batch_size=16, warmup_steps=0,
    )


@pytest.fixture
def synthetic_snapshot():
    """The `make_snapshot` factory, for tests that need a snapshot of their own size."""
    return make_snapshot
