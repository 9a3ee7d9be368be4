"""Reading dataset snapshots and turning preference pairs into model batches.

A snapshot (docs/engine-contracts.md) holds one row per (winner, loser, criterion) preference.
Each pair is trained in both orders (paper Eq. 3): (winner, loser) -> "Yes" and
(loser, winner) -> "No". Both orders of a pair always land in the same batch, so the batch mean
of the cross-entropy is exactly the Eq. 3 average. With soft labels (config ``soft_labels``) the
two targets are the row's ``p_winner`` and ``1 - p_winner`` instead of 1 and 0.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

# The snapshot contract (row schema, streamed reader, row validation) is contracts.snapshot's; the
# engine's names for it are the same objects.
from contracts.snapshot import (  # noqa: F401 - re-exported: the engine's snapshot interface
    SPLITS,
    PairRow,
    SnapshotError,
    iter_raw_rows,
    load_manifest,
    load_vocabulary,
    read_pairs,
)
from contracts.vocabulary import BUILTIN, Vocabulary

from .template import build_messages

logger = logging.getLogger(__name__)

def check_images(rows: list[PairRow]) -> None:
    """Fail fast, before training starts, on a missing or undecodable image.

    `Image.open` + `verify()` reads the file header and checks its structure without decoding
    every pixel, so this stays cheap on large snapshots.
    """
    seen: set[Path] = set()
    for row in rows:
        for path in (row.winner, row.loser):
            if path in seen:
                continue
            seen.add(path)
            if not path.exists():
                raise SnapshotError(f"pair {row.pair_id}: image file not found: {path}")
            try:
                with Image.open(path) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise SnapshotError(f"pair {row.pair_id}: unreadable image {path}: {exc}") from exc


def load_training_pairs(
    snapshot_dir: str | Path, split: str = "train", vocabulary: Vocabulary | None = None
) -> list[PairRow]:
    """The usable training pairs of a snapshot, with clear errors when there are none.

    A pair whose winner and loser are the same image says nothing about preference (its two
    orders are the same input with opposite labels), so it is dropped; a snapshot with only such
    pairs has a single effective class and is rejected.
    """
    rows = read_pairs(snapshot_dir, split=split, vocabulary=vocabulary)
    if not rows:
        raise SnapshotError(f"snapshot {snapshot_dir} has no {split!r} rows")
    usable = [r for r in rows if r.winner != r.loser]
    if not usable:
        raise SnapshotError(
            f"snapshot {snapshot_dir}: every {split} pair compares an image with itself, so there is only "
            "one class to learn; the snapshot needs pairs of different images"
        )
    if len(usable) < len(rows):
        logger.warning("dropped %d %s pairs whose winner and loser are the same image", len(rows) - len(usable), split)
    check_images(usable)
    return usable


class SoftLabelError(SnapshotError):
    """The snapshot cannot give soft labels (``p_winner``) for training with ``soft_labels`` on."""


def check_soft_labels(snapshot_dir: str | Path, rows: list[PairRow]) -> None:
    """Refuse soft-label training on ``rows`` unless every row has a ``p_winner`` in (0.5, 1].

    The row's winner is the side the annotators preferred, so its ``p_winner`` is above one half,
    and the hard label used for accuracy (target > 0.5) then always agrees with the row. A missing
    ``p_winner`` is an error rather than 1.0: silently training a soft-label run on hard labels
    would make it measure nothing. (``contracts.snapshot`` has already refused values that are not
    probabilities.)
    """
    missing = [r.pair_id for r in rows if r.p_winner is None]
    if missing:
        raise SoftLabelError(
            f"snapshot {snapshot_dir} has no soft-label field p_winner on {len(missing)} of its {len(rows)} "
            f"training pairs (first: pair {missing[0]}), which soft_labels=true needs. Rebuild the snapshot (every "
            "aggregation now writes p_winner; tie-aware-v1 also counts tie votes) or train with soft_labels=false."
        )
    for row in rows:
        if not row.p_winner > 0.5:
            raise SoftLabelError(f"snapshot {snapshot_dir} pair {row.pair_id}: p_winner {row.p_winner!r} "
                                 "must be a number in (0.5, 1] (the winner is the preferred side)")


def load_image(path: Path) -> Image.Image:
    """Open an image as RGB, raising SnapshotError (with the path) when it cannot be decoded."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SnapshotError(f"unreadable image {path}: {exc}") from exc


def both_orders(
    rows: list[PairRow], images: list[tuple[Any, Any]] | None = None
) -> list[tuple[Any, Any, PairRow, int]]:
    """Expand pairs into ordered examples: all (w, l) -> Yes (1) first, then all (l, w) -> No (0).

    ``images`` (one (winner, loser) per row, e.g. augmented PIL images) replaces the rows' paths.
    """
    pairs = images if images is not None else [(r.winner, r.loser) for r in rows]
    if len(pairs) != len(rows):
        raise ValueError(f"{len(pairs)} image pairs for {len(rows)} rows")
    first = [(w, lo, r, 1) for r, (w, lo) in zip(rows, pairs, strict=True)]
    second = [(lo, w, r, 0) for r, (w, lo) in zip(rows, pairs, strict=True)]
    return first + second


@dataclass(frozen=True)
class PairTransform:
    """One geometric transform for both images of a pair: an optional horizontal flip after a crop
    box given as fractions of the image ``(left, top, right, bottom)``, resized back to the image's
    size (``(0, 0, 1, 1)``: no crop)."""

    flip: bool = False
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    def apply(self, image: Image.Image) -> Image.Image:
        """The transformed copy of ``image`` (same size and mode)."""
        if self.box != (0.0, 0.0, 1.0, 1.0):
            w, h = image.size
            left, top, right, bottom = self.box
            image = image.resize((w, h), Image.Resampling.BICUBIC, box=(left * w, top * h, right * w, bottom * h))
        if self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


@dataclass(frozen=True)
class PairAugmentation:
    """Paired geometric augmentation of training pairs (config ``augment_flip`` / ``augment_crop``).

    Both candidates of a pair get the *same* transform: the label compares the two images, and a
    flip or crop applied to one only would teach the model that where things are does not matter.
    The transform of a pair at optimizer step ``step`` is a pure function of (seed, step, pair_id),
    so a resumed run and runs on any number of processes see exactly the augmentations of one
    uninterrupted run. The engine applies it to the training split only; evaluation and scoring
    never see it.

    ``flip``: mirror with probability ½, except for criteria that ``uses_prompt`` (text alignment):
    their label compares the image with words, which can name a rendered word (mirrored glyphs no
    longer read as it) or a side ("on the left"), so a mirror can make the label wrong.
    ``crop``: keep a random square-scaled window of ``1 - u * crop`` of each side (u uniform in
    [0, 1]) at a random position and resize it back: a small zoom and shift. The model sees only
    the two candidates, so there is no query, source or mask image to transform with them.
    """

    flip: bool = False
    crop: float = 0.0
    seed: int = 0
    vocabulary: Vocabulary = BUILTIN

    @property
    def active(self) -> bool:
        """True when the augmentation changes anything."""
        return self.flip or self.crop > 0

    def flip_allowed(self, row: PairRow) -> bool:
        """False for a criterion whose label depends on reading the prompt against the image."""
        return not self.vocabulary.criterion(row.criterion).uses_prompt

    def transform_for(self, step: int, row: PairRow) -> PairTransform:
        """The transform of ``row`` at optimizer step ``step`` (deterministic)."""
        digest = hashlib.sha256(f"{self.seed}:{step}:{row.pair_id}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        # Draw every number whatever is enabled, so turning flip on or off keeps the crops.
        flip_draw, scale_draw, x_draw, y_draw = rng.random(), rng.random(), rng.random(), rng.random()
        box = (0.0, 0.0, 1.0, 1.0)
        if self.crop > 0:
            scale = 1.0 - scale_draw * self.crop
            left, top = x_draw * (1.0 - scale), y_draw * (1.0 - scale)
            box = (left, top, left + scale, top + scale)
        return PairTransform(flip=self.flip and flip_draw < 0.5 and self.flip_allowed(row), box=box)

    def images(self, step: int, row: PairRow) -> tuple[Image.Image, Image.Image]:
        """The pair's (winner, loser) images, loaded and transformed identically."""
        transform = self.transform_for(step, row)
        return transform.apply(load_image(row.winner)), transform.apply(load_image(row.loser))


class PairCollator:
    """Turn a list of pairs into one processor batch covering both orders.

    The processor left-pads (so the answer logit is at position -1 for every row) and returns
    `mm_token_type_ids`, which Qwen2.5-VL needs for its 3-D M-RoPE positions (without it the
    model silently falls back to 1-D positions); we pass its whole output to the model.
    """

    def __init__(self, processor: Any, vocabulary: Vocabulary = BUILTIN,
                 soft_labels: bool = False):
        self.processor = processor
        self.vocabulary = vocabulary  # words the query: the snapshot's in training, the card's in scoring
        # True: the rows' ``p_winner`` are the targets (``check_soft_labels`` vetted them); False: hard 1 / 0.
        self.soft_labels = soft_labels

    def texts_for(self, rows: list[tuple[str, str, str]]) -> list[str]:
        """Chat-template text (with assistant header) for (task, criterion, prompt) triples."""
        return [self._text(task, criterion, prompt) for task, criterion, prompt in rows]

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - the collator lives as long as its processor
    def _text(self, task: str, criterion: str, prompt: str) -> str:
        return self.processor.apply_chat_template(
            build_messages(task, criterion, prompt, self.vocabulary), add_generation_prompt=True, tokenize=False
        )

    def encode(self, examples: list[tuple[Any, Any, str, str, str]]) -> dict[str, torch.Tensor]:
        """Encode (first_image, second_image, task, criterion, prompt) examples into model inputs."""
        texts = self.texts_for([(t, c, p) for _, _, t, c, p in examples])
        images = []
        for first, second, *_ in examples:
            images.append(first if isinstance(first, Image.Image) else load_image(Path(first)))
            images.append(second if isinstance(second, Image.Image) else load_image(Path(second)))
        batch = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        return dict(batch)

    def __call__(self, rows: list[PairRow], images: list[tuple[Any, Any]] | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for 2*len(rows) sequences plus `labels` (1 = Yes, 0 = No, or with soft
        targets ``p_winner`` and ``1 - p_winner``); ``images`` (one (winner, loser) pair per row,
        e.g. augmented) replaces the rows' image files."""
        ordered = both_orders(rows, images)
        batch = self.encode([(a, b, r.task, r.criterion, r.prompt) for a, b, r, _ in ordered])
        batch["labels"] = torch.tensor([self.target(row, label) for _, _, row, label in ordered], dtype=torch.float32)
        return batch

    def target(self, row: PairRow, label: int) -> float:
        """The training target of ``row`` in the order whose hard label is ``label`` (1: winner first)."""
        if not self.soft_labels:
            return float(label)
        if row.p_winner is None:
            raise SoftLabelError(f"no soft label (p_winner) for pair {row.pair_id}")
        return row.p_winner if label == 1 else 1.0 - row.p_winner


@functools.lru_cache(maxsize=8)
def _epoch_permutation(num_pairs: int, seed: int, epoch: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(num_pairs, generator=generator).tolist())


def global_batch_indices(num_pairs: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Pair indices of the global batch for optimizer step `step` (0-based).

    The data order is a stream of per-epoch permutations seeded by (seed, epoch), and step s takes
    items [s*B, (s+1)*B) of that stream, wrapping into the next epoch. Because the batch is a pure
    function of (step, seed), resuming at step s replays exactly the batches an uninterrupted run
    would have seen, and every batch is full (no ragged last batch that would break the equal
    shard sizes DDP needs).
    """
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_pairs)
        perm = _epoch_permutation(num_pairs, seed, epoch)
        out.extend(perm[offset : offset + batch_size - len(out)])
    return out


def shard_for_rank(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Contiguous equal shard of a global batch for one process (DistributedSampler-style).

    With N processes each taking B/N pairs and DDP averaging gradients, the update equals one
    process on the whole batch of B.
    """
    per_rank = len(indices) // world_size
    return indices[rank * per_rank : (rank + 1) * per_rank]


def task_criteria_present(rows: list[PairRow], vocabulary: Vocabulary = BUILTIN) -> dict[str, list[str]]:
    """The task -> criteria present in `rows`, in `vocabulary` order."""
    present = {(r.task, r.criterion) for r in rows}
    return {
        t: [c for c in vocabulary.criteria_for(t) if (t, c) in present]
        for t in vocabulary.task_slugs
        if any(p[0] == t for p in present)
    }


class StepBatches(torch.utils.data.Dataset):
    """Item ``i`` is this rank's collated batch (images decoded) of optimizer step ``start_step + i``.

    The pairs of a step are ``shard_for_rank(global_batch_indices(step))``, a pure function of
    (step, seed, rank), so a DataLoader that reads items in order, in the training process or in
    worker processes, yields exactly the batches of the in-process loop, and a resume at step s
    starts at item 0 = step s. ``augmentation`` (training only) transforms each pair's images as a
    function of (seed, step, pair_id), so it is replayed the same way.
    """

    def __init__(self, rows: list[PairRow], collator: PairCollator, *, batch_size: int, seed: int, rank: int,
                 world_size: int, start_step: int, total_steps: int,
                 augmentation: PairAugmentation | None = None):
        self.rows, self.collator = rows, collator
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.start_step, self.total_steps = start_step, total_steps
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def rows_of(self, step: int) -> list[PairRow]:
        """This rank's pairs of optimizer step ``step``."""
        indices = global_batch_indices(len(self.rows), self.batch_size, step, self.seed)
        return [self.rows[i] for i in shard_for_rank(indices, self.rank, self.world_size)]

    def batch_for(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's collated (and, with an augmentation, augmented) batch of step ``step``."""
        rows = self.rows_of(step)
        if self.augmentation is None:
            return self.collator(rows)
        return self.collator(rows, [self.augmentation.images(step, r) for r in rows])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.batch_for(self.start_step + index)


def step_batch_loader(batches: StepBatches, *, num_workers: int = 0, prefetch_factor: int = 2):
    """A DataLoader over ``batches`` in step order. With ``num_workers`` > 0, worker processes
    decode images and encode batches, each keeping ``prefetch_factor`` batches ready, and stay up
    for the whole run (persistent); the order is still the step order (DataLoader hands items back
    in index order whichever worker made them). 0 workers: every batch is built in this process.

    The loader draws its base seed from a generator of its own: starting an iterator must not
    take a number from the global torch RNG, or a resumed run's dropout stream would be one draw
    off the uninterrupted run's (the RNG state restored from the checkpoint is the one to use).
    """
    workers = num_workers > 0
    return torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=num_workers,
        prefetch_factor=prefetch_factor if workers else None, persistent_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )
