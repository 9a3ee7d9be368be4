"""Candidate fills of synthetic conditions and their oracle scores.

``generate_images`` runs a fill policy on conditions as the platform's generation jobs do; the
oracle then scores every fill per criterion, and ``oracle_pairs`` turns candidates into the
oracle-ordered pairs a reward model is measured on. Plain Python; the policy engine is imported
inside the functions that need torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from PIL import Image

from synthetic import oracles
from synthetic.scenes import Condition


def _condition_tensors(conditions: Sequence[Condition]):
    import torch

    src = torch.stack([torch.from_numpy(np.asarray(c.source, dtype=np.float32) / 255.0).permute(2, 0, 1)
                       for c in conditions])
    masks = torch.stack([torch.from_numpy((np.asarray(c.mask) > 127).astype(np.float32))[None] for c in conditions])
    return src, masks


def generate_images(
    policy,
    conditions: Sequence[Condition],
    seed: int,
    steps: int,
    guidance: float = 30.0,
    max_sequence_length: int = 32,
    batch_size: int = 32,
    paste_back: bool = True,
) -> list[np.ndarray]:
    """One fill per condition (HxWx3 float arrays in [0, 1]), batched; the noise of batch i comes
    from ``seed + i`` so the same call always gives the same images. With ``paste_back`` (the
    default, as the platform's generation jobs and RL do) pixels outside the mask are the source's."""
    from policytrain.engine.pipeline import policy_prompt

    images: list[np.ndarray] = []
    for bi, start in enumerate(range(0, len(conditions), batch_size)):
        chunk = conditions[start : start + batch_size]
        src, masks = _condition_tensors(chunk)
        prompts = [policy_prompt(c.task, c.prompt) for c in chunk]
        out = policy.generate(src, masks, prompts, seed=seed * 10_007 + bi, steps=steps, guidance=guidance,
                              max_sequence_length=max_sequence_length, paste_back=paste_back)
        images.extend(out.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32))
    return images


def candidate_spread(candidates: Sequence[Sequence[np.ndarray]]) -> dict[str, float]:
    """How visibly the candidates of a condition differ, in /255 units: mean per-image pixel std
    (a washed-out grey image has a small one) and mean |a − b| over every candidate pair of a
    condition (what an annotator, and the reward model, has to tell apart)."""
    stds, diffs = [], []
    for cands in candidates:
        stds.extend(float(np.std(c)) for c in cands)
        diffs.extend(float(np.mean(np.abs(a - b))) for a, b in combinations(cands, 2))
    return {"image_std": 255 * float(np.mean(stds)) if stds else float("nan"),
            "pair_abs_diff": 255 * float(np.mean(diffs)) if diffs else float("nan")}


def oracle_scores(conditions: Sequence[Condition], images: Sequence[np.ndarray]) -> list[dict[str, float]]:
    """``oracles.score_all`` per (condition, image)."""
    return [oracles.score_all(c, img) for c, img in zip(conditions, images, strict=True)]


def mean_scores(scores: Sequence[dict[str, float]]) -> list[float]:
    return [float(np.mean(list(s.values()))) for s in scores]


def oracle_pairs(
    conditions: Sequence[Condition],
    candidates: Sequence[Sequence[np.ndarray]],
    candidate_scores: Sequence[Sequence[dict[str, float]]],
    keep: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """Every candidate pair × criterion of the kept conditions, oracle-better image first."""
    rows = []
    for cond, cands, scores in zip(conditions, candidates, candidate_scores, strict=True):
        if not keep(cond.id):
            continue
        pil = [Image.fromarray((np.clip(c, 0, 1) * 255).round().astype(np.uint8)) for c in cands]
        for i, j in combinations(range(len(cands)), 2):
            for crit in scores[i]:
                a, b = scores[i][crit], scores[j][crit]
                better, worse = (i, j) if a >= b else (j, i)
                rows.append({"condition_id": cond.id, "task": cond.task, "criterion": crit, "prompt": cond.prompt,
                             "better": pil[better], "worse": pil[worse], "margin": abs(a - b)})
    return rows


def on_policy_pairs(policy, conditions: Sequence[Condition], cfg: dict[str, Any], seed: int = 0,
                    samples: int = 3) -> list[dict[str, Any]]:
    """``oracle_pairs`` among ``samples`` of ``policy``'s own fills per condition, sampled as RL
    samples (its reference steps and guidance): the differences RL has to rank.

    The loop's candidates mix guidance 3 and 100 and an early checkpoint, so a reward model can
    score well on them by telling those settings apart and still rank two samples of one
    setting wrongly; this measures the latter."""
    rl, gen = cfg["rl"], cfg["candidates"]
    common = {"steps": int(rl.get("reference_steps", 4)), "guidance": float(rl.get("guidance", gen.get("guidance", 30.0))),
              "max_sequence_length": int(rl.get("max_sequence_length", gen.get("max_sequence_length", 32))),
              "batch_size": int(gen.get("batch_size", 32))}
    fills = [generate_images(policy, conditions, seed=seed * 1000 + 900 + k, **common) for k in range(samples)]
    candidates = [list(per_condition) for per_condition in zip(*fills, strict=True)]
    scores = [oracle_scores([c] * samples, k) for c, k in zip(conditions, candidates, strict=True)]
    return oracle_pairs(conditions, candidates, scores, keep=lambda cid: True)
