"""Reads for jobs: lists for the dashboard and metric series for curves."""
from __future__ import annotations

from django.db.models import QuerySet

from .models import Job, MetricPoint


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
