"""The whole OneReward loop on the synthetic world, engine-level (no Django).

``run_loop(size, work_dir, seed)`` does, with the plain-Python engines:

a. make conditions (pre-training / RL-and-annotation / held-out evaluation sets);
b. pre-train (or reuse the cached) base fill policy (``policytrain.engine.pretrain``);
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

The building blocks (``generate_images``, ``simulate_judgments``, ``write_snapshot``,
``oracle_accuracy``, ``oracle_win_rate`` ...) take small, explicit arguments so the Django
``demo`` command can drive the same steps through the real services. This module imports
``synthetic`` and both engines, never Django. Configs live in ``configs/demo/<size>.json``.

``rl_probe`` and ``rm_probe`` re-run one stage of a finished loop with config overrides and
measure it like the loop (``python -m synthetic.experiment probe-rl|probe-rm …``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from synthetic import oracles
from synthetic.annotators import SimulatedAnnotator, agreement_stats, make_pool
from synthetic.conditions import split_for, write_conditions_folder
from synthetic.scenes import Condition, make_conditions

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "demo"
TASK_CRITERIA = oracles.TASK_CRITERIA
Progress = Callable[[str], None]
#: A probe's summary (mean / min oracle accuracy) leaves out criteria with fewer held-out pairs.
MIN_SUMMARY_PAIRS = 10


def print_progress(message: str) -> None:
    """Default progress sink: one flushed line per event."""
    print(message, flush=True)


def load_demo_config(size: str) -> dict[str, Any]:
    """``configs/demo/<size>.json`` ("quick" or "full")."""
    path = CONFIG_DIR / f"{size}.json"
    if not path.is_file():
        raise ValueError(f"no demo config {path} (sizes: quick, full)")
    return json.loads(path.read_text())


def _quiet_libraries() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import diffusers
        import transformers

        transformers.logging.set_verbosity_error()
        diffusers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        diffusers.utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - logging tweaks must never break a run
        return


# ----------------------------------------------------------------------------------------------
# (a) conditions
# ----------------------------------------------------------------------------------------------
def make_condition_sets(counts: dict[str, int], seed: int, size: int) -> dict[str, list[Condition]]:
    """Disjoint condition sets, one per name (seeds derived from the name, so sets never overlap
    and a set does not change when another one is resized)."""
    out = {}
    for name, n in counts.items():
        set_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big")
        out[name] = make_conditions(n, seed=set_seed, size=size)
    return out


# ----------------------------------------------------------------------------------------------
# (c, g) generation and oracle scoring
# ----------------------------------------------------------------------------------------------
def _condition_tensors(conditions: Sequence[Condition]):
    import torch

    src = torch.stack([torch.from_numpy(np.asarray(c.source, dtype=np.float32) / 255.0).permute(2, 0, 1)
                       for c in conditions])
    masks = torch.stack([torch.from_numpy((np.asarray(c.mask) > 127).astype(np.float32))[None] for c in conditions])
    return src, masks


def generate_images(
    policy,
    conditions: Sequence[Condition],
    seed: int,
    steps: int,
    guidance: float = 30.0,
    max_sequence_length: int = 32,
    batch_size: int = 32,
    paste_back: bool = True,
) -> list[np.ndarray]:
    """One fill per condition (HxWx3 float arrays in [0, 1]), batched; the noise of batch i comes
    from ``seed + i`` so the same call always gives the same images. With ``paste_back`` (the
    default, as the platform's generation jobs and RL do) pixels outside the mask are the source's."""
    from policytrain.engine.pipeline import policy_prompt

    images: list[np.ndarray] = []
    for bi, start in enumerate(range(0, len(conditions), batch_size)):
        chunk = conditions[start : start + batch_size]
        src, masks = _condition_tensors(chunk)
        prompts = [policy_prompt(c.task, c.prompt) for c in chunk]
        out = policy.generate(src, masks, prompts, seed=seed * 10_007 + bi, steps=steps, guidance=guidance,
                              max_sequence_length=max_sequence_length, paste_back=paste_back)
        images.extend(out.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32))
    return images


def candidate_spread(candidates: Sequence[Sequence[np.ndarray]]) -> dict[str, float]:
    """How visibly the candidates of a condition differ, in /255 units: mean per-image pixel std
    (a washed-out grey image has a small one) and mean |a − b| over every candidate pair of a
    condition (what an annotator, and the reward model, has to tell apart)."""
    stds, diffs = [], []
    for cands in candidates:
        stds.extend(float(np.std(c)) for c in cands)
        diffs.extend(float(np.mean(np.abs(a - b))) for a, b in combinations(cands, 2))
    return {"image_std": 255 * float(np.mean(stds)) if stds else float("nan"),
            "pair_abs_diff": 255 * float(np.mean(diffs)) if diffs else float("nan")}


def oracle_scores(conditions: Sequence[Condition], images: Sequence[np.ndarray]) -> list[dict[str, float]]:
    """``oracles.score_all`` per (condition, image)."""
    return [oracles.score_all(c, img) for c, img in zip(conditions, images, strict=True)]


def mean_scores(scores: Sequence[dict[str, float]]) -> list[float]:
    return [float(np.mean(list(s.values()))) for s in scores]


def oracle_win_rate(
    base: Sequence[float], new: Sequence[float], tasks: Sequence[str]
) -> dict[str, float]:
    """Per task: share of (condition, seed) items where ``new`` beats ``base`` (tie = ½)."""
    wins: dict[str, list[float]] = defaultdict(list)
    for b, n, t in zip(base, new, tasks, strict=True):
        wins[t].append(1.0 if n > b else 0.5 if n == b else 0.0)
    return {t: float(np.mean(v)) for t, v in sorted(wins.items())}


def win_rate_detail(
    base: Sequence[float], new: Sequence[float], tasks: Sequence[str], groups: Sequence[str],
    threshold: float, resamples: int = 2000, seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """What stands behind each task's win rate (``oracle_win_rate``), per task:

    - ``n`` items, ``mean_delta`` (new − base mean oracle score);
    - ``ci95``: a 95 % bootstrap interval of the win rate that resamples whole ``groups``
      (conditions), since a condition's seeds are not independent items;
    - ``perceptible_share``: items whose scores differ by more than ``threshold`` (the oracle tie
      threshold: a smaller difference is one an annotator reports as a tie), and
      ``perceptible_win_rate``: the win rate over those items only (None when there are none).

    A win rate far from ½ with a tiny ``perceptible_share`` is a systematic but invisible shift.
    """
    rng = np.random.default_rng(seed)
    by_task: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for b, n, t, g in zip(base, new, tasks, groups, strict=True):
        by_task[t][g].append(n - b)
    out = {}
    for task, per_group in sorted(by_task.items()):
        deltas = [np.asarray(v, dtype=float) for v in per_group.values()]
        wins = [(d > 0) + 0.5 * (d == 0) for d in deltas]
        flat_d, flat_w = np.concatenate(deltas), np.concatenate(wins)
        picks = rng.integers(0, len(deltas), size=(resamples, len(deltas)))
        sums, counts = np.array([w.sum() for w in wins]), np.array([len(w) for w in wins])
        boot = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
        seen = np.abs(flat_d) > threshold
        out[task] = {
            "n": int(flat_d.size), "mean_delta": float(flat_d.mean()),
            "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "perceptible_share": float(seen.mean()),
            "perceptible_win_rate": float(flat_w[seen].mean()) if seen.any() else None,
        }
    return out


def describe_win(detail: dict[str, Any]) -> str:
    """One ``win_rate_detail`` cell as text, e.g. ``[0.53, 0.72] Δ +0.004, 21 % perceptible (win 0.60)``."""
    lo, hi = detail["ci95"]
    seen = detail["perceptible_win_rate"]
    return (f"[{lo:.2f}, {hi:.2f}] Δ {detail['mean_delta']:+.3f}, {100 * detail['perceptible_share']:.0f} % perceptible"
            + (f" (win {seen:.2f})" if seen is not None else ""))


# ----------------------------------------------------------------------------------------------
# (d) simulated annotation and the snapshot
# ----------------------------------------------------------------------------------------------
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


def _png_bytes(image: np.ndarray) -> bytes:
    arr = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def heldout_split(condition_id: str) -> str:
    """Snapshot split of a condition: the conditions-folder hash split, with val folded into test."""
    return "train" if split_for(condition_id) == "train" else "test"


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
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts: dict[str, Any] = {"pairs": len(rows), "images": len(paths)}
    for split in ("train", "val", "test"):
        counts[split] = sum(1 for r in rows if r["split"] == split)
    manifest = {
        "content_hash": hasher.hexdigest(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "filter": {"source": "synthetic.experiment"},
        "aggregation": "majority of decisive votes per pair",
        "counts": counts,
        "human_ceiling": human_ceiling,
        "format_version": 1,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


# ----------------------------------------------------------------------------------------------
# (e) reward model
# ----------------------------------------------------------------------------------------------
def build_reward_base(out_dir: str | Path, seed: int = 0, min_pixels: int = 112 * 112,
                      max_pixels: int = 112 * 112, *, text_hidden_size: int | None = None,
                      text_layers: int | None = None, vision_hidden_size: int | None = None,
                      vision_depth: int | None = None, initializer_range: float | None = None) -> Path:
    """The tiny Qwen2.5-VL reward-model base (``rewardtrain.engine.tiny``).

    With no size keyword this is exactly ``build_tiny_reward_model`` (text hidden 64 × 2 layers,
    vision 32 × 2). The keywords widen/deepen the same config (same tokenizer, processor and
    template): on the order-comparison sanity task (colour scene vs greyed copy, 16 fixed pairs,
    full fine-tune lr 3e-3) the default model is still at 0.63 accuracy after 100 steps while
    text 128 × 4 layers / vision 64 reaches 0.94 (loss 0.22).
    """
    from rewardtrain.engine.tiny import build_tiny_reward_model

    sizes = (text_hidden_size, text_layers, vision_hidden_size, vision_depth, initializer_range)
    if all(v is None for v in sizes):
        return build_tiny_reward_model(out_dir, seed=seed, min_pixels=min_pixels, max_pixels=max_pixels)
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rewardtrain.engine.processor import ImageOnlyQwen2_5_VLProcessor, save_processor
    from rewardtrain.engine.tiny import CHAT_TEMPLATE, build_tiny_tokenizer, tiny_model_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(seed)
    config = tiny_model_config(tokenizer)
    text, vision = config.text_config, config.vision_config
    if text_hidden_size is not None:
        if text_hidden_size % 32:
            raise ValueError("text_hidden_size must be a multiple of 32 (4 heads, M-RoPE sections)")
        head_dim = text_hidden_size // text.num_attention_heads
        half = head_dim // 2  # mrope_section must sum to head_dim / 2 (default 64 → [4, 2, 2])
        text.hidden_size = text_hidden_size
        text.intermediate_size = 2 * text_hidden_size
        text.rope_parameters["mrope_section"] = [half // 2, half // 4, half - half // 2 - half // 4]
    if text_layers is not None:
        text.num_hidden_layers = text_layers
        text.layer_types = ["full_attention"] * text_layers
    if vision_hidden_size is not None:
        vision.hidden_size = vision_hidden_size
        vision.intermediate_size = 2 * vision_hidden_size
    if vision_depth is not None:
        vision.depth = vision_depth
        vision.fullatt_block_indexes = [vision_depth - 1]
    vision.out_hidden_size = text.hidden_size
    if initializer_range is not None:
        config.initializer_range = text.initializer_range = vision.initializer_range = initializer_range
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = text.pad_token_id
    model.save_pretrained(out)
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    save_processor(processor, out)
    return out


def untrained_reward_model(base_dir: str | Path, out_dir: str | Path) -> Path:
    """A copy of the untrained base with a model card, so RL can load it like a trained one (control)."""
    from rewardtrain.engine.template import CRITERIA, TEMPLATE_VERSION

    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base_dir, out)
    proc = json.loads((out / "processor_config.json").read_text()) if (out / "processor_config.json").is_file() else {}
    size = (proc.get("image_processor") or {}).get("size") or {}
    card = {
        "template_version": TEMPLATE_VERSION,
        "criteria": {t: list(c) for t, c in CRITERIA.items()},
        "tasks": {t: list(c) for t, c in CRITERIA.items()},
        "trained_on": {},
        "min_pixels": size.get("shortest_edge"),
        "max_pixels": size.get("longest_edge"),
        "training": {"steps": 0, "note": "untrained control"},
    }
    (out / "onereward.json").write_text(json.dumps(card, indent=2))
    return out


def filtered_snapshot(snapshot_dir: str | Path, out_dir: str | Path, keep: Callable[[dict], bool],
                      note: dict[str, Any] | None = None, edit: Callable[[dict], dict] | None = None) -> Path:
    """A copy of a snapshot with only the rows ``keep`` accepts, each passed through ``edit`` if
    given; ``note`` is added to its filter."""
    src, out = Path(snapshot_dir), Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    rows = [json.loads(line) for line in (src / "pairs.jsonl").read_text().splitlines() if line.strip()]
    kept = [edit(r) if edit else r for r in rows if keep(r)]
    shutil.copytree(src / "images", out / "images")  # the engine refuses paths outside the snapshot
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["counts"] = {"pairs": len(kept), "images": manifest.get("counts", {}).get("images"),
                          **{sp: sum(1 for r in kept if r["split"] == sp) for sp in ("train", "val", "test")}}
    manifest["filter"] = {**manifest.get("filter", {}), **(note or {})}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def warm_start_snapshot(snapshot_dir: str | Path, out_dir: str | Path, n_pairs: int) -> Path:
    """A copy of a snapshot whose train split keeps only ``n_pairs`` unanimous pairs (every vote
    agreed), picked by a hash of the pair id; other splits are kept as they are.

    Why: the tiny reward model starts on an order-symmetric saddle (loss ln 2) and, on the whole
    noisy snapshot, does not leave it in a demo's budget; on one small fixed batch of clear pairs
    it does. A short warm-up on such a batch, then training on
    the whole snapshot, is a curriculum on *annotator agreement* only — never on the oracle.
    """
    rows = [json.loads(line) for line in (Path(snapshot_dir) / "pairs.jsonl").read_text().splitlines()
            if line.strip()]

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


def oracle_pairs(
    conditions: Sequence[Condition],
    candidates: Sequence[Sequence[np.ndarray]],
    candidate_scores: Sequence[Sequence[dict[str, float]]],
    keep: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """Every candidate pair × criterion of the kept conditions, oracle-better image first."""
    rows = []
    for cond, cands, scores in zip(conditions, candidates, candidate_scores, strict=True):
        if not keep(cond.id):
            continue
        pil = [Image.fromarray((np.clip(c, 0, 1) * 255).round().astype(np.uint8)) for c in cands]
        for i, j in combinations(range(len(cands)), 2):
            for crit in scores[i]:
                a, b = scores[i][crit], scores[j][crit]
                better, worse = (i, j) if a >= b else (j, i)
                rows.append({"task": cond.task, "criterion": crit, "prompt": cond.prompt,
                             "better": pil[better], "worse": pil[worse], "margin": abs(a - b)})
    return rows


def on_policy_pairs(policy, conditions: Sequence[Condition], cfg: dict[str, Any], seed: int = 0,
                    samples: int = 3) -> list[dict[str, Any]]:
    """``oracle_pairs`` among ``samples`` of ``policy``'s own fills per condition, sampled as RL
    samples (its reference steps and guidance): the differences RL has to rank.

    The loop's candidates mix guidance 3 and 100 and an early checkpoint, so a reward model can
    score well on them by telling those settings apart and still rank two samples of one
    setting wrongly; this measures the latter."""
    rl, gen = cfg["rl"], cfg["candidates"]
    common = {"steps": int(rl.get("reference_steps", 4)), "guidance": float(rl.get("guidance", gen.get("guidance", 30.0))),
              "max_sequence_length": int(rl.get("max_sequence_length", gen.get("max_sequence_length", 32))),
              "batch_size": int(gen.get("batch_size", 32))}
    fills = [generate_images(policy, conditions, seed=seed * 1000 + 900 + k, **common) for k in range(samples)]
    candidates = [list(per_condition) for per_condition in zip(*fills, strict=True)]
    scores = [oracle_scores([c] * samples, k) for c, k in zip(conditions, candidates, strict=True)]
    return oracle_pairs(conditions, candidates, scores, keep=lambda cid: True)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
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
    _quiet_libraries()
    import torch

    from policytrain.engine.pipeline import FillPolicy
    from policytrain.engine.pretrain import PretrainConfig, pretrain
    from rewardtrain.engine.evaluate import evaluate
    from rewardtrain.engine.scorer import RewardScorer

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

    ``reward_fn`` replaces the reward model (``probe-rl --reward=oracle``)."""
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
PROBE_REWARDS = ("trained", "untrained", "oracle", "oracle-no-text", "oracle-wrong-<percent>")


def probe_oracle_reward(reward: str) -> dict[str, Any] | None:
    """``oracle_reward_fn`` options for an oracle ``reward`` name (None for a reward model); a
    ValueError names the choices. ``oracle-wrong-20`` reverses the reward on 20 % of the
    (condition, criterion) pairs: a stand-in for a reward model that is 80 % right."""
    if reward in ("trained", "untrained"):
        return None
    if reward in ("oracle", "oracle-no-text"):
        return {"text_alignment": reward == "oracle", "wrong_share": 0.0}
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
    ``python -m synthetic.experiment probe-rl <work_dir> <size> '<json overrides>' [name]
    [--reward=<reward>]``. ``reward`` (``PROBE_REWARDS``) picks the loop's trained reward model
    (default), its untrained one (the loop's control, to check that a setting does not gain without
    a trained reward), or differentiable ports of the oracles (``synthetic.oracle_reward``;
    "oracle-no-text" leaves text alignment out, "oracle-wrong-<percent>" reverses them on that share
    of the conditions): diagnostics and upper bounds, never a way to train a demo policy.
    """
    oracle_options = probe_oracle_reward(reward)
    _quiet_libraries()
    work = Path(work_dir).resolve()
    cfg = loop_config(work, size)
    base_dir = loop_base_dir(work, size, seed)
    reward_models = {"trained": work / "rm-run" / "final", "untrained": work / "rm-untrained"}
    for path in (base_dir, *reward_models.values(), work / "conditions-train"):
        if not path.exists():
            raise ValueError(f"{path} is missing: run the loop first (python -m synthetic.experiment {size} {work})")
    rl_cfg = {k: v for k, v in cfg["rl"].items() if k != "control_algorithm"}
    rl_cfg.update(overrides or {})
    algorithm = int(rl_cfg.pop("algorithm", 1))
    reward_fn = None
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


def _oracle_reward(conditions_dir: Path, cfg: dict[str, Any], seed: int, **options: Any):
    """``synthetic.oracle_reward.oracle_reward_fn`` over a loop's RL conditions, loaded as RL loads them."""
    import torch

    from policytrain.engine.pipeline import load_condition_tensors, load_conditions
    from synthetic.oracle_reward import oracle_reward_fn

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
    for line in (snap / "pairs.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
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
        raise ValueError("this snapshot has no oracle margins (only synthetic.experiment loops write them)")
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
    ``python -m synthetic.experiment probe-rm <work_dir> <size> '<json overrides>' [name] [--oracle-labels]
    [task:criterion ...]`` writes ``<work_dir>/rm-probe-<name>/probe.json``.
    """
    _quiet_libraries()
    from rewardtrain.engine.scorer import RewardScorer

    work = Path(work_dir).resolve()
    cfg = loop_config(work, size)
    snapshot = work / "snapshot"
    if not (snapshot / "pairs.jsonl").is_file():
        raise ValueError(f"{snapshot} is missing: run the loop first (python -m synthetic.experiment {size} {work})")
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


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables of a report (the numbers docs/demo-results.md quotes)."""
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


if __name__ == "__main__":  # pragma: no cover - manual use: python -m synthetic.experiment quick var/demo
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "probe-rl":
        _, _, loop_dir, loop_size, *rest = sys.argv
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
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "probe-rm":
        _, _, loop_dir, loop_size, *rest = sys.argv
        rest, oracle_labels = _cli_options(rest, "--oracle-labels")
        found = rm_probe(loop_dir, loop_size, json.loads(rest[0]) if rest else {},
                         rest[1] if len(rest) > 1 else "probe", criteria=rest[2:], oracle_labels=oracle_labels is not None)
        print(json.dumps({k: found[k] for k in ("name", "overrides", "criteria", "oracle_accuracy", "mean", "min",
                                                 "on_policy_accuracy", "on_policy_mean", "seconds")}))
        sys.exit(0)
    rep = run_loop(sys.argv[1] if len(sys.argv) > 1 else "quick", sys.argv[2] if len(sys.argv) > 2 else "var/demo",
                   int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print(format_report(rep))
