"""DIAGNOSTIC — the learnability ceiling of the synthetic world's labels (issue #22, item 2).

**This trains a learner on ORACLE labels.** That is allowed only here, as a clearly marked
diagnostic: no product model, demo figure or RL reward ever comes from it. The question it
answers: with the oracles rewritten to read only what the reward model is shown
(docs/synthetic-world.md, "What the reward model sees"), how much of each task × criterion's
oracle preference can a simple learner that sees the two candidates recover? That is a
Bayes-style ceiling (a lower bound on it: the learner is small and sees neither the prompt nor the
mask), to read beside the simulated annotators' ceiling (how often their votes agree with the
oracle) and the reward model's accuracy.

What it does, on CPU with one torch thread (a few minutes):

1. conditions per task (fill; extend, half prompt-free; removal), split by condition into train
   and held-out (disjoint scene seeds);
2. four candidate-like outputs per condition from ``synthetic.oracles.degrade`` (a random kind at
   a uniform strength each: the world's full range of defects, not the demo policy's samples);
3. every pair of them per applicable criterion whose oracle scores differ by more than the
   annotators' tie band (0.03), labelled with the oracle's preference;
4. the baseline learner (``rewardtrain.engine.baseline``, its default config) trained on the
   train pairs, evaluated on the held-out pairs: accuracy per task × criterion with a 95 % Wilson
   interval; beside it the simulated annotator pool's agreement with the oracle on the same
   held-out pairs (the demo's pool settings).

Run from the repository root: ``.venv/bin/python -m research.ceiling var/ceiling [heldout]
[train]`` (defaults 200 held-out and 250 train conditions per task: ≥ 400 held-out pairs in every
cell). Writes ``<dir>/ceiling.json`` and prints the table.
"""

from __future__ import annotations

import json
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from core.stats import wilson_interval
from synthetic.annotators import agreement_stats, make_pool
from synthetic.oracles import DEGRADATIONS, as_array, degrade, score_all
from synthetic.scenes import make_condition

TIE_BAND = 0.03  # oracle differences below this are ties an annotator would not call
CANDIDATES = 4


def conditions_for(task: str, n: int, offset: int, size: int = 112) -> list:
    """``n`` conditions of one task from seeds ``offset`` … (extend alternates prompt-free)."""
    return [make_condition(task, offset + i, size=size, with_prompt=not (task == "extend" and i % 2)) for i in range(n)]


def candidate_pairs(conditions: list, seed: int) -> tuple[list, list, list]:
    """Candidate images and the oracle-labelled pairs between them.

    Returns (conditions, candidates per condition as float arrays, judgments) where a judgment is
    (condition index, criterion, winner index, loser index, margin)."""
    rng = np.random.default_rng(seed)
    cands, judgments = [], []
    for ci, cond in enumerate(conditions):
        images = [as_array(degrade(cond, float(rng.uniform(0, 1)), str(rng.choice(DEGRADATIONS)), rng))
                  for _ in range(CANDIDATES)]
        scores = [score_all(cond, im) for im in images]
        cands.append(images)
        for a, b in combinations(range(CANDIDATES), 2):
            for crit in scores[a]:
                margin = scores[a][crit] - scores[b][crit]
                if abs(margin) > TIE_BAND:
                    w, lo = (a, b) if margin > 0 else (b, a)
                    judgments.append((ci, crit, w, lo, abs(margin)))
    return conditions, cands, judgments


def run(out_dir: str | Path, heldout: int = 200, train: int = 250, seed: int = 0) -> dict[str, Any]:
    """Build the oracle-labelled snapshot, train the baseline on it, write and return the report."""
    import torch

    from research.loop import Judgment, write_snapshot
    from rewardtrain.engine.baseline import BaselineConfig, train_baseline

    torch.set_num_threads(1)
    started = time.monotonic()
    out = Path(out_dir)
    all_conds, all_cands, judgments, split = [], [], [], {}
    for t, task in enumerate(("fill", "extend", "removal")):
        for part, n, offset in (("train", train, 10_000 * t), ("test", heldout, 10_000 * t + 5_000)):
            conds, cands, judged = candidate_pairs(conditions_for(task, n, offset), seed + offset)
            base = len(all_conds)
            all_conds += conds
            all_cands += cands
            split.update({c.id: part for c in conds})
            judgments += [(base + ci, crit, w, lo, m) for ci, crit, w, lo, m in judged]
    generated = time.monotonic() - started
    rows = [Judgment(all_conds[ci].id, all_conds[ci].task, crit, all_conds[ci].effective_prompt, w, lo, 1, 1.0, m)
            for ci, crit, w, lo, m in judgments]
    snapshot = write_snapshot(out / "snapshot", all_conds, all_cands, rows, {}, split_of=split.__getitem__)
    card = train_baseline(BaselineConfig(), snapshot, out / "baseline")
    trained = time.monotonic() - started - generated

    # The simulated annotators' ceiling on the same held-out pairs (the demo's pool settings).
    pool = make_pool(12, careless_fraction=0.1, seed=seed)
    human: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for ci, crit, _winner, _loser, m in judgments:
        if split[all_conds[ci].id] == "test":
            cells.setdefault((all_conds[ci].task, crit), []).append((m, 0.0))
    for (task, crit), pairs in cells.items():
        stats = agreement_stats(pool, pairs, seed=seed, votes_per_pair=3)
        n = len(pairs) * 3
        human.setdefault(task, {})[crit] = {"agreement": stats["agreement"],
                                            "interval": list(wilson_interval(stats["agreement"] * n, n))}
    evaluation = card["evaluation"]
    report = {
        "diagnostic": "baseline learner trained on ORACLE labels (research.ceiling); never a product figure",
        "heldout_conditions_per_task": heldout, "train_conditions_per_task": train,
        "baseline": {"accuracy": evaluation["accuracy"], "interval": evaluation["interval"],
                     "pairs": evaluation["counts"]},
        "human_ceiling": human,
        "seconds": {"generate": round(generated, 1), "train": round(trained, 1)},
    }
    (out / "ceiling.json").write_text(json.dumps(report, indent=2))
    return report


def format_table(report: dict[str, Any]) -> str:
    """Markdown rows: task, criterion, held-out pairs, baseline accuracy [95 %], annotators' agreement [95 %]."""
    lines = ["| task | criterion | held-out pairs | baseline on oracle labels | simulated annotators vs oracle |",
             "| --- | --- | --- | --- | --- |"]
    base = report["baseline"]
    for task, crits in base["accuracy"].items():
        for crit, acc in crits.items():
            lo, hi = base["interval"][task][crit]
            h = report["human_ceiling"].get(task, {}).get(crit)
            human = f"{h['agreement']:.2f} [{h['interval'][0]:.2f}, {h['interval'][1]:.2f}]" if h else "—"
            lines.append(f"| {task} | {crit} | {base['pairs'][task][crit]} | {acc:.2f} [{lo:.2f}, {hi:.2f}] | {human} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: python -m research.ceiling <out_dir> [heldout_per_task] [train_per_task]")
    result = run(args[0], *(int(a) for a in args[1:3]))
    print(format_table(result))
    print(json.dumps(result["seconds"]))
