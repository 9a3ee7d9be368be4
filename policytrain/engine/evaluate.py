"""The held-out reward curve: the current policy against the base model on a fixed condition set."""

from __future__ import annotations

from collections import defaultdict

import torch

from .batches import bucket_conditions, load_batch
from .pipeline import paste_back_source
from .rewards import criterion_rows, score_criteria
from .weights import TrainState


def evaluate_heldout(state: TrainState, eval_set, split, reward_fn, criteria, vocabulary, buckets, autocast) -> dict:
    """Reward of the current policy on the held-out set: full sampling with fixed noise, scored
    against the base model's image from the same noise (computed once: the base never changes).

    Returns the metrics row ``{"step", "kind": "eval", "split", "eval/reward/<task>", ...}``.
    """
    cfg, policy = state.config, state.policy
    row: dict = {"step": state.step, "kind": "eval", "split": split}
    base_cache = state.extra.setdefault("eval_base_images", {})
    for task, conds in eval_set.items():
        per_criterion: dict[str, list[float]] = defaultdict(list)
        for size, group in bucket_conditions({task: conds}, buckets)[task].items():
            for start in range(0, len(group), cfg.batch_size):
                chunk = group[start : start + cfg.batch_size]
                images, masks = load_batch(chunk, size)
                embeds = policy.encode_prompts([c.policy_prompt for c in chunk], cfg.max_sequence_length)
                # Fixed noise per chunk: the curve compares the same inputs at every evaluation.
                gen = torch.Generator("cpu").manual_seed(cfg.seed * 7919 + start)
                inputs = policy.prepare_inputs(images.to(policy.device), masks.to(policy.device), gen)
                noise = policy.initial_noise(len(chunk), *size, gen)
                schedule = policy.schedule(cfg.policy_steps, *size)
                key = (task, size, start)
                with torch.no_grad(), autocast():
                    if key not in base_cache:
                        # The base model; a full fine-tune without a frozen copy has none: its EMA stands in.
                        has_base = not cfg.full_finetune or state.frozen_reference is not None
                        with state.base() if has_base else state.reference():
                            base = policy.decode(policy.denoise(noise, inputs, embeds, schedule, None, cfg.guidance),
                                                 *size)
                        base_cache[key] = base.cpu()
                    mine = policy.decode(policy.denoise(noise, inputs, embeds, schedule, None, cfg.guidance), *size)
                    base = base_cache[key].to(mine.device)
                    if cfg.paste_back:
                        mine = paste_back_source(mine, images, masks)
                        base = paste_back_source(base, images, masks)
                    prompts = [c.prompt for c in chunk]
                    rows = criterion_rows(criteria[task], prompts, vocabulary)
                    for criterion, values in score_criteria(reward_fn, mine, base, task, rows, prompts).items():
                        per_criterion[criterion].extend(values.float().cpu().tolist())
        for criterion, values in per_criterion.items():
            row[f"eval/reward/{task}/{criterion}"] = sum(values) / len(values)
        if per_criterion:
            row[f"eval/reward/{task}"] = sum(row[f"eval/reward/{task}/{c}"] for c in per_criterion) / len(per_criterion)
    return row
