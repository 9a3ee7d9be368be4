"""Celery tasks of the annotation app: thin wrappers around services."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="annotation.tasks.snapshot_build_task", acks_late=True)
def snapshot_build_task(job_id: int) -> None:
    """Build a dataset snapshot (idempotent: a redelivered message finds the job not queued)."""
    from .services.snapshots import snapshot_execute

    snapshot_execute(job_id)


@shared_task(name="annotation.tasks.export_task", acks_late=True)
def export_task(job_id: int) -> None:
    """Write a judgment export file (idempotent like the snapshot build)."""
    from .services.exports import export_execute

    export_execute(job_id)


@shared_task(name="annotation.tasks.import_task", acks_late=True)
def import_task(job_id: int) -> None:
    """Import an uploaded zip (idempotent like the snapshot build)."""
    from .services.imports import import_execute

    import_execute(job_id)
