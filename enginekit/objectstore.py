"""Artifact folders shared through an object store, with a local cache on every host.

Hosts that share no disk exchange finished artifact folders (snapshots, checkpoints, trained
models) through an object store. Every host keeps its artifacts under its own local root; an
artifact's *key* is its path under that root (``snapshots/3-ab12cd34ef56``,
``reward-runs/run-7/checkpoints/step-20``), the same on every host whatever the root is.

- ``publish(folder)`` uploads every file of a finished folder, then its marker object
  (``<key>/.published.json``: each file's size and sha256). The marker is written last, so a
  reader never takes a half-uploaded folder for a complete one.
- ``fetch(key)`` returns the local folder, downloading it first when this host lacks it: into a
  temporary sibling, each file checked against the marker's sha256, then one rename. Published
  folders are immutable (snapshots are named by their content hash; a checkpoint never changes
  once written), so each host downloads one once.
- ``unpublish(key)`` deletes a published folder (a checkpoint the run pruned): the marker first,
  so a half-deleted folder is never taken for a complete one, then its files.

With no backend (the embedded default) both are no-ops: every process shares one local disk.
Nothing here imports Django; ``core.artifacts`` builds the store from the settings.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlparse

MARKER = ".published.json"
_CHUNK = 1 << 20


class ObjectStoreUnavailable(RuntimeError):
    """The object store could not be reached or refused the request (the job can be resumed)."""


class ArtifactMissing(FileNotFoundError):
    """No complete published copy of the artifact exists (never published, or only half-uploaded)."""


class Backend(Protocol):
    """Where published objects live; keys are POSIX paths relative to the store's prefix."""

    description: str

    def put_file(self, local: Path, key: str) -> None: ...

    def put_bytes(self, data: bytes, key: str) -> None: ...

    def get_file(self, key: str, local: Path) -> None: ...

    def get_bytes(self, key: str) -> bytes | None:
        """The object's content, or None when there is no such object."""

    def list_keys(self, prefix: str) -> Iterable[str]: ...

    def delete(self, keys: list[str]) -> None:
        """Delete these objects; a key with no object is no error."""


class DirectoryBackend:
    """A folder as the store (a mounted network file system, or tests)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.description = f"directory {self.root}"

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_file(self, local: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)

    def put_bytes(self, data: bytes, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def get_file(self, key: str, local: Path) -> None:
        shutil.copyfile(self._path(key), local)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list_keys(self, prefix: str) -> Iterable[str]:
        base = self._path(prefix)
        if base.is_dir():
            for path in base.rglob("*"):
                if path.is_file():
                    yield path.relative_to(self.root).as_posix()

    def delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.update(p for p in path.parents if p.is_relative_to(self.root) and p != self.root)
        # Folders left empty go too, deepest first, as an object store has no folders to leave behind.
        for folder in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty (other objects), or gone already
                folder.rmdir()


class S3Backend:
    """An S3-compatible bucket (AWS S3, MinIO, Ceph, ...) through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, access_key: str | None = None, secret_key: str | None = None,
                 connect_timeout: float = 5.0, attempts: int = 3) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix} at {endpoint_url or 'AWS'}"
        # Bounded retries: an unreachable store fails the job with a reason within seconds
        # instead of hanging a GPU worker.
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None,
            aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
            config=Config(connect_timeout=connect_timeout, read_timeout=120,
                          retries={"max_attempts": attempts, "mode": "standard"}))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def put_bytes(self, data: bytes, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_file(self, key: str, local: Path) -> None:
        self.client.download_file(self.bucket, self._key(key), str(local))

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def list_keys(self, prefix: str) -> Iterable[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self._key(prefix)):
            for obj in page.get("Contents", []):
                yield obj["Key"][cut:]

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(f"{len(answer['Errors'])} objects not deleted, first {first.get('Key')}: "
                              f"{first.get('Code')} {first.get('Message')}")


def backend_from_url(url: str, **s3_options) -> Backend | None:
    """``""`` → None (local disk only), ``s3://bucket/prefix`` → S3Backend, ``file:///path`` →
    DirectoryBackend. Anything else is refused with the accepted forms."""
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Backend(parsed.netloc, parsed.path, **s3_options)
    if parsed.scheme == "file" and parsed.path:
        return DirectoryBackend(parsed.path)
    raise ValueError(f"artifact store URL {url!r}: use s3://bucket[/prefix] or file:///path")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactStore:
    """The local artifact root of this host and, optionally, the object store behind it.

    ``kinds`` are the top-level folders of the root (``snapshots``, ``reward-runs``, ...): a path
    recorded by another host, under that host's root, is mapped to its key from the first of them.
    """

    root: Path
    backend: Backend | None = None
    kinds: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    # --- keys and local paths ----------------------------------------------------------------
    def key_for(self, path: str | Path) -> str:
        """The key of an artifact folder, from a path under this or another host's root."""
        path = Path(path)
        resolved, root = path.resolve(), self.root.resolve()
        if resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix()
        # Another host's root: the key starts at the artifact kind's folder (snapshots/, reward-runs/, ...).
        parts = path.parts
        for i, part in enumerate(parts):
            if part in self.kinds:
                return PurePosixPath(*parts[i:]).as_posix()
        raise ValueError(f"{path} is neither under the artifact root {self.root} nor in a folder named "
                         f"{', '.join(self.kinds) or '(none configured)'}")

    def local_path(self, path: str | Path) -> Path:
        """Where this host keeps the artifact recorded as ``path`` (by this or another host)."""
        if not self.enabled:
            return Path(path)
        return self.root / self.key_for(path)

    # --- publish / fetch ---------------------------------------------------------------------
    def _call(self, what: str, fn, *args):
        if self.backend is None:
            raise RuntimeError("no object store is configured")
        try:
            return fn(*args)
        except (ArtifactMissing, FileNotFoundError):
            raise
        except Exception as exc:  # botocore's errors, OSError of a directory store
            raise ObjectStoreUnavailable(
                f"object store {self.backend.description} unreachable or refusing while {what}: "
                f"{type(exc).__name__}: {exc}") from exc

    def publish(self, folder: str | Path, key: str | None = None) -> str | None:
        """Upload a finished folder, marker last; return its key (None without an object store)."""
        if self.backend is None:
            return None
        folder = Path(folder)
        if not folder.is_dir():  # never an empty "complete" artifact in place of a missing one
            raise FileNotFoundError(f"cannot publish {folder}: no such folder")
        key = key or self.key_for(folder)
        files = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            if rel == MARKER:
                continue
            files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
            self._call(f"uploading {key}/{rel}", self.backend.put_file, path, f"{key}/{rel}")
        marker = json.dumps({"key": key, "files": files}, sort_keys=True).encode()
        self._call(f"completing {key}", self.backend.put_bytes, marker, f"{key}/{MARKER}")
        return key

    def unpublish(self, key: str) -> None:
        """Delete a published folder from the store (this host's local copy stays). The marker
        goes first: a reader that lists or fetches while the files are being deleted finds no
        complete folder, never a partial one. Deleting a folder that is not there is no error,
        and a folder whose upload never finished (files, no marker) is cleaned up the same way."""
        if self.backend is None:
            return
        self._call(f"unpublishing {key}", self.backend.delete, [f"{key}/{MARKER}"])
        rest = self._call(f"listing {key}", lambda: list(self.backend.list_keys(f"{key}/")))
        if rest:
            self._call(f"unpublishing {key}", self.backend.delete, rest)

    def published(self, key: str) -> dict | None:
        """The marker of a completely published folder, or None."""
        data = self._call(f"reading {key}/{MARKER}", self.backend.get_bytes, f"{key}/{MARKER}")
        return json.loads(data) if data is not None else None

    def fetch(self, path_or_key: str | Path) -> Path:
        """The local copy of a published folder, downloaded (and checked) once per host.

        Without an object store the path is returned as it is. A folder already on this host is
        used as it stands: folders appear at their final path only complete (one rename)."""
        if self.backend is None:
            return Path(path_or_key)
        key = path_or_key if isinstance(path_or_key, str) and not path_or_key.startswith("/") \
            else self.key_for(path_or_key)
        final = self.root / key
        if final.is_dir():
            return final
        marker = self.published(key)
        if marker is None:
            raise ArtifactMissing(f"{key} is not in the object store {self.backend.description} "
                                  "(never published, or its upload did not finish)")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".fetch-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            for rel, meta in marker["files"].items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self._call(f"downloading {key}/{rel}", self.backend.get_file, f"{key}/{rel}", target)
                if _sha256(target) != meta["sha256"]:
                    raise ObjectStoreUnavailable(f"{key}/{rel} does not match its published sha256")
            tmp.mkdir(parents=True, exist_ok=True)  # a folder with no files is still an artifact
            try:
                tmp.rename(final)
            except OSError:  # another process of this host fetched it first
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def read_file(self, key: str, rel: str) -> bytes | None:
        """One file of a published folder (checked against its marker), without the rest; None
        when the folder is not published or has no such file."""
        marker = self.published(key)
        meta = (marker or {}).get("files", {}).get(rel)
        if meta is None:
            return None
        data = self._call(f"reading {key}/{rel}", self.backend.get_bytes, f"{key}/{rel}")
        if data is None or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ObjectStoreUnavailable(f"{key}/{rel} does not match its published sha256")
        return data

    def published_children(self, key: str) -> list[str]:
        """Keys of the completely published folders directly under ``key`` (e.g. checkpoints)."""
        if self.backend is None:
            return []
        keys = self._call(f"listing {key}", lambda: list(self.backend.list_keys(f"{key}/")))
        found = set()
        for k in keys:
            rest = k[len(key) + 1:].split("/")
            if len(rest) == 2 and rest[1] == MARKER:
                found.add(f"{key}/{rest[0]}")
        return sorted(found)

    def published_folders(self, key: str) -> list[str]:
        """Keys of the completely published folders anywhere under ``key`` (a run's checkpoints
        and ``final/``), from one listing; [] without an object store."""
        if self.backend is None:
            return []
        keys = self._call(f"listing {key}", lambda: list(self.backend.list_keys(f"{key}/")))
        return sorted(k[:-len(MARKER) - 1] for k in keys if k.endswith(f"/{MARKER}"))

    def fetch_file(self, key: str, rel: str) -> Path | None:
        """One file of a published folder on this host's disk, kept under ``<root>/.files/<key>/``
        (where ``core.artifacts.artifact_file`` keeps it too) and downloaded once, checked against
        the marker. Streamed to disk rather than read into memory: a checkpoint's weights are large.
        None when the folder is not published or has no such file."""
        target = self.root / ".files" / key / rel
        if target.is_file():
            return target
        meta = ((self.published(key) or {}).get("files") or {}).get(rel)
        if meta is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        try:
            self._call(f"downloading {key}/{rel}", self.backend.get_file, f"{key}/{rel}", tmp)
            if _sha256(tmp) != meta["sha256"]:
                raise ObjectStoreUnavailable(f"{key}/{rel} does not match its published sha256")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
