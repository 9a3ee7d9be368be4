"""The dataset snapshot folder: its row schema, its writer and its reader (docs/engine-contracts.md).

```
<snapshot>/
  manifest.json   content_hash, created_at, filter, aggregation, counts, human_ceiling,
                  format_version, vocabulary (+ whatever the writer records)
  pairs.jsonl     one JSON object a line
  pairs.parquet   the same rows, typed by PAIR_SCHEMA (or the writer's schema)
  images/<...>.png
```

Every snapshot writer (the annotation service, the research loop and its filtered copies) writes
rows through :class:`PairsWriter` and the manifest through :func:`write_manifest`, so each writes
both files the same way; the reward engine (and anything else) reads them with
:func:`iter_raw_rows` / :func:`read_pairs`. What goes *into* the rows (aggregation, hashing,
database look-ups) stays with each writer.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.splits import SPLITS
from contracts.vocabulary import Vocabulary, VocabularyError, vocabulary_or_builtin

#: ``manifest.json`` ``format_version`` of the snapshots written now.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAIRS_JSONL = "pairs.jsonl"
PAIRS_PARQUET = "pairs.parquet"
#: Fields every row must have (non-empty); the rest of PAIR_SCHEMA is optional.
REQUIRED_FIELDS = ("pair_id", "split", "task", "criterion", "winner", "loser")
#: Rows per Parquet row group: bounded memory while writing, a few groups per large snapshot.
ROW_GROUP = 5_000

#: The typed row: the engine's fields first, then the optional extras (ignored by the engine).
PAIR_SCHEMA = pa.schema([
    ("pair_id", pa.string()),
    ("split", pa.string()),
    ("task", pa.string()),
    ("criterion", pa.string()),
    ("prompt", pa.string()),
    ("winner", pa.string()),
    ("loser", pa.string()),
    ("sample_id", pa.string()),
    ("votes", pa.int64()),
    ("agreement", pa.float64()),
    ("winner_candidate_id", pa.int64()),
    ("loser_candidate_id", pa.int64()),
    # Soft labels (added at the end: readers of the first twelve columns are unaffected).
    ("votes_loser", pa.int64()),
    ("votes_tie", pa.int64()),
    ("p_winner", pa.float64()),
])
#: The field names of PAIR_SCHEMA, in order.
PAIR_FIELDS: tuple[str, ...] = tuple(PAIR_SCHEMA.names)


class SnapshotError(ValueError):
    """The snapshot folder cannot be used for training or evaluation (message says why)."""


@dataclass(frozen=True)
class PairRow:
    """One preference: `winner` beat `loser` on `criterion` of `task` (image paths are absolute).

    `p_winner` is the aggregation's probability that the winner is preferred (None where the
    snapshot has none); soft-label training uses it as the target."""

    pair_id: str
    split: str
    task: str
    criterion: str
    prompt: str
    winner: Path
    loser: Path
    sample_id: str = ""
    votes: int = 0
    agreement: float = 1.0
    p_winner: float | None = None


# --- writing ---------------------------------------------------------------------------------------


class PairsWriter:
    """Write ``pairs.jsonl`` and ``pairs.parquet`` row by row (a context manager).

    JSONL lines keep every key of a row (sorted); Parquet keeps ``schema``'s columns (a missing
    optional column is null). ``schema`` defaults to PAIR_SCHEMA; a writer whose extras have other
    types (the research loop's string candidate ids) passes its own.
    """

    def __init__(self, folder: str | Path, schema: pa.Schema = PAIR_SCHEMA, row_group: int = ROW_GROUP) -> None:
        self.folder = Path(folder)
        self.schema, self.row_group = schema, row_group
        self.count = 0
        self._batch: list[dict[str, Any]] = []
        self._parquet = pq.ParquetWriter(str(self.folder / PAIRS_PARQUET), schema)
        self._jsonl = (self.folder / PAIRS_JSONL).open("w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> str:
        """Append one row to both files; returns its JSONL line (without the newline)."""
        line = json.dumps(row, sort_keys=True)
        self._jsonl.write(line + "\n")
        self._batch.append(row)
        self.count += 1
        if len(self._batch) >= self.row_group:
            self._flush()
        return line

    def _flush(self) -> None:
        if self._batch:
            self._parquet.write_table(pa.Table.from_pylist(self._batch, schema=self.schema))
            self._batch.clear()

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._parquet.close()
            self._jsonl.close()

    def __enter__(self) -> PairsWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.close()


def write_pairs(folder: str | Path, rows: Iterable[dict[str, Any]], schema: pa.Schema = PAIR_SCHEMA) -> int:
    """Write all ``rows`` as ``pairs.jsonl`` + ``pairs.parquet`` under ``folder``; returns the count."""
    with PairsWriter(folder, schema) as writer:
        for row in rows:
            writer.write(row)
    return writer.count


def write_manifest(folder: str | Path, manifest: dict[str, Any], *, sort_keys: bool = True) -> Path:
    """Write ``manifest.json`` (``format_version`` defaults to FORMAT_VERSION); returns its path."""
    path = Path(folder) / MANIFEST
    data = {"format_version": FORMAT_VERSION, **manifest}
    path.write_text(json.dumps(data, indent=2, sort_keys=sort_keys))
    return path


# --- reading ---------------------------------------------------------------------------------------


def load_manifest(snapshot_dir: str | Path) -> dict[str, Any]:
    """Return manifest.json as a dict ({} when the snapshot has none)."""
    path = Path(snapshot_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path} is not valid JSON: {exc}") from exc


def load_vocabulary(snapshot_dir: str | Path) -> Vocabulary:
    """The snapshot's task/criterion vocabulary (manifest ``"vocabulary"``); the built-in one for
    snapshots written before manifests carried it."""
    try:
        return vocabulary_or_builtin(load_manifest(snapshot_dir).get("vocabulary"))
    except VocabularyError as exc:
        raise SnapshotError(f"{snapshot_dir}: manifest vocabulary: {exc}") from exc


def iter_raw_rows(snapshot: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (row number, row dict) from pairs.jsonl, one line at a time, or pairs.parquet, one
    record batch at a time.

    Streamed, so a snapshot of millions of pairs never sits in memory as text or as dicts: callers
    keep only the parsed rows of the split they asked for.
    """
    snapshot = Path(snapshot)
    jsonl = snapshot / PAIRS_JSONL
    parquet = snapshot / PAIRS_PARQUET
    if jsonl.exists():
        with jsonl.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SnapshotError(f"{jsonl}:{lineno} is not valid JSON: {exc}") from exc
        return
    if parquet.exists():
        number = 0
        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=4096):
            for raw in batch.to_pylist():
                number += 1
                yield number, raw
        return
    raise SnapshotError(f"snapshot {snapshot} has neither {PAIRS_JSONL} nor {PAIRS_PARQUET}")


def read_raw_rows(snapshot: str | Path) -> list[dict[str, Any]]:
    """Every row of a snapshot as a plain dict, in file order (small snapshots: tools and tests)."""
    return [raw for _, raw in iter_raw_rows(Path(snapshot))]


def parse_row(raw: dict[str, Any], snapshot: Path, where: str, vocabulary: Vocabulary) -> PairRow:
    """Validate one raw row against the snapshot's vocabulary; ``snapshot`` must already be resolved."""
    missing = [f for f in REQUIRED_FIELDS if raw.get(f) in (None, "")]
    if missing:
        raise SnapshotError(f"{where}: missing field(s) {', '.join(missing)}")
    if raw["split"] not in SPLITS:
        raise SnapshotError(f"{where}: split {raw['split']!r} is not one of {', '.join(SPLITS)}")
    try:
        spec = vocabulary.check_pair(raw["task"], raw["criterion"])
    except VocabularyError as exc:
        raise SnapshotError(f"{where}: {exc}") from exc
    prompt = raw.get("prompt") or ""
    if spec.uses_prompt and not prompt.strip():
        raise SnapshotError(f"{where}: a {spec.slug} pair needs a prompt")
    root = snapshot  # resolved once by the caller: this runs for every row of the snapshot
    paths = []
    for key in ("winner", "loser"):
        path = (root / str(raw[key])).resolve()
        # Paths are relative to the snapshot; refuse anything that escapes it.
        if not path.is_relative_to(root):
            raise SnapshotError(f"{where}: {key} path {raw[key]!r} points outside the snapshot")
        paths.append(path)
    p_winner = raw.get("p_winner")
    if p_winner is not None and (isinstance(p_winner, bool) or not isinstance(p_winner, int | float)
                                 or not 0.0 <= p_winner <= 1.0):
        raise SnapshotError(f"{where} (pair {raw['pair_id']}): p_winner {p_winner!r} must be a probability in [0, 1]")
    return PairRow(
        pair_id=str(raw["pair_id"]),
        split=raw["split"],
        task=raw["task"],
        criterion=raw["criterion"],
        prompt=prompt,
        winner=paths[0],
        loser=paths[1],
        sample_id=str(raw.get("sample_id") or ""),
        votes=int(raw.get("votes") or 0),
        agreement=float(raw.get("agreement") if raw.get("agreement") is not None else 1.0),
        p_winner=None if p_winner is None else float(p_winner),
    )


def read_pairs(
    snapshot_dir: str | Path, split: str | None = None, vocabulary: Vocabulary | None = None
) -> list[PairRow]:
    """Read and validate every pair of a snapshot (optionally one split).

    Tasks and criteria are checked against ``vocabulary`` (default: the snapshot's own, see
    `load_vocabulary`). Raises SnapshotError for a missing folder, an empty snapshot, malformed
    rows, or an unknown task/criterion.
    """
    snapshot = Path(snapshot_dir)
    if not snapshot.is_dir():
        raise SnapshotError(f"snapshot folder not found: {snapshot}")
    if split is not None and split not in SPLITS:
        raise SnapshotError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if vocabulary is None:
        vocabulary = load_vocabulary(snapshot)
    rows = []
    seen = 0
    # Every row is validated (a bad row fails the snapshot whatever split is asked for), but only
    # the requested split's rows are kept.
    root = snapshot.resolve()
    for number, raw in iter_raw_rows(snapshot):
        seen += 1
        row = parse_row(raw, root, f"{snapshot.name} row {number}", vocabulary)
        if split is None or row.split == split:
            rows.append(row)
    if not seen:
        raise SnapshotError(f"snapshot {snapshot} is empty: it has no preference pairs")
    return rows
