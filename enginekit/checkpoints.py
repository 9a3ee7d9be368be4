"""Checkpoint folders that are complete or absent, never half-written.

A checkpoint is written into a temporary sibling; its marker file (the engine's state JSON) is
written last, and one rename publishes the folder. A process killed mid-save leaves only a
``.tmp-`` folder, which ``latest_checkpoint`` ignores and the next save replaces.
"""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHECKPOINTS = "checkpoints"
PREFIX = "step-"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives: ``<output_dir>/checkpoints/step-<step>``."""
    return Path(output_dir) / CHECKPOINTS / f"{PREFIX}{step}"


def complete_checkpoints(output_dir: str | Path, marker: str) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint (its ``marker`` file exists), oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(PREFIX) and (child / marker).is_file():
                try:
                    found.append((int(child.name[len(PREFIX):]), child))
                except ValueError:
                    continue
    return sorted(found)


def latest_checkpoint(output_dir: str | Path, marker: str) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    found = complete_checkpoints(output_dir, marker)
    return found[-1][1] if found else None


def prune_checkpoints(output_dir: str | Path, marker: str, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (keep ≤ 0 keeps them all)."""
    if keep > 0:
        for _, old in complete_checkpoints(output_dir, marker)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final`` to write into; on success it replaces
    ``final`` in one rename, on an exception it is removed and ``final`` is left as it was.
    Write the marker file last inside the block."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


@contextmanager
def shared_atomic_folder(final: Path, *, is_main: bool, distributed: bool) -> Iterator[Path]:
    """``atomic_folder`` for a checkpoint that every rank writes into (a sharded save).

    Rank 0 makes the temporary sibling and tells every rank its name; all ranks write their
    shards into it inside the block, and rank 0 writes the marker file last (after the collective
    save has returned, so every rank's files are on disk). After a barrier rank 0 publishes the
    folder with one rename, and a second barrier lets no rank run ahead of the publication.
    Collective: every rank must enter it. On an exception rank 0 removes the temporary folder;
    a peer still waiting in a collective then fails with the job, as it would without this.
    """
    import torch.distributed as dist

    tmp_name = [None]
    if is_main:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_name[0] = f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        (final.parent / tmp_name[0]).mkdir()
    if distributed:
        dist.broadcast_object_list(tmp_name, src=0)
    tmp = final.parent / str(tmp_name[0])
    try:
        yield tmp
    except BaseException:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if distributed:
        dist.barrier()
    if is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    if distributed:
        dist.barrier()
