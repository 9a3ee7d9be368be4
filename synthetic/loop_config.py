"""Configuration of the synthetic loop: the demo sizes, its condition sets, progress and quiet libraries.

``configs/demo/<size>.json`` ("quick", "full") sizes every stage of the loop; the Django ``demo``
command and the research loop both read it here. Plain Python: no Django, no engine import at
module level.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.presets import load_preset_file
from synthetic.scenes import TASKS, Condition, make_conditions

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "demo"


Progress = Callable[[str], None]


def print_progress(message: str) -> None:
    """Default progress sink: one flushed line per event."""
    print(message, flush=True)


def load_demo_config(size: str) -> dict[str, Any]:
    """``configs/demo/<size>.json`` ("quick" or "full"), read by the one strict preset loader
    (contracts.presets): an unknown size or a broken file is a ValueError naming it."""
    return load_preset_file(CONFIG_DIR, size, what="demo config")


def quiet_libraries() -> None:
    """One torch thread unless OMP_NUM_THREADS says otherwise, no Hub access, no library progress bars:
    the loop's own progress lines are the only output, and nothing is downloaded."""
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


def make_condition_sets(counts: dict[str, int], seed: int, size: int) -> dict[str, list[Condition]]:
    """Disjoint condition sets, one per name (seeds derived from the name, so sets never overlap
    and a set does not change when another one is resized)."""
    out = {}
    for name, n in counts.items():
        set_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big")
        out[name] = make_conditions(n, seed=set_seed, size=size)
    return out


def make_task_sets(name: str, per_task: int, seed: int, size: int) -> list[Condition]:
    """``per_task`` conditions of every task (extend half prompt-free), disjoint from every other
    named set (seeds derived from the name and the task): held-out sets sized per task, so each
    task's interval rests on as many conditions as the others'."""
    out: list[Condition] = []
    for task in TASKS:
        set_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}:{task}".encode()).digest()[:4], "big")
        out += make_conditions(per_task, task_probs={task: 1.0}, seed=set_seed, size=size)
    return out
