"""Research tests run on the CPU with one torch thread and never reach the network (as the suite's)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _offline_one_thread():
    """Tiny models are built from configs in code, so nothing needs the Hub; one thread keeps the
    timings of a shared machine comparable."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
