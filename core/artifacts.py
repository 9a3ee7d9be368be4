"""This host's artifact store, built from the settings (``enginekit.objectstore`` does the work).

``ARTIFACTS_STORE_URL`` empty (the embedded default): every process shares ``ARTIFACTS_ROOT`` on
one disk and these functions change nothing. ``s3://bucket/prefix``: finished artifact folders are
published there and fetched into this host's ``ARTIFACTS_ROOT`` before a job reads them, so web
hosts and workers need no shared disk (docs/operations.md, "Several hosts").
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings

from enginekit.objectstore import ArtifactStore, backend_from_url

#: The top-level folders of ARTIFACTS_ROOT, one per kind of artifact: a path another host
#: recorded under its own root maps to the same key from the first of these.
ARTIFACT_KINDS = ("snapshots", "reward-runs", "policy-runs", "baselines", "base-models", "generation",
                  "conditions", "exports", "imports")


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
    local = store.local_path(path)
    if not local.is_dir() and store.published(store.key_for(path)) is not None:
        return store.fetch(path)
    return local


def artifact_publish(folder: str | Path) -> str | None:
    """Upload a finished artifact folder (marker last); None without an object store."""
    return artifact_store().publish(folder)


def artifact_fetch_latest_child(folder: str | Path) -> Path | None:
    """Fetch the newest published sub-folder of ``folder`` (a run's ``checkpoints``), by the
    number after its last ``-`` (``step-40``), and return it; None without any."""
    store = artifact_store()
    if not store.enabled:
        return None
    children = store.published_children(store.key_for(folder))

    def number(key: str) -> int:
        tail = key.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    return store.fetch(max(children, key=number)) if children else None
