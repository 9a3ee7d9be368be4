"""Annotator labels on RL's one-step pairs: the cheapest fix ADR 0018 left (issue #22).

Both learners (the loop's VLM and the baseline CNN) are near chance on the pairs RL scores (the
base policy's one-step x0 against a fully denoised reference) because none of their labels is on
such an image. This module gives them some, made the way every label of the demo is made:

1. fresh *training* conditions: a new named condition set (``make_condition_sets``, its seed from
   the name, so disjoint from the loop's train/held-out sets), keeping only conditions the shared
   split function puts in the train split (``research.loop.heldout_split``), refused if any id is
   in the loop's sets or the rl-diagnostics / rl-eval sets the checks score;
2. RL's pair for each of them, ``pairs_per_condition`` times with independent noises and grad
   steps (``synthetic.rl_diagnostics.one_step_pairs`` with the loop's base policy and ``rl``
   settings, so k ~ U over ``rl.t_range``);
3. the loop's simulated annotators (``make_pool`` with the loop's annotator config and seed)
   judge each (x0, reference) pair per criterion through ``research.loop.simulate_judgments``
   (the oracle's scores plus each annotator's noise model, ``votes_per_pair`` votes, majority of
   decisive votes, ties dropped). Nothing is trained on the oracle's scores themselves;
4. the loop's snapshot plus these rows, written as a new snapshot (the loop's row conventions,
   split by condition id), ``<loop_dir>/onestep-labels/snapshot``.

Then ``research.distill check --snapshot=… --tag=…`` retrains the baseline on it and scores it on
the same one-step and held-out pairs; ``vlm`` retrains the loop's VLM reward model on it (the
loop's reward config and seed) into ``<loop_dir>/onestep-labels/rm-run/final`` for
``--vlm=``. From the repository root, one torch thread::

    OMP_NUM_THREADS=1 .venv/bin/python -m research.onestep_labels build <loop_dir> <size>
        [--conditions=160] [--pairs=2] [--name=onestep-labels]
    OMP_NUM_THREADS=1 .venv/bin/python -m research.onestep_labels vlm <loop_dir> <size> [--name=…]

docs/decisions/0019 has the figures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

#: The named condition set the one-step labels are drawn from (its seed comes from this name).
SET_NAME = "onestep-labels"
#: Offset of the annotators' random stream for these labels (the loop's own judgments use ``seed``).
JUDGE_SEED_OFFSET = 7919


def pick_train_split(candidates: Iterable[Any], n: int, split_of: Callable[[str], str],
                     forbidden: set[str] = frozenset()) -> list[Any]:
    """The first ``n`` of ``candidates`` (objects with an ``id``) whose split is ``"train"``;
    refused when one of them is in ``forbidden`` (a set the checks score or the loop already
    labelled) or when fewer than ``n`` are in the train split."""
    out = []
    for cond in candidates:
        if cond.id in forbidden:
            raise ValueError(f"condition {cond.id} is already in another set: the labels would not be fresh")
        if split_of(cond.id) == "train":
            out.append(cond)
            if len(out) == n:
                return out
    raise ValueError(f"only {len(out)} of the candidates are in the train split, {n} asked")


def onestep_snapshot_rows(judgments: Sequence[Any], image_paths: Sequence[Sequence[str]],
                          pair_of: Sequence[int], split_of: Callable[[str], str]) -> list[dict[str, Any]]:
    """Snapshot rows (``research.loop.SNAPSHOT_SCHEMA``) for judgments on one-step pairs.

    ``judgments`` come from ``simulate_judgments`` over a list of (condition, [x0, reference])
    entries; a judgment's ``winner``/``loser`` index that entry's two images (0 = x0, 1 =
    reference) and the judgments of entry ``e`` are those whose position maps to ``e`` through
    ``pair_of``. ``image_paths[e]`` are the entry's two image paths. Candidate ids say which image
    of which pair (``<condition>#x0-<e>``, ``#ref-<e>``); the split is the condition's."""
    names = ("x0", "ref")
    rows = []
    for n, (j, e) in enumerate(zip(judgments, pair_of, strict=True)):
        rows.append({
            "pair_id": f"{j.condition_id}:{j.criterion}:onestep{e}:{names[j.winner]}-{names[j.loser]}:{n}",
            "split": split_of(j.condition_id),
            "task": j.task,
            "criterion": j.criterion,
            "prompt": j.prompt,
            "winner": image_paths[e][j.winner],
            "loser": image_paths[e][j.loser],
            "sample_id": j.condition_id,
            "votes": j.votes,
            "agreement": j.agreement,
            "winner_candidate_id": f"{j.condition_id}#{names[j.winner]}-{e}",
            "loser_candidate_id": f"{j.condition_id}#{names[j.loser]}-{e}",
            "oracle_margin": j.oracle_margin,
        })
    return rows


def _hwc(image) -> Any:
    return image.detach().permute(1, 2, 0).cpu().numpy().astype("float32")


def build(loop_dir: str | Path, size: str, conditions: int = 160, pairs_per_condition: int = 2,
          seed: int = 0, name: str = SET_NAME) -> dict[str, Any]:
    """The augmented snapshot (module docstring, steps 1-4) in ``<loop_dir>/<name>``; writes and
    returns its summary. The conditions are always the first of the one named set and pair ``p``
    always has the same noises, so a run with more pairs per condition contains a smaller one's."""
    from synthetic.loop_config import make_condition_sets, make_task_sets, quiet_libraries

    quiet_libraries()
    import numpy as np
    import torch

    from contracts.snapshot import load_manifest, read_raw_rows, write_manifest, write_pairs
    from policytrain.engine.pipeline import FillPolicy
    from research.loop import SNAPSHOT_SCHEMA, _png_bytes, heldout_split, simulate_judgments
    from research.probes import loop_base_dir, loop_config
    from synthetic.annotators import make_pool
    from synthetic.candidate_fills import oracle_scores
    from synthetic.rl_diagnostics import one_step_pairs

    torch.set_num_threads(1)
    t0 = time.time()
    work = Path(loop_dir).resolve()
    cfg = loop_config(work, size)
    res = int(cfg["resolution"])
    forbidden = {c.id for sets in (make_condition_sets(cfg["conditions"], seed, res),) for s in sets.values()
                 for c in s}
    for checked in ("rl-diagnostics", "rl-eval"):
        per_task = 128 if checked == "rl-diagnostics" else 200
        for draw in (0, 1):
            forbidden |= {c.id for c in make_task_sets(checked, per_task, draw, res)}
    pool_of = make_condition_sets({SET_NAME: conditions * 3}, seed, res)[SET_NAME]
    conds = pick_train_split(pool_of, conditions, heldout_split, forbidden)

    policy = FillPolicy.from_pretrained(loop_base_dir(work, size, seed))
    entries, images = [], []
    ks = []
    for p in range(pairs_per_condition):
        made = one_step_pairs(policy, conds, cfg["rl"], seed=10_000 + p)
        for pair in made:
            entries.append(pair.condition)
            images.append([_hwc(pair.policy_image), _hwc(pair.reference_image)])
            ks.append(pair.k)
    scores = [oracle_scores([c, c], imgs) for c, imgs in zip(entries, images, strict=True)]
    ann = cfg["annotators"]
    pool = make_pool(int(ann["n"]), float(ann.get("careless_fraction", 0.1)), seed=seed)
    votes = int(ann.get("votes_per_pair", 1))
    judge_seed = seed + JUDGE_SEED_OFFSET
    judgments, pair_of = [], []
    rng_seeds = np.random.SeedSequence(judge_seed).spawn(len(entries))
    for e, (cond, sc) in enumerate(zip(entries, scores, strict=True)):
        sub_seed = int(rng_seeds[e].generate_state(1)[0])
        found = simulate_judgments([cond], [sc], pool, seed=sub_seed, votes_per_pair=votes)
        judgments += found
        pair_of += [e] * len(found)

    src = work / "snapshot"
    out = work / name / "snapshot"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src / "images", out / "images")
    paths = []
    for imgs in images:
        entry_paths = []
        for img in imgs:
            data = _png_bytes(img)
            rel = f"images/{hashlib.sha256(data).hexdigest()}.png"
            (out / rel).write_bytes(data)
            entry_paths.append(rel)
        paths.append(entry_paths)
    new_rows = onestep_snapshot_rows(judgments, paths, pair_of, heldout_split)
    rows = read_raw_rows(src) + new_rows
    write_pairs(out, rows, SNAPSHOT_SCHEMA)
    manifest = load_manifest(src)
    manifest.pop("format_version", None)
    manifest["counts"] = {"pairs": len(rows), "images": len(list((out / "images").iterdir())),
                          **{sp: sum(1 for r in rows if r["split"] == sp) for sp in ("train", "val", "test")}}
    manifest["filter"] = {**manifest.get("filter", {}), "onestep_labels": {
        "set": SET_NAME, "conditions": len(conds), "pairs_per_condition": pairs_per_condition,
        "rows": len(new_rows), "judge_seed": judge_seed}}
    write_manifest(out, manifest, sort_keys=False)

    margins = [j.oracle_margin for j in judgments]
    summary = {"snapshot": str(out), "conditions": len(conds), "pairs_per_condition": pairs_per_condition,
               "one_step_pairs": len(entries), "rows_added": len(new_rows), "rows_before": len(rows) - len(new_rows),
               "train_rows_after": manifest["counts"]["train"],
               "per_task": {t: sum(1 for r in new_rows if r["task"] == t) for t in ("fill", "extend", "removal")},
               "k_counts": {str(k): ks.count(k) for k in sorted(set(ks))},
               "x0_winner_share": float(np.mean([j.winner == 0 for j in judgments])) if judgments else None,
               "label_oracle_agreement": float(np.mean([m > 0 for m in margins])) if margins else None,
               "seconds": round(time.time() - t0, 1)}
    (work / name / "build.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


def train_vlm(loop_dir: str | Path, size: str, seed: int = 0, name: str = SET_NAME) -> Path:
    """The loop's VLM reward model retrained on the augmented snapshot: the loop's reward config
    and seed (the same base initialisation), built under ``<loop_dir>/onestep-labels`` so the
    loop's own ``rm-base``/``rm-run`` are left as they are."""
    from synthetic.loop_config import quiet_libraries

    quiet_libraries()
    import torch

    from research.loop import train_reward_model
    from research.probes import loop_config

    torch.set_num_threads(1)
    work = Path(loop_dir).resolve()
    cfg = loop_config(work, size)
    folder = work / name
    t0 = time.time()
    _, final, result = train_reward_model(cfg["reward"], folder / "snapshot", folder, seed)
    (folder / "vlm.json").write_text(json.dumps({"final": str(final), "seconds": round(time.time() - t0, 1),
                                                 "result": result}, indent=2, default=str))
    print(f"VLM on the augmented snapshot: {final} ({time.time() - t0:.0f} s)")
    return final


USAGE = ("usage: python -m research.onestep_labels build <loop_dir> <size> [--conditions=160] [--pairs=2] "
         "[--name=onestep-labels]\n       python -m research.onestep_labels vlm <loop_dir> <size> [--name=…]")


def main(argv: list[str]) -> None:
    flags = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else "") for a in argv if a.startswith("--")}
    args = [a for a in argv if not a.startswith("--")]
    name = flags.get("--name") or SET_NAME
    if len(args) == 3 and args[0] == "build" and set(flags) <= {"--conditions", "--pairs", "--name"}:
        build(args[1], args[2], conditions=int(flags.get("--conditions") or 160),
              pairs_per_condition=int(flags.get("--pairs") or 2), name=name)
    elif len(args) == 3 and args[0] == "vlm" and set(flags) <= {"--name"}:
        train_vlm(args[1], args[2], name=name)
    else:
        sys.exit(USAGE)


if __name__ == "__main__":
    main(sys.argv[1:])
