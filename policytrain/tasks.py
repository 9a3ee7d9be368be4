"""Celery tasks: thin wrappers that claim the job and run the service body (routed to the gpu queue)."""
from __future__ import annotations

from celery import shared_task

from jobs.services import job_execute


@shared_task(name="policytrain.tasks.policy_train_task", acks_late=True)
def policy_train_task(job_id: int) -> str | None:
    from .services import policy_run_execute

    job = job_execute(job_id, policy_run_execute)
    return job.status if job else None


@shared_task(name="policytrain.tasks.generation_task", acks_late=True)
def generation_task(job_id: int) -> str | None:
    from .services import generation_execute

    job = job_execute(job_id, generation_execute)
    return job.status if job else None
