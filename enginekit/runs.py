"""Distributed set-up, agreeing to stop, seeding and RNG state: shared by the training engines."""
from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class RunCancelled(Exception):  # noqa: N818 - the name states the outcome, as callers expect
    """Training stopped because ``should_stop()`` returned True; a resumable checkpoint was saved."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"run cancelled at step {step}; resumable checkpoint: {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class DistEnv:
    """Where this process sits in a (possibly 1-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistEnv:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    initialized_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        initialized_here = True
    return DistEnv(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        initialized_here=initialized_here,
    )


def stop_everywhere(should_stop: Callable[[], bool] | None, env: DistEnv) -> bool:
    """Rank 0 asks ``should_stop``; every rank gets its answer, so all stop at the same step
    (a rank that stopped alone would leave its peers waiting in the next collective)."""
    flag = bool(should_stop()) if should_stop is not None and env.is_main else False
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` from every rank, in rank order, on every rank (``[obj]`` in one process): e.g. each
    rank's RNG state, which rank 0 then writes into a checkpoint."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a step can draw from (Python, NumPy, torch CPU and CUDA, and the
    engine's own generator when it has one), as tensors, lists and numbers only, so that
    ``torch.load(weights_only=True)`` reads it back: a checkpoint is data, never code."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what ``rng_state`` saved; keys an older checkpoint lacks are left as they are."""
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        npst = state["numpy"]
        np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), npst[2], npst[3], npst[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
