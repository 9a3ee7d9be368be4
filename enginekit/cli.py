"""Leaving a CLI process cleanly under torchrun (both engines' CLIs end through this)."""
from __future__ import annotations

import os
import sys


def exit_process(code: int) -> None:
    """Exit with ``code``; under torchrun (WORLD_SIZE > 1) skip interpreter teardown.

    Every file is written by then, but tearing down gloo/NCCL threads at interpreter shutdown can
    hang one rank after its peer has left (seen once on a loaded 2-core CI machine), which would
    leave torchrun — and the job that launched it — waiting forever.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
