"""A run's ``metrics.jsonl``: one JSON object per line, each with ``"step"`` and ``"kind"``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsFile:
    """Appends metric rows to ``path``; a no-op where ``enabled`` is False (ranks other than 0)."""

    def __init__(self, path: str | Path, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def append(self, row: dict[str, Any]) -> None:
        """Write ``row`` as one line (the file and its folder are created on first use)."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the rows logged after ``step``: a run resumed from ``step`` replays those steps,
        and keeping them would log each twice."""
        if not self.enabled or not self.path.exists():
            return
        kept = [ln for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in kept))


def read_new_lines(path: str | Path, offset: int) -> tuple[list[str], int]:
    """The complete lines written to ``path`` after byte ``offset``, and the offset to read from
    next: the one reader of a growing metrics file (the launcher's progress, the run pages).

    A half-written last line waits for the next call. A file now shorter than ``offset`` was cut
    by a resumed engine (``MetricsFile.truncate_after``): it is read again from its start, so
    the rows written after the cut are not skipped or read from the middle of a line.
    """
    path = Path(path)
    try:
        if path.stat().st_size < offset:
            offset = 0
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace").splitlines(), offset + end
