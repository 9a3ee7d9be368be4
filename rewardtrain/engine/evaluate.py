"""Held-out evaluation of a trained reward model in the paper's Table 1 layout.

Definitions (the paper does not say how it computes accuracy):
- `accuracy` (primary): a pair counts as correct when P(Yes | w, l) > P(Yes | l, w), i.e. the
  model prefers the winner when asked in both orders; equivalently the order-symmetrised score
  1/2 (P(Yes|w,l) + 1 - P(Yes|l,w)) exceeds 1/2. Exact ties count as half correct. This is
  immune to a constant position bias.
- `accuracy_single_order`: P(Yes | w, l) > 0.5 (winner shown first only).
- `position_consistency`: mean |P(Yes|a,b) + P(Yes|b,a) - 1| over pairs; 0 is perfectly
  consistent (a lower value is better).
- `ece`: expected calibration error of P(Yes) over both orders (labels 1 for (w, l), 0 for
  (l, w)), 10 equal-width bins on [0, 1], weighted by bin size.
- `interval` (per task × criterion) and `overall_interval`: 95 % intervals of `accuracy`,
  clustered by sample (the pairs of one sample share its images, so they are not independent:
  ``core.stats.cluster_interval``; a pair without a sample id is its own cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from contracts.vocabulary import BUILTIN, Vocabulary, VocabularyError
from core.stats import grouped_interval

from .data import load_manifest, read_pairs, task_criteria_present
from .scorer import RewardScorer, ScoreRequest

#: Paper Table 1 accuracies (%), shown beside ours where the snapshot has that task and criterion.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "fill": {"text_alignment": 83.77, "consistency": 74.23, "structure": 74.63, "aesthetics": 72.10},
    "extend": {"text_alignment": 80.36, "consistency": 72.50, "structure": 74.29, "aesthetics": 71.10},
    "removal": {"removal_quality": 84.93},
}


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """Binary ECE of P(Yes) against 0/1 labels with equal-width bins."""
    if probs.numel() == 0:
        return float("nan")
    edges = torch.linspace(0, 1, bins + 1)
    index = torch.clamp(torch.bucketize(probs, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = index == b
        if sel.any():
            total += sel.float().mean().item() * abs(probs[sel].mean().item() - labels[sel].float().mean().item())
    return total


def evaluate_scorer(scorer: RewardScorer, rows: list, batch_size: int = 16) -> dict[str, Any]:
    """Evaluate an already-loaded scorer on preference rows (see module docstring for metrics).

    The table has one cell per (task, criterion) present in ``rows``, in the order of the scorer's
    vocabulary (the one the model was trained on); ``vocabulary`` in the report names them.
    """
    requests = []
    for r in rows:
        requests.append(ScoreRequest(r.winner, r.loser, r.task, r.criterion, r.prompt))
        requests.append(ScoreRequest(r.loser, r.winner, r.task, r.criterion, r.prompt))
    probs = torch.sigmoid(scorer.score_log_odds(requests, batch_size=2 * batch_size)) if requests else torch.zeros(0)
    p_wl, p_lw = probs[0::2], probs[1::2]
    correct = (p_wl > p_lw).float() + 0.5 * (p_wl == p_lw).float()
    single = (p_wl > 0.5).float()
    accuracy: dict[str, dict[str, float]] = {}
    single_acc: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    interval: dict[str, dict[str, list[float] | None]] = {}
    clusters = [r.sample_id or r.pair_id for r in rows]
    present = task_criteria_present(rows, scorer.vocabulary)
    for task, criteria in present.items():
        for criterion in criteria:
            sel = torch.tensor([r.task == task and r.criterion == criterion for r in rows], dtype=torch.bool)
            n = int(sel.sum())
            accuracy.setdefault(task, {})[criterion] = correct[sel].mean().item()
            single_acc.setdefault(task, {})[criterion] = single[sel].mean().item()
            counts.setdefault(task, {})[criterion] = n
            cell = grouped_interval((k, float(c)) for k, c, keep in zip(clusters, correct.tolist(), sel.tolist(),
                                                                       strict=True) if keep)
            interval.setdefault(task, {})[criterion] = list(cell) if cell else None
    overall = grouped_interval(zip(clusters, correct.tolist(), strict=True))
    labels = torch.cat([torch.ones_like(p_wl), torch.zeros_like(p_lw)])
    return {
        "accuracy": accuracy,
        "accuracy_single_order": single_acc,
        "counts": counts,
        "interval": interval,
        "overall_accuracy": correct.mean().item() if rows else float("nan"),
        "overall_interval": list(overall) if overall else None,
        "overall_accuracy_single_order": single.mean().item() if rows else float("nan"),
        "position_consistency": (p_wl + p_lw - 1).abs().mean().item() if rows else float("nan"),
        "ece": expected_calibration_error(torch.cat([p_wl, p_lw]), labels),
        "pairs": len(rows),
        "vocabulary": scorer.vocabulary.restricted_to(present).to_dict() if present else None,
    }


def evaluate(
    model_dir: str | Path,
    snapshot_dir: str | Path,
    split: str | None = "test",
    batch_size: int = 16,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a trained model folder on one split of a snapshot (``None``: every pair); see the
    module docstring.

    Returns accuracy[task][criterion] (fractions), accuracy_single_order, counts,
    position_consistency, ece, human_ceiling (copied from the manifest), split ("all" for None),
    pairs and vocabulary (the model's names and descriptions of the evaluated tasks and criteria).
    """
    rows = read_pairs(snapshot_dir, split=split)
    if not rows:
        raise ValueError(f"snapshot {snapshot_dir} has no {split!r} pairs to evaluate")
    scorer = RewardScorer.from_pretrained(model_dir, device=device)
    report = evaluate_scorer(scorer, rows, batch_size=batch_size)
    report["split"] = split or "all"
    report["human_ceiling"] = load_manifest(snapshot_dir).get("human_ceiling", {})
    report["template_version"] = scorer.card.get("template_version")
    return report


def _report_vocabulary(report: dict[str, Any]) -> Vocabulary:
    try:
        return Vocabulary.from_dict(report["vocabulary"])
    except (KeyError, VocabularyError):  # reports written before they named their vocabulary
        return BUILTIN


def format_table(report: dict[str, Any]) -> str:
    """Render accuracies in the paper's Table 1 layout, one row per task and one column per criterion
    of the report: `ours [95 % interval] (paper)` in percent where the paper has the cell, `-`
    where n/a (reports written before intervals show none)."""
    accuracy = report.get("accuracy", {})
    intervals = report.get("interval") or {}
    vocabulary = _report_vocabulary(report)

    def name(kind: str, slug: str) -> str:
        try:
            return (vocabulary.task(slug) if kind == "task" else vocabulary.criterion(slug)).name
        except VocabularyError:
            return slug

    columns = list(dict.fromkeys(c for crits in accuracy.values() for c in crits))
    titles = [name("criterion", c) for c in columns]
    widths = [max(29, len(t) + 2) for t in titles]
    first = max([16, *(len(name("task", t)) + 2 for t in accuracy)])
    lines = ["Accuracy (%)".ljust(first) + "".join(t.rjust(w) for t, w in zip(titles, widths, strict=True))]
    for task, crits in accuracy.items():
        cells = []
        for col, width in zip(columns, widths, strict=True):
            ours = crits.get(col)
            paper = PAPER_TABLE1.get(task, {}).get(col)
            bounds = intervals.get(task, {}).get(col)
            if ours is None:
                cells.append("-".rjust(width))
            else:
                cells.append((f"{ours * 100:.2f}" + (f" [{bounds[0] * 100:.0f}–{bounds[1] * 100:.0f}]" if bounds else "")
                              + (f" ({paper:.2f})" if paper is not None else "")).rjust(width))
        lines.append(name("task", task).ljust(first) + "".join(cells))
    lines.append("ours [95 % interval, clustered by sample] (paper)")
    lines.append(
        f"pairs: {report.get('pairs')}  position consistency |P(a,b)+P(b,a)-1|: "
        f"{report.get('position_consistency', float('nan')):.4f}  ECE(10 bins): {report.get('ece', float('nan')):.4f}"
    )
    ceiling = report.get("human_ceiling") or {}
    if ceiling:
        parts = [f"{t}/{c}: {v:.2f}" for t, crits in ceiling.items() for c, v in crits.items()]
        lines.append("human ceiling: " + ", ".join(parts))
    return "\n".join(lines)
