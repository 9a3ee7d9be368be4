"""What RL sees of the reward model, per grad step k (issue #22, "prove the loop learns").

RL's one-step x0 is predicted after k no-grad steps, k ~ U{⌈t1·N⌉ .. ⌊t2·N⌋} of ``policy_steps`` N
(``policytrain.engine.onestep.sample_grad_step``). The demo's RL diagnostics
(``synthetic.rl_diagnostics``) average over that draw; this probe pins k with the window
[k/N, k/N] and measures, for each k, the trained reward model and the untrained control on the
same pairs:

- one-step oracle accuracy per task × criterion with its interval (the demo report's keys), and per
  task pooled over criteria with an interval clustered by condition (a condition's criteria share
  its one pair);
- the gradient cosine per task × criterion (the report's keys), and per task as the mean over
  conditions of each condition's mean over its criteria, with a t interval over conditions (the
  conditions are independent draws, its criteria are not).

It runs on the diagnostics set (``make_task_sets("rl-diagnostics", …)``), never on the held-out
evaluation set, so that a window chosen from it is not tuned on the held-out win rates.
With the same seed every k uses the same noises (the k draw is made but pinned), so the rows are
paired across k.

``compare`` re-evaluates two finished RL probes (``research.probes rl``) on the held-out set with
the base's seeds: each against the base, and the second against the first head to head, every
item with the same noise for all three policies (a paired comparison). From the repository root::

    python -m research.timestep_probe k <loop_dir> <size> [out.json] [--conditions=48] [--gradient=16]
        [--oracle-port]
    python -m research.timestep_probe compare <loop_dir> <size> <probe_a> <probe_b> [out.json]
        [--per-task=200] [--set=rl-eval]
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.stats import grouped_interval
from synthetic import rl_diagnostics as diag
from synthetic.loop_config import make_task_sets, quiet_libraries
from synthetic.scenes import TASK_CRITERIA

MODELS = ("trained", "untrained")


def pinned_windows(policy_steps: int) -> dict[int, list[float]]:
    """k → the ``t_range`` [k/N, k/N] that makes RL's draw (``sample_grad_step``: k from
    ⌈t1·N⌉ to ⌊t2·N⌋) always give k; a rounding surprise would silently measure another k, so
    each window is checked against that arithmetic."""
    out = {}
    for k in range(policy_steps):
        window = [k / policy_steps, k / policy_steps]
        lo = min(policy_steps - 1, math.ceil(window[0] * policy_steps))
        hi = min(policy_steps - 1, max(lo, math.floor(window[1] * policy_steps)))
        if (lo, hi) != (k, k):
            raise ValueError(f"window {window} does not pin k={k} with {policy_steps} steps")
        out[k] = window
    return out


@contextlib.contextmanager
def recording() -> Iterator[dict[str, list]]:
    """Record what ``rl_diagnostics`` judges and measures, call by call (one call per model, in the
    order of its ``scorers``). Its report keeps per-criterion tables only; the per-task pooled
    intervals need the rows, and recording them avoids a second pass over the oracle's finite
    differences (most of the cost)."""
    calls: dict[str, list] = {"judged": [], "cosines": []}
    judge, cosines = diag.judge_rows, diag.gradient_cosines

    def judge_rows(*args, **kwargs):
        out = judge(*args, **kwargs)
        calls["judged"].append(out)
        return out

    def gradient_cosines(*args, **kwargs):
        out = cosines(*args, **kwargs)
        calls["cosines"].append(out)
        return out

    diag.judge_rows, diag.gradient_cosines = judge_rows, gradient_cosines
    try:
        yield calls
    finally:
        diag.judge_rows, diag.gradient_cosines = judge, cosines


def task_summary(judged: Sequence[tuple[dict[str, Any], float]], cosines: Sequence[dict[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    """Per task: ``accuracy`` pooled over criteria with ``accuracy_ci`` clustered by condition,
    ``pairs``, ``x0_better_share``; ``cosine`` = mean over conditions of each condition's mean
    cosine over its defined criteria, ``cosine_ci`` its t interval, ``cosine_conditions``."""
    out: dict[str, dict[str, Any]] = {}
    for task in TASK_CRITERIA:
        rows = [(r, c) for r, c in judged if r["task"] == task]
        per_cond: dict[str, list[float]] = defaultdict(list)
        for rec in cosines:
            if rec["task"] == task and rec["cosine"] is not None:
                per_cond[rec["condition_id"]].append(float(rec["cosine"]))
        cond_means = [float(np.mean(v)) for v in per_cond.values()]
        acc_ci = grouped_interval((r["condition_id"], c) for r, c in rows)
        cos_ci = diag.mean_interval(cond_means)
        out[task] = {
            "accuracy": float(np.mean([c for _, c in rows])) if rows else None,
            "accuracy_ci": list(acc_ci) if acc_ci else None,
            "pairs": len(rows),
            "x0_better_share": float(np.mean([r["policy_better"] for r, _ in rows])) if rows else None,
            "cosine": float(np.mean(cond_means)) if cond_means else None,
            "cosine_ci": list(cos_ci) if cos_ci else None,
            "cosine_conditions": len(cond_means),
        }
    return out


def per_k_diagnostics(scorers: dict[str, Any], policy, conditions, rl: dict[str, Any],
                      sizes: diag.DiagnosticSizes, seed: int = 0) -> dict[str, Any]:
    """``rl_diagnostics`` once per pinned k (``rl`` with ``t_range`` replaced), with each model's
    per-task summary (``task_summary``) beside its report keys."""
    steps = int(diag.rl_pair_settings(rl)["policy_steps"])
    out: dict[str, Any] = {}
    for k, window in pinned_windows(steps).items():
        with recording() as calls:
            found = diag.rl_diagnostics(scorers, policy, conditions, {**rl, "t_range": window}, sizes, seed)
        names = list(scorers)
        found["per_task"] = {name: task_summary(calls["judged"][i], calls["cosines"][i])
                             for i, name in enumerate(names)}
        found["t_range"] = window
        out[str(k)] = found
    return out


class OraclePortScorer:
    """**Diagnostic reward, right by construction**: the differentiable oracle ports
    (``research.oracle_reward``) behind the scorer method the diagnostics call. A positive control
    for the probe: at a k where the x0 image lets a reward point where the oracle does, the ports'
    cosine is far from 0, so a reward model's cosine near 0 there is the model's, not the
    estimator's. Never a reward model, never trained on."""

    def __init__(self, conditions):
        from research.oracle_reward import oracle_reward_fn
        from synthetic.candidate_fills import _condition_tensors

        src, masks = _condition_tensors(conditions)
        self._reward = oracle_reward_fn(list(conditions), src, masks)

    def differentiable(self, first, second, task, criterion, prompt=None, return_log_odds=False):
        import torch

        criteria = [criterion] * first.shape[0] if isinstance(criterion, str) else list(criterion)
        prompts = [prompt] * first.shape[0] if prompt is None or isinstance(prompt, str) else list(prompt)
        # the ports take one criterion per call; rows are independent, so one call per row
        return torch.cat([self._reward(first[i:i + 1], second[i:i + 1], task, c, [prompts[i]])
                          for i, c in enumerate(criteria)])


def _fmt(value: float | None, bounds: Sequence[float] | None, fmt: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:{fmt}}" + (f" [{bounds[0]:{fmt}}, {bounds[1]:{fmt}}]" if bounds else "")


def table_lines(windows: dict[str, Any], models: Sequence[str] = MODELS) -> list[str]:
    """The per-k table: per k and task, each model's pooled accuracy and mean cosine with intervals."""
    head = f"{'k':>2} {'task':<8} {'pairs':>5} {'x0 better':>9}"
    for m in models:
        head += f" | {m + ' acc [95 %]':<22} {m + ' cos [95 % t]':<28}"
    lines = [head]
    for k, found in windows.items():
        for task in TASK_CRITERIA:
            first = found["per_task"][models[0]][task]
            share = first["x0_better_share"]
            line = f"{k:>2} {task:<8} {first['pairs']:>5} {'n/a' if share is None else f'{share:.2f}':>9}"
            for m in models:
                s = found["per_task"][m][task]
                cosine = f"{_fmt(s['cosine'], s['cosine_ci'], '+.3f')} ({s['cosine_conditions']})"
                line += f" | {_fmt(s['accuracy'], s['accuracy_ci'], '.2f'):<22} {cosine:<28}"
            lines.append(line)
    return lines


def diagnostics_setup(work: Path, size: str, conditions_per_task: int, gradient_per_task: int, seed: int = 0,
                      trained: Path | None = None) -> tuple[dict[str, Any], Path, diag.DiagnosticSizes, list, dict]:
    """What the RL diagnostics of a finished loop need: its config, base policy folder, the sizes,
    the rl-diagnostics conditions and the scorers ``{"trained", "untrained"}`` (``trained``
    replaces the loop's own trained reward model); a missing folder is refused with the command
    that makes it."""
    from research.probes import loop_base_dir, loop_config
    from rewardtrain.engine.scorer import RewardScorer

    cfg = loop_config(work, size)
    paths = {"trained": trained or work / "rm-run" / "final", "untrained": work / "rm-untrained"}
    base_dir = loop_base_dir(work, size, seed)
    for path in (base_dir, *paths.values()):
        if not path.exists():
            raise ValueError(f"{path} is missing: run the loop first (python -m research.loop {size} {work})")
    sizes = diag.DiagnosticSizes(accuracy_conditions_per_task=conditions_per_task,
                                 gradient_conditions_per_task=gradient_per_task,
                                 threshold=float(cfg["eval"].get("oracle_tie_threshold", 0.03)))
    conds = make_task_sets("rl-diagnostics", conditions_per_task, seed, int(cfg["resolution"]))
    return cfg, base_dir, sizes, conds, {name: RewardScorer.from_pretrained(p) for name, p in paths.items()}


def run_k(loop_dir: str | Path, size: str, out_json: str | Path | None = None, conditions_per_task: int = 48,
          gradient_per_task: int = 16, seed: int = 0, oracle_port: bool = False) -> dict[str, Any]:
    """The per-k diagnostics of a finished loop's reward models at its base policy; with
    ``oracle_port`` also of the oracle ports (``OraclePortScorer``, a positive control)."""
    quiet_libraries()
    from policytrain.engine.pipeline import FillPolicy

    work = Path(loop_dir).resolve()
    cfg, base_dir, sizes, conds, scorers = diagnostics_setup(work, size, conditions_per_task, gradient_per_task, seed)
    if oracle_port:
        scorers["oracle-port"] = OraclePortScorer(conds)
    t0 = time.time()
    windows = per_k_diagnostics(scorers, FillPolicy.from_pretrained(base_dir), conds, cfg["rl"], sizes, seed)
    result = {"loop_dir": str(work), "size": size, "seed": seed, "config_t_range": cfg["rl"].get("t_range"),
              "policy_steps": int(diag.rl_pair_settings(cfg["rl"])["policy_steps"]),
              "conditions_per_task": conditions_per_task, "gradient_conditions_per_task": gradient_per_task,
              "windows": windows, "seconds": round(time.time() - t0, 1)}
    target = Path(out_json) if out_json else work / "timestep-probe.json"
    target.write_text(json.dumps(result, indent=2))
    print("\n".join(table_lines(windows, list(scorers))))
    print(f"written {target} ({result['seconds']} s)")
    return result


def compare(loop_dir: str | Path, size: str, probe_a: str, probe_b: str, out_json: str | Path | None = None,
            seed: int = 0, per_task: int | None = None, set_name: str = "rl-eval") -> dict[str, Any]:
    """Two RL probes' policies (``<loop_dir>/probe-<name>/final``) and the base on a held-out set
    with the config's eval seeds: each probe against the base and ``probe_b`` against ``probe_a``
    head to head (win rate with its interval clustered by condition), every item with the same
    noise for all three.

    The set is the loop's own held-out set, or with ``per_task`` that many conditions per task of
    the demo's RL evaluation set (``make_task_sets("rl-eval", …)``, as ``manage.py demo`` draws
    it): the quick loop holds out 16 per task, too few for an interval that decides anything.
    Either is disjoint from the diagnostics set a window is chosen on. ``set_name`` draws another
    named set instead of ``rl-eval`` (e.g. ``rl-tune``), so that RL settings can be chosen on a set
    the demo never evaluates on."""
    quiet_libraries()
    from policytrain.engine.pipeline import FillPolicy
    from research.probes import loop_base_dir, loop_conditions, loop_config
    from synthetic.candidate_fills import generate_images, mean_scores, oracle_scores
    from synthetic.oracle_metrics import oracle_win_rate, win_rate_detail

    work = Path(loop_dir).resolve()
    cfg = loop_config(work, size)
    base_dir = loop_base_dir(work, size, seed)
    heldout = (make_task_sets(set_name, per_task, seed, int(cfg["resolution"])) if per_task
               else loop_conditions(cfg, "heldout", seed))
    ev, gen_cfg = cfg["eval"], cfg["candidates"]
    flat = list(heldout) * len(ev["seeds"])
    tasks, groups = [c.task for c in flat], [c.id for c in flat]
    threshold = float(ev.get("oracle_tie_threshold", 0.03))

    def scores_of(weights: Path | None) -> list[float]:
        policy = FillPolicy.from_pretrained(base_dir, weights=weights)  # None: the base itself
        imgs = []
        for s in ev["seeds"]:  # the loop's evaluation noises (``evaluate_policies``)
            imgs.extend(generate_images(policy, heldout, seed=10_000 + int(s), steps=int(ev["steps"]),
                                        guidance=float(gen_cfg.get("guidance", 30.0)),
                                        max_sequence_length=int(gen_cfg.get("max_sequence_length", 32)),
                                        batch_size=int(gen_cfg.get("batch_size", 32))))
        return mean_scores(oracle_scores(flat, imgs))

    scores = {"base": scores_of(None)}
    for name in (probe_a, probe_b):
        final = work / f"probe-{name}" / "final"
        if not final.is_dir():
            raise ValueError(f"{final} is missing: run python -m research.probes rl {work} {size} … {name}")
        scores[name] = scores_of(final)
    pairs = {f"{probe_a} vs base": ("base", probe_a), f"{probe_b} vs base": ("base", probe_b),
             f"{probe_b} vs {probe_a}": (probe_a, probe_b)}
    result = {"items": len(flat), "pairs": {},
              "set": f"{set_name}, {per_task} per task" if per_task else "the loop's heldout"}
    for label, (old, new) in pairs.items():
        old_s, new_s = scores[old], scores[new]
        result["pairs"][label] = {"win_rate": oracle_win_rate(old_s, new_s, tasks),
                                  "detail": win_rate_detail(old_s, new_s, tasks, groups, threshold)}
    target = Path(out_json) if out_json else work / f"compare-{probe_a}-{probe_b}.json"
    target.write_text(json.dumps(result, indent=2))
    print("\n".join(compare_lines(result)))
    return result


def compare_lines(result: dict[str, Any]) -> list[str]:
    """``compare``'s result as text: per comparison and task, win rate, interval, mean change."""
    lines = []
    for label, found in result["pairs"].items():
        for task, d in found["detail"].items():
            lo, hi = d["ci95"]
            lines.append(f"{label:<28} {task:<8} {found['win_rate'][task]:.3f} [{lo:.2f}, {hi:.2f}] "
                         f"Δ {d['mean_delta']:+.4f}, {100 * d['perceptible_share']:.1f} % perceptible")
    return lines


def _options(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    opts: dict[str, Any] = {}
    rest = []
    for a in args:
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            if a == "--oracle-port":
                opts["oracle-port"] = 1
                continue
            if key == "set" and value:
                opts["set"] = value
                continue
            if key not in ("conditions", "gradient", "per-task") or not eq or not value.isdigit():
                raise SystemExit(f"unknown option {a!r}; options: --conditions=N --gradient=N "
                                 "--oracle-port (k), --per-task=N --set=NAME (compare)")
            opts[key] = int(value)
        else:
            rest.append(a)
    return rest, opts


def main(argv: list[str]) -> None:
    """``python -m research.timestep_probe k|compare …`` (module docstring)."""
    args, opts = _options(argv)
    if len(args) >= 3 and args[0] == "k":
        run_k(args[1], args[2], args[3] if len(args) > 3 else None, opts.get("conditions", 48),
              opts.get("gradient", 16), oracle_port=bool(opts.get("oracle-port")))
    elif len(args) >= 5 and args[0] == "compare":
        compare(args[1], args[2], args[3], args[4], args[5] if len(args) > 5 else None,
                per_task=opts.get("per-task"), set_name=opts.get("set", "rl-eval"))
    else:
        raise SystemExit("usage: python -m research.timestep_probe k <loop_dir> <size> [out.json] "
                         "[--conditions=N] [--gradient=N] [--oracle-port] | "
                         "compare <loop_dir> <size> <probe_a> <probe_b> [out.json] [--per-task=N] [--set=NAME]")


if __name__ == "__main__":  # pragma: no cover - manual use
    main(sys.argv[1:])
