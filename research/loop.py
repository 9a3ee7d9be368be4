"""The whole OneReward loop on the synthetic world, engine-level (no Django): a research tool.

``run_loop(size, work_dir, seed)`` does, with the plain-Python engines:

a. make conditions (pre-training / RL-and-annotation / held-out evaluation sets);
b. pre-train (or reuse the cached) base fill policy (``synthetic.base_policy``);
c. generate K candidates per condition with the base policy and earlier checkpoints of its
   pre-training (different seeds, step counts and model versions, as the paper's candidates come
   from several model versions and sampling settings);
d. simulate annotators on the candidates' oracle scores and write a dataset snapshot in the
   contract format (``pairs.jsonl`` + ``images/`` + ``manifest.json`` with ``human_ceiling``);
e. train the reward model (``rewardtrain.engine.train``) and evaluate it against the annotator
   labels and against the oracle on held-out pairs, per task × criterion;
f. RL with Algorithm 1 and Algorithm 2 driven by the trained reward model, and a control RL with
   the same config driven by the *untrained* reward model;
g. generate with every policy on held-out conditions with the base's seeds and step count and
   compute the oracle win rate against the base per task (win = higher mean oracle score over the
   task's criteria; an exact tie counts ½);
h. return (and write to ``<work_dir>/report.json``) the report.

The product's ``manage.py demo`` drives the same steps through the real services; this module
skips them to iterate on the ML quickly. Run from the repository root:
``python -m research.loop quick var/loop [seed]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from contracts.snapshot import PAIR_SCHEMA, load_manifest, read_raw_rows, write_manifest, write_pairs
from contracts.splits import split_for_key
from synthetic.annotators import SimulatedAnnotator, make_pool
from synthetic.candidate_fills import (
    candidate_spread,
    generate_images,
    on_policy_pairs,
    oracle_pairs,
    oracle_scores,
)
from synthetic.conditions import write_conditions_folder
from synthetic.loop_config import (
    Progress,
    load_demo_config,
    make_condition_sets,
    print_progress,
    quiet_libraries,
)
from synthetic.oracle_metrics import (
    describe_margins,
    describe_win,
    evaluate_policies,
    human_ceiling_by_criterion,
    oracle_accuracy,
    oracle_accuracy_by_margin,
    oracle_accuracy_table,
    oracle_judged,
)
from synthetic.reward_base import build_reward_base, untrained_reward_model
from synthetic.scenes import TASK_CRITERIA, Condition


@dataclass(frozen=True)
class Judgment:
    """One aggregated pairwise preference between two candidates of a condition."""

    condition_id: str
    task: str
    criterion: str
    prompt: str
    winner: int  # candidate index
    loser: int
    votes: int
    agreement: float
    oracle_margin: float  # oracle score of winner − loser (negative = label disagrees with the oracle)


def simulate_judgments(
    conditions: Sequence[Condition],
    candidate_scores: Sequence[Sequence[dict[str, float]]],
    pool: Sequence[SimulatedAnnotator],
    seed: int = 0,
    votes_per_pair: int = 1,
) -> list[Judgment]:
    """Every candidate pair of every condition, per applicable criterion, judged by
    ``votes_per_pair`` random annotators (random display order). Ties are dropped; with several
    votes the majority of decisive votes wins and pairs without a majority are dropped."""
    rng = np.random.default_rng(seed)
    out = []
    for cond, scores in zip(conditions, candidate_scores, strict=True):
        criteria = [c for c in TASK_CRITERIA[cond.task] if c in scores[0]]
        for i, j in combinations(range(len(scores)), 2):
            for crit in criteria:
                si, sj = scores[i][crit], scores[j][crit]
                tally = 0
                decisive = 0
                for _ in range(votes_per_pair):
                    ann = pool[int(rng.integers(len(pool)))]
                    i_left = rng.uniform() < 0.5
                    choice = ann.choose_pairwise(si if i_left else sj, sj if i_left else si, rng)
                    if choice == "tie":
                        continue
                    decisive += 1
                    tally += 1 if (choice == "left") == i_left else -1
                if tally == 0:
                    continue
                w, lo = (i, j) if tally > 0 else (j, i)
                margin = scores[w][crit] - scores[lo][crit]
                out.append(Judgment(cond.id, cond.task, crit, cond.prompt, w, lo, decisive,
                                    abs(tally) / decisive if decisive else 1.0, float(margin)))
    return out


def _png_bytes(image: np.ndarray) -> bytes:
    arr = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


#: Parquet columns of the loop's snapshots: the contract's, except that candidate ids are strings
#: (``<condition>#<k>``: the loop has no database ids) and each row keeps its ``oracle_margin``.
SNAPSHOT_SCHEMA = pa.schema(
    [f for f in PAIR_SCHEMA if not f.name.endswith("_candidate_id")]
    + [("winner_candidate_id", pa.string()), ("loser_candidate_id", pa.string()), ("oracle_margin", pa.float64())]
)


def heldout_split(condition_id: str) -> str:
    """Snapshot split of a condition: the conditions-folder hash split, with val folded into test."""
    return "train" if split_for_key(condition_id) == "train" else "test"


def write_snapshot(
    out_dir: str | Path,
    conditions: Sequence[Condition],
    candidates: Sequence[Sequence[np.ndarray]],
    judgments: Sequence[Judgment],
    human_ceiling: dict[str, dict[str, float]],
    split_of: Callable[[str], str] = heldout_split,
) -> Path:
    """Write a dataset snapshot (docs/engine-contracts.md) from judgments on candidate images."""
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    by_id = {c.id: k for k, c in enumerate(conditions)}
    paths: dict[tuple[int, int], str] = {}
    hasher = hashlib.sha256()

    def image_path(ci: int, k: int) -> str:
        if (ci, k) not in paths:
            data = _png_bytes(candidates[ci][k])
            digest = hashlib.sha256(data).hexdigest()
            rel = f"images/{digest}.png"
            (out / rel).write_bytes(data)
            paths[(ci, k)] = rel
        return paths[(ci, k)]

    rows = []
    for n, j in enumerate(judgments):
        ci = by_id[j.condition_id]
        row = {
            "pair_id": f"{j.condition_id}:{j.criterion}:{j.winner}-{j.loser}:{n}",
            "split": split_of(j.condition_id),
            "task": j.task,
            "criterion": j.criterion,
            "prompt": j.prompt,
            "winner": image_path(ci, j.winner),
            "loser": image_path(ci, j.loser),
            "sample_id": j.condition_id,
            "votes": j.votes,
            "agreement": j.agreement,
            "winner_candidate_id": f"{j.condition_id}#{j.winner}",
            "loser_candidate_id": f"{j.condition_id}#{j.loser}",
            "oracle_margin": j.oracle_margin,
        }
        rows.append(row)
        hasher.update(json.dumps(row, sort_keys=True).encode())
    write_pairs(out, rows, SNAPSHOT_SCHEMA)
    counts: dict[str, Any] = {"pairs": len(rows), "images": len(paths)}
    for split in ("train", "val", "test"):
        counts[split] = sum(1 for r in rows if r["split"] == split)
    manifest = {
        "content_hash": hasher.hexdigest(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "filter": {"source": "research.loop"},
        "aggregation": "majority of decisive votes per pair",
        "counts": counts,
        "human_ceiling": human_ceiling,
    }
    write_manifest(out, manifest, sort_keys=False)
    return out


def filtered_snapshot(snapshot_dir: str | Path, out_dir: str | Path, keep: Callable[[dict], bool],
                      note: dict[str, Any] | None = None, edit: Callable[[dict], dict] | None = None) -> Path:
    """A copy of a snapshot with only the rows ``keep`` accepts, each passed through ``edit`` if
    given; ``note`` is added to its filter."""
    src, out = Path(snapshot_dir), Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    kept = [edit(r) if edit else r for r in read_raw_rows(src) if keep(r)]
    shutil.copytree(src / "images", out / "images")  # the engine refuses paths outside the snapshot
    out.mkdir(parents=True, exist_ok=True)
    write_pairs(out, kept, SNAPSHOT_SCHEMA)
    manifest = load_manifest(src)
    manifest["counts"] = {"pairs": len(kept), "images": manifest.get("counts", {}).get("images"),
                          **{sp: sum(1 for r in kept if r["split"] == sp) for sp in ("train", "val", "test")}}
    manifest["filter"] = {**manifest.get("filter", {}), **(note or {})}
    write_manifest(out, manifest, sort_keys=False)
    return out


def warm_start_snapshot(snapshot_dir: str | Path, out_dir: str | Path, n_pairs: int) -> Path:
    """A copy of a snapshot whose train split keeps only ``n_pairs`` unanimous pairs (every vote
    agreed), picked by a hash of the pair id; other splits are kept as they are.

    Why: the tiny reward model starts on an order-symmetric saddle (loss ln 2) and, on the whole
    noisy snapshot, does not leave it in a demo's budget; on one small fixed batch of clear pairs
    it does. A short warm-up on such a batch, then training on
    the whole snapshot, is a curriculum on *annotator agreement* only — never on the oracle.
    """
    rows = read_raw_rows(snapshot_dir)

    def key(row: dict) -> str:
        return hashlib.sha256(row["pair_id"].encode()).hexdigest()

    unanimous = sorted((r for r in rows if r["split"] == "train" and r.get("votes", 1) > 1
                        and r.get("agreement", 0.0) >= 1.0), key=key)
    keep = {r["pair_id"] for r in unanimous[:n_pairs]}
    return filtered_snapshot(snapshot_dir, out_dir, lambda r: r["split"] != "train" or r["pair_id"] in keep,
                             {"warm_start_unanimous_pairs": len(keep)})


def train_reward_model(reward_cfg: dict[str, Any], snapshot: Path, work: Path, seed: int = 0,
                       progress: Progress = print_progress, out_name: str = "rm-run") -> tuple[Path, Path, dict]:
    """Build the tiny reward-model base (``reward_cfg["base"]``) in ``work/rm-base`` and train it on
    ``snapshot`` with the rest of ``reward_cfg`` into ``work/<out_name>``; returns (base folder,
    trained ``final/`` folder, the engine's result). ``reward_cfg["base"]["seed"]`` (default
    ``seed``) draws the base's random initialisation."""
    from rewardtrain.engine.config import RewardTrainConfig
    from rewardtrain.engine.train import train as rm_train

    rcfg = dict(reward_cfg)
    rm_base_opts = dict(rcfg.pop("base", {}))
    rm_base = build_reward_base(work / "rm-base", seed=int(rm_base_opts.pop("seed", seed)), **rm_base_opts)
    rm_common = {"device": "cpu", "seed": seed, "save_every": 0, "gradient_checkpointing": False,
                 "min_pixels": rm_base_opts.get("min_pixels", 112 * 112),
                 "max_pixels": rm_base_opts.get("max_pixels", 112 * 112)}
    warm = rcfg.pop("warm_start", None)
    rm_start = rm_base
    if warm:
        # Optional curriculum (see warm_start_snapshot): a few hundred steps on one small batch of
        # unanimous pairs, then the main run starts from those weights.
        warm_snap = warm_start_snapshot(snapshot, work / "snapshot-warm", int(warm["pairs"]))
        warm_cfg = {**rcfg, **{k: v for k, v in warm.items() if k != "pairs"}}
        warm_cfg.setdefault("batch_size", int(warm["pairs"]))
        shutil.rmtree(work / "rm-warm", ignore_errors=True)
        rm_train(RewardTrainConfig.from_dict({
            "base_model": str(rm_base), "snapshot_dir": str(warm_snap), "output_dir": str(work / "rm-warm"),
            **rm_common, **warm_cfg}), progress=lambda e: progress("  warm-up:" + _rm_line(e)) if _rm_line(e) else None)
        rm_start = work / "rm-warm" / "final"
    rm_out = work / out_name
    shutil.rmtree(rm_out, ignore_errors=True)
    rm_config = RewardTrainConfig.from_dict({
        "base_model": str(rm_start), "snapshot_dir": str(snapshot), "output_dir": str(rm_out), **rm_common, **rcfg,
    })

    def rm_progress(e: dict) -> None:
        if _rm_line(e):
            progress("  reward" + _rm_line(e))

    result = rm_train(rm_config, progress=rm_progress)
    return rm_base, rm_out / "final", result


def _nested(d: dict) -> dict:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}


def _rm_line(e: dict) -> str:
    """One progress line for a reward-engine train/eval event ('' for other events)."""
    if e.get("kind") not in ("train", "eval"):
        return ""
    return (f" {e['kind']} {e['step']}/{e['total_steps']} loss={e.get('loss', float('nan')):.4f} "
            f"acc={e.get('accuracy', float('nan')):.3f}")


def run_loop(
    size: str = "quick",
    work_dir: str | Path = "var/demo",
    seed: int = 0,
    progress: Progress = print_progress,
    config: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    base_policy: str | Path | None = None,
) -> dict[str, Any]:
    """Run the synthetic OneReward loop end to end and return the report (see module docstring).

    ``config`` replaces ``configs/demo/<size>.json``; ``cache_dir`` holds the pre-training run
    (default ``<work_dir>/cache``); ``base_policy`` skips pre-training and uses that Fill folder.
    """
    quiet_libraries()
    import torch

    from policytrain.engine.pipeline import FillPolicy
    from rewardtrain.engine.evaluate import evaluate
    from rewardtrain.engine.scorer import RewardScorer
    from synthetic.base_policy import PretrainConfig, pretrain

    cfg = config or load_demo_config(size)
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir).resolve() if cache_dir else work / "cache"
    res = int(cfg["resolution"])
    timings: dict[str, float] = {}
    t_all = time.time()

    def stage(name: str, started: float) -> None:
        timings[name] = round(time.time() - started, 2)
        progress(f"[{name}] done in {timings[name]:.1f}s")

    # (a) conditions -----------------------------------------------------------------------------
    t0 = time.time()
    sets = make_condition_sets(cfg["conditions"], seed, res)
    pre_dir = cache / f"conditions-pretrain-{res}-{seed}-{len(sets['pretrain'])}"
    if not (pre_dir / "conditions.jsonl").is_file():
        write_conditions_folder(sets["pretrain"], pre_dir)
    train_dir = work / "conditions-train"
    shutil.rmtree(train_dir, ignore_errors=True)
    write_conditions_folder(sets["train"], train_dir)
    heldout = sets["heldout"]
    stage("conditions", t0)

    # (b) base policy ----------------------------------------------------------------------------
    t0 = time.time()
    pcfg = PretrainConfig.from_dict({**cfg["pretrain"], "conditions_dir": str(pre_dir),
                                     "output_dir": str(cache / f"pretrain-{size}-{seed}"),
                                     "resolution": res, "seed": seed})

    def pre_progress(e: dict) -> None:
        progress(f"  pretrain {e['phase']} {e['step']}/{e['total_steps']} "
                 + " ".join(f"{k}={v:.4f}" for k, v in e.items() if k in ("loss", "recon_mse")))

    if base_policy:
        pre = {"final_dir": str(Path(base_policy).resolve()), "cached": True, "given": True}
        run_result = Path(base_policy).resolve().parent / "result.json"  # a pretrain run's final/
        if run_result.is_file():
            pre["checkpoints"] = json.loads(run_result.read_text()).get("checkpoints", {})
    else:
        pre = pretrain(pcfg, progress=pre_progress)
    base_dir = pre["final_dir"]
    progress(f"  base policy {'(cached) ' if pre.get('cached') else ''}{base_dir}")
    stage("pretrain", t0)

    # (c) candidates -----------------------------------------------------------------------------
    t0 = time.time()
    gen_cfg = cfg["candidates"]
    msl = int(gen_cfg.get("max_sequence_length", 32))
    base = FillPolicy.from_pretrained(base_dir)
    train_conds = sets["train"]
    per_cand = []
    generators = {"final": base}
    for k, spec in enumerate(gen_cfg["generators"]):
        model = str(spec.get("model", "final"))
        if model not in generators:
            generators[model] = FillPolicy.from_pretrained(pre["checkpoints"][model])
        per_cand.append(generate_images(generators[model], train_conds, seed=seed * 1000 + 17 * k + 1,
                                        steps=int(spec.get("steps", 4)),
                                        guidance=float(spec.get("guidance", gen_cfg.get("guidance", 30.0))),
                                        max_sequence_length=msl, batch_size=int(gen_cfg.get("batch_size", 32))))
    del generators
    candidates = [[per_cand[k][i] for k in range(len(per_cand))] for i in range(len(train_conds))]
    cand_scores = [oracle_scores([c] * len(cands), cands) for c, cands in zip(train_conds, candidates, strict=True)]
    spread = candidate_spread(candidates)
    progress(f"  {len(train_conds)} conditions x {len(per_cand)} candidates; pixel std {spread['image_std']:.1f}/255, "
             f"pair |diff| {spread['pair_abs_diff']:.1f}/255")
    stage("candidates", t0)

    # (d) annotation + snapshot -------------------------------------------------------------------
    t0 = time.time()
    ann = cfg["annotators"]
    pool = make_pool(int(ann["n"]), float(ann.get("careless_fraction", 0.1)), seed=seed)
    votes = int(ann.get("votes_per_pair", 1))
    judgments = simulate_judgments(train_conds, cand_scores, pool, seed=seed, votes_per_pair=votes)
    ceiling = human_ceiling_by_criterion(train_conds, cand_scores, pool, seed=seed + 1, votes_per_pair=votes)
    snapshot = write_snapshot(work / "snapshot", train_conds, candidates, judgments, ceiling)
    label_oracle = float(np.mean([j.oracle_margin > 0 for j in judgments])) if judgments else float("nan")
    progress(f"  {len(judgments)} judgments from {len(pool)} annotators; label/oracle agreement {label_oracle:.3f}")
    stage("annotate", t0)

    # (e) reward model ---------------------------------------------------------------------------
    t0 = time.time()
    rm_base, rm_final, rm_result = train_reward_model(cfg["reward"], snapshot, work, seed, progress)
    rm_eval = evaluate(rm_final, snapshot, split="test", device="cpu")
    scorer = RewardScorer.from_pretrained(rm_final)
    thr = float(cfg["eval"].get("oracle_tie_threshold", 0.03))
    held_pairs = oracle_pairs(train_conds, candidates, cand_scores, keep=lambda cid: heldout_split(cid) == "test")
    judged = oracle_judged(scorer, held_pairs, threshold=thr)
    oracle_acc, oracle_n = oracle_accuracy_table(judged)
    on_policy, on_policy_n = oracle_accuracy(scorer, on_policy_pairs(base, heldout, cfg, seed), threshold=thr)
    untrained = untrained_reward_model(rm_base, work / "rm-untrained")
    untrained_acc, _ = oracle_accuracy(RewardScorer.from_pretrained(untrained), held_pairs, threshold=thr)
    del scorer
    stage("reward_model", t0)

    # (f) RL -----------------------------------------------------------------------------------
    rl_cfg = dict(cfg["rl"])
    control_algorithm = rl_cfg.pop("control_algorithm", 1)
    runs = {"algorithm_1": (1, rm_final), "algorithm_2": (2, rm_final), "control": (control_algorithm, untrained)}
    finals = {}
    rl_results = {}
    for name, (algorithm, reward_model) in runs.items():
        t0 = time.time()
        out = work / f"rl-{name}"
        rl_results[name] = run_rl(rl_cfg, base_dir=base_dir, conditions_dir=train_dir, out=out,
                                  reward_model=reward_model, algorithm=algorithm, resolution=res, seed=seed,
                                  progress=progress, label=name)
        finals[name] = out / "final"
        stage(f"rl_{name}", t0)

    # (g) evaluation ------------------------------------------------------------------------------
    t0 = time.time()
    evaluation = evaluate_policies(base_dir, finals, heldout, cfg, progress)
    win = evaluation.win_rate
    stage("evaluate", t0)
    del torch

    report = {
        "size": size,
        "seed": seed,
        "resolution": res,
        "reward_model": {
            "accuracy": rm_eval["accuracy"],
            "oracle_accuracy": oracle_acc,
            "oracle_pairs": oracle_n,
            "oracle_accuracy_by_margin": oracle_accuracy_by_margin(judged),
            "untrained_oracle_accuracy": untrained_acc,
            "on_policy_oracle_accuracy": on_policy,
            "on_policy_pairs": on_policy_n,
            "human_ceiling": ceiling,
            "label_pairs": rm_eval["counts"],
            "position_consistency": rm_eval["position_consistency"],
            "train": {k: rm_result.get(k) for k in ("steps", "train_loss", "train_accuracy", "train_seconds")},
        },
        "policy": {
            "oracle_win_rate_vs_base": {k: win[k] for k in ("algorithm_1", "algorithm_2")},
            "control_win_rate_vs_base": win["control"],
            "win_rate_detail": evaluation.detail,
            "mean_oracle_scores": evaluation.mean_scores,
            "rl": {k: {"steps": v["steps"], "elapsed_s": round(v["elapsed_s"], 1),
                       "last_metrics": v.get("last_metrics")} for k, v in rl_results.items()},
        },
        "annotations": {
            "judgments": len(judgments),
            "annotators": len(pool),
            "careless": sum(a.careless for a in pool),
            "votes_per_pair": votes,
            "label_oracle_agreement": label_oracle,
        },
        "candidates": {"per_condition": len(per_cand), "spread": spread},
        "base_policy": {k: pre.get(k) for k in ("final_dir", "cached", "final_loss", "vae_recon_mse", "elapsed_s",
                                                 "transformer_parameters")},
        "conditions": {k: len(v) for k, v in sets.items()},
        "timings": {**timings, "total": round(time.time() - t_all, 2)},
        "config": _nested(cfg),
    }
    (work / "report.json").write_text(json.dumps(report, indent=2))
    progress(f"[total] {report['timings']['total']:.1f}s; report: {work / 'report.json'}")
    return report


def run_rl(rl_cfg: dict[str, Any], *, base_dir: str | Path, conditions_dir: Path, out: Path,
           reward_model: str | Path | None, algorithm: int, resolution: int, seed: int,
           progress: Progress = print_progress, label: str = "rl", reward_fn: Callable | None = None) -> dict:
    """One RL run of the loop (``policytrain.engine.rl.train``) into a fresh ``out``; returns its result.

    ``reward_fn`` replaces the reward model (``research.probes rl … --reward=oracle``)."""
    from policytrain.engine.config import RLConfig
    from policytrain.engine.rl import train as rl_train

    shutil.rmtree(out, ignore_errors=True)
    config = RLConfig.from_dict({
        "base_policy": str(base_dir), "conditions_dir": str(conditions_dir), "output_dir": str(out),
        "reward_model": None if reward_model is None else str(reward_model), "algorithm": algorithm,
        "conditions_split": None,
        "resolution": resolution, "device": "cpu", "gradient_checkpointing": False, "save_every": 0,
        "sample_grid_every": 0, "seed": seed, **rl_cfg,
    })
    last = {"t": time.time()}

    def rl_progress(e: dict) -> None:
        if time.time() - last["t"] > 15 or e["step"] == e["total_steps"]:
            last["t"] = time.time()
            progress(f"  rl {label} {e['step']}/{e['total_steps']} loss={e['loss']:.4f}")

    return rl_train(config, reward_fn=reward_fn, progress=rl_progress)


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables of a loop's report: the reward model per task × criterion, the policies' win rates, the timings."""
    rm = report["reward_model"]
    lines = ["| task | criterion | RM acc (labels) | human ceiling | RM acc (oracle) | n oracle pairs | untrained (oracle) "
             "| on-policy (oracle) | n on-policy |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, crits in TASK_CRITERIA.items():
        for c in crits:
            def g(d, t=task, c=c):
                v = d.get(t, {}).get(c)
                return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
            lines.append(f"| {task} | {c} | {g(rm['accuracy'])} | {g(rm['human_ceiling'])} | "
                         f"{g(rm['oracle_accuracy'])} | {g(rm['oracle_pairs'])} | {g(rm['untrained_oracle_accuracy'])} | "
                         f"{g(rm.get('on_policy_oracle_accuracy', {}))} | {g(rm.get('on_policy_pairs', {}))} |")
    lines += ["", "| task | criterion | RM oracle accuracy by oracle margin: accuracy (pairs) |", "| --- | --- | --- |"]
    by_margin = rm.get("oracle_accuracy_by_margin", {"accuracy": {}})
    for task, crits in TASK_CRITERIA.items():
        lines += [f"| {task} | {c} | {describe_margins(by_margin, task, c)} |"
                  for c in crits if c in by_margin["accuracy"].get(task, {})]
    pol = report["policy"]
    lines += ["", "| policy | fill | extend | removal |", "| --- | --- | --- | --- |"]
    rows = {**pol["oracle_win_rate_vs_base"], "control (untrained RM)": pol["control_win_rate_vs_base"]}
    for name, w in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{w.get(t, float('nan')):.3f}" for t in ("fill", "extend", "removal")) + " |")
    lines += ["", "| policy | task | 95 % interval, mean change, perceptible changes |", "| --- | --- | --- |"]
    for name, per_task in pol.get("win_rate_detail", {}).items():
        lines += [f"| {name} | {task} | {describe_win(d)} |" for task, d in per_task.items()]
    lines += ["", "| stage | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report["timings"].items()]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """``python -m research.loop [size] [work_dir] [seed]``: run the loop, print the report's tables."""
    report = run_loop(argv[0] if argv else "quick", argv[1] if len(argv) > 1 else "var/loop",
                      int(argv[2]) if len(argv) > 2 else 0)
    print(format_report(report))


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    main(sys.argv[1:])
