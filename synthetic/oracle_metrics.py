"""What the oracle says about reward models and policies in the synthetic world.

Reward models: accuracy against the oracle per task × criterion, also binned by the oracle margin
(a pair two images apart by 0.01 is a coin toss for anyone). Policies: win rate against the base
per task, with an interval over conditions and the share of perceptible changes. Simulated
annotators: the human ceiling per criterion. The demo reports these numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from core.stats import cluster_interval, grouped_interval
from synthetic.annotators import SimulatedAnnotator, agreement_stats
from synthetic.candidate_fills import generate_images, mean_scores, oracle_scores
from synthetic.loop_config import Progress
from synthetic.scenes import Condition


def win_scores(deltas: Any, threshold: float = 0.0) -> np.ndarray:
    """Each item's share of a win from its change (new − base): 1 above ``threshold``, 0 below
    −``threshold``, ½ in between (with 0, only an exact tie is ½; with the oracle's tie threshold,
    a change nobody would see is one, docs/decisions/0020)."""
    d = np.asarray(deltas, dtype=float)
    return (d > threshold) + 0.5 * (np.abs(d) <= threshold)


def oracle_win_rate(
    base: Sequence[float], new: Sequence[float], tasks: Sequence[str]
) -> dict[str, float]:
    """Per task: share of (condition, seed) items where ``new`` beats ``base`` (tie = ½)."""
    deltas: dict[str, list[float]] = defaultdict(list)
    for b, n, t in zip(base, new, tasks, strict=True):
        deltas[t].append(n - b)
    return {t: float(win_scores(v).mean()) for t, v in sorted(deltas.items())}


def win_rate_detail(
    base: Sequence[float], new: Sequence[float], tasks: Sequence[str], groups: Sequence[str],
    threshold: float,
) -> dict[str, dict[str, Any]]:
    """What stands behind each task's win rate (``oracle_win_rate``), per task:

    - ``n`` items and ``conditions``, ``mean_delta`` (new − base mean oracle score);
    - ``ci95``: the 95 % interval of the win rate clustered by ``groups`` (conditions), since a
      condition's seeds are not independent items (``core.stats.cluster_interval``);
    - ``perceptible_share``: items whose scores differ by more than ``threshold`` (the oracle tie
      threshold: a smaller difference is one an annotator reports as a tie), and
      ``perceptible_win_rate``: the win rate over those items only (None when there are none);
    - ``win_rate_at_threshold`` with ``ci95_at_threshold``: the win rate over all items when a
      change within ``threshold`` counts as a tie (½), as an annotator's "same" counts in a
      side-by-side verdict (docs/decisions/0020). It is ½ for a policy that changes nothing anyone
      sees, however consistent the sign of its invisible changes.

    A win rate far from ½ with a tiny ``perceptible_share`` is a systematic but invisible shift.
    """
    by_task: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for b, n, t, g in zip(base, new, tasks, groups, strict=True):
        by_task[t][g].append(n - b)
    out = {}
    for task, per_group in sorted(by_task.items()):
        deltas = [np.asarray(v, dtype=float) for v in per_group.values()]
        wins = [win_scores(d) for d in deltas]
        at_threshold = [win_scores(d, threshold) for d in deltas]
        flat_d, flat_w = np.concatenate(deltas), np.concatenate(wins)
        interval = _clustered(wins)
        seen = np.abs(flat_d) > threshold
        out[task] = {
            "n": int(flat_d.size), "conditions": len(deltas), "mean_delta": float(flat_d.mean()),
            "ci95": interval,
            "perceptible_share": float(seen.mean()),
            "perceptible_win_rate": float(flat_w[seen].mean()) if seen.any() else None,
            "win_rate_at_threshold": float(np.concatenate(at_threshold).mean()),
            "ci95_at_threshold": _clustered(at_threshold),
        }
    return out


def _clustered(wins: Sequence[np.ndarray]) -> list[float] | None:
    """The 95 % interval of a win rate from per-condition win arrays (a condition's seeds share its scene)."""
    interval = cluster_interval([float(w.sum()) for w in wins], [len(w) for w in wins])
    return list(interval) if interval else None


def describe_win(detail: dict[str, Any]) -> str:
    """One ``win_rate_detail`` cell as text, e.g. ``[0.53, 0.72] Δ +0.004, 21 % perceptible (win 0.60),
    at the tie threshold 0.52 [0.49, 0.55]`` (the last part only where the detail has it)."""
    lo, hi = detail["ci95"]
    seen = detail["perceptible_win_rate"]
    text = (f"[{lo:.2f}, {hi:.2f}] Δ {detail['mean_delta']:+.3f}, {100 * detail['perceptible_share']:.0f} % perceptible"
            + (f" (win {seen:.2f})" if seen is not None else ""))
    if detail.get("win_rate_at_threshold") is not None:
        bounds = detail.get("ci95_at_threshold")
        text += f", at the tie threshold {detail['win_rate_at_threshold']:.2f}" + (
            f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds else "")
    return text


def human_ceiling_by_criterion(
    conditions: Sequence[Condition],
    candidate_scores: Sequence[Sequence[dict[str, float]]],
    pool: Sequence[SimulatedAnnotator],
    seed: int = 0,
    votes_per_pair: int = 1,
) -> dict[str, dict[str, float]]:
    """``synthetic.annotators.human_ceiling`` on the candidate pairs, per task × criterion."""
    pairs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for cond, scores in zip(conditions, candidate_scores, strict=True):
        for i, j in combinations(range(len(scores)), 2):
            for crit in scores[i]:
                pairs[(cond.task, crit)].append((scores[i][crit], scores[j][crit]))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, crit), items in sorted(pairs.items()):
        stats = agreement_stats(pool, items, seed=seed, votes_per_pair=votes_per_pair)
        value = stats["majority_agreement"] if votes_per_pair > 1 else stats["agreement"]
        if np.isfinite(value):  # no pair with different scores → no ceiling to report
            out[task][crit] = float(value)
    return dict(out)


#: Oracle-margin bins of ``oracle_accuracy_by_margin`` (the first edge is the default tie threshold).
MARGIN_EDGES = (0.03, 0.06, 0.1, 0.2, 1.0)


def oracle_judged(
    scorer, rows: Sequence[dict[str, Any]], threshold: float = 0.03, batch_size: int = 32
) -> list[tuple[dict[str, Any], float]]:
    """Each row whose oracle scores differ by more than ``threshold``, with 1 when the reward model
    agrees with the oracle (½ on an exact tie, else 0).

    ``rows``: dicts with ``task, criterion, prompt, better, worse, margin`` (``oracle_pairs``) — the
    oracle-better image first. Correct when P(Yes | better, worse) > P(Yes | worse, better).
    """
    from rewardtrain.engine.scorer import ScoreRequest

    rows = [r for r in rows if r["margin"] > threshold]
    requests = []
    for r in rows:
        requests.append(ScoreRequest(r["better"], r["worse"], r["task"], r["criterion"], r["prompt"]))
        requests.append(ScoreRequest(r["worse"], r["better"], r["task"], r["criterion"], r["prompt"]))
    values = scorer.score_log_odds(requests, batch_size=batch_size).numpy() if requests else np.zeros(0)
    correct = (values[0::2] > values[1::2]).astype(float) + 0.5 * (values[0::2] == values[1::2])
    return list(zip(rows, correct.tolist(), strict=True))


def baseline_judged(
    model_dir: str | Path, rows: Sequence[dict[str, Any]], threshold: float = 0.03, batch_size: int = 128
) -> list[tuple[dict[str, Any], float]]:
    """``oracle_judged`` for the baseline learner (``rewardtrain.engine.baseline``): each row whose
    oracle scores differ by more than ``threshold``, with 1 when the learner prefers the oracle's
    better image (½ on an exact tie). The learner sees only the two images and (task, criterion);
    a cell it was not trained on is left out."""
    import torch

    from rewardtrain.engine.baseline import load_baseline

    model, card = load_baseline(model_dir)
    index = {tuple(k): i for i, k in enumerate(card["conditions"])}
    size = int(card["config"]["image_size"])
    rows = [r for r in rows if r["margin"] > threshold and (r["task"], r["criterion"]) in index]

    def tensor(img) -> torch.Tensor:
        arr = np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    out: list[tuple[dict[str, Any], float]] = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            better = torch.stack([tensor(r["better"]) for r in chunk])
            worse = torch.stack([tensor(r["worse"]) for r in chunk])
            cond = torch.tensor([index[(r["task"], r["criterion"])] for r in chunk], dtype=torch.long)
            log_odds = model(better, worse, cond)
            out += [(r, 1.0 if v > 0 else 0.5 if v == 0 else 0.0) for r, v in zip(chunk, log_odds.tolist(), strict=True)]
    return out


def oracle_accuracy_table(
    judged: Sequence[tuple[dict[str, Any], float]], key: Callable[[dict], str | None] = lambda r: None,
) -> tuple[dict, dict]:
    """Mean correctness and count per task → criterion (→ ``key(row)`` when it is not None)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r, c in judged:
        groups[(r["task"], r["criterion"], key(r))].append(c)
    acc: dict = defaultdict(dict)
    n: dict = defaultdict(dict)
    for (task, crit, k), v in groups.items():
        if k is None:
            acc[task][crit], n[task][crit] = float(np.mean(v)), len(v)
        else:
            acc[task].setdefault(crit, {})[k] = float(np.mean(v))
            n[task].setdefault(crit, {})[k] = len(v)
    return dict(acc), dict(n)


def oracle_accuracy_intervals(judged: Sequence[tuple[dict[str, Any], float]]) -> dict[str, dict[str, list[float]]]:
    """95 % interval of each task → criterion's oracle accuracy, clustered by condition: the pairs
    of one condition share its candidate images, so they are not independent
    (``core.stats.grouped_interval``; rows without a ``condition_id`` count as their own cluster)."""
    units: dict[tuple[str, str], list[tuple[Any, float]]] = defaultdict(list)
    for n, (r, c) in enumerate(judged):
        units[(r["task"], r["criterion"])].append((r.get("condition_id", n), c))
    out: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for (task, crit), cell in units.items():
        interval = grouped_interval(cell)
        if interval is not None:
            out[task][crit] = list(interval)
    return dict(out)


def oracle_accuracy(
    scorer, rows: Sequence[dict[str, Any]], threshold: float = 0.03, batch_size: int = 32
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """RM agreement with the oracle (``oracle_judged``) and the pair count, per task → criterion."""
    return oracle_accuracy_table(oracle_judged(scorer, rows, threshold, batch_size))


def margin_bin(margin: float) -> str:
    """The bin of an oracle margin between consecutive ``MARGIN_EDGES``, e.g. ``"0.06-0.1"``
    (below the first edge: ``"0-0.03"``; above the last: the last bin)."""
    edges = (0.0, *MARGIN_EDGES)
    for lo, hi in zip(edges, edges[1:], strict=False):
        if margin <= hi:
            return f"{lo:g}-{hi:g}"
    return f"{edges[-2]:g}-{edges[-1]:g}"


def describe_margins(by_margin: dict[str, Any], task: str, criterion: str) -> str:
    """One criterion of ``oracle_accuracy_by_margin`` as text, e.g. ``0.03-0.06: 0.73 (22) · 0.2-1: 0.33 (18)``."""
    acc = by_margin["accuracy"].get(task, {}).get(criterion, {})
    n = by_margin["pairs"].get(task, {}).get(criterion, {})
    order = [margin_bin(e) for e in MARGIN_EDGES]
    return " · ".join(f"{b}: {acc[b]:.2f} ({n[b]})" for b in order if b in acc)


def oracle_accuracy_by_margin(judged: Sequence[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """Accuracy and count per task → criterion → oracle-margin bin: does the reward model get the
    clear differences right? (A criterion whose accuracy falls as the margin grows is being read
    through another criterion.)"""
    acc, n = oracle_accuracy_table(judged, key=lambda r: margin_bin(r["margin"]))
    return {"accuracy": acc, "pairs": n}


@dataclass(frozen=True)
class PolicyEvaluation:
    """``evaluate_policies``' result; every dict is keyed by policy name, then task."""

    win_rate: dict[str, dict[str, float]]
    #: ``win_rate_detail`` per policy: interval, mean change, share of perceptible changes.
    detail: dict[str, dict[str, dict[str, Any]]]
    #: Mean oracle score per criterion, also for ``"base"``.
    mean_scores: dict[str, dict[str, dict[str, float]]]
    items: int


def evaluate_policies(base_dir: str | Path, finals: dict[str, str | Path], heldout: Sequence[Condition],
                      cfg: dict[str, Any], progress: Progress | None = None) -> PolicyEvaluation:
    """Oracle win rate per task of each policy (``finals``: name → weights folder) against the base,
    what stands behind it (``win_rate_detail``), and the mean oracle scores of all of them, on the
    held-out conditions.

    Every policy fills the same conditions with the same seeds and step count (the config's ``eval``).
    """
    from policytrain.engine.pipeline import FillPolicy

    ev, gen_cfg = cfg["eval"], cfg["candidates"]
    tasks = [c.task for c in heldout] * len(ev["seeds"])
    flat_conds = list(heldout) * len(ev["seeds"])
    threshold = float(ev.get("oracle_tie_threshold", 0.03))

    def eval_policy(policy) -> tuple[list[float], dict]:
        imgs = []
        for s in ev["seeds"]:
            imgs.extend(generate_images(policy, heldout, seed=10_000 + int(s), steps=int(ev["steps"]),
                                        guidance=float(gen_cfg.get("guidance", 30.0)),
                                        max_sequence_length=int(gen_cfg.get("max_sequence_length", 32)),
                                        batch_size=int(gen_cfg.get("batch_size", 32))))
        scores = oracle_scores(flat_conds, imgs)
        per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for c, s in zip(flat_conds, scores, strict=True):
            for k, v in s.items():
                per[c.task][k].append(v)
        return mean_scores(scores), {t: {k: float(np.mean(v)) for k, v in d.items()} for t, d in per.items()}

    base_scores, base_means = eval_policy(FillPolicy.from_pretrained(base_dir))
    win, detail, mean_by_policy = {}, {}, {"base": base_means}
    for name, final in finals.items():
        scores, means = eval_policy(FillPolicy.from_pretrained(base_dir, weights=final))
        win[name] = oracle_win_rate(base_scores, scores, tasks)
        detail[name] = win_rate_detail(base_scores, scores, tasks, [c.id for c in flat_conds], threshold)
        mean_by_policy[name] = means
        if progress is not None:
            progress(f"  {name}: win rate vs base {win[name]}")
    return PolicyEvaluation(win_rate=win, detail=detail, mean_scores=mean_by_policy, items=len(flat_conds))
