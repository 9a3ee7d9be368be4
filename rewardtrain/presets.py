"""Training presets: named partial RewardTrainConfig dicts.

A preset is read from ``configs/reward/<name>.json`` when that file exists (the engine's own
config files; their run-specific keys base_model / snapshot_dir / output_dir are ignored), else
from the built-in table below. Run-specific keys are always filled in by
``rewardtrain.services.reward_run_start``.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

RUN_KEYS = ("base_model", "snapshot_dir", "output_dir", "resume")

BUILTIN: dict[str, dict] = {
    # CPU, seconds: tests, the demo, a laptop. Tiny model, tiny images, big LR for LoRA on tiny dims.
    "tiny": {
        "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lr": 3e-3, "batch_size": 8, "max_steps": 30,
        "min_pixels": 28 * 28, "max_pixels": 56 * 56, "gradient_checkpointing": False, "save_every": 10,
        "log_every": 1, "eval_every": 0, "eval_batch_size": 16, "dtype": "float32",
    },
    # One GPU, Qwen2.5-VL-7B-Instruct class: LoRA r16/alpha32, lr 1e-4, global batch 16 (paper), bf16.
    "single_gpu": {
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lr": 1e-4, "batch_size": 16, "epochs": 1.0,
        "max_steps": 0, "warmup_steps": 50, "lr_scheduler": "cosine", "gradient_checkpointing": True,
        "save_every": 200, "log_every": 10, "eval_every": 500, "dtype": "bfloat16", "device": "cuda",
    },
    # Several GPUs under torchrun/accelerate (docs/reward-model.md): same recipe, larger global batch.
    "multi_gpu": {
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lr": 1e-4, "batch_size": 32, "epochs": 1.0,
        "max_steps": 0, "warmup_steps": 50, "lr_scheduler": "cosine", "gradient_checkpointing": True,
        "save_every": 200, "log_every": 10, "eval_every": 500, "dtype": "bfloat16", "device": "cuda",
    },
}


def presets_dir() -> Path:
    return Path(settings.BASE_DIR) / "configs" / "reward"


def _config_fields() -> set[str]:
    import dataclasses

    from .engine.config import RewardTrainConfig  # torch-free module

    return {f.name for f in dataclasses.fields(RewardTrainConfig)}


def _read_file(path: Path) -> dict | None:
    """A JSON file is a preset when every key (except "_comment"-style keys) is a config field."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    return data if data and set(data) <= _config_fields() else None


def preset_names() -> list[str]:
    names = set(BUILTIN)
    if presets_dir().is_dir():
        names |= {p.stem for p in presets_dir().glob("*.json") if _read_file(p) is not None}
    return sorted(names)


def load_preset(name: str) -> dict:
    """The preset's config fields (without run-specific keys); KeyError if unknown."""
    path = presets_dir() / f"{name}.json"
    # The name check keeps a preset name from walking out of configs/reward/.
    data = _read_file(path) if name.replace("_", "").replace("-", "").isalnum() and path.is_file() else None
    if data is None:
        if name not in BUILTIN:
            raise KeyError(name)
        data = dict(BUILTIN[name])
    return {k: v for k, v in data.items() if k not in RUN_KEYS}
