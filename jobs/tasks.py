"""The one Celery task that runs every job; the job's kind says what it does (``jobs.registry``).

Every job is sent as ``run_job(job_id)`` to its kind's queue (``jobs.services.job_enqueue``), so
a worker's role is the queues it listens on, never the tasks it knows.
"""
from __future__ import annotations

from celery import shared_task

from .services import RUN_JOB_TASK, job_run


def _run(task, job_id: int) -> str | None:
    queue = (task.request.delivery_info or {}).get("routing_key") or ""
    job = job_run(job_id, queue=queue)
    return job.status if job else None


@shared_task(name=RUN_JOB_TASK, bind=True, acks_late=True)
def run_job(self, job_id: int) -> str | None:
    """Claim and run the job (idempotent: a redelivered message finds it claimed or finished)."""
    return _run(self, job_id)


# The per-kind task names of earlier releases, kept so that a message sent before an upgrade and
# still in the broker runs instead of being dropped as an unregistered task (its job would then
# stay queued until an operator ran `send_unsent_jobs --older-than`). Nothing sends these names
# any more: the unsent-job sweep sends `run_job` whatever name a job recorded. Remove them one
# release after every broker has been drained.
LEGACY_TASK_NAMES = (
    "annotation.tasks.snapshot_build_task", "annotation.tasks.export_task", "annotation.tasks.import_task",
    "rewardtrain.tasks.reward_train_task", "rewardtrain.tasks.reward_score_task",
    "rewardtrain.tasks.reward_evaluation_task", "rewardtrain.tasks.baseline_train_task",
    "policytrain.tasks.policy_train_task", "policytrain.tasks.generation_task",
)


def _legacy_alias(name: str):
    @shared_task(name=name, bind=True, acks_late=True)
    def alias(self, job_id: int) -> str | None:
        return _run(self, job_id)

    return alias


for _name in LEGACY_TASK_NAMES:
    _legacy_alias(_name)
