"""Celery tasks (routed to the `gpu` queue by settings.CELERY_TASK_ROUTES): load by id, call a service.

torch is imported only inside the task bodies, so the web process that enqueues never loads it.
"""
from __future__ import annotations

from celery import shared_task
from django.conf import settings


def _torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, settings.TORCH_NUM_THREADS))


@shared_task(name="rewardtrain.tasks.reward_train_task", acks_late=True)
def reward_train_task(job_id: int) -> None:
    """Train + evaluate + register (idempotent: a redelivered message finds the job not queued)."""
    _torch_threads()
    from .services import reward_run_execute_job

    reward_run_execute_job(job_id)


@shared_task(name="rewardtrain.tasks.reward_score_task", acks_late=True)
def reward_score_task(job_id: int) -> None:
    """Score candidate pairs with a registered reward model; results go to job.result."""
    _torch_threads()
    from .services import reward_score_execute_job

    reward_score_execute_job(job_id)


@shared_task(name="rewardtrain.tasks.reward_evaluation_task", acks_late=True)
def reward_evaluation_task(job_id: int) -> None:
    """Evaluate a registered reward model on a snapshot; the report goes to its RewardEvaluation."""
    _torch_threads()
    from .services import reward_evaluation_execute_job

    reward_evaluation_execute_job(job_id)


@shared_task(name="rewardtrain.tasks.baseline_train_task", acks_late=True)
def baseline_train_task(job_id: int) -> None:
    """Train the baseline learner on a snapshot; its held-out report goes to its BaselineRun."""
    _torch_threads()
    from .services import baseline_execute_job

    baseline_execute_job(job_id)
