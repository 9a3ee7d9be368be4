"""Probes: re-run one stage of a finished ``research.loop`` run with config overrides and measure it
like the loop.

``rl_probe`` re-runs RL (with the trained, untrained or an oracle reward) and reports the oracle
win rate against the base; ``rm_probe`` retrains the reward model (optionally on oracle labels or
a few criteria) and reports its oracle accuracy, also on the base's own samples. From the
repository root::

    python -m research.probes rl <loop_dir> <size> ['<json overrides>'] [name] [--reward=oracle]
    python -m research.probes rm <loop_dir> <size> ['<json overrides>'] [name] [task:criterion ...] [--oracle-labels]
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts.snapshot import read_raw_rows
from research.loop import filtered_snapshot, heldout_split, run_rl, train_reward_model
from synthetic.candidate_fills import on_policy_pairs, oracle_pairs, oracle_scores
from synthetic.loop_config import (
    Progress,
    load_demo_config,
    make_condition_sets,
    print_progress,
    quiet_libraries,
)
from synthetic.oracle_metrics import (
    describe_win,
    evaluate_policies,
    oracle_accuracy,
    oracle_accuracy_by_margin,
    oracle_accuracy_table,
    oracle_judged,
)
from synthetic.scenes import TASK_CRITERIA, Condition

#: A probe's summary (mean / min oracle accuracy) leaves out criteria with fewer held-out pairs.
MIN_SUMMARY_PAIRS = 10


def loop_config(work: Path, size: str) -> dict[str, Any]:
    """The config a finished loop ran with (its ``report.json``), else ``configs/demo/<size>.json``."""
    report = work / "report.json"
    if report.is_file():
        return json.loads(report.read_text())["config"]
    return load_demo_config(size)


def loop_base_dir(work: Path, size: str, seed: int = 0) -> Path:
    """Where a finished loop keeps its pre-trained base policy (``run_loop``'s default cache)."""
    return work / "cache" / f"pretrain-{size}-{seed}" / "final"


def loop_conditions(cfg: dict[str, Any], name: str, seed: int = 0) -> list[Condition]:
    """One of a loop's condition sets (``"train"``, ``"heldout"``), rebuilt from its config: each
    set's seed comes from its name alone, so building one set gives the loop's."""
    return make_condition_sets({name: cfg["conditions"][name]}, seed, int(cfg["resolution"]))[name]


def reward_config_with(reward: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A loop's ``reward`` section with ``overrides`` on top; ``base`` is merged key by key."""
    return {**reward, **overrides, "base": {**reward.get("base", {}), **overrides.get("base", {})}}


#: What drives a probe's RL (``rl_probe(reward=…)``): the loop's trained reward model, its untrained
#: one (the loop's control), or the differentiable oracle ports, with or without text alignment,
#: or reversed on a share of the conditions (``oracle-wrong-<percent>``, see ``probe_oracle_reward``).
PROBE_REWARDS = ("trained", "untrained", "baseline", "oracle", "oracle-no-text", "oracle-v2", "oracle-wrong-<percent>")


def probe_oracle_reward(reward: str) -> dict[str, Any] | None:
    """``oracle_reward_fn`` options for an oracle ``reward`` name (None for a reward model); a
    ValueError names the choices. ``oracle-wrong-20`` reverses the reward on 20 % of the
    (condition, criterion) pairs: a stand-in for a reward model that is 80 % right."""
    if reward in ("trained", "untrained", "baseline"):
        return None
    if reward in ("oracle", "oracle-no-text"):
        return {"text_alignment": reward == "oracle", "wrong_share": 0.0}
    if reward == "oracle-v2":  # the ports of ADR 0021: removal's residue share, structure's "no object"
        return {"text_alignment": True, "wrong_share": 0.0, "version": 2}
    percent = reward.removeprefix("oracle-wrong-")
    if percent != reward and percent.isdigit() and int(percent) <= 100:
        return {"text_alignment": True, "wrong_share": int(percent) / 100}
    raise ValueError(f"reward must be one of {', '.join(PROBE_REWARDS)} (percent 0-100), got {reward!r}")


def rl_probe(work_dir: str | Path, size: str = "full", overrides: dict[str, Any] | None = None,
             name: str = "probe", seed: int = 0, reward: str = "trained",
             progress: Progress = print_progress) -> dict[str, Any]:
    """Re-run only RL (Algorithm 1 unless ``overrides`` say otherwise) on a finished loop's base policy
    and reward model, with ``overrides`` on the config's ``rl`` section, and evaluate it like the loop.

    For trying RL settings without repeating pre-training, annotation and reward training;
    ``python -m research.probes rl <work_dir> <size> '<json overrides>' [name]
    [--reward=<reward>]``. ``reward`` (``PROBE_REWARDS``) picks the loop's trained reward model
    (default), its untrained one (the loop's control, to check that a setting does not gain without
    a trained reward), the baseline learner trained on the loop's annotator labels ("baseline",
    ``_baseline_reward``), or differentiable ports of the oracles (``research.oracle_reward``;
    "oracle-no-text" leaves text alignment out, "oracle-wrong-<percent>" reverses them on that share
    of the conditions, "oracle-v2" uses the ports' version 2, ``research.oracle_reward.PORT_VERSIONS``):
    diagnostics and upper bounds, never a way to train a demo policy.
    """
    oracle_options = probe_oracle_reward(reward)
    quiet_libraries()
    work = Path(work_dir).resolve()
    cfg = loop_config(work, size)
    base_dir = loop_base_dir(work, size, seed)
    reward_models = {"trained": work / "rm-run" / "final", "untrained": work / "rm-untrained"}
    for path in (base_dir, *reward_models.values(), work / "conditions-train"):
        if not path.exists():
            raise ValueError(f"{path} is missing: run the loop first (python -m research.loop {size} {work})")
    rl_cfg = {k: v for k, v in cfg["rl"].items() if k != "control_algorithm"}
    rl_cfg.update(overrides or {})
    algorithm = int(rl_cfg.pop("algorithm", 1))
    reward_fn = None
    if reward == "baseline":
        reward_fn = _baseline_reward(work)
    if oracle_options is not None:
        if not rl_cfg.get("paste_back", True):
            raise ValueError("an oracle reward finds each image's condition by its pasted-back source: "
                             "it needs paste_back true")
        reward_fn = _oracle_reward(work / "conditions-train", cfg, seed, **oracle_options)
    t0 = time.time()
    out = work / f"probe-{name}"
    result = run_rl(rl_cfg, base_dir=base_dir, conditions_dir=work / "conditions-train", out=out,
                    reward_model=reward_models.get(reward), algorithm=algorithm,
                    resolution=int(cfg["resolution"]), seed=seed, progress=progress, label=name, reward_fn=reward_fn)
    heldout = loop_conditions(cfg, "heldout", seed)
    evaluation = evaluate_policies(base_dir, {name: out / "final"}, heldout, cfg, progress)
    probe = {"name": name, "overrides": overrides or {}, "algorithm": algorithm, "reward": reward,
             "win_rate_vs_base": evaluation.win_rate[name], "win_rate_detail": evaluation.detail[name],
             "mean_oracle_scores": evaluation.mean_scores, "last_metrics": result.get("last_metrics"),
             "seconds": round(time.time() - t0, 1)}
    (out / "probe.json").write_text(json.dumps(probe, indent=2))
    return probe


def _baseline_reward(work: Path):
    """**The baseline learner as RL's reward, for quick iteration** (issue #22: it may drive RL,
    marked as such): the siamese CNN trained on the loop's annotator snapshot (never the oracle;
    ``research.distill.train_loop_baseline``, cached under ``<loop>/baseline-reward``), its log-odds
    of "first better than second" through the pixels, as RL reads a reward model's."""
    from research.distill import BaselineScorer, train_loop_baseline

    scorer = BaselineScorer.from_folder(train_loop_baseline(work, work / "baseline-reward"))

    def reward(first, second, task, criterion, prompts):
        return scorer.differentiable(first, second, task, criterion, prompts, return_log_odds=True)

    return reward


def _oracle_reward(conditions_dir: Path, cfg: dict[str, Any], seed: int, **options: Any):
    """``research.oracle_reward.oracle_reward_fn`` over a loop's RL conditions, loaded as RL loads them."""
    import torch

    from policytrain.engine.pipeline import load_condition_tensors, load_conditions
    from research.oracle_reward import oracle_reward_fn

    res = int(cfg["resolution"])
    scenes = {c.id: c for c in loop_conditions(cfg, "train", seed)}
    folder = load_conditions(conditions_dir)
    tensors = [load_condition_tensors(c, res) for c in folder]
    return oracle_reward_fn([scenes[c.id] for c in folder], torch.cat([t[0] for t in tensors]),
                            torch.cat([t[1] for t in tensors]), seed=seed, **options)


def snapshot_candidates(snapshot_dir: str | Path, conditions: Sequence[Condition]
                        ) -> tuple[list[Condition], list[list[np.ndarray]]]:
    """The candidate images a loop's snapshot holds, read back from its PNGs and grouped per
    condition (candidate index order), for those of ``conditions`` that have any judged pair."""
    snap = Path(snapshot_dir)
    found: dict[str, dict[int, str]] = defaultdict(dict)
    for row in read_raw_rows(snap):
        for side in ("winner", "loser"):
            cid, k = row[f"{side}_candidate_id"].rsplit("#", 1)
            found[cid][int(k)] = row[side]
    by_id = {c.id: c for c in conditions}
    conds, cands = [], []
    for cid, paths in found.items():
        if cid not in by_id:
            continue
        conds.append(by_id[cid])
        cands.append([np.asarray(Image.open(snap / paths[k]).convert("RGB"), dtype=np.float32) / 255.0
                      for k in sorted(paths)])
    return conds, cands


def oracle_labelled(row: dict) -> dict:
    """A snapshot row with the oracle-better image as the winner (from its signed ``oracle_margin``)."""
    if "oracle_margin" not in row:
        raise ValueError("this snapshot has no oracle margins (only research.loop runs write them)")
    if row["oracle_margin"] >= 0:
        return row
    return {**row, "winner": row["loser"], "loser": row["winner"], "oracle_margin": -row["oracle_margin"],
            "winner_candidate_id": row["loser_candidate_id"], "loser_candidate_id": row["winner_candidate_id"]}


def rm_probe(work_dir: str | Path, size: str = "full", overrides: dict[str, Any] | None = None,
             name: str = "probe", seed: int = 0, criteria: Sequence[str] = (), oracle_labels: bool = False,
             progress: Progress = print_progress) -> dict[str, Any]:
    """Re-train only the reward model of a finished loop, with ``overrides`` on the config's
    ``reward`` section (``base`` is merged key by key), and measure its oracle accuracy on the
    loop's held-out pairs, beside the loop's own reward model on the very same pairs.

    ``criteria`` (``"task:criterion"`` items) keeps only those criteria's training pairs: a
    reward model per criterion shows what the mixed one gives away by sharing one model.
    ``oracle_labels`` trains on the oracle's preference instead of the annotators' (a diagnostic:
    the model's ceiling with noise-free labels; never a way to train a demo model).
    ``python -m research.probes rm <work_dir> <size> '<json overrides>' [name] [--oracle-labels]
    [task:criterion ...]`` writes ``<work_dir>/rm-probe-<name>/probe.json``.
    """
    quiet_libraries()
    from rewardtrain.engine.scorer import RewardScorer

    work = Path(work_dir).resolve()
    cfg = loop_config(work, size)
    snapshot = work / "snapshot"
    if not (snapshot / "pairs.jsonl").is_file():
        raise ValueError(f"{snapshot} is missing: run the loop first (python -m research.loop {size} {work})")
    unknown = [c for c in criteria if c.split(":", 1)[-1] not in TASK_CRITERIA.get(c.split(":", 1)[0], ())]
    if unknown:
        raise ValueError(f"unknown task:criterion {unknown}; expected e.g. fill:consistency")
    overrides = dict(overrides or {})
    reward_cfg = reward_config_with(cfg["reward"], overrides)
    out = work / f"rm-probe-{name}"
    out.mkdir(parents=True, exist_ok=True)
    train_snapshot = snapshot
    if criteria or oracle_labels:
        keep = {tuple(c.split(":", 1)) for c in criteria}
        train_snapshot = filtered_snapshot(
            snapshot, out / "snapshot",
            lambda r: not keep or r["split"] != "train" or (r["task"], r["criterion"]) in keep,
            {"criteria": sorted(criteria), "oracle_labels": oracle_labels},
            edit=oracle_labelled if oracle_labels else None)
    t0 = time.time()
    _, final, result = train_reward_model(reward_cfg, train_snapshot, out, seed, progress, out_name="run")
    train_conds = loop_conditions(cfg, "train", seed)
    # Only the held-out conditions are scored: the others' images are not read at all.
    conds, cands = snapshot_candidates(snapshot, [c for c in train_conds if heldout_split(c.id) == "test"])
    scores = [oracle_scores([c] * len(k), k) for c, k in zip(conds, cands, strict=True)]
    pairs = oracle_pairs(conds, cands, scores, keep=lambda cid: True)
    on_policy_rows = []
    base_dir = loop_base_dir(work, size, seed)
    if base_dir.is_dir():  # the loop's base policy: also score both models on its own samples
        from policytrain.engine.pipeline import FillPolicy

        on_policy_rows = on_policy_pairs(FillPolicy.from_pretrained(base_dir), loop_conditions(cfg, "heldout", seed),
                                         cfg, seed)
    if criteria:
        pairs = [p for p in pairs if f"{p['task']}:{p['criterion']}" in criteria]
        on_policy_rows = [p for p in on_policy_rows if f"{p['task']}:{p['criterion']}" in criteria]
    thr = float(cfg["eval"].get("oracle_tie_threshold", 0.03))
    accuracy, n, by_margin, on_policy, on_policy_n = {}, {}, {}, {}, {}
    for label, folder in (("probe", final), ("loop", work / "rm-run" / "final")):
        if folder.is_dir():  # both models are scored on the same pairs, so one ``n`` serves
            scorer = RewardScorer.from_pretrained(folder)
            judged = oracle_judged(scorer, pairs, threshold=thr)
            (accuracy[label], n), by_margin[label] = oracle_accuracy_table(judged), oracle_accuracy_by_margin(judged)
            if on_policy_rows:
                on_policy[label], on_policy_n = oracle_accuracy(scorer, on_policy_rows, threshold=thr)
    probe = {"name": name, "overrides": overrides, "criteria": list(criteria), "oracle_labels": oracle_labels,
             "oracle_accuracy": accuracy,
             "oracle_pairs": n, "oracle_accuracy_by_margin": by_margin, **summary(accuracy.get("probe", {}), n),
             "on_policy_accuracy": on_policy, "on_policy_pairs": on_policy_n,
             **{f"on_policy_{k}": v for k, v in summary(on_policy.get("probe", {}), on_policy_n).items()},
             "train": {k: result.get(k) for k in ("steps", "train_loss", "train_accuracy", "train_seconds")},
             "seconds": round(time.time() - t0, 1)}
    (out / "probe.json").write_text(json.dumps(probe, indent=2))
    return probe


def summary(accuracy: dict[str, dict[str, float]], pairs: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean and min of an accuracy table over the criteria with at least ``MIN_SUMMARY_PAIRS``
    pairs (NaN when none has): a criterion with a handful of informative pairs (extend text
    alignment: the base rarely draws the object in the band) would swing them by chance."""
    flat = [v for t, cs in accuracy.items() for c, v in cs.items() if pairs[t][c] >= MIN_SUMMARY_PAIRS]
    return {"mean": float(np.mean(flat)) if flat else float("nan"), "min": float(np.min(flat)) if flat else float("nan")}


def _cli_options(args: list[str], allowed: str, valued: bool = False) -> tuple[list[str], str | None]:
    """Split a probe's CLI arguments into positionals and its one ``--`` option: None when absent,
    "" for a flag, the value of a ``valued`` option (``--name=value``; the caller checks it)."""
    options = [a for a in args if a.startswith("--")]
    value = None
    for option in options:
        flag, eq, given = option.partition("=")
        if flag != allowed or (not given if valued else bool(eq)):
            raise SystemExit(f"unknown option {option!r}; the only one is {allowed}{'=…' if valued else ''}")
        value = given
    return [a for a in args if a not in options], value


def main(argv: list[str]) -> None:
    """``python -m research.probes rl|rm <loop_dir> <size> …`` (module docstring): print the probe's numbers."""
    if len(argv) < 3 or argv[0] not in ("rl", "rm"):
        raise SystemExit("usage: python -m research.probes rl|rm <loop_dir> <size> ['<json overrides>'] [name] …")
    kind, loop_dir, loop_size, *rest = argv
    if kind == "rl":
        rest, reward = _cli_options(rest, "--reward", valued=True)
        try:
            probe_oracle_reward(reward or "trained")
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        found = rl_probe(loop_dir, loop_size, json.loads(rest[0]) if rest else {}, rest[1] if len(rest) > 1 else "probe",
                         reward=reward or "trained")
        print(json.dumps({k: found[k] for k in ("name", "overrides", "reward", "win_rate_vs_base", "seconds")}))
        for task, d in found["win_rate_detail"].items():
            print(f"  {task}: {found['win_rate_vs_base'][task]:.3f} {describe_win(d)}")
        return
    rest, oracle_labels = _cli_options(rest, "--oracle-labels")
    found = rm_probe(loop_dir, loop_size, json.loads(rest[0]) if rest else {},
                     rest[1] if len(rest) > 1 else "probe", criteria=rest[2:], oracle_labels=oracle_labels is not None)
    print(json.dumps({k: found[k] for k in ("name", "overrides", "criteria", "oracle_accuracy", "mean", "min",
                                             "on_policy_accuracy", "on_policy_mean", "seconds")}))


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    main(sys.argv[1:])
