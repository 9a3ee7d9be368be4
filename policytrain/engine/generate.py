"""Generation job: fill every condition of a conditions folder with a (trained) policy.

Writes ``<out_dir>/outputs.jsonl`` (one row per condition × seed: ``condition_id``, ``seed``,
``image`` relative to ``out_dir``, ``params``) and the PNGs under ``<out_dir>/images/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from contracts.cards import POLICY_CARD, read_policy_card

from .config import GenerateConfig
from .pipeline import FillPolicy, load_condition_tensors, load_conditions, tensor_to_pil


def _resolve_base(config: GenerateConfig) -> str:
    if config.base_policy:
        return config.base_policy
    if not (Path(config.weights) / POLICY_CARD).is_file():
        raise ValueError(f"{config.weights} has no policy.json; pass base_policy explicitly")
    return read_policy_card(config.weights)["base_policy"]


def generate_candidates(
    config: GenerateConfig, progress: Callable[[dict], None] | None = None, policy: FillPolicy | None = None
) -> dict:
    """Generate one image per (condition, seed); returns a summary. ``policy`` skips loading (tests, reuse)."""
    conditions = load_conditions(config.conditions_dir, config.split)
    if not conditions:
        raise ValueError(f"conditions folder {config.conditions_dir} has no conditions")
    device = "cuda" if config.device == "auto" and torch.cuda.is_available() else config.device
    device = "cpu" if device == "auto" else device
    if policy is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        policy = FillPolicy.from_pretrained(_resolve_base(config), device=device, dtype=dtype, weights=config.weights)
    out = Path(config.out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    params = {
        "base_policy": config.base_policy,
        "weights": config.weights,
        "num_inference_steps": config.num_inference_steps,
        "guidance": config.guidance,
        "true_cfg": config.true_cfg,
        "negative_prompt": config.negative_prompt,
        "max_sequence_length": config.max_sequence_length,
        "paste_back": config.paste_back,
    }
    total = len(conditions) * len(config.seeds)
    done = 0
    with (out / "outputs.jsonl").open("w") as fh:
        for cond in conditions:
            image, mask = load_condition_tensors(cond)
            for seed in config.seeds:
                result = policy.generate(
                    image,
                    mask,
                    [cond.policy_prompt],
                    seed=seed,
                    steps=config.num_inference_steps,
                    guidance=config.guidance,
                    true_cfg=config.true_cfg,
                    negative_prompt=config.negative_prompt,
                    max_sequence_length=config.max_sequence_length,
                    paste_back=config.paste_back,
                )
                rel = f"images/{cond.id}-seed{seed}.png"
                tensor_to_pil(result[0]).save(out / rel)
                row = {"condition_id": cond.id, "seed": seed, "image": rel, "params": params}
                fh.write(json.dumps(row) + "\n")
                done += 1
                if progress is not None:
                    progress({"step": done, "total_steps": total, "kind": "generate", "condition_id": cond.id})
    return {"outputs": str(out / "outputs.jsonl"), "count": done}
