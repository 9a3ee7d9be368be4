"""Streamed exports of judgments (JSONL and Parquet) with flat memory.

Rows come from ``selectors.judgment_export_rows``, a server-side cursor; Parquet is written row
group by row group into a sink that is drained after each group, so memory stays flat.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..selectors import EXPORT_COLUMNS, judgment_export_rows

ROW_GROUP = 5_000


def export_jsonl(rows: Iterable[dict] | None = None, **filters) -> Iterator[bytes]:
    """Yield the export as JSON lines."""
    for row in rows if rows is not None else judgment_export_rows(**filters):
        yield (json.dumps(row, default=str) + "\n").encode()


class _DrainableSink:
    """A write-only file object whose bytes are taken out as they are produced."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False
        self.pos = 0

    def write(self, data) -> int:
        b = bytes(data)
        self.chunks.append(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        """Nothing is buffered here: ``drain`` hands the bytes on."""

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


SCHEMA = pa.schema([(name, typ) for name, typ in EXPORT_COLUMNS])


def export_parquet(rows: Iterable[dict] | None = None, **filters) -> Iterator[bytes]:
    """Yield the export as one Parquet file, written in row groups."""
    sink = _DrainableSink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), SCHEMA)
    batch: list[dict] = []

    def flush_batch() -> bytes:
        table = pa.Table.from_pylist(
            [{k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in r.items()} for r in batch],
            schema=SCHEMA,
        )
        writer.write_table(table)
        batch.clear()
        return sink.drain()

    for row in rows if rows is not None else judgment_export_rows(**filters):
        batch.append(row)
        if len(batch) >= ROW_GROUP:
            yield flush_batch()
    if batch:
        yield flush_batch()
    writer.close()
    yield sink.drain()
