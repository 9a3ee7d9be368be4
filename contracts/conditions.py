"""The conditions folder: its row schema, its writer and its reader (docs/engine-contracts.md).

```
<conditions>/
  conditions.jsonl  {"id", "task", "prompt", "source": "images/…png", "mask": "images/…png", "split"}
  images/…
```

Written by ``policytrain.conditions`` (database samples) and ``synthetic.conditions`` (the
synthetic world), read by the policy engine and the synthetic world through :func:`read_conditions`
and :func:`write_conditions`. Optional extras readers may ignore: ``target`` (path of a ground-truth
PNG) and ``meta`` (a JSON object, e.g. the scene the oracles re-render from). Image paths are
relative to the folder.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The index file inside a conditions folder.
CONDITIONS_FILE = "conditions.jsonl"


@dataclass(frozen=True)
class ConditionRow:
    """One line of ``conditions.jsonl``; ``source``, ``mask`` and ``target`` are folder-relative."""

    id: str
    task: str
    source: str
    mask: str
    prompt: str = ""
    split: str | None = None
    target: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this row (optional extras only when set)."""
        row: dict[str, Any] = {"id": self.id, "task": self.task, "prompt": self.prompt,
                               "source": self.source, "mask": self.mask, "split": self.split}
        if self.target:
            row["target"] = self.target
        if self.meta:
            row["meta"] = self.meta
        return row

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ConditionRow:
        """Parse one JSON object; KeyError/TypeError on a missing or ill-typed field."""
        if not isinstance(raw, dict):
            raise TypeError(f"a condition row is a JSON object, not {type(raw).__name__}")
        return cls(id=str(raw["id"]), task=raw["task"], source=raw["source"], mask=raw["mask"],
                   prompt=raw.get("prompt") or "", split=raw.get("split"), target=raw.get("target") or None,
                   meta=raw.get("meta") or {})


def write_conditions(folder: str | Path, rows: Iterable[ConditionRow | dict[str, Any]]) -> Path:
    """Write ``conditions.jsonl`` under ``folder`` (images are the caller's); returns its path.

    Written to a temporary name and renamed, so a reader never sees half an index.
    """
    path = Path(folder) / CONDITIONS_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            data = row.to_dict() if isinstance(row, ConditionRow) else row
            fh.write(json.dumps(data, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_conditions(folder: str | Path, split: str | None = None,
                    tasks: Collection[str] | None = None) -> list[ConditionRow]:
    """The rows of ``<folder>/conditions.jsonl`` (optionally one split), in file order.

    Every row is checked, whatever the split: ``tasks`` (when given) are the tasks the reader can
    build inputs for. Raises ValueError for a folder without an index or a bad row (naming the
    file and line).
    """
    root = Path(folder)
    index = root / CONDITIONS_FILE
    if not index.is_file():
        raise ValueError(f"conditions folder {root} has no {CONDITIONS_FILE}")
    rows: list[ConditionRow] = []
    with index.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = ConditionRow.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{index}:{line_no}: bad condition row ({exc})") from exc
            if tasks is not None and row.task not in tasks:
                raise ValueError(f"{index}:{line_no}: unknown task {row.task!r}")
            if split is None or row.split == split:
                rows.append(row)
    return rows
