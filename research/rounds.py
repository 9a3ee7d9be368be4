"""More rounds of the loop: what RL made goes back to the annotators, and the reward model learns it.

The paper's loop, and the platform's, is closed: the RL policy's outputs flow back to annotators.
A reward model trained only on the base policy's candidates has never seen what RL will make, and
RL finds exactly what it gets wrong (every tiny reward model here pays for "more of the named
colour" with seams and blotches). One more round shows it those outputs:

1. RL with the current reward model (from the base policy, the loop's RL config with overrides);
2. the RL policy and the base fill the loop's RL conditions again (new seeds);
3. the simulated annotators judge every pair of those candidates, as in the loop;
4. the snapshot grows by these pairs (``merge_snapshots``) and a new reward model is trained on it
   from scratch with the loop's recipe;
5. repeat; the last reward model drives a final RL run.

Every reward model is scored against the oracle on the held-out pairs of every round (the base's
candidates and each RL policy's), and every RL policy by its oracle win rate against the base,
exactly as ``research.loop`` does. ``round_probe`` runs this on a finished loop:
``python -m research.rounds <loop_dir> <size> '<json overrides>' [name]`` writes
``<loop_dir>/round-<name>/probe.json``. Engine level: no Django.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.snapshot import load_manifest, read_raw_rows, write_manifest, write_pairs
from research.loop import (
    SNAPSHOT_SCHEMA,
    heldout_split,
    run_rl,
    simulate_judgments,
    train_reward_model,
    write_snapshot,
)
from research.probes import (
    loop_base_dir,
    loop_conditions,
    loop_config,
    reward_config_with,
    snapshot_candidates,
)
from synthetic.annotators import make_pool
from synthetic.candidate_fills import generate_images, oracle_pairs, oracle_scores
from synthetic.loop_config import Progress, print_progress
from synthetic.oracle_metrics import (
    evaluate_policies,
    human_ceiling_by_criterion,
    oracle_accuracy_table,
    oracle_judged,
)
from synthetic.scenes import TASK_CRITERIA, Condition


@dataclass(frozen=True)
class RoundConfig:
    """What a round probe changes on top of the loop's config (all optional in the JSON)."""

    #: RL runs in all; each but the last is followed by an annotation round and a new reward model.
    rounds: int = 2
    #: Overrides on the loop's ``rl`` section, for every RL run.
    rl: Mapping[str, Any] = field(default_factory=dict)
    #: Overrides on the loop's ``reward`` section, for every new reward model.
    reward: Mapping[str, Any] = field(default_factory=dict)
    #: Candidates per condition in an annotation round, from the RL policy and from the base.
    policy_samples: int = 2
    base_samples: int = 2
    #: What a new reward model trains on: every round's pairs ("all", the platform's union of
    #: campaigns) or the latest annotation round's only ("latest", a diagnostic: can the model
    #: read the RL policy's outputs when nothing else competes for it?).
    reward_data: str = "all"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundConfig:
        """Build from JSON; an unknown key or a bad count is a ValueError that names it."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown round option(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        config = cls(**data)
        if config.rounds < 2:
            raise ValueError("rounds must be at least 2 (one annotation round between two RL runs)")
        if config.policy_samples < 1 or config.base_samples < 0 or config.policy_samples + config.base_samples < 2:
            raise ValueError("a round needs at least one policy sample and two candidates per condition")
        if config.reward_data not in ("all", "latest"):
            raise ValueError(f"reward_data must be 'all' or 'latest', got {config.reward_data!r}")
        return config


def merge_snapshots(sources: Sequence[Path], out_dir: Path) -> Path:
    """One snapshot holding every row of ``sources``, in order (the platform's union of campaigns).

    Pair and candidate ids get the source's round as a prefix (``r2/…``), so rows of different
    rounds never collide; images are content-addressed, so shared ones are stored once. The
    manifest keeps the first source's human ceiling and lists every source's content hash.
    """
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    rows, hashes = [], []
    for k, src in enumerate(sources, start=1):
        src = Path(src)
        for image in (src / "images").iterdir():
            if not (out / "images" / image.name).exists():
                shutil.copyfile(image, out / "images" / image.name)
        for row in read_raw_rows(src):
            rows.append({**row, "pair_id": f"r{k}/{row['pair_id']}",
                         "winner_candidate_id": f"r{k}/{row['winner_candidate_id']}",
                         "loser_candidate_id": f"r{k}/{row['loser_candidate_id']}"})
        hashes.append(load_manifest(src)["content_hash"])
    write_pairs(out, rows, SNAPSHOT_SCHEMA)
    manifest = load_manifest(sources[0])
    manifest.update({
        "content_hash": "+".join(hashes),
        "filter": {"source": "research.rounds", "merged": [str(s) for s in sources]},
        "counts": {"pairs": len(rows), "images": len(list((out / "images").iterdir())),
                   **{sp: sum(1 for r in rows if r["split"] == sp) for sp in ("train", "val", "test")}},
    })
    write_manifest(out, manifest, sort_keys=False)
    return out


def round_candidates(policy, base, conditions: Sequence[Condition], cfg: Mapping[str, Any], config: RoundConfig,
                     seed: int, round_index: int) -> list[list[np.ndarray]]:
    """``policy_samples`` fills by the RL policy, then ``base_samples`` by the base, per condition.

    Seeds differ from the loop's candidates and from every other round, so no image repeats."""
    gen = cfg["candidates"]
    common = {"steps": 4, "guidance": float(gen.get("guidance", 30.0)),
              "max_sequence_length": int(gen.get("max_sequence_length", 32)), "batch_size": int(gen.get("batch_size", 32))}
    models = [policy] * config.policy_samples + [base] * config.base_samples
    per_model = [generate_images(model, conditions, seed=seed * 1000 + 500 * round_index + 17 * k + 3, **common)
                 for k, model in enumerate(models)]
    return [[images[i] for images in per_model] for i in range(len(conditions))]


def annotate_round(conditions: Sequence[Condition], candidates: Sequence[Sequence[np.ndarray]],
                   cfg: Mapping[str, Any], seed: int, round_index: int, out_dir: Path) -> tuple[Path, list, int]:
    """The loop's annotator pool judges every candidate pair (fresh noise per round); returns the
    round's snapshot, the candidates' oracle scores and the number of judgments."""
    ann = cfg["annotators"]
    pool = make_pool(int(ann["n"]), float(ann.get("careless_fraction", 0.1)), seed=seed)
    votes = int(ann.get("votes_per_pair", 1))
    scores = [oracle_scores([c] * len(cands), cands) for c, cands in zip(conditions, candidates, strict=True)]
    noise_seed = seed + 7919 * round_index
    judgments = simulate_judgments(conditions, scores, pool, seed=noise_seed, votes_per_pair=votes)
    ceiling = human_ceiling_by_criterion(conditions, scores, pool, seed=noise_seed + 1, votes_per_pair=votes)
    return write_snapshot(out_dir, conditions, candidates, judgments, ceiling), scores, len(judgments)


def round_probe(work_dir: str | Path, size: str = "full", overrides: Mapping[str, Any] | None = None,
                name: str = "probe", seed: int = 0, progress: Progress = print_progress) -> dict[str, Any]:
    """Run ``RoundConfig`` rounds on a finished loop (module docstring) and return what was measured:
    per reward model its oracle accuracy on each round's held-out pairs, per RL run its win rate
    against the base (with ``win_rate_detail`` and per-criterion means), judgments per round, seconds."""
    from policytrain.engine.pipeline import FillPolicy
    from rewardtrain.engine.scorer import RewardScorer

    config = RoundConfig.from_dict(dict(overrides or {}))
    work = Path(work_dir).resolve()
    cfg = loop_config(work, size)
    base_dir = loop_base_dir(work, size, seed)
    first_rm, first_snapshot, conditions_dir = work / "rm-run" / "final", work / "snapshot", work / "conditions-train"
    for path in (base_dir, first_rm, first_snapshot, conditions_dir):
        if not path.exists():
            raise ValueError(f"{path} is missing: run the loop first (python -m research.loop {size} {work})")
    out = work / f"round-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t_all = time.time()
    res = int(cfg["resolution"])
    train_conds, heldout = loop_conditions(cfg, "train", seed), loop_conditions(cfg, "heldout", seed)
    rl_cfg = {k: v for k, v in cfg["rl"].items() if k != "control_algorithm"} | dict(config.rl)
    algorithm = int(rl_cfg.pop("algorithm", 1))
    reward_cfg = reward_config_with(cfg["reward"], dict(config.reward))
    threshold = float(cfg["eval"].get("oracle_tie_threshold", 0.03))

    def is_test(condition_id: str) -> bool:
        return heldout_split(condition_id) == "test"

    # Held-out pairs per round: the loop's candidates first, then each annotation round's.
    conds, cands = snapshot_candidates(first_snapshot, [c for c in train_conds if is_test(c.id)])
    held_pairs = {"round_1": oracle_pairs(conds, cands, [oracle_scores([c] * len(k), k) for c, k in
                                                         zip(conds, cands, strict=True)], keep=is_test)}
    reward_models, snapshots, policies = [first_rm], [first_snapshot], {}
    judgments = {"round_1": len(read_raw_rows(first_snapshot))}
    timings: dict[str, float] = {}
    base = FillPolicy.from_pretrained(base_dir)
    for r in range(1, config.rounds + 1):
        t0 = time.time()
        policy_dir = out / f"rl-{r}"
        run_rl(rl_cfg, base_dir=base_dir, conditions_dir=conditions_dir, out=policy_dir, reward_model=reward_models[-1],
               algorithm=algorithm, resolution=res, seed=seed, progress=progress, label=f"round {r}")
        policies[f"round_{r}"] = policy_dir / "final"
        timings[f"rl_{r}"] = round(time.time() - t0, 1)
        if r == config.rounds:
            break
        t0 = time.time()
        policy = FillPolicy.from_pretrained(base_dir, weights=policy_dir / "final")
        candidates = round_candidates(policy, base, train_conds, cfg, config, seed, r + 1)
        del policy
        snapshot, scores, n = annotate_round(train_conds, candidates, cfg, seed, r + 1, out / f"snapshot-{r + 1}")
        judgments[f"round_{r + 1}"] = n
        held_pairs[f"round_{r + 1}"] = oracle_pairs(train_conds, candidates, scores, keep=is_test)
        snapshots.append(snapshot)
        merged = merge_snapshots(snapshots if config.reward_data == "all" else snapshots[-1:],
                                 out / f"snapshot-merged-{r + 1}")
        progress(f"  round {r + 1}: {n} judgments on the RL policy's and the base's candidates; "
                 f"{sum(judgments.values())} in all")
        timings[f"annotate_{r + 1}"] = round(time.time() - t0, 1)
        t0 = time.time()
        _, final, _ = train_reward_model(reward_cfg, merged, out, seed, progress, out_name=f"rm-{r + 1}")
        reward_models.append(final)
        timings[f"reward_model_{r + 1}"] = round(time.time() - t0, 1)

    t0 = time.time()
    accuracy: dict[str, dict[str, Any]] = {}
    for k, folder in enumerate(reward_models, start=1):
        scorer = RewardScorer.from_pretrained(folder)
        accuracy[f"reward_model_{k}"] = {}
        for pairs_name, pairs in held_pairs.items():
            acc, n_pairs = oracle_accuracy_table(oracle_judged(scorer, pairs, threshold=threshold))
            accuracy[f"reward_model_{k}"][pairs_name] = {"accuracy": acc, "pairs": n_pairs}
        del scorer
    evaluation = evaluate_policies(base_dir, policies, heldout, cfg, progress)
    timings["evaluate"] = round(time.time() - t0, 1)
    result = {"name": name, "overrides": dict(overrides or {}), "algorithm": algorithm,
              "judgments": judgments, "oracle_accuracy": accuracy,
              "win_rate_vs_base": evaluation.win_rate, "win_rate_detail": evaluation.detail,
              "mean_oracle_scores": evaluation.mean_scores,
              "timings": {**timings, "total": round(time.time() - t_all, 1)}}
    (out / "probe.json").write_text(json.dumps(result, indent=2))
    return result


def format_round_probe(result: Mapping[str, Any]) -> str:
    """The probe as two Markdown tables: reward-model oracle accuracy per round of pairs, and RL win rates."""
    columns = [f"{task}:{criterion}" for task, criteria in TASK_CRITERIA.items() for criterion in criteria]
    lines = ["| reward model | pairs | " + " | ".join(columns) + " |", "| --- | --- |" + " --- |" * len(columns)]
    for rm, per_pairs in result["oracle_accuracy"].items():
        for pairs_name, table in per_pairs.items():
            cells = []
            for column in columns:
                task, criterion = column.split(":")
                value = table["accuracy"].get(task, {}).get(criterion)
                cells.append("n/a" if value is None else f"{value:.3f} ({table['pairs'][task][criterion]})")
            lines.append(f"| {rm} | {pairs_name} | " + " | ".join(cells) + " |")
    lines += ["", "| RL run | fill | extend | removal |", "| --- | --- | --- | --- |"]
    for run, win in result["win_rate_vs_base"].items():
        lines.append(f"| {run} | " + " | ".join(f"{win.get(t, float('nan')):.3f}" for t in ("fill", "extend", "removal"))
                     + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m research.rounds <loop_dir> <size> ['<json overrides>'] [name]")
    loop_dir, loop_size, *rest = sys.argv[1:]
    try:
        found = round_probe(loop_dir, loop_size, json.loads(rest[0]) if rest else {},
                            rest[1] if len(rest) > 1 else "probe")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(format_round_probe(found))
    print(json.dumps({"judgments": found["judgments"], "timings": found["timings"]}))
