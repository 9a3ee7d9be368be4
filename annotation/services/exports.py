"""Exports of judgments (JSONL and Parquet): streamed over HTTP, or written to a file by a job.

Rows come from ``selectors.judgment_export_ndjson``: on PostgreSQL the database builds each row
as a JSON line and streams them with COPY (one statement, flat memory); elsewhere the portable
ORM reader makes the same rows. The file formats, and how a client tells a complete download
from a cut one, are in ``annotation.export_format`` (JSONL ends with a trailer line; Parquet is
complete only with its footer).

Small exports stream straight from the request. Larger ones (over ``EXPORT_SYNC_MAX_ROWS`` rows,
or on request) run as a ``jobs.Job`` of kind export in the CPU worker, which writes the file under
``ARTIFACTS_ROOT/exports/<job id>/`` atomically and records its rows, size and sha256: a web
worker's timeout can then never cut a long export. With an object store (hosts that share no
disk) the job publishes that folder before it succeeds, and the web host that serves the
download fetches it once (``core.artifacts``).
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction

from core.artifacts import StoreUnavailable, artifact_fetch, artifact_publish, artifact_store
from core.errors import ApplicationError, NotFound
from enginekit.objectstore import ArtifactMissing, ObjectStoreUnavailable
from jobs.models import Job, JobKind, JobStatus
from jobs.services import JobCancelled, JobReporter, job_run, job_start

from ..export_format import ndjson_chunks, trailer_line
from ..models import Campaign
from ..selectors import EXPORT_COLUMNS, judgment_export_count, judgment_export_ndjson

#: Rows per Parquet row group (and per chunk read from the database for Parquet).
ROW_GROUP = 5_000
#: Rows per JSONL chunk handed to the response (about 1 MB).
JSONL_CHUNK_ROWS = 2_000
FORMATS = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
SCHEMA = pa.schema([(name, typ) for name, typ in EXPORT_COLUMNS])

#: Called with the number of rows written so far after each chunk; may raise to stop the export.
ProgressFn = Callable[[int], None]


# --- validation --------------------------------------------------------------------------------------

def export_normalize_request(*, fmt: str, campaign_ids: Iterable) -> tuple[str, list[int] | None]:
    """Validate a format and campaign ids (strings from a query string, or ints); ApplicationError
    with a message per field otherwise. No campaigns means every campaign."""
    errors: dict[str, list[str]] = {}
    if fmt not in FORMATS:
        errors["format"] = [f"Use one of {', '.join(FORMATS)}."]
    raw = list(campaign_ids or [])
    try:
        ids = sorted({int(c) for c in raw})
    except (TypeError, ValueError):
        errors["campaign"] = ["Campaign ids are whole numbers."]
        ids = []
    if ids:
        missing = sorted(set(ids) - set(Campaign.objects.filter(pk__in=ids).values_list("pk", flat=True)))
        if missing:
            errors["campaign"] = [f"No such campaign: {', '.join(map(str, missing))}."]
    if errors:
        raise ApplicationError("The export request is invalid.", fields=errors)
    return fmt, ids or None


# --- streams ----------------------------------------------------------------------------------------

def _ndjson_chunks(rows: Iterable[dict] | None, campaign_ids: list[int] | None, rows_per_chunk: int
                   ) -> Iterator[tuple[int, bytes]]:
    if rows is None:
        return judgment_export_ndjson(campaign_ids=campaign_ids, rows_per_chunk=rows_per_chunk)
    # Rows handed in by a caller (tests, tools): the same encoding as the portable reader's.
    return ndjson_chunks(rows, rows_per_chunk=rows_per_chunk)


def export_jsonl(rows: Iterable[dict] | None = None, *, campaign_ids: list[int] | None = None,
                 progress: ProgressFn | None = None) -> Iterator[bytes]:
    """Yield the export as JSON lines, then the trailer line (row count + sha256 of the rows)."""
    digest, done = hashlib.sha256(), 0
    # closing(): a consumer that stops early (client gone, job cancelled) ends the database read
    # at once, so the connection is free again (a COPY left open would block it).
    with closing(_ndjson_chunks(rows, campaign_ids, JSONL_CHUNK_ROWS)) as chunks:
        for n, data in chunks:
            digest.update(data)
            done += n
            yield data
            if progress is not None:
                progress(done)
    # Only reached when every row went out: a stream cut anywhere before lacks this line.
    yield trailer_line(done, digest.hexdigest())


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


_PARSE = pa_json.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="error")


def _arrow_chunk(data: bytes) -> pa.Table:
    """One chunk of JSON lines as an Arrow table, parsed column-wise by Arrow's C++ JSON reader
    (no Python object per value). One block per chunk: a block must hold whole lines."""
    read = pa_json.ReadOptions(block_size=max(1 << 20, len(data) + 1), use_threads=False)
    return pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=_PARSE).select(SCHEMA.names)


def export_parquet(rows: Iterable[dict] | None = None, *, campaign_ids: list[int] | None = None,
                   progress: ProgressFn | None = None) -> Iterator[bytes]:
    """Yield the export as one Parquet file, one row group of ``ROW_GROUP`` rows at a time; the
    footer (the file's proof of completeness) comes last."""
    sink = _DrainableSink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), SCHEMA)
    done = 0
    with closing(_ndjson_chunks(rows, campaign_ids, ROW_GROUP)) as chunks:
        for n, data in chunks:
            writer.write_table(_arrow_chunk(data), row_group_size=ROW_GROUP)
            done += n
            yield sink.drain()
            if progress is not None:
                progress(done)
    writer.close()
    yield sink.drain()


def export_stream(fmt: str, *, campaign_ids: list[int] | None = None, progress: ProgressFn | None = None
                  ) -> Iterator[bytes]:
    return (export_jsonl if fmt == "jsonl" else export_parquet)(campaign_ids=campaign_ids, progress=progress)


# --- export jobs ------------------------------------------------------------------------------------

def export_should_run_as_job(*, campaign_ids: list[int] | None, force: bool = False) -> bool:
    """Exports over ``EXPORT_SYNC_MAX_ROWS`` rows run as a job, so no web-worker timeout can cut
    them; ``force`` (``?async=1``) asks for a job whatever the size."""
    return force or judgment_export_count(campaign_ids=campaign_ids) > settings.EXPORT_SYNC_MAX_ROWS


def export_start(*, fmt: str, campaign_ids: list[int] | None, user: User | None = None,
                 enqueue: bool = True) -> Job:
    """Record an export job and (after commit) send it to the CPU worker."""
    fmt, campaign_ids = export_normalize_request(fmt=fmt, campaign_ids=campaign_ids or [])
    scope = f"campaigns {', '.join(map(str, campaign_ids))}" if campaign_ids else "all campaigns"
    with transaction.atomic():
        # A broker outage leaves it queued, said on the job (not a 500).
        job = job_start(kind=JobKind.EXPORT, name=f"export {fmt}: {scope}",
                        config={"format": fmt, "campaign_ids": campaign_ids or []}, user=user, enqueue=enqueue)
    return job


def _exports_root() -> Path:
    return Path(settings.ARTIFACTS_ROOT) / "exports"


def export_write_file(*, fmt: str, campaign_ids: list[int] | None, dest: Path,
                      progress: ProgressFn | None = None) -> dict:
    """Write the export to ``dest`` atomically (a temporary file in the same folder, fsynced, then
    renamed), so ``dest`` is either absent or complete. Returns rows, size and sha256 of the file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A worker killed mid-export leaves its temporary file; the retry that takes the job over
    # starts again from the first row, so the leftover goes.
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    digest, size, rows = hashlib.sha256(), 0, 0

    def count(n: int) -> None:
        nonlocal rows
        rows = n
        if progress is not None:
            progress(n)

    try:
        with tmp.open("wb") as fh:
            for data in export_stream(fmt, campaign_ids=campaign_ids, progress=count):
                fh.write(data)
                digest.update(data)
                size += len(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return {"format": fmt, "rows": rows, "size": size, "sha256": digest.hexdigest()}


def export_write_job(job: Job, reporter: JobReporter) -> dict:
    """The export kind's job body (jobs.registry): write the file, publish its folder (with an object
    store: the web host that serves the download shares no disk with this worker), record
    rows/size/sha256 in the job. A publish that fails fails the job with the store's reason."""
    fmt, campaign_ids = job.config["format"], job.config.get("campaign_ids") or None
    total = judgment_export_count(campaign_ids=campaign_ids)
    folder = _exports_root() / str(job.pk)
    Job.objects.filter(pk=job.pk).update(run_dir=str(folder))
    dest = folder / f"judgments.{fmt}"
    info = _write_in_thread(fmt=fmt, campaign_ids=campaign_ids, dest=dest, total=total, reporter=reporter)
    reporter.log(f"wrote {info['rows']} rows, {info['size']} bytes, sha256 {info['sha256'][:12]}…")
    if artifact_publish(folder) is not None:
        reporter.log(f"published {artifact_store().key_for(folder)} to the artifact store")
    return {**info, "file": dest.name}


def export_execute(job_id: int) -> Job | None:
    """Run an export job in this process (``jobs.services.job_run``): tests and the CLI."""
    return job_run(job_id)


def _write_in_thread(*, fmt: str, campaign_ids: list[int] | None, dest: Path, total: int,
                     reporter: JobReporter) -> dict:
    """Write the file from a thread of its own: the read holds its database connection for the
    whole export (one COPY), while this thread writes progress and reads cancel requests on the
    job's connection. A cancel stops the writer at its next chunk and leaves no file."""
    done, stop, outcome = [0], threading.Event(), {}

    def progress(n: int) -> None:
        done[0] = n
        if stop.is_set():
            raise JobCancelled("export cancelled")

    def run() -> None:
        try:
            outcome["info"] = export_write_file(fmt=fmt, campaign_ids=campaign_ids, dest=dest, progress=progress)
        except BaseException as exc:  # handed to the job's thread, which records it
            outcome["error"] = exc
        finally:
            connection.close()  # this thread's own connection

    writer = threading.Thread(target=run, name=f"export-{dest.parent.name}", daemon=True)
    writer.start()
    while writer.is_alive():
        writer.join(0.5)
        reporter.progress({"step": min(done[0], total), "total_steps": max(total, 1), "kind": "train",
                           "rows": done[0]})
        if reporter.should_stop():
            stop.set()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["info"]


def export_job_file(job: Job) -> Path:
    """The finished export file of ``job``; NotFound when it is not an export, not done, or gone."""
    if job.kind != JobKind.EXPORT:
        raise NotFound("No such export.")
    if job.status != JobStatus.SUCCEEDED:
        raise NotFound(f"The export is {job.status}; its file is there once it has succeeded.")
    # The name comes from our own record, never from the request: no path can leave the folder.
    folder = _exports_root() / str(job.pk)
    name = Path(str(job.result.get("file", ""))).name
    gone = NotFound("The export file is gone (artifacts were cleaned up); start a new export.")
    if not (folder / name).is_file() and artifact_store().enabled:
        # Written by a worker on another host: fetched once (streamed to disk, the file can be
        # large), then served from here like a local one.
        try:
            folder = artifact_fetch(folder)
        except ArtifactMissing:
            raise gone from None
        except ObjectStoreUnavailable as exc:
            raise StoreUnavailable(exc) from exc
    path = folder / name
    if not path.is_file():
        raise gone
    return path
