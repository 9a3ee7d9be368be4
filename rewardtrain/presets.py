"""Training presets: named partial RewardTrainConfig dicts, one file each in ``configs/reward/``.

A preset is ``configs/reward/<name>.json`` (the engine's own config files, usable as
``python -m rewardtrain.engine train --config``); their run-specific keys base_model /
snapshot_dir / output_dir / resume are ignored here and always filled in by
``rewardtrain.services.reward_run_start``. The files are the only source (``contracts.presets``,
the one strict loader): a broken file, or one with a key that is not a config field, is an error
naming the file, never a silent fall-back.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from django.conf import settings

from contracts.presets import load_preset_file
from contracts.presets import preset_names as _file_names

RUN_KEYS = ("base_model", "snapshot_dir", "output_dir", "resume")


def presets_dir() -> Path:
    return Path(settings.BASE_DIR) / "configs" / "reward"


def _config_fields() -> set[str]:
    from .engine.config import RewardTrainConfig  # torch-free module

    return {f.name for f in dataclasses.fields(RewardTrainConfig)}


def preset_names() -> list[str]:
    return _file_names(presets_dir())


def load_preset(name: str) -> dict:
    """The preset's config fields (without run-specific keys).

    Raises KeyError (contracts.presets.UnknownPreset) if unknown, PresetError if its file is broken.
    """
    data = load_preset_file(presets_dir(), name, fields=_config_fields(), what="reward preset")
    return {k: v for k, v in data.items() if k not in RUN_KEYS}
