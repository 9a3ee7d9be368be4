"""A short, honest comparison of reward-model recipes for the tiny VLM (issue #22, item 3).

The question: which training recipe gets the tiny random-init Qwen2.5-VL reward model closest to
the oracle on held-out pairs, and how far is it from the baseline learner trained on the SAME
labels? Recipes compared (each with ``select_best`` on):

- LoRA and full fine-tuning, each at three learning rates;
- at the best of those: paired augmentation (flip + crop) on, weight decay at one value, and soft
  labels (``soft_labels``: targets ``p_winner`` / ``1 - p_winner``, docs/decisions/0017).

The world (engine level, no Django; ``research.loop`` / ``research.ceiling`` build theirs alike):

1. conditions per task at the demo's resolution (fill; extend, half prompt-free; removal), train
   and held-out sets from disjoint scene seeds;
2. four candidate-like outputs per condition (``synthetic.oracles.degrade``, as ``research.ceiling``:
   the world's full range of defects; the quick base policy would cost ~20 CPU-minutes of
   pre-training and its candidates span a narrower range);
3. the simulated annotators (the demo config's pool, votes per pair) judge every candidate pair of
   the train conditions: the snapshot's labels are **annotator majorities, never the oracle's**;
   its train/val split is by condition (val feeds ``select_best`` and the baseline's early stop).
   ``--aggregation`` turns the votes into rows as the platform's aggregation of that name does:
   ``majority-v2`` (default, the rows of ADR 0015: ties carry no vote) or ``tie-aware-v1`` (tie
   votes count; a pair needs more winner votes than loser and than tie votes). Both write the
   soft-label columns ``votes_loser``, ``votes_tie`` and ``p_winner``;
4. held-out: every candidate pair of the held-out conditions whose oracle scores differ by more
   than the tie band; accuracy = agreement with the oracle, 95 % interval clustered by condition
   (``synthetic.oracle_metrics``), beside the baseline learner (``rewardtrain.engine.baseline``,
   trained on the same snapshot) on the same pairs.

Run from the repository root, one torch thread::

    OMP_NUM_THREADS=1 .venv/bin/python -m research.vlm_recipe var/recipe [--steps N] [--train N]
        [--heldout N] [--baseline-steps N] [--runs name,name,...] [--stage2 lora|full:LR]
        [--full-steps N --screen-min-val ACC] [--stopped name,...] [--aggregation NAME]
        [--seed N] [--compare A,B]

``--full-steps`` screens full fine-tuning at fewer steps and ``--screen-min-val`` leaves a screen
that stays below that val accuracy unscored (a configuration that clearly trails is not
extended); ``--stopped`` records runs stopped by hand from their val curve. ``--runs`` picks
runs by name from stage one and from stage two at ``--stage2`` (default LoRA 3e-3, ADR 0015's
best), e.g. ``--runs lora-lr0.003,lora-lr0.003-soft``. ``--seed`` repeats runs at another
reward-model seed on the same world, and ``--compare A,B`` reports B − A on the same held-out
pairs, per cell and for the mean, over every seed of both (``paired_difference``). ADR 0015 and
0017 have the figures and the exact commands.

Each finished run is cached in ``<dir>/runs/<name>.json``, so a second call only runs what is
missing; ``<dir>/recipe.json`` holds the table. Without ``--runs`` the sweep runs first and the
second stage (augmentation, weight decay) at the sweep's best (mode, lr) by mean held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from contracts.snapshot import read_raw_rows, write_pairs
from contracts.splits import split_for_key
from research.ceiling import TIE_BAND, candidate_pairs, conditions_for
from research.loop import SNAPSHOT_SCHEMA, Judgment, write_snapshot
from synthetic.annotators import make_pool
from synthetic.candidate_fills import oracle_pairs
from synthetic.loop_config import load_demo_config, print_progress, quiet_libraries
from synthetic.oracle_metrics import (
    baseline_judged,
    oracle_accuracy_intervals,
    oracle_accuracy_table,
    oracle_judged,
)
from synthetic.oracles import score_all
from synthetic.scenes import TASK_CRITERIA

TASKS = ("fill", "extend", "removal")
#: The learning-rate sweep per mode: around the quick demo's LoRA rate (3e-3), and for full
#: fine-tuning from the rate at which the tiny model's full fine-tune was seen to stall (3e-4,
#: docs/reward-model.md) upward.
SWEEP = {"lora": (1e-3, 3e-3, 1e-2), "full": (3e-4, 1e-3, 3e-3)}
#: The second stage's settings, applied one at a time at the sweep's best (mode, lr).
AUGMENT = {"augment_flip": True, "augment_crop": 0.15}
WEIGHT_DECAY = 0.05
#: Soft labels (``soft_row``, run after stage two): the same recipe trained on p_winner.
SOFT = {"soft_labels": True}
#: ADR 0015's best sweep setting, stage two's default when ``--runs`` names its rows.
ADR_0015_BEST = {"lora": True, "full_finetune": False, "lr": 3e-3}
#: How votes become rows (the platform's aggregations of these names, pairwise votes only).
AGGREGATIONS = ("majority-v2", "tie-aware-v1")


def _split(condition_id: str) -> str:
    """Snapshot split of a train condition: the platform's hash split (80/10/10) with its test
    bucket folded into train (the held-out conditions are the test set here; a 10 % val keeps
    ``select_best``'s evaluations cheap)."""
    return "val" if split_for_key(condition_id) == "val" else "train"


def simulate_votes(conditions: Sequence[Any], candidate_scores: Sequence[Sequence[dict[str, float]]],
                   pool: Sequence[Any], aggregation: str, seed: int = 0,
                   votes_per_pair: int = 1) -> tuple[list[Judgment], list[dict[str, Any]]]:
    """Every candidate pair of every condition, per criterion, judged by ``votes_per_pair`` random
    annotators, aggregated under ``aggregation``; returns the judgments and, per judgment, its
    soft-label columns (``votes_loser``, ``votes_tie``, ``p_winner``).

    The random draws are exactly ``research.loop.simulate_judgments``'s (the same annotator, side
    and choice per vote), so ``majority-v2`` gives the rows ADR 0015 trained on, and the
    aggregations differ only in what they do with the same votes. ``majority-v2``: the winner has
    more decisive votes, ``p_winner`` = its share of them (tie answers carry no vote);
    ``tie-aware-v1``: tie answers are votes too, the winner needs more votes than the loser and
    than the ties, ``p_winner`` = (winner votes + ties / 2) / all votes (annotation/services/snapshots.py).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    rng = np.random.default_rng(seed)
    judgments, soft = [], []
    for cond, scores in zip(conditions, candidate_scores, strict=True):
        criteria = [c for c in TASK_CRITERIA[cond.task] if c in scores[0]]
        for i, j in combinations(range(len(scores)), 2):
            for crit in criteria:
                si, sj = scores[i][crit], scores[j][crit]
                for_i = for_j = tied = 0
                for _ in range(votes_per_pair):
                    ann = pool[int(rng.integers(len(pool)))]
                    i_left = rng.uniform() < 0.5
                    choice = ann.choose_pairwise(si if i_left else sj, sj if i_left else si, rng)
                    if choice == "tie":
                        tied += 1
                    elif (choice == "left") == i_left:
                        for_i += 1
                    else:
                        for_j += 1
                if for_i == for_j:
                    continue
                (w, lo), won, lost = ((i, j), for_i, for_j) if for_i > for_j else ((j, i), for_j, for_i)
                if aggregation == "tie-aware-v1" and won <= tied:
                    continue
                counted = tied if aggregation == "tie-aware-v1" else 0
                total = won + lost + counted
                # votes / agreement as research.loop writes them (agreement = vote margin share).
                judgments.append(Judgment(cond.id, cond.task, crit, cond.prompt, w, lo, won + lost,
                                          (won - lost) / (won + lost), float(scores[w][crit] - scores[lo][crit])))
                soft.append({"votes_loser": lost, "votes_tie": counted,
                             "p_winner": round((won + counted / 2) / total, 6)})
    return judgments, soft


def build_world(out: Path, train: int, heldout: int, resolution: int, annotators: dict[str, Any],
                seed: int = 0, aggregation: str = "majority-v2") -> tuple[Path, list[dict[str, Any]]]:
    """The annotator-labelled snapshot of the train conditions and the oracle-judged held-out pairs.

    Both are deterministic; a snapshot already in ``out`` (from an earlier call with the same
    sizes and aggregation, recorded in its manifest) is reused, which halves the cost of a second call."""
    conds, cands, scores, held = [], [], [], []
    manifest = out / "snapshot" / "manifest.json"
    sizes = {"train_per_task": train, "resolution": resolution, "seed": seed, "aggregation": aggregation}
    reuse = manifest.is_file() and json.loads(manifest.read_text()).get("filter", {}).get("recipe_world") == sizes
    for t, task in enumerate(TASKS):
        for part, n, offset in (("train", train, 10_000 * t), ("heldout", heldout, 10_000 * t + 5_000)):
            if part == "train" and reuse:
                continue
            # candidate_pairs' own oracle-labelled judgments are not used: labels come from annotators.
            part_conds, part_cands, _ = candidate_pairs(conditions_for(task, n, offset, size=resolution), seed + offset)
            part_scores = [[score_all(c, im) for im in images] for c, images in zip(part_conds, part_cands, strict=True)]
            if part == "train":
                conds += part_conds
                cands += part_cands
                scores += part_scores
            else:
                held += oracle_pairs(part_conds, part_cands, part_scores, keep=lambda _cid: True)
    held = [r for r in held if r["margin"] > TIE_BAND]
    if reuse:
        return out / "snapshot", held
    pool = make_pool(int(annotators["n"]), careless_fraction=float(annotators["careless_fraction"]), seed=seed)
    judgments, soft = simulate_votes(conds, scores, pool, aggregation, seed=seed,
                                     votes_per_pair=int(annotators["votes_per_pair"]))
    snapshot = write_snapshot(out / "snapshot", conds, cands, judgments, {}, split_of=_split)
    # research.loop writes no soft labels: add this aggregation's columns to its rows (same order).
    rows = [{**row, **extra} for row, extra in zip(read_raw_rows(snapshot), soft, strict=True)]
    write_pairs(snapshot, rows, SNAPSHOT_SCHEMA)
    data = json.loads(manifest.read_text())
    data["filter"]["recipe_world"] = sizes
    data["aggregation"] = aggregation
    data["counts"]["tie_votes"] = sum(r["votes_tie"] for r in soft)
    manifest.write_text(json.dumps(data, indent=2))
    return snapshot, held


def summarise(judged: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """Accuracy, pair count and 95 % interval (clustered by condition) per task → criterion, and the mean."""
    acc, n = oracle_accuracy_table(judged)
    cells = [a for crits in acc.values() for a in crits.values()]
    return {"accuracy": acc, "pairs": n, "interval": oracle_accuracy_intervals(judged),
            "mean": float(np.mean(cells)) if cells else float("nan")}


def run_reward(name: str, overrides: dict[str, Any], reward_cfg: dict[str, Any], snapshot: Path, base: Path,
               held: list[dict[str, Any]], out: Path, steps: int, seed: int = 0,
               min_val: float = 0.0) -> dict[str, Any]:
    """Train one recipe (``overrides`` on the demo config's reward section) and score it on ``held``,
    unless its best val accuracy stays below ``min_val`` (a screen that clearly trails: not scored,
    its val curve is recorded and the reason printed)."""
    from rewardtrain.engine.config import RewardTrainConfig
    from rewardtrain.engine.scorer import RewardScorer
    from rewardtrain.engine.train import train as rm_train

    cfg = {k: v for k, v in reward_cfg.items() if k != "base"}
    pixels = {"min_pixels": reward_cfg["base"]["min_pixels"], "max_pixels": reward_cfg["base"]["max_pixels"]}
    run_dir = out / "rm" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    config = RewardTrainConfig.from_dict({
        **cfg, **pixels, "base_model": str(base), "snapshot_dir": str(snapshot), "output_dir": str(run_dir),
        "device": "cpu", "seed": seed, "save_every": 0, "gradient_checkpointing": False, "max_steps": steps,
        "eval_every": max(1, steps // 5), "log_every": max(1, steps // 5), "select_best": True, **overrides,
    })
    started = time.monotonic()
    result = rm_train(config, progress=lambda e: print_progress(
        f"  {name} {e['kind']} {e['step']}/{e['total_steps']} loss={e.get('loss', float('nan')):.4f} "
        f"acc={e.get('accuracy', float('nan')):.3f}") if e.get("kind") in ("train", "eval") else None)
    trained = time.monotonic() - started
    best_val = (result.get("selected_val") or {}).get("accuracy", 1.0)
    if best_val < min_val:
        reason = f"best val accuracy {best_val:.3f} < {min_val} after {steps} steps: clearly trails, not scored"
        print_progress(f"{name}: {reason}")
        return {**unscored(name, overrides, run_dir, steps, reason), "seconds": {"train": round(trained, 1)}}
    judged = oracle_judged(RewardScorer.from_pretrained(run_dir / "final"), held, threshold=TIE_BAND)
    shutil.rmtree(run_dir / "final", ignore_errors=True)  # weights are not kept: the figures are the result
    return {"name": name, "overrides": overrides, "steps": steps, "seed": seed,
            "selected_step": result.get("selected_step"),
            "selected_val": result.get("selected_val"), "seconds": {"train": round(trained, 1),
            "score": round(time.monotonic() - started - trained, 1)}, **summarise(judged),
            # Per held-out pair (held's order), for paired comparisons between runs (paired_difference).
            "correct": [c for _, c in judged]}


def paired_difference(held: list[dict[str, Any]], first: list[list[float]], second: list[list[float]],
                      draws: int = 4000, seed: int = 0) -> dict[str, Any]:
    """``second`` minus ``first`` in held-out oracle accuracy, on the same pairs: per task ×
    criterion and for the mean over cells, each with a 95 % interval.

    ``first`` / ``second``: each run's per-pair correctness (``run_reward``'s ``correct``), one
    list per seed; a row's pairs are averaged over its seeds first. Paired, because both rows are
    scored on the same pairs: the spread of a pair's difficulty cancels, which the two rows'
    separate intervals cannot show. The interval is a percentile bootstrap over held-out conditions
    (the pairs of one condition share its images, so conditions are the independent units),
    resampled within their task."""
    diff = np.mean(np.asarray(second, dtype=float), axis=0) - np.mean(np.asarray(first, dtype=float), axis=0)
    if len(diff) != len(held):
        raise ValueError(f"{len(diff)} judged pairs for {len(held)} held-out pairs")
    cells = list(dict.fromkeys((r["task"], r["criterion"]) for r in held))
    cell_of = np.array([cells.index((r["task"], r["criterion"])) for r in held])
    conditions = list(dict.fromkeys((r["task"], r["condition_id"]) for r in held))
    condition_of = np.array([conditions.index((r["task"], r["condition_id"])) for r in held])
    rng = np.random.default_rng(seed)

    def cell_means(weight: np.ndarray) -> np.ndarray:
        w = weight[condition_of]
        return np.bincount(cell_of, w * diff, len(cells)) / np.maximum(np.bincount(cell_of, w, len(cells)), 1e-12)

    samples = np.empty((draws, len(cells)))
    by_task = {t: np.array([k for k, (task, _) in enumerate(conditions) if task == t]) for t in TASKS}
    for d in range(draws):
        weight = np.zeros(len(conditions))
        for members in by_task.values():
            if len(members):
                np.add.at(weight, rng.choice(members, size=len(members)), 1.0)
        samples[d] = cell_means(weight)
    point = cell_means(np.ones(len(conditions)))
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    mlo, mhi = np.percentile(samples.mean(axis=1), [2.5, 97.5])
    out: dict[str, Any] = {"seeds": [len(first), len(second)], "cells": {}}
    for k, (task, crit) in enumerate(cells):
        out["cells"].setdefault(task, {})[crit] = [round(float(point[k]), 4), round(float(lo[k]), 4),
                                                   round(float(hi[k]), 4)]
    out["mean"] = [round(float(point.mean()), 4), round(float(mlo), 4), round(float(mhi), 4)]
    return out


def val_curve(run_dir: Path) -> list[list[float]]:
    """[step, val accuracy] of every evaluation in a run folder's metrics.jsonl."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [[r["step"], round(r["accuracy"], 4)] for r in records if r.get("kind") == "eval"]


def unscored(name: str, overrides: dict[str, Any], run_dir: Path, steps: int, reason: str) -> dict[str, Any]:
    """The record of a run that was not scored on the held-out pairs (it clearly trailed): its val curve."""
    return {"name": name, "overrides": overrides, "steps": steps, "not_scored": reason, "val_curve": val_curve(run_dir)}


def stage_one() -> dict[str, dict[str, Any]]:
    """The learning-rate sweep: name → overrides."""
    runs = {}
    for mode, lrs in SWEEP.items():
        for lr in lrs:
            runs[f"{mode}-lr{lr:g}"] = {"lora": mode == "lora", "full_finetune": mode == "full", "lr": lr}
    return runs


def stage_two(best: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Augmentation and weight decay at the best sweep setting ``best`` (its overrides)."""
    mode = "lora" if best["lora"] else "full"
    tag = f"{mode}-lr{best['lr']:g}"
    return {f"{tag}-augment": {**best, **AUGMENT}, f"{tag}-wd{WEIGHT_DECAY:g}": {**best, "weight_decay": WEIGHT_DECAY}}


def soft_row(best: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Soft labels at the best sweep setting ``best`` (ADR 0017), a row of its own after stage two."""
    mode = "lora" if best["lora"] else "full"
    return {f"{mode}-lr{best['lr']:g}-soft": {**best, **SOFT}}


def format_table(report: dict[str, Any]) -> str:
    """Markdown: one row per task × criterion, one column per run and the baseline (accuracy [95 %])."""
    runs = report["runs"]
    names = list(runs)
    base = report["baseline"]
    lines = ["| task | criterion | pairs | " + " | ".join(names) + " | baseline |",
             "| --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- |"]

    def cell(s: dict[str, Any], task: str, crit: str) -> str:
        acc = s.get("accuracy", {}).get(task, {}).get(crit)
        if acc is None:
            return "—"
        lo, hi = s["interval"].get(task, {}).get(crit, [float("nan")] * 2)
        return f"{acc:.2f} [{lo:.2f}, {hi:.2f}]"

    for task, crits in base["pairs"].items():
        for crit, n in crits.items():
            lines.append(f"| {task} | {crit} | {n} | " + " | ".join(cell(runs[x], task, crit) for x in names)
                         + f" | {cell(base, task, crit)} |")
    means = [f"{runs[x]['mean']:.3f}" if "mean" in runs[x] else "not scored" for x in names]
    lines.append("| mean | | | " + " | ".join(means) + f" | {base['mean']:.3f} |")
    lines.append("| steps (best val step) | | | " + " | ".join(
        f"{runs[x]['steps']} ({runs[x].get('selected_step', '—')})" for x in names) + " | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build the world (once), train the baseline and every recipe not yet cached, write the report."""
    parser = argparse.ArgumentParser(prog="python -m research.vlm_recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, default=None, help="reward-model steps (default: the quick config's)")
    parser.add_argument("--train", type=int, default=150, help="train conditions per task")
    parser.add_argument("--heldout", type=int, default=120, help="held-out conditions per task")
    parser.add_argument("--full-steps", type=int, default=None,
                        help="steps of the full fine-tuning sweep (default --steps): a short screen")
    parser.add_argument("--screen-min-val", type=float, default=0.0,
                        help="full fine-tuning screens whose best val accuracy stays below this are not scored")
    parser.add_argument("--stopped", default="",
                        help="comma-separated runs stopped by hand (clearly trailing): record their val curve")
    parser.add_argument("--baseline-steps", type=int, default=600)
    parser.add_argument("--runs", default="", help="comma-separated run names (default: stage one then two)")
    parser.add_argument("--stage2", default="", help="lora|full:LR to run stage two at (default: best of stage one)")
    parser.add_argument("--size", default="quick", help="demo config whose reward/annotator sections are used")
    parser.add_argument("--aggregation", default="majority-v2", choices=AGGREGATIONS,
                        help="how the simulated annotators' votes become snapshot rows (both write p_winner)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the reward-model runs (adapter init, data order; the world and baseline "
                             "keep 0); a run with seed N > 0 is named <name>-seedN")
    parser.add_argument("--compare", default="",
                        help="A,B: B minus A per cell and for the mean, paired on the held-out pairs, over "
                             "every seed of both that has run")
    args = parser.parse_args(argv)
    quiet_libraries()
    from rewardtrain.engine.baseline import BaselineConfig, train_baseline
    from synthetic.reward_base import build_reward_base

    out = Path(args.out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    cfg = load_demo_config(args.size)
    steps = args.steps or int(cfg["reward"]["max_steps"])
    started = time.monotonic()
    snapshot, held = build_world(out, args.train, args.heldout, int(cfg["resolution"]), cfg["annotators"],
                                 aggregation=args.aggregation)
    print_progress(f"world: {len(held)} held-out pairs, {time.monotonic() - started:.0f} s")
    base_file = out / "runs" / "baseline.json"
    if not base_file.exists():
        t0 = time.monotonic()
        train_baseline(BaselineConfig(max_steps=args.baseline_steps), snapshot, out / "baseline")
        summary = {**summarise(baseline_judged(out / "baseline", held, threshold=TIE_BAND)),
                   "seconds": round(time.monotonic() - t0, 1), "steps": args.baseline_steps}
        base_file.write_text(json.dumps(summary, indent=2))
    baseline = json.loads(base_file.read_text())
    print_progress(f"baseline: mean {baseline['mean']:.3f}")
    base = build_reward_base(out / "rm-base", seed=0, **cfg["reward"]["base"])

    def run_all(plan: dict[str, dict[str, Any]]) -> None:
        for plain_name, overrides in plan.items():
            name = plain_name if args.seed == 0 else f"{plain_name}-seed{args.seed}"
            path = out / "runs" / f"{name}.json"
            if path.exists():
                continue
            if name in args.stopped.split(","):
                reason = "stopped by hand before its last step: clearly trailing on val, not scored"
                path.write_text(json.dumps(unscored(name, overrides, out / "rm" / name, steps, reason), indent=2))
                print_progress(f"{name}: {reason}")
                continue
            screen = bool(overrides.get("full_finetune") and args.full_steps)
            summary = run_reward(name, overrides, cfg["reward"], snapshot, base, held, out,
                                 args.full_steps if screen else steps, seed=args.seed,
                                 min_val=args.screen_min_val if screen else 0.0)
            path.write_text(json.dumps(summary, indent=2))
            if "mean" in summary:
                print_progress(f"{name}: mean {summary['mean']:.3f} ({summary['seconds']})")

    chosen = None
    if args.stage2:
        mode, lr = args.stage2.split(":")
        chosen = {"lora": mode == "lora", "full_finetune": mode == "full", "lr": float(lr)}
    plan = stage_one()
    if args.runs:
        named = {**plan, **stage_two(chosen or ADR_0015_BEST), **soft_row(chosen or ADR_0015_BEST)}
        plan = {n: named[n] for n in args.runs.split(",") if n in named}
    run_all(plan)
    done = {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json")) if p.stem != "baseline"}
    if chosen is not None:
        best = chosen
    else:
        sweep = [s for s in done.values() if set(s["overrides"]) == {"lora", "full_finetune", "lr"} and "mean" in s]
        best = max(sweep, key=lambda s: s["mean"])["overrides"] if sweep else None
    if best is not None and not args.runs:
        run_all({**stage_two(best), **soft_row(best)})
    done = {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json")) if p.stem != "baseline"}
    report = {"command": "OMP_NUM_THREADS=1 .venv/bin/python -m research.vlm_recipe " + " ".join(argv or []),
              "size": args.size, "aggregation": args.aggregation, "steps": steps, "train_conditions_per_task": args.train,
              "heldout_conditions_per_task": args.heldout, "heldout_pairs": len(held),
              "snapshot_counts": json.loads((snapshot / "manifest.json").read_text())["counts"],
              "runs": done, "baseline": baseline}
    if args.compare:
        first, second = args.compare.split(",")

        def seeds_of(name: str) -> list[list[float]]:
            own = re.compile(rf"{re.escape(name)}(-seed\d+)?")
            return [r["correct"] for n, r in done.items() if own.fullmatch(n) and "correct" in r]

        report["compare"] = {"first": first, "second": second,
                             **paired_difference(held, seeds_of(first), seeds_of(second))}
        print_progress(f"{second} - {first}: {json.dumps(report['compare'])}")
    (out / "recipe.json").write_text(json.dumps(report, indent=2))
    print(format_table(report))
    return report


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
