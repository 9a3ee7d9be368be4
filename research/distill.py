"""Can distillation from the baseline learner fix RL's reward? The check before building it (issue #22).

RL does not learn because the trained VLM reward model is at chance on the pairs RL scores (the
base policy's one-step x0 against a fully denoised reference) and its pixel gradient is orthogonal
to the oracle's (docs/decisions/0016). The plan of docs/decisions/0015 and 0017 is to distil the
baseline learner (``rewardtrain.engine.baseline``: a small siamese CNN trained on the annotators'
snapshot, never on oracle labels) into the VLM on unlabelled pairs, RL-style one-step pairs among
them. That can only help RL if the baseline itself ranks those pairs and its gradient points the
oracle's way; this module measures exactly that, on a finished ``research.loop`` run:

1. the baseline learner trained on the loop's annotator snapshot (the snapshot the loop's VLM was
   trained on; ``BaselineConfig()``'s defaults, as ``research.vlm_recipe`` trains it), cached in
   ``<loop_dir>/distill-check/baseline``;
2. ``synthetic.rl_diagnostics.rl_diagnostics`` on the rl-diagnostics set, with the loop's RL
   settings, for four scorers on the same pairs: the loop's VLM (``trained``), its untrained
   control (``untrained``), the baseline (``baseline``, behind ``BaselineScorer``, the scorer method
   the diagnostics call) and the same CNN at its initialisation (``baseline-untrained``: the
   chance level of the baseline's architecture). Per task pooled over criteria with intervals
   clustered by condition, and gradient cosines with t intervals over conditions
   (``research.timestep_probe.task_summary``); ``--per-k`` repeats it with each grad step pinned;
3. the same four on ordinary candidate pairs: every candidate pair of the loop snapshot's
   held-out (test-split) conditions with an oracle margin above the tie threshold, read back from
   the snapshot's images as ``research.probes rm`` does (the loop's own held-out pairs).

The oracle only judges here; nothing is trained on its labels. From the repository root, one torch
thread::

    OMP_NUM_THREADS=1 .venv/bin/python -m research.distill check <loop_dir> <size> [out.json]
        [--conditions=128] [--gradient=32] [--per-k] [--draw=0]
        [--snapshot=DIR --vlm=DIR --baseline-seed=0 --tag=NAME]
    .venv/bin/python -m research.distill pool <out.json> <check.json> <check.json> ...

The go/no-go (``distillation_can_help``): the baseline's one-step accuracy interval lies above ½
on at least two of the three tasks. docs/decisions/0018 has the figures.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.stats import grouped_interval
from synthetic.scenes import TASK_CRITERIA

#: The scorers of the check, in table order.
MODELS = ("baseline", "trained", "untrained", "baseline-untrained")
#: Plain names for the tables.
LABELS = {"baseline": "baseline learner", "trained": "VLM (loop)", "untrained": "VLM untrained",
          "baseline-untrained": "baseline untrained"}


class BaselineScorer:
    """The baseline learner behind the one scorer method the RL diagnostics call
    (``differentiable(first, second, task, criteria, prompts, return_log_odds)``), so they measure
    it exactly as they measure the VLM: the same pairs, the same tensors, autograd to the pixels.

    The CNN sees the two images and a (task, criterion) embedding, never the prompt (it is
    accepted and ignored). Images are resized to the learner's square only if they differ from
    it (bilinear, differentiable); at the quick size both are 64 px and nothing is resized. The
    network is in eval mode (BatchNorm's running statistics), so a row's score does not depend on
    the other rows of its batch, as a reward's must not."""

    def __init__(self, model, conditions: Sequence[Sequence[str]], image_size: int):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)  # only the pixels' gradient is wanted
        self.index = {tuple(k): i for i, k in enumerate(conditions)}
        self.image_size = int(image_size)

    @classmethod
    def from_folder(cls, model_dir: str | Path) -> BaselineScorer:
        from rewardtrain.engine.baseline import load_baseline

        model, card = load_baseline(model_dir)
        return cls(model, card["conditions"], int(card["config"]["image_size"]))

    @classmethod
    def untrained_like(cls, model_dir: str | Path) -> BaselineScorer:
        """The same architecture and vocabulary at the initialisation the trained one started
        from (the config's seed): what the architecture does by itself, the chance level."""
        import torch

        from rewardtrain.engine.baseline import BaselineConfig, SiameseBaseline

        card = json.loads((Path(model_dir) / "baseline.json").read_text())
        config = BaselineConfig.from_dict(card["config"])
        torch.manual_seed(config.seed)
        model = SiameseBaseline(len(card["conditions"]), channels=config.channels, embed_dim=config.embed_dim)
        return cls(model, card["conditions"], config.image_size)

    def _resize(self, x):
        from torch.nn import functional as F  # noqa: N812 - the conventional name

        if tuple(x.shape[-2:]) == (self.image_size, self.image_size):
            return x
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)

    def differentiable(self, first, second, task, criterion, prompt=None, return_log_odds=False):
        import torch

        criteria = [criterion] * first.shape[0] if isinstance(criterion, str) else list(criterion)
        missing = sorted({c for c in criteria if (task, c) not in self.index})
        if missing:
            raise ValueError(f"the baseline was not trained on {task}:{', '.join(missing)}")
        cond = torch.tensor([self.index[(task, c)] for c in criteria], dtype=torch.long)
        log_odds = self.model(self._resize(first.float()), self._resize(second.float()), cond)
        return log_odds if return_log_odds else torch.sigmoid(log_odds)

    def judge_pairs(self, rows: Sequence[dict[str, Any]], threshold: float, batch_size: int = 128
                    ) -> list[tuple[dict[str, Any], float]]:
        """``synthetic.oracle_metrics.baseline_judged`` through this scorer (for a network that is
        not in a folder): 1 when it prefers the oracle's better image, ½ on an exact tie."""
        import torch

        rows = [r for r in rows if r["margin"] > threshold and (r["task"], r["criterion"]) in self.index]

        def tensor(img) -> torch.Tensor:
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
            return torch.from_numpy(arr).permute(2, 0, 1)

        out: list[tuple[dict[str, Any], float]] = []
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                for task in sorted({r["task"] for r in chunk}):
                    part = [r for r in chunk if r["task"] == task]
                    values = self.differentiable(torch.stack([tensor(r["better"]) for r in part]),
                                                 torch.stack([tensor(r["worse"]) for r in part]), task,
                                                 [r["criterion"] for r in part], return_log_odds=True)
                    out += [(r, 1.0 if v > 0 else 0.5 if v == 0 else 0.0)
                            for r, v in zip(part, values.tolist(), strict=True)]
        return out


def pooled_accuracy(judged: Sequence[tuple[dict[str, Any], float]]) -> dict[str, dict[str, Any]]:
    """Per task, accuracy pooled over criteria with its 95 % interval clustered by condition (the
    criteria of one condition share its images) and the number of pairs."""
    out: dict[str, dict[str, Any]] = {}
    for task in TASK_CRITERIA:
        rows = [(r["condition_id"], c) for r, c in judged if r["task"] == task]
        ci = grouped_interval(rows)
        out[task] = {"accuracy": float(np.mean([c for _, c in rows])) if rows else None,
                     "accuracy_ci": list(ci) if ci else None, "pairs": len(rows)}
    return out


def above_chance_tasks(per_task: dict[str, dict[str, Any]]) -> list[str]:
    """The tasks whose accuracy interval lies wholly above ½ (lower bound > 0.5)."""
    return [t for t, s in per_task.items() if s.get("accuracy_ci") and s["accuracy_ci"][0] > 0.5]


def distillation_can_help(per_task: dict[str, dict[str, Any]], min_tasks: int = 2) -> bool:
    """The go/no-go of the check: the baseline is clearly above chance on RL's one-step pairs
    (lower bound > 0.5) on at least ``min_tasks`` tasks. Below that, a VLM distilled from it
    inherits a reward that cannot rank what RL scores, whatever the distillation does."""
    return len(above_chance_tasks(per_task)) >= min_tasks


def _fmt(value: float | None, bounds: Sequence[float] | None, fmt: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:{fmt}}" + (f" [{bounds[0]:{fmt}}, {bounds[1]:{fmt}}]" if bounds else "")


def one_step_table(per_task: dict[str, dict[str, dict[str, Any]]], models: Sequence[str] = MODELS,
                   cosines: bool = True) -> list[str]:
    """Markdown: per task, the shared pair count and x0-better share, then each model's pooled
    one-step accuracy [95 %] (and mean gradient cosine [95 % t] with its conditions)."""
    head = "| task | pairs | x0 better | " + " | ".join(f"{LABELS.get(m, m)} acc" for m in models)
    if cosines:
        head += " | " + " | ".join(f"{LABELS.get(m, m)} cosine" for m in models)
    cols = 3 + len(models) * (2 if cosines else 1)
    lines = [head + " |", "|" + " --- |" * cols]
    for task in TASK_CRITERIA:
        first = per_task[models[0]][task]
        share = first.get("x0_better_share")
        cells = [task, str(first["pairs"]), "n/a" if share is None else f"{share:.2f}"]
        cells += [_fmt(per_task[m][task]["accuracy"], per_task[m][task]["accuracy_ci"], ".2f") for m in models]
        if cosines:
            cells += [f"{_fmt(per_task[m][task]['cosine'], per_task[m][task]['cosine_ci'], '+.3f')} "
                      f"({per_task[m][task]['cosine_conditions']})" for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def heldout_table(per_task: dict[str, dict[str, dict[str, Any]]], models: Sequence[str] = MODELS) -> list[str]:
    """Markdown: per task, the held-out candidate pairs and each model's pooled accuracy [95 %]."""
    lines = ["| task | pairs | " + " | ".join(LABELS.get(m, m) for m in models) + " |",
             "|" + " --- |" * (2 + len(models))]
    for task in TASK_CRITERIA:
        cells = [task, str(per_task[models[0]][task]["pairs"])]
        cells += [_fmt(per_task[m][task]["accuracy"], per_task[m][task]["accuracy_ci"], ".2f") for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def train_loop_baseline(work: Path, out: Path, snapshot: Path | None = None, seed: int = 0) -> Path:
    """The baseline learner on the loop's annotator snapshot (or ``snapshot``, e.g. the one with
    annotator labels on one-step pairs added, ``research.onestep_labels``), cached:
    ``BaselineConfig()``, as ``research.vlm_recipe`` trains it. The loop's snapshot has no val
    split (val is folded into test), so nothing early-stops it: the last of its 600 steps is kept,
    and the card's own evaluation is on the test split's annotator labels. ``seed`` is the
    learner's (initialisation and batch order), for a training-seed control."""
    from rewardtrain.engine.baseline import BaselineConfig, train_baseline

    folder = out / "baseline"
    if not (folder / "baseline.json").is_file():
        train_baseline(BaselineConfig(seed=seed), snapshot or work / "snapshot", folder)
    return folder


def heldout_rows(work: Path, cfg: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The loop's held-out candidate pairs: every pair × criterion of the snapshot's test-split
    conditions, from the snapshot's images, oracle-better first (``research.probes rm``'s)."""
    from research.loop import heldout_split
    from research.probes import loop_conditions, snapshot_candidates
    from synthetic.candidate_fills import oracle_pairs, oracle_scores

    train_conds = loop_conditions(cfg, "train", seed)
    conds, cands = snapshot_candidates(work / "snapshot", [c for c in train_conds if heldout_split(c.id) == "test"])
    scores = [oracle_scores([c] * len(k), k) for c, k in zip(conds, cands, strict=True)]
    return oracle_pairs(conds, cands, scores, keep=lambda cid: True)


def check(loop_dir: str | Path, size: str, out_json: str | Path | None = None, conditions_per_task: int = 128,
          gradient_per_task: int = 32, seed: int = 0, per_k: bool = False, draw: int = 0,
          snapshot: str | Path | None = None, vlm: str | Path | None = None, tag: str = "",
          baseline_seed: int = 0) -> dict[str, Any]:
    """The whole check (module docstring) on a finished loop; writes and returns the report.

    ``snapshot`` trains the baseline on another snapshot than the loop's and ``vlm`` scores
    another trained VLM than the loop's ``rm-run/final`` (both for ``research.onestep_labels``);
    ``tag`` then names the output folder (``distill-check-<tag>``) so the loop's own check is
    kept. The held-out candidate pairs stay the loop's, read from its own snapshot.
    ``baseline_seed`` trains the baseline with another seed (a training-seed control; use a tag).

    ``seed`` is the loop's (its base policy and condition sets); ``draw`` seeds the diagnostics
    set and its noises only, so draw 0 gives ADR 0016's pairs and another draw an independent
    replication on disjoint conditions. The judged rows and cosine records are kept in the report
    so that draws can be pooled (``pool``)."""
    from synthetic.loop_config import make_task_sets, quiet_libraries

    quiet_libraries()
    import torch

    from policytrain.engine.pipeline import FillPolicy
    from research.probes import loop_base_dir, loop_config
    from research.timestep_probe import per_k_diagnostics, recording, task_summary
    from rewardtrain.engine.scorer import RewardScorer
    from synthetic import rl_diagnostics as diag
    from synthetic.oracle_metrics import (
        baseline_judged,
        oracle_accuracy_intervals,
        oracle_accuracy_table,
        oracle_judged,
    )

    torch.set_num_threads(1)
    work = Path(loop_dir).resolve()
    cfg = loop_config(work, size)
    out = work / (f"distill-check-{tag}" if tag else "distill-check")
    out.mkdir(parents=True, exist_ok=True)
    vlm = {"trained": Path(vlm).resolve() if vlm else work / "rm-run" / "final", "untrained": work / "rm-untrained"}
    base_dir = loop_base_dir(work, size, seed)
    train_snapshot = Path(snapshot).resolve() if snapshot else work / "snapshot"
    for path in (base_dir, work / "snapshot", train_snapshot, *vlm.values()):
        if not path.exists():
            raise ValueError(f"{path} is missing: run the loop first (python -m research.loop {size} {work})")
    t0 = time.time()
    baseline_dir = train_loop_baseline(work, out, train_snapshot, baseline_seed)
    card = json.loads((baseline_dir / "baseline.json").read_text())
    trained_s = round(time.time() - t0, 1)
    scorers: dict[str, Any] = {"baseline": BaselineScorer.from_folder(baseline_dir),
                               "trained": RewardScorer.from_pretrained(vlm["trained"]),
                               "untrained": RewardScorer.from_pretrained(vlm["untrained"]),
                               "baseline-untrained": BaselineScorer.untrained_like(baseline_dir)}
    threshold = float(cfg["eval"].get("oracle_tie_threshold", 0.03))
    sizes = diag.DiagnosticSizes(accuracy_conditions_per_task=conditions_per_task,
                                 gradient_conditions_per_task=gradient_per_task, threshold=threshold)
    conds = make_task_sets("rl-diagnostics", conditions_per_task, draw, int(cfg["resolution"]))
    policy = FillPolicy.from_pretrained(base_dir)

    t1 = time.time()
    with recording() as calls:
        found = diag.rl_diagnostics(scorers, policy, conds, cfg["rl"], sizes, draw)
    records = {name: {"judged": [[r, c] for r, c in calls["judged"][i]], "cosines": calls["cosines"][i]}
               for i, name in enumerate(scorers)}
    found["per_task"] = {name: task_summary(calls["judged"][i], calls["cosines"][i])
                         for i, name in enumerate(scorers)}
    one_step_s = round(time.time() - t1, 1)
    windows = None
    if per_k:
        windows = per_k_diagnostics(scorers, policy, conds, cfg["rl"], sizes, draw)

    t2 = time.time()
    rows = heldout_rows(work, cfg, seed)
    judged = {"baseline": baseline_judged(baseline_dir, rows, threshold),
              "trained": oracle_judged(scorers["trained"], rows, threshold),
              "untrained": oracle_judged(scorers["untrained"], rows, threshold),
              "baseline-untrained": scorers["baseline-untrained"].judge_pairs(rows, threshold)}
    heldout = {name: {"per_task": pooled_accuracy(j), "accuracy": oracle_accuracy_table(j)[0],
                      "pairs": oracle_accuracy_table(j)[1], "ci": oracle_accuracy_intervals(j)}
               for name, j in judged.items()}
    heldout_s = round(time.time() - t2, 1)

    go = distillation_can_help(found["per_task"]["baseline"])
    result = {"loop_dir": str(work), "size": size, "seed": seed, "draw": draw, "rl_t_range": cfg["rl"].get("t_range"),
              "train_snapshot": str(train_snapshot), "vlm": str(vlm["trained"]), "baseline_seed": baseline_seed,
              "conditions_per_task": conditions_per_task, "gradient_conditions_per_task": gradient_per_task,
              "baseline": {"folder": str(baseline_dir), "train_pairs": card["train_pairs"], "steps": card["steps"],
                           "best_step": card["best_step"], "seconds": card["seconds"],
                           "test_split_annotator_accuracy": card["evaluation"]["overall_accuracy"],
                           "test_split_annotator_interval": card["evaluation"]["overall_interval"]},
              "one_step": found, "one_step_records": records, "per_k": windows, "heldout": heldout,
              "baseline_above_chance_tasks": above_chance_tasks(found["per_task"]["baseline"]),
              "distillation_can_help": go,
              "seconds": {"baseline_train": trained_s, "one_step": one_step_s, "heldout": heldout_s}}
    target = Path(out_json) if out_json else out / f"check-draw{draw}.json"
    target.write_text(json.dumps(result, indent=2))
    print("One-step pairs (RL's, t_range " + str(cfg["rl"].get("t_range")) + ")")
    print("\n".join(one_step_table(found["per_task"])))
    if windows:
        for k, w in windows.items():
            print(f"k = {k}")
            print("\n".join(one_step_table(w["per_task"])))
    print("Held-out candidate pairs")
    print("\n".join(heldout_table({n: h["per_task"] for n, h in heldout.items()})))
    print(f"baseline above chance on {result['baseline_above_chance_tasks']}; distillation can help: {go}")
    print(f"written {target} ({result['seconds']})")
    return result


def pooled_records(reports: Sequence[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Each model's judged rows and cosine records over several checks' draws, every condition id
    prefixed with its draw (disjoint draws must never share a cluster by a name clash); refused
    when two reports are of the same draw (the same pairs counted twice)."""
    draws = [int(r["draw"]) for r in reports]
    if len(set(draws)) != len(draws):
        raise ValueError(f"draws {draws} repeat: pooling a draw twice counts its pairs twice")
    out: dict[str, dict[str, list]] = {}
    for report in reports:
        tag = f"d{report['draw']}:"
        for name, rec in report["one_step_records"].items():
            cell = out.setdefault(name, {"judged": [], "cosines": []})
            cell["judged"] += [({**r, "condition_id": tag + r["condition_id"]}, c) for r, c in rec["judged"]]
            cell["cosines"] += [{**r, "condition_id": tag + r["condition_id"]} for r in rec["cosines"]]
    return out


def pool(out_json: str | Path, check_jsons: Sequence[str | Path]) -> dict[str, Any]:
    """The one-step figures of several draws' checks pooled (clustered by condition, as one set)."""
    from research.timestep_probe import task_summary
    from synthetic.oracle_metrics import oracle_accuracy_intervals, oracle_accuracy_table
    from synthetic.rl_diagnostics import cosine_table

    reports = [json.loads(Path(p).read_text()) for p in check_jsons]
    records = pooled_records(reports)
    per_task = {name: task_summary(rec["judged"], rec["cosines"]) for name, rec in records.items()}
    per_criterion = {name: {"accuracy": oracle_accuracy_table(rec["judged"])[0],
                            "pairs": oracle_accuracy_table(rec["judged"])[1],
                            "accuracy_ci": oracle_accuracy_intervals(rec["judged"]),
                            "cosine": cosine_table(rec["cosines"])}
                     for name, rec in records.items()}
    go = distillation_can_help(per_task["baseline"])
    result = {"draws": [r["draw"] for r in reports], "checks": [str(p) for p in check_jsons], "per_task": per_task,
              "per_criterion": per_criterion,
              "baseline_above_chance_tasks": above_chance_tasks(per_task["baseline"]), "distillation_can_help": go}
    Path(out_json).write_text(json.dumps(result, indent=2))
    print(f"One-step pairs, draws {result['draws']} pooled")
    print("\n".join(one_step_table(per_task)))
    print(f"baseline above chance on {result['baseline_above_chance_tasks']}; distillation can help: {go}")
    return result


USAGE = ("usage: python -m research.distill check <loop_dir> <size> [out.json] [--conditions=128] [--gradient=32] "
         "[--per-k] [--draw=0] [--snapshot=DIR --vlm=DIR --baseline-seed=0 --tag=NAME]\n"
         "       python -m research.distill pool <out.json> <check.json> <check.json> ...")


def main(argv: list[str]) -> None:
    flags = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else "") for a in argv if a.startswith("--")}
    args = [a for a in argv if not a.startswith("--")]
    if args[:1] == ["pool"] and len(args) >= 3 and not flags:
        pool(args[1], args[2:])
        return
    unknown = set(flags) - {"--conditions", "--gradient", "--per-k", "--draw", "--snapshot", "--vlm", "--tag",
                            "--baseline-seed"}
    if len(args) < 3 or args[0] != "check" or unknown:
        sys.exit(USAGE)
    check(args[1], args[2], args[3] if len(args) > 3 else None,
          conditions_per_task=int(flags.get("--conditions") or 128),
          gradient_per_task=int(flags.get("--gradient") or 32), per_k="--per-k" in flags,
          draw=int(flags.get("--draw") or 0), snapshot=flags.get("--snapshot") or None,
          vlm=flags.get("--vlm") or None, tag=flags.get("--tag") or "",
          baseline_seed=int(flags.get("--baseline-seed") or 0))


if __name__ == "__main__":
    main(sys.argv[1:])
