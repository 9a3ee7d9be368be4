"""The baseline learner: a small siamese CNN that says whether a snapshot's labels are learnable.

Why it exists (issue #22): before GPU hours go into the VLM reward model, curators and scientists
need a cheap reference on the same pairs. If a ~40k-parameter CNN that sees only the two images
reaches 0.85 on a criterion, the labels are a visible function of the images; if it stays at
chance while the VLM does too, the labels (or the criterion) are the problem, not the VLM.

What it sees: the two candidate images of a pair and a learned embedding of its (task, criterion)
from the snapshot's vocabulary. NOT the prompt, and NOT the mask: the snapshot folder
(docs/engine-contracts.md) carries no mask per pair, so a criterion that depends on the prompt
(text alignment) or on where the edit region is can read lower here than the labels allow.

Model: one convolutional encoder shared by both images (siamese), and a head over
[f(first), f(second), embedding]. The log-odds that the first image wins is
``h(f_a, f_b, e) - h(f_b, f_a, e)``, so P(a beats b) = 1 - P(b beats a) exactly: order symmetry is
built in (Bradley–Terry on a pair-dependent score): a pair shown in either order gives the same
loss, so each pair is trained once per step, in a random order, with a paired flip.

Outputs (the model folder): ``baseline.safetensors`` (weights), ``baseline.json`` (the card: kind
"baseline", vocabulary, config, held-out metrics) and ``metrics.jsonl``. The evaluation has the
VLM evaluation's layout (``rewardtrain.engine.evaluate``): accuracy[task][criterion] with counts,
plus a 95 % Wilson interval per cell.

Plain Python + torch; no Django (import-linter enforces it).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the conventional name

from contracts.vocabulary import Vocabulary
from core.stats import wilson_interval

from .baseline_config import BaselineConfig
from .data import PairRow, load_image, load_manifest, load_training_pairs, load_vocabulary, read_pairs

__all__ = ["BaselineConfig", "BaselineStopped", "SiameseBaseline", "load_baseline", "train_baseline"]

CARD_NAME = "baseline.json"
WEIGHTS_NAME = "baseline.safetensors"
KIND = "baseline"


class BaselineStopped(Exception):
    """``should_stop()`` answered True between steps (the job was cancelled)."""


def condition_keys(vocabulary: Vocabulary) -> list[tuple[str, str]]:
    """Every (task, criterion) of the vocabulary, in its order: the embedding's rows."""
    return [(t, c) for t, crits in vocabulary.task_criteria.items() for c in crits]


class SiameseBaseline(nn.Module):
    """Shared CNN encoder + an antisymmetric pair head conditioned on (task, criterion)."""

    def __init__(self, n_conditions: int, channels: int = 16, embed_dim: int = 16):
        super().__init__()
        c = channels
        widths = [3, c, 2 * c, 2 * c, 4 * c]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embedding = nn.Embedding(max(1, n_conditions), embed_dim)
        feat = widths[-1]
        self.head = nn.Sequential(nn.Linear(2 * feat + embed_dim, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, first: torch.Tensor, second: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Log-odds that ``first`` beats ``second``; swapping them negates it exactly."""
        feats = self.encoder(torch.cat([first, second]))
        fa, fb = feats.chunk(2)
        e = self.embedding(condition)
        ab = self.head(torch.cat([fa, fb, e], dim=1)).squeeze(1)
        ba = self.head(torch.cat([fb, fa, e], dim=1)).squeeze(1)
        return ab - ba


class _ImageCache:
    """Decode each image once, resized to the config's square, as uint8 CHW (small in memory)."""

    def __init__(self, size: int):
        self.size = size
        self._cache: dict[Path, torch.Tensor] = {}

    def __call__(self, path: Path) -> torch.Tensor:
        tensor = self._cache.get(path)
        if tensor is None:
            img = load_image(path).resize((self.size, self.size))
            tensor = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(self.size, self.size, 3)
            tensor = tensor.permute(2, 0, 1).contiguous()
            self._cache[path] = tensor
        return tensor


def _batch(rows: list[PairRow], images: _ImageCache, index: dict[tuple[str, str], int]):
    """(winner images, loser images, condition ids); images as float tensors in [0, 1]."""
    w = torch.stack([images(r.winner) for r in rows]).float().div_(255)
    lo = torch.stack([images(r.loser) for r in rows]).float().div_(255)
    cond = torch.tensor([index[(r.task, r.criterion)] for r in rows], dtype=torch.long)
    return w, lo, cond


def _paired_flip(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip both images of a pair the same way (per pair): the comparison must not change, so a
    different flip per image would teach the model that alignment does not matter."""
    flip = torch.rand(a.shape[0], generator=generator) < 0.5
    if flip.any():
        a, b = a.clone(), b.clone()
        a[flip] = a[flip].flip(-1)
        b[flip] = b[flip].flip(-1)
    return a, b


@torch.no_grad()
def _log_odds(model: SiameseBaseline, rows: list[PairRow], images: _ImageCache,
              index: dict[tuple[str, str], int], batch_size: int = 128) -> torch.Tensor:
    """Log-odds that each row's winner beats its loser."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        w, lo, cond = _batch(rows[start:start + batch_size], images, index)
        out.append(model(w, lo, cond))
    model.train()
    return torch.cat(out) if out else torch.zeros(0)


def accuracy_table(rows: list[PairRow], log_odds: torch.Tensor, vocabulary: Vocabulary) -> dict[str, Any]:
    """Per task x criterion accuracy (a tie counts half), counts and 95 % Wilson intervals, in the
    VLM evaluation's layout (``accuracy[task][criterion]``, ``counts``), plus ``interval``."""
    correct = (log_odds > 0).float() + 0.5 * (log_odds == 0).float()
    accuracy: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    interval: dict[str, dict[str, list[float]]] = {}
    for task, crits in vocabulary.task_criteria.items():
        for criterion in crits:
            sel = torch.tensor([r.task == task and r.criterion == criterion for r in rows], dtype=torch.bool)
            n = int(sel.sum())
            if not n:
                continue
            hits = float(correct[sel].sum())
            accuracy.setdefault(task, {})[criterion] = hits / n
            counts.setdefault(task, {})[criterion] = n
            interval.setdefault(task, {})[criterion] = list(wilson_interval(hits, n))
    n_all = len(rows)
    overall = float(correct.sum()) / n_all if n_all else float("nan")
    return {"accuracy": accuracy, "counts": counts, "interval": interval, "overall_accuracy": overall,
            "overall_interval": list(wilson_interval(float(correct.sum()), n_all)) if n_all else None,
            "pairs": n_all}


def format_baseline_table(report: dict[str, Any]) -> str:
    """One line per task x criterion: accuracy % [95 % interval] (n)."""
    lines = ["Baseline accuracy (%) [95 % interval] (pairs)"]
    for task, crits in report.get("accuracy", {}).items():
        for criterion, acc in crits.items():
            lo, hi = report["interval"][task][criterion]
            n = report["counts"][task][criterion]
            lines.append(f"{task}/{criterion}: {acc * 100:.1f} [{lo * 100:.1f}, {hi * 100:.1f}] (n={n})")
    return "\n".join(lines)


def train_baseline(
    config: BaselineConfig,
    snapshot_dir: str | Path,
    output_dir: str | Path,
    *,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train on the train split, keep the weights with the best validation loss (early stop after
    ``patience`` evaluations without improvement), evaluate on test (val when test is empty) and
    write the model folder. Returns the card (also written as ``baseline.json``)."""
    from safetensors.torch import save_file

    started = time.monotonic()
    snapshot = Path(snapshot_dir)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocabulary = load_vocabulary(snapshot)
    train_rows = load_training_pairs(snapshot, "train", vocabulary)
    val_rows = [r for r in read_pairs(snapshot, "val", vocabulary) if r.winner != r.loser]
    test_rows = [r for r in read_pairs(snapshot, "test", vocabulary) if r.winner != r.loser]
    eval_split, eval_rows = ("test", test_rows) if test_rows else ("val", val_rows)
    if not eval_rows:
        raise ValueError(f"snapshot {snapshot} has no test or val pairs to evaluate the baseline on")

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    keys = condition_keys(vocabulary)
    index = {k: i for i, k in enumerate(keys)}
    model = SiameseBaseline(len(keys), channels=config.channels, embed_dim=config.embed_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    images = _ImageCache(config.image_size)
    # Without val pairs there is nothing to select on: the last weights are kept.
    select_rows = val_rows
    best_loss, best_step, best_state, bad_evals = math.inf, 0, None, 0
    metrics = (out / "metrics.jsonl").open("w", encoding="utf-8")
    order: list[int] = []
    step = 0
    try:
        for step in range(1, config.max_steps + 1):
            if should_stop is not None and should_stop():
                raise BaselineStopped(f"stopped at step {step}")
            if len(order) < config.batch_size:  # a fresh shuffled epoch, so every pair is seen
                order += rng.sample(range(len(train_rows)), len(train_rows))
            picked, order = order[:config.batch_size], order[config.batch_size:]
            w, lo, cond = _batch([train_rows[i] for i in picked], images, index)
            w, lo = _paired_flip(w, lo, generator)
            # Each pair in a random order: label 1 for (winner, loser), 0 for (loser, winner). The head
            # is antisymmetric, so the two orders' losses are equal and one pass trains both at half
            # the cost of encoding each pair twice.
            swap = torch.rand(len(picked), generator=generator) < 0.5
            first = torch.where(swap[:, None, None, None], lo, w)
            second = torch.where(swap[:, None, None, None], w, lo)
            logits = model(first, second, cond)
            loss = F.binary_cross_entropy_with_logits(logits, (~swap).float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            event: dict[str, Any] = {"step": step, "total_steps": config.max_steps, "kind": "train",
                                     "loss": float(loss.detach())}
            last = step == config.max_steps
            if select_rows and (step % config.eval_every == 0 or last):
                val_logits = _log_odds(model, select_rows, images, index)
                val_loss = float(F.binary_cross_entropy_with_logits(val_logits, torch.ones_like(val_logits)))
                val_acc = float(((val_logits > 0).float() + 0.5 * (val_logits == 0).float()).mean())
                event = {**event, "kind": "eval", "val_loss": val_loss, "val_accuracy": val_acc}
                if val_loss < best_loss:
                    best_loss, best_step, bad_evals = val_loss, step, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_evals += 1
            metrics.write(json.dumps(event) + "\n")
            if progress is not None:
                progress(event)
            if bad_evals >= config.patience:
                break
    finally:
        metrics.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_step = step
    report = accuracy_table(eval_rows, _log_odds(model, eval_rows, images, index), vocabulary)
    present = {t: list(c) for t, c in report["accuracy"].items()}
    report.update({"split": eval_split, "human_ceiling": load_manifest(snapshot).get("human_ceiling", {}),
                   "vocabulary": vocabulary.restricted_to(present).to_dict() if present else None})
    report["table"] = format_baseline_table(report)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_NAME))
    card = {
        "kind": KIND,
        "sees": "the two candidate images and a (task, criterion) embedding; not the prompt, not the mask",
        "config": config.to_dict(),
        "vocabulary": vocabulary.to_dict(),
        "conditions": [list(k) for k in keys],
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": step,
        "best_step": best_step,
        "best_val_loss": best_loss if math.isfinite(best_loss) else None,
        "train_pairs": len(train_rows),
        "seconds": round(time.monotonic() - started, 2),
        "evaluation": report,
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2))
    return card


def load_baseline(model_dir: str | Path) -> tuple[SiameseBaseline, dict[str, Any]]:
    """The trained network (eval mode) and its card, from a baseline model folder."""
    from safetensors.torch import load_file

    folder = Path(model_dir)
    card = json.loads((folder / CARD_NAME).read_text())
    if card.get("kind") != KIND:
        raise ValueError(f"{folder} is not a baseline model folder (kind {card.get('kind')!r})")
    config = BaselineConfig.from_dict(card["config"])
    model = SiameseBaseline(len(card["conditions"]), channels=config.channels, embed_dim=config.embed_dim)
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    return model.eval(), card
