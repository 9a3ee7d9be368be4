"""The export file formats and the client-side check that a download is complete.

Plain Python (no Django), so a client can copy this file as it is.

**JSONL** (``/api/exports/judgments.jsonl``): one JSON object per line, one line per judgment,
then exactly one final *trailer* line::

    {"_trailer": {"rows": 18, "sha256": "<hex sha256 of every byte before the trailer line>"}}

The server writes the trailer only after the last row went out, so a stream that was cut
(worker killed, proxy timeout, dropped connection) has no trailer, a half trailer, or a row count
or digest that does not match: ``verify_jsonl`` tells each of those apart from a complete file.
Readers skip the trailer (``read_jsonl_rows`` does, and checks it on the way).

**Parquet** (``/api/exports/judgments.parquet``): a Parquet file is complete only when its footer
is there (it is written last and ends with the magic bytes ``PAR1``); ``verify_parquet`` reads it.

Both formats hold the same rows with the same columns (docs/api.md, "Exports"). The list columns
are lists in both: ``candidate_ids`` and ``displayed_order`` (Parquet ``list<int64>``) and,
aligned with ``candidate_ids``, ``candidate_sources`` (the system that made each candidate) and
``candidate_provenance`` (Parquet ``list<string>``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

TRAILER_KEY = "_trailer"
PARQUET_MAGIC = b"PAR1"


class ExportIncomplete(ValueError):
    """The export was cut short or altered: do not use it, download it again."""


def trailer_line(rows: int, sha256_hex: str) -> bytes:
    """The last line of a JSONL export: the row count and the digest of all bytes before it."""
    return (json.dumps({TRAILER_KEY: {"rows": rows, "sha256": sha256_hex}}) + "\n").encode()


def ndjson_chunks(rows: Iterable[dict], *, rows_per_chunk: int) -> Iterator[tuple[int, bytes]]:
    """Rows as JSON lines, ``(rows, bytes)`` per chunk of ``rows_per_chunk`` rows (trailer not
    included)."""
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps(row, default=str))
        if len(lines) >= rows_per_chunk:
            yield len(lines), ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield len(lines), ("\n".join(lines) + "\n").encode()


def is_trailer(row: dict) -> bool:
    return isinstance(row, dict) and TRAILER_KEY in row


def _lines(source: bytes | str | os.PathLike | BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """Lines of ``source`` with their line ends (the last one may lack it when cut)."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield from io.BytesIO(bytes(source))
    elif isinstance(source, str | os.PathLike):
        with Path(source).open("rb") as fh:
            yield from fh
    elif hasattr(source, "read"):
        yield from source
    else:  # an iterable of byte chunks, e.g. a streamed HTTP body
        pending = b""
        for chunk in source:
            pending += chunk
            *whole, pending = pending.split(b"\n")
            for line in whole:
                yield line + b"\n"
        if pending:
            yield pending


def read_jsonl_rows(source, *, verify: bool = True) -> Iterator[dict]:
    """The rows of a JSONL export, trailer skipped. With ``verify`` (the default) it raises
    ``ExportIncomplete`` at the end when the trailer is missing or does not match, so a consumer
    that reads to the end never silently works on a cut file."""
    digest, rows, trailer, trailing_bytes = hashlib.sha256(), 0, None, False
    for line in _lines(source):
        if trailer is not None:
            trailing_bytes = trailing_bytes or bool(line.strip())
            continue
        if not line.endswith(b"\n"):
            if verify:
                raise ExportIncomplete(f"the export ends in the middle of a line after {rows} rows")
            return
        row = json.loads(line)
        if is_trailer(row):
            trailer = row[TRAILER_KEY]
            continue
        digest.update(line)
        rows += 1
        yield row
    if not verify:
        return
    if trailer is None:
        raise ExportIncomplete(f"no trailer line: the export was cut after {rows} rows")
    if trailing_bytes:
        raise ExportIncomplete("data after the trailer line")
    if trailer.get("rows") != rows:
        raise ExportIncomplete(f"the trailer announces {trailer.get('rows')} rows, the file has {rows}")
    if trailer.get("sha256") != digest.hexdigest():
        raise ExportIncomplete("the rows do not match the trailer's sha256")


def verify_jsonl(source) -> int:
    """Check a whole JSONL export (bytes, a path, a binary file, or an iterable of byte chunks);
    return its row count, or raise ``ExportIncomplete`` when it was cut short or altered."""
    try:
        return sum(1 for _ in read_jsonl_rows(source, verify=True))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # a line cut inside a character or a row
        raise ExportIncomplete(f"a line is not valid JSON: {exc}") from exc


def verify_parquet(source: bytes | str | os.PathLike) -> int:
    """Check a Parquet export (bytes or a path): its footer must be there and readable. Returns
    the row count the footer records, or raises ``ExportIncomplete``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = source if isinstance(source, bytes | bytearray) else None
    if data is not None:
        head, tail, fileobj = bytes(data[:4]), bytes(data[-4:]), pa.BufferReader(bytes(data))
    else:
        path = Path(source)
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(max(0, path.stat().st_size - 4))
            tail = fh.read(4)
        fileobj = str(path)
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        raise ExportIncomplete("no Parquet footer: the file was cut short")
    try:
        return pq.ParquetFile(fileobj).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise ExportIncomplete(f"the Parquet footer is unreadable: {exc}") from exc
