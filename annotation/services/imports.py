"""Import samples and candidates from a folder or zip with a JSONL manifest.

Manifest (``manifest.jsonl``), one sample a line::

    {"external_id": "s1", "task": "fill", "prompt": "a red circle", "source": "img/s1.png",
     "mask": "mask/s1.png", "split_key": "scene-7", "split": "test",
     "candidates": [{"image": "out/s1-a.png", "source_name": "flux-base", "provenance": "external",
                     "seed": 1, "params": {}}]}

- ``split`` (optional: train, val or test) is kept as given. Without it the sample takes the split
  of the other samples sharing its ``split_key`` (in this manifest or already stored), else the
  hash split of the key (``vocabulary.split_for_key``). Samples sharing a key must share a split:
  an explicit split that contradicts another row's or a stored sample's is a row error, since
  a split key exists to keep near-duplicates out of the test set.
- A new sample needs at least two distinct candidate images (pairwise work compares two).
- A row whose ``external_id`` is already stored adds candidates to that sample: its task must
  match, ``prompt`` / ``split_key`` / ``split`` when given must equal the stored ones (the
  sample's condition never changes under its judgments), ``source`` / ``mask`` / ``meta`` are not
  read, and images the sample already has (same sha256) are skipped. The sample must end with at
  least two candidates.

Every row is validated before anything is written and every error of every row is reported
(one ``{"line", "error"}`` entry per error); one bad row fails the whole import, and no file or
row is left behind.

Every import runs as a job, and the batch's status is its job's. An upload (the API, the
dashboard's Import page, the admin): ``import_start`` checks what is cheap to check in the
request (size caps, a readable zip, the manifest), stores the upload, records the ``ImportBatch``
and its job and enqueues it; ``import_job`` (the job's body) validates and writes with progress
and records the outcome on the batch, and ``import_finished`` deletes the stored upload. With an
object store (hosts that share no disk) the stored upload is published before the job is sent,
the worker that runs the job fetches it, and ``import_finished`` deletes it from the store too.
``import_samples`` (``manage.py import_samples`` and tests) records the same job for a folder or
zip on this host and runs it here through ``jobs.services.job_run``, as a worker would.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import uuid
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from PIL import Image

from core.artifacts import (
    StoreUnavailable,
    artifact_fetch,
    artifact_publish,
    artifact_store,
    artifact_unpublish,
)
from core.errors import ApplicationError
from enginekit.objectstore import ArtifactMissing, ObjectStoreUnavailable
from jobs.models import Job, JobKind, JobStatus
from jobs.services import JobCancelled, JobReporter, job_run, job_start

from .. import vocabulary as vocab
from ..images import ImageRejected, check_mask, open_image, png_bytes, sha256_of
from ..models import Candidate, ImportBatch, ImportStatus, Provenance, Sample, Split, TaskType

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
# The manifest is read whole; a few bytes of zip can inflate to gigabytes of it (zip bomb).
MANIFEST_MAX_BYTES = 10 * 1024 * 1024
# A damaged archive (bad CRC, truncated or corrupt deflate data) raises these on read.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
#: Pairwise work shows two candidates side by side, so a sample with fewer is never shown.
MIN_CANDIDATES = 2

_T = TypeVar("_T")
#: ``progress(phase, done, total)``: "validate" counts manifest rows checked, "write" rows written.
ImportProgress = Callable[[str, int, int], None]


class ImportFailed(ApplicationError):
    def __init__(self, batch: ImportBatch) -> None:
        super().__init__(f"Import failed: {len(batch.errors)} row error(s); nothing was imported.",
                         fields={"rows": batch.errors}, code="import_failed")
        self.batch = batch


@dataclass
class _Row:
    line: int
    external_id: str
    task: TaskType
    prompt: str
    split_key: str
    split: str  # as the manifest gives it; "" = resolved from the key (``_resolve_splits``)
    source_png: bytes
    mask_png: bytes
    size: tuple[int, int]
    meta: dict
    candidates: list[dict] = field(default_factory=list)  # new images only (deduplicated by sha256)
    existing: Sample | None = None  # set when the row adds candidates to a stored sample


class _Source:
    """Read files by manifest-relative path from a folder or a zip, refusing path traversal."""

    # Decoded images kept per (path, role): rows that share one large file must not pay a decode
    # each (issue #21: a 4000×4000 source reused by every row cost seconds a row).
    KEEP_DECODED = 8

    def __init__(self, path: Path) -> None:
        self.path = path
        self._decoded: OrderedDict[tuple[str, str], Image.Image | ImageRejected] = OrderedDict()
        try:
            self.zip = zipfile.ZipFile(path) if path.is_file() else None
        except _ZIP_ERRORS as exc:
            raise ApplicationError("Upload a .zip archive.", fields={"file": [f"Not a readable zip archive ({exc})."]}) from exc

    def read(self, rel: str) -> bytes:
        if not isinstance(rel, str):
            raise ImageRejected(f"a file path must be a string, not {_json_type(rel)}.")
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not rel:
            raise ImageRejected(f"path '{rel}' must be relative and stay inside the import.")
        if self.zip is not None:
            try:
                info = self.zip.getinfo(str(pure))
            except KeyError as exc:
                raise ImageRejected(f"file '{rel}' is not in the archive.") from exc
            if info.file_size > settings.UPLOAD_MAX_IMAGE_BYTES:
                raise ImageRejected(f"file '{rel}' is larger than {settings.UPLOAD_MAX_IMAGE_BYTES} bytes.")
            try:
                return self.zip.read(info)
            except _ZIP_ERRORS as exc:
                raise ImageRejected(f"file '{rel}' is damaged in the archive ({exc}).") from exc
        full = (self.path / pure).resolve()
        if not full.is_relative_to(self.path.resolve()) or not full.is_file():
            raise ImageRejected(f"file '{rel}' does not exist in the folder.")
        return full.read_bytes()


    def image(self, rel, *, what: str, name_read_errors: bool = False) -> Image.Image:
        """The file at ``rel`` read and decoded (``open_image``), once per file and role while it
        stays among the last ``KEEP_DECODED``; a refusal is kept and raised again the same way."""
        key = (rel if isinstance(rel, str) else repr(rel), what)
        if key in self._decoded:
            self._decoded.move_to_end(key)
        else:
            try:
                try:
                    data = self.read(rel)
                except ImageRejected as exc:
                    if not name_read_errors:
                        raise
                    raise ImageRejected(f"{what}: {exc}") from exc
                self._decoded[key] = open_image(data, what=what)
            except ImageRejected as exc:
                self._decoded[key] = exc
            while len(self._decoded) > self.KEEP_DECODED:
                self._decoded.popitem(last=False)
        found = self._decoded[key]
        if isinstance(found, ImageRejected):
            raise ImageRejected(str(found))
        return found


def _manifest_lines(src: _Source) -> list[str]:
    try:
        size = src.zip.getinfo(MANIFEST_NAME).file_size if src.zip else (src.path / MANIFEST_NAME).stat().st_size
        if size > MANIFEST_MAX_BYTES:
            raise ApplicationError(f"{MANIFEST_NAME} is larger than {MANIFEST_MAX_BYTES} bytes.",
                                   fields={"file": [f"Split the import: at most {MANIFEST_MAX_BYTES} bytes of manifest."]})
        raw = src.zip.read(MANIFEST_NAME) if src.zip else (src.path / MANIFEST_NAME).read_bytes()
    except (KeyError, FileNotFoundError) as exc:
        raise ApplicationError(f"No {MANIFEST_NAME} at the top of the import.",
                               fields={"file": [f"{MANIFEST_NAME} is missing."]}) from exc
    except _ZIP_ERRORS as exc:
        raise ApplicationError(f"{MANIFEST_NAME} is damaged in the archive.", fields={"file": [str(exc)]}) from exc
    return raw.decode("utf-8", errors="replace").splitlines()


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _text(obj: dict, key: str, *, max_length: int | None = None, default: str = "") -> str:
    """``obj[key]`` as text: a string (or a plain number, as ids often are), at most ``max_length``."""
    value = obj.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ImageRejected(f"{key} must be a string, not {_json_type(value)}.")
    text = str(value).strip()
    if max_length is not None and len(text) > max_length:
        raise ImageRejected(f"{key} is longer than {max_length} characters.")
    return text


def _object(obj: dict, key: str) -> dict:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImageRejected(f"{key} must be an object, not {_json_type(value)}.")
    return value


class _Errors(list):
    """The errors of one row: each check that fails adds its message and the row goes on."""

    def check(self, fn: Callable[[], _T]) -> _T | None:
        try:
            return fn()
        except ImageRejected as exc:
            self.append(str(exc))
            return None


def _split(obj: dict) -> str:
    value = obj.get("split")
    if value is None or value == "":
        return ""
    if value not in Split.values:
        raise ImageRejected(f"split must be one of {', '.join(Split.values)}, not {json.dumps(value)}.")
    return value


def _stored_differences(sample: Sample, values: dict[str, str | None]) -> list[str]:
    """A row for a stored sample may repeat its condition but never change it."""
    return [f"{key} '{given}' differs from the stored sample's '{getattr(sample, key)}'; an import adds "
            "candidates to a stored sample but never changes it."
            for key, given in values.items() if given and given != getattr(sample, key)]


def _candidate(i: int, cand: dict, src: _Source, size: tuple[int, int] | None) -> dict:
    seed = cand.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed < 2**63):
        raise ImageRejected(f"candidate {i}: seed must be a whole number.")
    provenance = cand.get("provenance", Provenance.EXTERNAL)
    if not isinstance(provenance, str) or provenance not in Provenance.values:
        raise ImageRejected(f"candidate {i}: provenance must be one of {Provenance.values}.")
    img = src.image(cand.get("image", ""), what=f"candidate {i}", name_read_errors=True).convert("RGB")
    if size is not None and img.size != size:
        raise ImageRejected(f"candidate {i} is {img.size[0]}×{img.size[1]}, the source {size[0]}×{size[1]}.")
    png = png_bytes(img)
    return {"png": png, "sha256": sha256_of(png), "source_name": _text(cand, "source_name", default="upload")[:200],
            "provenance": provenance, "seed": seed, "params": _object(cand, "params"),
            "source_ref": _text(cand, "source_ref")[:200]}


def _validate_row(line_no: int, obj: dict, src: _Source, tasks: dict[str, TaskType],
                  seen: set[str]) -> tuple[_Row | None, list[str]]:
    """The row, or None, and every error found in it. Field types and lengths are checked here,
    so a bad row is a line in the report, never a 500 (an unhashable task, a list as a path, an
    id longer than its column)."""
    errors = _Errors()
    ext = errors.check(lambda: _text(obj, "external_id", max_length=200))
    existing = None
    if ext == "":
        errors.append("external_id is required.")
    elif ext is not None:
        if ext in seen:
            errors.append(f"external_id '{ext}' appears on an earlier line of this manifest.")
        existing = Sample.objects.select_related("task_type").filter(external_id=ext).first()
    task_slug = obj.get("task")
    task = tasks.get(task_slug) if isinstance(task_slug, str) else None
    if task is None:
        errors.append(f"task must be one of {sorted(tasks)}.")
    elif existing is not None and existing.task_type_id != task.pk:
        errors.append(f"sample '{ext}' is stored with task '{existing.task_type.slug}', not '{task.slug}'.")
    prompt = errors.check(lambda: _text(obj, "prompt", max_length=10_000))
    split_key = errors.check(lambda: _text(obj, "split_key", max_length=200))
    split = errors.check(lambda: _split(obj))
    meta = errors.check(lambda: _object(obj, "meta"))
    cands = obj.get("candidates") or []
    if not isinstance(cands, list) or not all(isinstance(c, dict) for c in cands):
        errors.append("candidates must be a list of objects.")
        cands = None  # how many there are is unknown: no count error on top
    source = mask = None
    if existing is not None:
        errors.extend(_stored_differences(existing, {"prompt": prompt, "split_key": split_key, "split": split}))
        size: tuple[int, int] | None = (existing.width, existing.height)
    else:
        source = errors.check(lambda: src.image(obj.get("source", ""), what="source").convert("RGB"))
        mask = errors.check(lambda: src.image(obj.get("mask", ""), what="mask"))
        if source is not None and mask is not None:
            mask = errors.check(lambda: check_mask(mask, size=source.size))
        size = source.size if source is not None else None
    checked = [errors.check(lambda i=i, c=c: _candidate(i, c, src, size)) for i, c in enumerate(cands or [])]
    stored = set(existing.candidates.values_list("sha256", flat=True)) if existing is not None else set()
    new: dict[str, dict] = {}
    for cand in checked:
        if cand is not None and cand["sha256"] not in stored:
            new.setdefault(cand["sha256"], cand)
    if cands is None or None in checked:
        pass  # a malformed candidate is already reported; the count would be a guess
    elif existing is not None and not cands:
        errors.append(f"sample '{ext}' is already stored: list the candidates to add to it.")
    elif len(stored | set(new)) < MIN_CANDIDATES:
        what = "the stored sample and this row have" if existing is not None else "this row has"
        errors.append(f"pairwise work needs at least {MIN_CANDIDATES} different candidate images; "
                      f"{what} {len(stored | set(new))}.")
    if errors:
        return None, errors
    return _Row(line=line_no, external_id=ext, task=task, prompt=prompt, split_key=split_key or ext, split=split,
                source_png=png_bytes(source) if source is not None else b"",
                mask_png=png_bytes(mask) if mask is not None else b"", size=size, meta=meta,
                candidates=list(new.values()), existing=existing), []


def _resolve_splits(rows: list[_Row]) -> list[dict]:
    """Give every new sample its split (explicit, else its key's, else the key's hash) and return
    the row errors of explicit splits that contradict another sample sharing the key."""
    new = [r for r in rows if r.existing is None]
    stored = dict(Sample.objects.filter(split_key__in={r.split_key for r in new})
                  .values_list("split_key", "split").distinct())
    claimed: dict[str, tuple[str, str]] = {k: (v, "the stored samples") for k, v in stored.items()}
    errors = []
    for r in new:
        if not r.split:
            continue
        split, where = claimed.setdefault(r.split_key, (r.split, f"line {r.line}"))
        if split != r.split:
            errors.append({"line": r.line, "error": f"split '{r.split}' conflicts with split '{split}' of "
                                                    f"{where}, which shares split_key '{r.split_key}'."})
    for r in new:
        r.split = r.split or claimed.get(r.split_key, (vocab.split_for_key(r.split_key), ""))[0]
    return errors


def _validate(src: _Source, *, progress: ImportProgress | None = None) -> tuple[list[_Row], list[dict]]:
    """Every row checked (nothing written): the good rows and every error of every row."""
    tasks = {t.slug: t for t in TaskType.objects.all()}
    lines = _manifest_lines(src)
    total = sum(1 for line in lines if line.strip())
    rows: list[_Row] = []
    errors: list[dict] = []
    seen: set[str] = set()
    done = 0
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if progress is not None:
            progress("validate", done, total)
        done += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append({"line": line_no, "error": f"not valid JSON ({exc})."})
            continue
        if not isinstance(obj, dict):
            errors.append({"line": line_no, "error": "each line must be a JSON object."})
            continue
        row, row_errors = _validate_row(line_no, obj, src, tasks, seen)
        if isinstance(obj.get("external_id"), str | int):
            seen.add(str(obj["external_id"]).strip())
        errors.extend({"line": line_no, "error": e} for e in row_errors)
        if row is not None:
            rows.append(row)
    if progress is not None:
        progress("validate", done, total)
    errors.extend(_resolve_splits(rows))
    if not rows and not errors:
        errors.append({"line": 0, "error": "the manifest has no rows."})
    errors.sort(key=lambda e: e["line"])  # stable: a row's errors stay in the order found
    return rows, errors


def _run(src: _Source, batch: ImportBatch, *, progress: ImportProgress | None = None) -> ImportBatch:
    """Validate, then write everything or nothing; the outcome is saved on ``batch``. Raises
    ImportFailed when any row is bad (the job then fails)."""
    rows, errors = _validate(src, progress=progress)
    if errors:
        batch.errors = errors
        batch.samples_created = batch.candidates_created = 0
        batch.split_counts = {}
        batch.save()
        raise ImportFailed(batch)
    return _write_rows(rows, batch, progress=progress)


def import_samples(*, path: Path, user: User | None = None, source_name: str = "") -> ImportBatch:
    """Import a folder or zip on this host in this process: record an import job and its batch and
    run the job here (``job_run``, what a worker does), so the import has a job like an upload's.
    Every row is validated, then all samples and candidates are created, or nothing: raises
    ImportFailed with the failed batch (its row errors, or the job's reason as line 0). A source
    that is not importable at all (no manifest, a damaged zip) raises ApplicationError before
    anything is recorded. ``source_name`` names the record (default: the name of ``path``)."""
    path = Path(path).resolve()
    _manifest_lines(_Source(path))  # the request-level checks an upload gets in import_start
    record_name = Path(source_name).name[:300] or path.name
    with transaction.atomic():
        # The operator's own folder or zip, named by its path: read where it is, never deleted.
        job = job_start(kind=JobKind.IMPORT, name=f"import {record_name}", config={"path": str(path)}, user=user,
                        enqueue=False)
        batch = ImportBatch.objects.create(created_by=user, source_name=record_name, job=job)
        job.config = {**job.config, "batch_id": batch.pk}
        job.save(update_fields=["config"])
    job_run(job.pk)
    batch = ImportBatch.objects.select_related("job").get(pk=batch.pk)
    if batch.status != ImportStatus.SUCCEEDED:
        raise ImportFailed(batch)
    return batch


#: The stored upload's file name inside its folder (``imports/<hex>/upload.zip``).
UPLOAD_NAME = "upload.zip"


def _uploads_root() -> Path:
    # Under the artifacts folder, shared by the web and the workers on one disk, or published
    # through the object store between hosts (exports live there too); not under MEDIA_ROOT, whose
    # files are served.
    return Path(settings.ARTIFACTS_ROOT) / "imports"


def _store_upload(upload: UploadedFile) -> Path:
    """The upload on disk (the zip reader needs to seek, and the worker to find it), after the
    cheap checks: the archive size cap, a readable zip, the manifest there, within its cap and
    undamaged. Raises ApplicationError (nothing stored) otherwise. Each upload has a folder of its
    own, the unit the object store publishes."""
    cap = settings.UPLOAD_MAX_ARCHIVE_BYTES
    too_large = ApplicationError(f"The archive is larger than {cap} bytes.", code="too_large",
                                 fields={"file": [f"The archive is larger than {cap} bytes: split the import."]})
    if upload.size is not None and upload.size > cap:
        raise too_large
    folder = _uploads_root() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / UPLOAD_NAME
    try:
        written = 0
        with path.open("wb") as fh:
            for chunk in upload.chunks():
                written += len(chunk)
                if written > cap:  # a size the client misreported
                    raise too_large
                fh.write(chunk)
        if not zipfile.is_zipfile(path):
            raise ApplicationError("Upload a .zip archive.", fields={"file": ["Not a zip archive."]})
        # Read once here so that a missing, oversize or damaged manifest is the uploader's 400,
        # not a failed job; the rows themselves are checked by the job.
        _manifest_lines(_Source(path))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path


def _publish_upload(folder: Path) -> None:
    """With an object store, hand the stored upload to whichever host runs the job: publish its
    folder, then drop this host's copy (the worker fetches it; the web host would otherwise keep
    every upload). An unreachable store refuses the upload (503), nothing kept."""
    try:
        if artifact_publish(folder) is not None:
            shutil.rmtree(folder, ignore_errors=True)
    except ObjectStoreUnavailable as exc:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(ObjectStoreUnavailable):  # the part that went up, if it can go
            artifact_unpublish(folder)
        raise StoreUnavailable(exc) from exc


def import_start(*, upload: UploadedFile, user: User | None, enqueue: bool = True) -> ImportBatch:
    """Store an uploaded zip and record its ``ImportBatch`` (queued, under the upload's own name)
    with an import job, sent after commit. Raises ApplicationError (nothing recorded) for an
    upload that is not an importable zip; row errors come later, on the batch."""
    folder = _store_upload(upload).parent
    _publish_upload(folder)  # before the job is sent: its worker may be another host
    try:
        with transaction.atomic():
            name = Path(upload.name or "").name[:300] or "upload.zip"
            # A broker outage leaves it queued, said on the job (not a 500).
            job = job_start(kind=JobKind.IMPORT, name=f"import {name}", config={"upload": folder.name}, user=user,
                            enqueue=enqueue)
            batch = ImportBatch.objects.create(created_by=user, source_name=name, job=job)
            job.config = {**job.config, "batch_id": batch.pk}
            job.save(update_fields=["config"])
    except BaseException:
        _discard_upload(folder.name)
        raise
    return batch


def import_upload(*, upload: UploadedFile, user: User | None) -> ImportBatch:
    """Start importing an uploaded zip as a job (the API, the dashboard's Import page and the
    admin): ``import_start`` with the job enqueued."""
    return import_start(upload=upload, user=user)


def _job_progress(reporter: JobReporter) -> ImportProgress:
    """Progress for the job: one step per row checked, then one per row written (total 2 × rows),
    with the phase and row counts in the job's metrics; a cancel request stops at the next row."""

    def progress(phase: str, done: int, total: int) -> None:
        offset = total if phase == "write" else 0
        reporter.progress({"step": offset + done, "total_steps": max(2 * total, 1), "kind": "train",
                           "phase": phase, "rows_done": done, "rows_total": total})
        if reporter.should_stop():
            raise JobCancelled("import cancelled")

    return progress


def _batch_result(batch: ImportBatch) -> dict:
    return {"batch_id": batch.pk, "samples_created": batch.samples_created,
            "candidates_created": batch.candidates_created, "split_counts": batch.split_counts}


def _sync_from_job(batch: ImportBatch, job: Job) -> None:
    """A job that failed or was cancelled before its batch recorded an outcome (a damaged upload,
    a lost worker, a cancel) fails the batch with the job's reason."""
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and not batch.errors:
        reason = job.error.splitlines()[0] if job.error else f"the import job was {job.status}."
        ImportBatch.objects.filter(pk=batch.pk, errors=[]).update(errors=[{"line": 0, "error": reason}])


def _outcome_recorded(batch: ImportBatch) -> bool:
    """True once the body wrote the batch's outcome: row errors, or what the import created. A
    successful import that created nothing can run again unseen, and creates nothing again."""
    return bool(batch.errors or batch.samples_created or batch.candidates_created)


def _job_source(job: Job) -> Path:
    """What the job imports: the stored upload (fetched from the object store when another host
    stored it), or the folder or zip that ``import_samples`` named."""
    if job.config.get("path"):
        return Path(job.config["path"])
    stored = _uploads_root() / Path(str(job.config.get("upload", ""))).name
    if stored.suffix == ".zip":  # stored before each upload had a folder of its own
        return stored
    if not stored.is_dir() and artifact_store().enabled:
        with contextlib.suppress(ArtifactMissing):  # never published, or deleted: "gone" below
            stored = artifact_fetch(stored)
    return stored / UPLOAD_NAME


def _discard_upload(upload: str) -> None:
    """Delete a stored upload here and, with an object store, its published copy."""
    stored = _uploads_root() / Path(upload).name
    if stored.suffix == ".zip":  # stored before each upload had a folder of its own
        stored.unlink(missing_ok=True)
        return
    shutil.rmtree(stored, ignore_errors=True)
    try:
        artifact_unpublish(stored)
    except ObjectStoreUnavailable as exc:
        # The import's outcome stands; an upload left in the store is only space.
        logger.warning("stored upload %s stays in the artifact store: %s", upload, exc)


def import_job(job: Job, reporter: JobReporter) -> dict:
    """The import kind's job body (jobs.registry): import the stored upload with progress."""
    batch = ImportBatch.objects.get(job=job)
    if _outcome_recorded(batch):
        return _batch_result(batch)  # taken over after the outcome was committed: not twice
    path = _job_source(job)
    if not path.exists():
        raise ApplicationError(f"{path} is gone; import it again." if job.config.get("path")
                               else "The stored upload is gone; upload the zip again.")
    batch = _run(_Source(path), batch, progress=_job_progress(reporter))
    reporter.log(f"imported {batch.samples_created} samples and {batch.candidates_created} candidates")
    return _batch_result(batch)


def import_finished(job: Job) -> None:
    """Once the import job has finished (never while it runs elsewhere: the upload is in use),
    record its outcome on the batch and delete the upload."""
    batch = ImportBatch.objects.filter(job=job).first()
    if batch is not None:
        _sync_from_job(batch, job)
    if job.config.get("upload"):  # a stored upload; an operator's own folder or zip stays
        _discard_upload(str(job.config["upload"]))


def import_execute(job_id: int) -> ImportBatch | None:
    """Import in this process (``jobs.services.job_run``, which runs ``import_finished``): tests."""
    job_run(job_id)
    return ImportBatch.objects.filter(job_id=job_id).first()


def _write_rows(rows: list[_Row], batch: ImportBatch, *, progress: ImportProgress | None = None) -> ImportBatch:
    written: list[str] = []

    def save(prefix: str, data: bytes) -> str:
        name = default_storage.save(f"{prefix}/{sha256_of(data)[:32]}.png", ContentFile(data))
        written.append(name)
        return name

    try:
        with transaction.atomic():
            n_cand = n_samples = 0
            for done, row in enumerate(rows):
                if progress is not None:
                    progress("write", done, len(rows))
                sample = row.existing
                if sample is None:
                    sample = Sample.objects.create(
                        external_id=row.external_id, task_type=row.task, prompt=row.prompt, split_key=row.split_key,
                        split=row.split, width=row.size[0], height=row.size[1],
                        source_image=save("samples", row.source_png), mask=save("masks", row.mask_png), meta=row.meta,
                    )
                    n_samples += 1
                for cand in row.candidates:
                    candidate_create_from_png(sample=sample, png=cand["png"], provenance=cand["provenance"],
                                              source_name=cand["source_name"], seed=cand["seed"],
                                              params=cand["params"], source_ref=cand["source_ref"], _save=save)
                    n_cand += 1
            per_split = Counter(row.split for row in rows if row.existing is None)
            batch.errors = []
            batch.samples_created, batch.candidates_created = n_samples, n_cand
            batch.split_counts = {split: per_split[split] for split in Split.values if per_split[split]}
            batch.save()  # in the same transaction: a succeeded batch means its rows are there
    except BaseException:  # a worker timeout (SystemExit) or a cancel mid-import must not leave files either
        for name in written:  # all-or-nothing: no orphaned files either
            default_storage.delete(name)
        raise
    if progress is not None:
        progress("write", len(rows), len(rows))
    return batch


def candidate_create_from_png(*, sample: Sample, png: bytes, provenance: str, source_name: str,
                              seed: int | None = None, params: dict | None = None, source_ref: str = "",
                              _save=None) -> Candidate:
    """Store one candidate image for a sample (deduplicated by content per sample)."""
    digest = sha256_of(png)
    existing = Candidate.objects.filter(sample=sample, sha256=digest).first()
    if existing:
        return existing
    name = _save("candidates", png) if _save else default_storage.save(f"candidates/{digest[:32]}.png", ContentFile(png))
    return Candidate.objects.create(sample=sample, image=name, sha256=digest, provenance=provenance,
                                    source_name=source_name, seed=seed, generation_params=params or {},
                                    source_ref=source_ref)


def sample_create_from_images(*, external_id: str, task: TaskType, source, mask, prompt: str = "",
                              split_key: str = "", meta: dict | None = None) -> Sample:
    """Create one sample from PIL images (used by the demo seeder and generation jobs)."""
    mask_l = check_mask(mask, size=source.size)
    source_png, mask_png = png_bytes(source.convert("RGB")), png_bytes(mask_l)
    key = split_key or external_id
    return Sample.objects.create(
        external_id=external_id, task_type=task, prompt=prompt, split_key=key, split=vocab.split_for_key(key),
        width=source.size[0], height=source.size[1], meta=meta or {},
        source_image=default_storage.save(f"samples/{sha256_of(source_png)[:32]}.png", ContentFile(source_png)),
        mask=default_storage.save(f"masks/{sha256_of(mask_png)[:32]}.png", ContentFile(mask_png)),
    )
