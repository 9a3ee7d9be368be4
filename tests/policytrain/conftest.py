"""Tiny models shared by the policytrain Django-side tests (built once a session)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_flux_dir(tiny_flux_model) -> Path:
    """The suite's tiny FLUX.1-Fill folder (tests/conftest.py), under this folder's name."""
    return tiny_flux_model


@pytest.fixture(scope="session")
def tiny_reward_dir(tiny_qwen_model, tmp_path_factory) -> Path:
    """A tiny reward model folder with a model card covering fill only (a copy of the suite's tiny
    Qwen, so the card stays out of the shared folder)."""
    import shutil

    from rewardtrain.engine.template import TEMPLATE_VERSION

    out = Path(shutil.copytree(tiny_qwen_model, tmp_path_factory.mktemp("tiny-rm") / "final"))
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
