"""What a step is fed: prompt embeddings cached on disk, aspect-ratio buckets, the held-out set."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import RLConfig
from .pipeline import (
    Condition,
    FillPolicy,
    condition_size,
    load_condition_tensors,
    load_conditions,
    nearest_bucket,
)

PROMPT_EMBEDS_DIR = "prompt-embeds"  # under the run folder: one file per prompt hash, reused on resume


def _all_prompts_on_disk(folder: Path, prompts: list[str], max_sequence_length: int) -> bool:
    from .pipeline import prompt_embeds_file

    return all((folder / prompt_embeds_file(p, max_sequence_length)).is_file() for p in set(prompts))


def prepare_prompt_embeds(policy: FillPolicy, folder: Path, prompts: list[str], max_sequence_length: int,
                          write: bool = True) -> None:
    """Every prompt's T5/CLIP embeddings on the CPU (from ``folder`` where cached, else encoded once
    and written there), then the text encoders are freed: RL never encodes a prompt again."""
    missing = policy.prompt_embeds_from_disk(folder, prompts, max_sequence_length)
    if missing:
        for prompt in missing:
            policy.encode_prompts([prompt], max_sequence_length)
        if write:
            policy.prompt_embeds_to_disk(folder, missing, max_sequence_length)
    policy.free_text_encoders()


def bucket_conditions(by_task: dict[str, list[Condition]], buckets: list[tuple[int, int]]
                      ) -> dict[str, dict[tuple[int, int], list[Condition]]]:
    """{task: {(height, width): conditions}}: each condition in the bucket nearest its aspect ratio."""
    out: dict[str, dict[tuple[int, int], list[Condition]]] = {}
    for task, conds in by_task.items():
        groups: dict[tuple[int, int], list[Condition]] = {}
        for cond in conds:
            width, height = condition_size(cond) if len(buckets) > 1 else (1, 1)
            groups.setdefault(nearest_bucket(width, height, buckets), []).append(cond)
        out[task] = dict(sorted(groups.items()))
    return out


def pick_bucket(groups: dict[tuple[int, int], list[Condition]], generator: torch.Generator
                ) -> tuple[tuple[int, int], list[Condition]]:
    """A bucket with probability proportional to its conditions (every condition equally likely).

    With one non-empty bucket no random number is drawn, so square-only data replays the old runs.
    """
    items = list(groups.items())
    if len(items) == 1:
        return items[0]
    weights = torch.tensor([len(c) for _, c in items], dtype=torch.float64)
    return items[int(torch.multinomial(weights, 1, generator=generator).item())]


def heldout_conditions(config: RLConfig, by_task: dict[str, list[Condition]]
                       ) -> tuple[dict[str, list[Condition]], str | None]:
    """The fixed held-out set of the reward curve: per active task, the first ``eval_conditions`` of
    ``eval_split``; a task with none there uses its first training conditions (the split logged says so)."""
    heldout = load_conditions(config.conditions_dir, config.eval_split) if config.eval_split else []
    out, splits = {}, set()
    for task in config.active_tasks:
        conds = [c for c in heldout if c.task == task][: config.eval_conditions]
        if conds:
            splits.add(config.eval_split)
        else:
            conds = by_task[task][: config.eval_conditions]
            splits.add(config.conditions_split or "all")
        out[task] = conds
    return out, "+".join(sorted(s for s in splits if s))


def load_batch(conds: list[Condition], size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source images [B,3,H,W] and masks [B,1,H,W] of ``conds`` at ``size``."""
    pairs = [load_condition_tensors(c, size) for c in conds]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
