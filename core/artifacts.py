"""This host's artifact store, built from the settings (``enginekit.objectstore`` does the work).

``ARTIFACTS_STORE_URL`` empty (the embedded default): every process shares ``ARTIFACTS_ROOT`` on
one disk and these functions change nothing. ``s3://bucket/prefix``: finished artifact folders are
published there and fetched into this host's ``ARTIFACTS_ROOT`` before a job reads them, so web
hosts and workers need no shared disk (docs/operations.md, "Several hosts").
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from core.errors import ApplicationError
from enginekit.checkpoints import complete_checkpoints
from enginekit.objectstore import ArtifactStore, ObjectStoreUnavailable, backend_from_url

#: The top-level folders of ARTIFACTS_ROOT, one per kind of artifact: a path another host
#: recorded under its own root maps to the same key from the first of these.
ARTIFACT_KINDS = ("snapshots", "reward-runs", "policy-runs", "baselines", "base-models", "generation",
                  "conditions", "exports", "imports")


class StoreUnavailable(ApplicationError):
    """A request that needs the object store while it is unreachable (503: try again later)."""

    status_code = 503

    def __init__(self, exc: ObjectStoreUnavailable) -> None:
        super().__init__(f"The artifact store is unavailable: {exc}", code="store_unavailable")


@lru_cache(maxsize=4)
def _store(root: str, url: str, endpoint: str | None, region: str | None, access_key: str | None,
           secret_key: str | None) -> ArtifactStore:
    backend = backend_from_url(url, endpoint_url=endpoint, region=region, access_key=access_key,
                               secret_key=secret_key) if url.startswith("s3://") else backend_from_url(url)
    return ArtifactStore(root=Path(root), backend=backend, kinds=ARTIFACT_KINDS)


def artifact_store() -> ArtifactStore:
    """The store for the current settings (tests that override them get their own)."""
    return _store(str(settings.ARTIFACTS_ROOT), settings.ARTIFACTS_STORE_URL, settings.AWS_S3_ENDPOINT_URL,
                  settings.AWS_S3_REGION_NAME, settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY)


def artifact_local(path: str | Path) -> Path:
    """Where this host keeps the artifact another host (or this one) recorded as ``path``."""
    return artifact_store().local_path(path)


def artifact_fetch(path: str | Path) -> Path:
    """The local copy of a published artifact folder (downloaded once per host); a no-op path
    without an object store."""
    return artifact_store().fetch(path)


def artifact_fetch_if_published(path: str | Path) -> Path:
    """Like ``artifact_fetch``, but an artifact that was never published is just its local path
    (for example a base model each worker builds for itself)."""
    store = artifact_store()
    if not store.enabled or Path(path).is_dir():  # here already (or under a MODEL_ROOTS folder of this host)
        return Path(path)
    try:
        local = store.local_path(path)
    except ValueError:  # not an artifact path (a hub id, a folder outside the roots): left to the caller
        return Path(path)
    if not local.is_dir() and store.published(store.key_for(path)) is not None:
        return store.fetch(path)
    return local


def artifact_available(path: str | Path) -> bool:
    """Whether a folder can be had on this host: it is here, or published in the object store."""
    store = artifact_store()
    if Path(path).is_dir() or not store.enabled:
        return Path(path).is_dir()
    try:
        return store.local_path(path).is_dir() or store.published(store.key_for(path)) is not None
    except ValueError:
        return False


def artifact_file(folder: str | Path, name: str) -> Path:
    """One file of an artifact folder on this host, e.g. a model's card read by a web host that
    should not download the weights beside it. Published folders never change, so the file is
    kept under ``ARTIFACTS_ROOT/.files/<key>/``. Without an object store, or when the folder is
    here, it is ``folder/name`` (which may not exist: the caller reports a missing file)."""
    store = artifact_store()
    here = Path(folder) / name
    if here.is_file() or not store.enabled:
        return here
    try:
        key = store.key_for(folder)
    except ValueError:
        return here
    local = store.local_path(folder) / name
    if local.is_file():
        return local
    cached = store.root / ".files" / key / name
    if not cached.is_file():
        data = store.read_file(key, name)
        if data is None:
            return here
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
    return cached


def artifact_publish_checkpoints(run_dir: str | Path, marker: str, published: set[str]) -> None:
    """Publish the complete checkpoints of ``run_dir`` not yet in ``published`` (their names), for
    engines that report no checkpoint event: called from their progress callback, each is uploaded
    at the next step after it is written."""
    if not artifact_store().enabled:
        return
    for _, folder in complete_checkpoints(run_dir, marker):
        if folder.name not in published:
            artifact_publish(folder)
            published.add(folder.name)


def artifact_publish(folder: str | Path) -> str | None:
    """Upload a finished artifact folder (marker last); None without an object store."""
    return artifact_store().publish(folder)


def artifact_publish_once(folder: str | Path) -> None:
    """Publish a content-addressed folder unless it is published already (the same content)."""
    store = artifact_store()
    if store.enabled and store.published(store.key_for(folder)) is None:
        store.publish(folder)


def _step_number(key: str) -> int:
    """The number after a key's last ``-`` (``…/step-40`` → 40); -1 without one."""
    tail = key.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def artifact_fetch_latest_child(folder: str | Path) -> Path | None:
    """Fetch the newest published sub-folder of ``folder`` (a run's ``checkpoints``), by the
    number after its last ``-`` (``step-40``), and return it; None without any."""
    store = artifact_store()
    if not store.enabled:
        return None
    children = store.published_children(store.key_for(folder))
    return store.fetch(max(children, key=_step_number)) if children else None


def artifact_unpublish(folder: str | Path) -> None:
    """Delete a published folder from the object store, marker first (a no-op without one)."""
    store = artifact_store()
    if store.enabled:
        store.unpublish(store.key_for(folder))


def artifact_checkpoint_written(folder: str | Path, *, marker: str, keep: int) -> list[str]:
    """After an engine wrote (and pruned) checkpoints: publish ``folder`` and delete from the store
    every published checkpoint beside it but the newest ``keep`` (``keep`` ≤ 0 keeps them all),
    the rule by which the engine pruned its own copies. Returns the keys deleted from the store.

    The new checkpoint is published before any old one goes, so the store always holds a complete
    newest checkpoint for a resume on another host. ``folder`` may be gone by the time this runs
    (a run under torchrun is read after the fact, and its engine may have pruned it since): a
    checkpoint that is not complete here is not published, and one that vanished mid-upload has
    its partial upload removed; the newer checkpoint that replaced it is published in its turn.
    Without an object store nothing happens."""
    store = artifact_store()
    if not store.enabled:
        return []
    folder = Path(folder)
    if (folder / marker).is_file():
        try:
            store.publish(folder)
        except FileNotFoundError:
            if folder.is_dir():
                raise
            store.unpublish(store.key_for(folder))
    if keep <= 0:
        return []
    children = sorted(store.published_children(store.key_for(folder.parent)), key=_step_number)
    pruned = children[:-keep]
    for key in pruned:
        store.unpublish(key)
    return pruned
