"""Reads for jobs: lists for the dashboard, metric series for curves, and the queues' workers
and jobs waiting."""
from __future__ import annotations

import hashlib

from django.db.models import Count, QuerySet
from kombu.exceptions import OperationalError

from .models import Job, JobStatus, MetricPoint
from .registry import job_queues


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
