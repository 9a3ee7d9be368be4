"""Export Samples to the conditions folder the policy engine reads (docs/engine-contracts.md).

```
<ARTIFACTS_ROOT>/conditions/<hash>/
  conditions.jsonl   {"id": "<sample pk>", "task", "prompt", "source": "images/…", "mask": "images/…", "split"}
  images/<pk>-source.png, images/<pk>-mask.png
```
The folder name is a hash of the rows (sample ids, tasks, prompts, splits, image names, which are
content-addressed), so exporting the same samples twice reuses one folder. The folder is written
under a temporary name and renamed, so a reader never sees half of it. No torch here.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from annotation.models import Sample
from contracts.conditions import CONDITIONS_FILE, write_conditions
from core.artifacts import artifact_publish_once

# The folder's row schema, writer and reader are contracts.conditions' (docs/engine-contracts.md).


def condition_rows(samples: Iterable[Sample]) -> list[dict]:
    """The ``conditions.jsonl`` rows for ``samples`` (the stored prompt; fixed prompts are the engine's)."""
    rows = []
    for sample in samples:
        rows.append({
            "id": str(sample.pk),
            "task": sample.task_type.slug,
            "prompt": sample.prompt,
            "source": f"images/{sample.pk}-source.png",
            "mask": f"images/{sample.pk}-mask.png",
            "split": sample.split,
            "_source_name": sample.source_image.name,
            "_mask_name": sample.mask.name,
        })
    return rows


def conditions_hash(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def export_conditions(samples: Iterable[Sample], *, root: Path | None = None) -> Path:
    """Write (or reuse) the conditions folder for ``samples``; returns its path."""
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to export as conditions")
    rows = condition_rows(samples)
    digest = conditions_hash(rows)
    base = Path(root or Path(settings.ARTIFACTS_ROOT) / "conditions")
    final = base / digest[:24]
    if (final / CONDITIONS_FILE).is_file():
        artifact_publish_once(final)  # the worker that trains on them may be another host
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{digest[:12]}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "images").mkdir(parents=True)
        for row in rows:
            for key, stored in (("source", row["_source_name"]), ("mask", row["_mask_name"])):
                with default_storage.open(stored, "rb") as src, (tmp / row[key]).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        write_conditions(tmp, ({k: v for k, v in row.items() if not k.startswith("_")} for row in rows))
        try:
            tmp.rename(final)
        except OSError:  # a concurrent export of the same samples won the race: theirs is identical
            if not (final / CONDITIONS_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    artifact_publish_once(final)
    return final
