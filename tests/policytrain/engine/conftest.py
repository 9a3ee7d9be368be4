"""Fixtures: a tiny FLUX.1-Fill pipeline folder and a 64 px conditions folder (built once per session)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SIZE = 64


@pytest.fixture(scope="session")
def tiny_flux(tiny_flux_model) -> Path:
    """The suite's tiny FLUX.1-Fill folder (tests/conftest.py), under this folder's name."""
    return tiny_flux_model


def write_conditions(root: Path, rows: list[dict], size: int = SIZE, mask_size: int | None = None) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, row in enumerate(rows):
        img = (rng.random((size, size, 3)) * 200).astype(np.uint8)
        m = mask_size or size
        mask = np.zeros((m, m), np.uint8)
        mask[m // 4 : 3 * m // 4, m // 4 : 3 * m // 4] = 255
        Image.fromarray(img).save(root / f"images/src{i}.png")
        Image.fromarray(mask).save(root / f"images/mask{i}.png")
        lines.append(json.dumps({"id": f"c{i}", "source": f"images/src{i}.png", "mask": f"images/mask{i}.png",
                                 "split": "train", **row}))
    (root / "conditions.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def conditions_dir(tmp_path_factory) -> Path:
    rows = [
        {"task": "fill", "prompt": "a red cat"},
        {"task": "fill", "prompt": "a blue sky"},
        {"task": "extend", "prompt": "a tree"},
        {"task": "extend", "prompt": ""},
        {"task": "removal", "prompt": ""},
        {"task": "removal", "prompt": "car"},
    ]
    return write_conditions(tmp_path_factory.mktemp("conditions"), rows)


def center_brightness(first, second, task, criterion, prompts):
    """Toy differentiable reward: mean brightness of the masked (centre) square of the policy image."""
    h, w = first.shape[-2:]
    return first[:, :, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean(dim=(1, 2, 3))


@pytest.fixture
def rl_config(tiny_flux, conditions_dir, tmp_path):
    from policytrain.engine.config import RLConfig

    def make(**changes):
        base = dict(
            base_policy=str(tiny_flux), conditions_dir=str(conditions_dir), output_dir=str(tmp_path / "run"),
            resolution=SIZE, batch_size=2, max_steps=2, reference_steps=2, policy_steps=3, t_range=(0.3, 0.7),
            max_sequence_length=16, learning_rate=1e-2, save_every=0, sample_grid_every=0, log_every=1,
            gradient_checkpointing=False,
        )
        base.update(changes)
        return RLConfig(**base)

    return make
