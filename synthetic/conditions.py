"""Read/write the conditions folder of docs/engine-contracts.md.

```
<conditions>/
  conditions.jsonl  {"id", "task", "prompt", "source": "images/…png", "mask": "images/…png", "split"}
  images/…
```

Rows written here carry two optional extras that readers may ignore: ``target`` (path of the
ground-truth PNG) and ``meta`` (the scene description the oracles re-render from). The split is
decided per condition from a hash of its id (``contracts.splits``: train 80 / val 10 /
test 10), so it never depends on list order and the same condition always lands in the same split.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from contracts.conditions import ConditionRow, read_conditions, write_conditions
from contracts.splits import split_for_key
from synthetic.scenes import Condition

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


#: A condition's split is the one split of every layer, so a condition imported into the database
#: (its id as the split key) keeps the split its folder gave it.
split_for = split_for_key


@dataclass(frozen=True, eq=False)
class ConditionRecord:
    """A condition read back from a folder. Same attribute names as :class:`Condition`, so the
    oracles accept it when ``target`` and ``meta`` are present."""

    id: str
    task: str
    prompt: str
    source: Image.Image
    mask: Image.Image
    split: str
    target: Image.Image | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _file_stem(cid: str) -> str:
    # Ids from scenes are already safe; anything else is sanitised and disambiguated by a hash.
    stem = _SAFE.sub("_", cid)
    if stem != cid:
        stem = f"{stem}-{hashlib.sha256(cid.encode()).hexdigest()[:8]}"
    return stem


def write_conditions_folder(conditions: Iterable[Condition], out_dir: str | Path) -> Path:
    """Write ``conditions.jsonl`` and ``images/`` under ``out_dir``; returns the jsonl path.

    Duplicate ids are rejected (they would overwrite each other's images).
    """
    out = Path(out_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    rows = []
    for cond in conditions:
        if cond.id in seen:
            raise ValueError(f"duplicate condition id {cond.id!r}")
        seen.add(cond.id)
        stem = _file_stem(cond.id)
        paths = {}
        for kind, img in (("source", cond.source), ("mask", cond.mask), ("target", cond.target)):
            if img is None:
                continue
            rel = f"images/{stem}_{kind}.png"
            img.save(out / rel, format="PNG")
            paths[kind] = rel
        rows.append(ConditionRow(id=cond.id, task=cond.task, prompt=cond.prompt, source=paths["source"],
                                 mask=paths["mask"], split=split_for(cond.id), target=paths.get("target"),
                                 meta=cond.meta or {}))
    return write_conditions(out, rows)  # readers never see a half-written index


def _load(folder: Path, rel: str, mode: str) -> Image.Image:
    path = (folder / rel).resolve()
    if folder.resolve() not in path.parents:
        raise ValueError(f"image path escapes the conditions folder: {rel!r}")
    with Image.open(path) as im:
        return im.convert(mode)  # convert() loads the pixels, so the file can close


def read_conditions_folder(folder: str | Path) -> list[ConditionRecord]:
    """Read a conditions folder (ours or any writer following the contract)."""
    root = Path(folder)
    return [
        ConditionRecord(
            id=row.id,
            task=row.task,
            prompt=row.prompt,
            source=_load(root, row.source, "RGB"),
            mask=_load(root, row.mask, "L"),
            split=row.split or split_for(row.id),
            target=_load(root, row.target, "RGB") if row.target else None,
            meta=row.meta,
        )
        for row in read_conditions(root)
    ]
