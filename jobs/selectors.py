"""Reads for jobs: lists for the dashboard, metric series for curves, whether a job may be
resumed, the files of a run folder (on this host or published in the object store), and the
queues' workers and jobs waiting."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.utils._os import safe_join
from kombu.exceptions import OperationalError

from core.artifacts import artifact_store
from core.errors import Conflict
from enginekit.objectstore import ObjectStoreUnavailable

from .models import Job, JobStatus, MetricPoint
from .registry import UnknownJobKind, job_queues, job_type

logger = logging.getLogger(__name__)

#: At most this many files are listed for one run folder.
MAX_ARTIFACTS = 300
#: How long the list of a run's published files is reused: the run pages poll about once a second,
#: and each listing costs the object store one request per published folder.
PUBLISHED_FILES_SECONDS = 10


def job_list(*, kind: str | None = None, status: str | None = None) -> QuerySet[Job]:
    qs = Job.objects.select_related("created_by")
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    return qs


def job_metric_series(job: Job, *, after_id: int = 0, limit: int = 5000) -> list[dict]:
    """Metric points after ``after_id`` (so a polling page only fetches what is new)."""
    rows = MetricPoint.objects.filter(job=job, id__gt=after_id).order_by("id")[:limit]
    return [{"id": p.id, "step": p.step, "kind": p.kind, **p.values} for p in rows]


def job_resumable(job: Job) -> bool:
    """Whether Resume may send ``job`` again, by the rule ``jobs.services.job_resume`` enforces:
    it failed or was cancelled, its kind is declared resumable (``jobs.registry``), and the kind's
    ``resume_check`` does not refuse it (a reward run that already registered its model)."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return False
    try:
        declared = job_type(job.kind)
    except UnknownJobKind:
        return False
    if not declared.resumable:
        return False
    check = declared.hook("resume_check")
    try:
        if check is not None:
            check(job)
    except Conflict:
        return False
    return True


# --- run folders --------------------------------------------------------------------------------

def _run_folder(job: Job) -> Path | None:
    """Where this host keeps the job's run folder (the path the worker recorded maps to this
    host's ``ARTIFACTS_ROOT`` when an object store is configured); None for a job without one."""
    if not job.run_dir:
        return None
    try:
        return artifact_store().local_path(job.run_dir)
    except ValueError:  # recorded outside any artifact root: only the path as written can be read
        return Path(job.run_dir)


def _published_files(job: Job) -> dict[str, tuple[str, str, int]]:
    """Path in the run folder → (published folder key, path in that folder, size) for every file of the
    run's completely published folders (checkpoints, ``final/``); empty without an object store.
    Kept ``PUBLISHED_FILES_SECONDS`` in the Django cache."""
    store = artifact_store()
    if not store.enabled or not job.run_dir:
        return {}
    try:
        run_key = store.key_for(job.run_dir)
    except ValueError:
        return {}
    cache_key = "jobs:published-files:" + hashlib.sha256(
        f"{store.backend.description}|{run_key}".encode()).hexdigest()[:24]
    cached = cache.get(cache_key)
    if cached is not None:
        return cached
    files: dict[str, tuple[str, str, int]] = {}
    for folder in store.published_folders(run_key):
        prefix = folder[len(run_key) + 1:]
        for rel, meta in ((store.published(folder) or {}).get("files") or {}).items():
            files[f"{prefix}/{rel}"] = (folder, rel, int(meta.get("size", 0)))
    cache.set(cache_key, files, PUBLISHED_FILES_SECONDS)
    return files


def job_artifacts(job: Job, *, limit: int = MAX_ARTIFACTS) -> list[dict]:
    """The files of a job's run folder, ``[{"path", "size"}]`` by path: those of this host's copy
    (symlinks left out), and with an object store those of every folder of the run that was
    published (checkpoints, ``final/``), so that a host that never had the folder lists what it
    can serve. An unreachable store leaves its files out of the list (and says so in the log)."""
    files: dict[str, int] = {}
    root = _run_folder(job)
    if root is not None and root.is_dir():
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink():
                files[str(p.relative_to(root))] = p.stat().st_size
                if len(files) >= limit:
                    break
    try:
        published = _published_files(job)
    except ObjectStoreUnavailable as exc:
        logger.warning("job %s: the published files of its run folder are not listed: %s", job.pk, exc)
        published = {}
    for path, (_folder, _rel, size) in published.items():
        files.setdefault(path, size)
    return [{"path": path, "size": size} for path, size in sorted(files.items())[:limit]]


def job_artifact_file(job: Job, path: str) -> Path | None:
    """One file of the job's run folder on this host's disk: its own copy when this host has it,
    else (object store) that file of a published folder, downloaded once; None when neither has
    it, or when ``path`` leaves the folder (``../``, an absolute path, a symlink that leads out).
    Raises ``ObjectStoreUnavailable`` when the file must come from a store that cannot be reached."""
    root = _run_folder(job)
    if root is None:
        return None
    try:
        full = Path(safe_join(root, path)).resolve()
    except Exception:  # SuspiciousFileOperation, ValueError: outside the folder
        return None
    if not full.is_relative_to(root.resolve()):
        return None
    if full.is_file():
        return full
    if full.exists():  # a folder
        return None
    found = _published_files(job).get(full.relative_to(root.resolve()).as_posix())
    return artifact_store().fetch_file(found[0], found[1]) if found else None


# --- queues ---------------------------------------------------------------------------------------

def queue_workers(*, timeout: float = 1.0, max_age: float = 5.0) -> dict[str, list[str]] | None:
    """Queue → the names of the workers consuming it, as the workers answer Celery's broadcast
    ``active_queues``; None when the broker cannot be reached.

    Only the workers that reply within ``timeout`` seconds count (a busy ``solo`` worker answers
    between tasks, so it may be missing for the length of one task). The answer, including
    "unreachable", is kept ``max_age`` seconds in the Django cache: the dashboard polls it, and each
    broadcast costs the broker a round trip and the caller the whole ``timeout``. The cache key
    names the broker (hashed: its URL may hold a password), so processes on other brokers sharing
    one cache, as the test processes do, keep their answers apart.
    """
    from celery import current_app
    from django.core.cache import cache

    key = workers_cache_key()
    if max_age > 0:
        cached = cache.get(key)
        if cached is not None:
            return cached["workers"]
    try:
        with current_app.connection_for_read() as conn:
            # Fail in about a second when the broker is down, instead of kombu's retries.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, timeout=timeout)
            replies = current_app.control.inspect(timeout=timeout, connection=conn).active_queues() or {}
    except (OperationalError, OSError):
        workers = None
    else:
        workers = {}
        for worker, queues in sorted(replies.items()):
            for queue in queues or ():
                workers.setdefault(queue["name"], []).append(worker)
    if max_age > 0:
        cache.set(key, {"workers": workers}, max_age)
    return workers


def workers_cache_key() -> str:
    """The cache key of ``queue_workers``' answer for this process's broker."""
    from celery import current_app

    return "jobs:queue-workers:" + hashlib.sha256(str(current_app.conf.broker_url).encode()).hexdigest()[:16]


def queue_overview(*, timeout: float = 1.0, max_age: float = 5.0) -> dict:
    """Every queue the registry sends jobs to, or that a worker consumes: its job kinds, the
    workers consuming it (``queue_workers``; None for each queue when the broker is unreachable),
    and its jobs waiting (queued) and running.

    A job's queue is its kind's queue today (``registry.job_queues``), the queue a send or resend
    of it goes to. Queues are listed ``default`` first, then by name.
    """
    kinds_by_queue: dict[str, list[str]] = {}
    kind_queue = job_queues()
    for kind, queue in kind_queue.items():
        kinds_by_queue.setdefault(queue, []).append(kind)
    counts: dict[str, dict[str, int]] = {}
    rows = (Job.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
            .values("kind", "status").annotate(n=Count("id")))
    for row in rows:
        # A kind no app registers cannot be sent anywhere: it has no queue to wait in.
        queue = kind_queue.get(row["kind"])
        if queue is not None:
            counts.setdefault(queue, {}).setdefault(row["status"], 0)
            counts[queue][row["status"]] += row["n"]
    workers = queue_workers(timeout=timeout, max_age=max_age)
    names = set(kinds_by_queue) | set(workers or ())
    return {
        "broker_reachable": workers is not None,
        "queues": [{
            "name": name,
            "kinds": kinds_by_queue.get(name, []),
            "workers": None if workers is None else workers.get(name, []),
            "waiting": counts.get(name, {}).get(JobStatus.QUEUED, 0),
            "running": counts.get(name, {}).get(JobStatus.RUNNING, 0),
        } for name in sorted(names, key=lambda n: (n != "default", n))],
    }
