"""What both engines' CLIs share: ``key=value`` overrides and leaving the process under torchrun."""
from __future__ import annotations

import json
import os
import sys
from typing import Any


def parse_override(item: str) -> tuple[str, Any]:
    """Parse a CLI `key=value` override; the value is read as JSON when it parses, else as a string."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


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
