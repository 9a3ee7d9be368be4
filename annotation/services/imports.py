"""Import samples and candidates from a folder or zip with a JSONL manifest.

Manifest (``manifest.jsonl``), one sample a line::

    {"external_id": "s1", "task": "fill", "prompt": "a red circle", "source": "img/s1.png",
     "mask": "mask/s1.png", "split_key": "scene-7",
     "candidates": [{"image": "out/s1-a.png", "source_name": "flux-base", "provenance": "external",
                     "seed": 1, "params": {}}]}

Every row is validated before anything is written; one bad row fails the whole import with a
per-row report, and no file or row is left behind.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from core.errors import ApplicationError

from .. import vocabulary as vocab
from ..images import ImageRejected, check_mask, open_image, png_bytes, sha256_of
from ..models import Candidate, ImportBatch, ImportStatus, Provenance, Sample, TaskType

MANIFEST_NAME = "manifest.jsonl"
# The manifest is read whole; a few bytes of zip can inflate to gigabytes of it (zip bomb).
MANIFEST_MAX_BYTES = 10 * 1024 * 1024
# A damaged archive (bad CRC, truncated or corrupt deflate data) raises these on read.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


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
    source_png: bytes
    mask_png: bytes
    size: tuple[int, int]
    meta: dict
    candidates: list[dict] = field(default_factory=list)


class _Source:
    """Read files by manifest-relative path from a folder or a zip, refusing path traversal."""

    def __init__(self, path: Path) -> None:
        self.path = path
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


def _validate_row(line_no: int, obj: dict, src: _Source, tasks: dict[str, TaskType], seen: set[str]) -> _Row:
    # Field types and lengths are checked here, so a bad row is a line in the report, never a 500
    # (an unhashable task, a list as a path, an id longer than its column).
    ext = _text(obj, "external_id", max_length=200)
    if not ext:
        raise ImageRejected("external_id is required.")
    if ext in seen or Sample.objects.filter(external_id=ext).exists():
        raise ImageRejected(f"external_id '{ext}' already exists.")
    task_slug = obj.get("task")
    task = tasks.get(task_slug) if isinstance(task_slug, str) else None
    if task is None:
        raise ImageRejected(f"task must be one of {sorted(tasks)}.")
    prompt = _text(obj, "prompt", max_length=10_000)
    split_key = _text(obj, "split_key", max_length=200) or ext
    meta = _object(obj, "meta")
    cands = obj.get("candidates") or []
    if not isinstance(cands, list) or not all(isinstance(c, dict) for c in cands):
        raise ImageRejected("candidates must be a list of objects.")
    source = open_image(src.read(obj.get("source", "")), what="source").convert("RGB")
    mask = check_mask(open_image(src.read(obj.get("mask", "")), what="mask"), size=source.size)
    candidates = []
    for i, cand in enumerate(cands):
        seed = cand.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed < 2**63):
            raise ImageRejected(f"candidate {i}: seed must be a whole number.")
        img = open_image(src.read(cand.get("image", "")), what=f"candidate {i}").convert("RGB")
        if img.size != source.size:
            raise ImageRejected(f"candidate {i} is {img.size[0]}×{img.size[1]}, the source {source.size[0]}×{source.size[1]}.")
        provenance = cand.get("provenance", Provenance.EXTERNAL)
        if not isinstance(provenance, str) or provenance not in Provenance.values:
            raise ImageRejected(f"candidate {i}: provenance must be one of {Provenance.values}.")
        candidates.append({
            "png": png_bytes(img), "source_name": _text(cand, "source_name", default="upload")[:200],
            "provenance": provenance, "seed": seed, "params": _object(cand, "params"),
            "source_ref": _text(cand, "source_ref")[:200],
        })
    return _Row(line=line_no, external_id=ext, task=task, prompt=prompt, split_key=split_key,
                source_png=png_bytes(source), mask_png=png_bytes(mask), size=source.size, meta=meta,
                candidates=candidates)


def import_samples(*, path: Path, user: User | None = None) -> ImportBatch:
    """Validate every row, then create all samples and candidates, or nothing (raises ImportFailed)."""
    src = _Source(Path(path))
    tasks = {t.slug: t for t in TaskType.objects.all()}
    rows, errors, seen = [], [], set()
    for line_no, line in enumerate(_manifest_lines(src), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ImageRejected("each line must be a JSON object.")
            row = _validate_row(line_no, obj, src, tasks, seen)
            seen.add(row.external_id)
            rows.append(row)
        except (json.JSONDecodeError, ImageRejected) as exc:
            errors.append({"line": line_no, "error": str(exc)})
    if not rows and not errors:
        errors.append({"line": 0, "error": "the manifest has no rows."})
    if errors:
        batch = ImportBatch.objects.create(created_by=user, source_name=Path(path).name, status=ImportStatus.FAILED,
                                           errors=errors)
        raise ImportFailed(batch)
    return _write_rows(rows, source_name=Path(path).name, user=user)


def _write_rows(rows: list[_Row], *, source_name: str, user: User | None) -> ImportBatch:
    written: list[str] = []

    def save(prefix: str, data: bytes) -> str:
        name = default_storage.save(f"{prefix}/{sha256_of(data)[:32]}.png", ContentFile(data))
        written.append(name)
        return name

    try:
        with transaction.atomic():
            n_cand = 0
            for row in rows:
                sample = Sample.objects.create(
                    external_id=row.external_id, task_type=row.task, prompt=row.prompt, split_key=row.split_key,
                    split=vocab.split_for_key(row.split_key), width=row.size[0], height=row.size[1],
                    source_image=save("samples", row.source_png), mask=save("masks", row.mask_png), meta=row.meta,
                )
                for cand in row.candidates:
                    candidate_create_from_png(sample=sample, png=cand["png"], provenance=cand["provenance"],
                                              source_name=cand["source_name"], seed=cand["seed"],
                                              params=cand["params"], source_ref=cand["source_ref"], _save=save)
                    n_cand += 1
            return ImportBatch.objects.create(created_by=user, source_name=source_name, status=ImportStatus.SUCCEEDED,
                                              samples_created=len(rows), candidates_created=n_cand)
    except BaseException:  # a worker timeout (SystemExit) mid-import must not leave files either
        for name in written:  # all-or-nothing: no orphaned files either
            default_storage.delete(name)
        raise


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
