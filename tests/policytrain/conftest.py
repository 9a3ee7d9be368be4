"""Tiny models shared by the policytrain Django-side tests (built once a session)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory) -> Path:
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    return build_tiny_fill_pipeline(tmp_path_factory.mktemp("tiny-flux") / "base", seed=0)


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory) -> Path:
    """A tiny reward model folder with a model card covering fill only."""
    from rewardtrain.engine.template import TEMPLATE_VERSION
    from rewardtrain.engine.tiny import build_tiny_reward_model

    out = build_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm") / "final", seed=0)
    criteria = {"fill": ["structure", "consistency"]}
    card = {"template_version": TEMPLATE_VERSION, "tasks": criteria, "trained_on": criteria,
            "min_pixels": 28 * 28, "max_pixels": 112 * 112}
    (out / "onereward.json").write_text(json.dumps(card))
    return out


@pytest.fixture
def tiny_base(tiny_flux_dir, settings) -> Path:
    """Pre-seed the cached tiny base policy under this test's ARTIFACTS_ROOT (it is built once a session)."""
    from policytrain.services import tiny_base_dir

    target = tiny_base_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(tiny_flux_dir, target_is_directory=True)
    return target
