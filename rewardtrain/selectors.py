"""Reads for reward runs, reward models and snapshots (views, admin and commands call these)."""
from __future__ import annotations

from django.db.models import QuerySet

from annotation.models import DatasetSnapshot
from jobs.models import Job, JobKind
from jobs.selectors import job_metric_series

from .models import RewardEvaluation, RewardModel, RewardRun


def run_list(*, status: str | None = None) -> QuerySet[RewardRun]:
    qs = RewardRun.objects.select_related("job", "snapshot", "started_by", "reward_model")
    return qs.filter(job__status=status) if status else qs


def run_metrics(run: RewardRun, *, after_id: int = 0) -> list[dict]:
    return job_metric_series(run.job, after_id=after_id)


def model_list() -> QuerySet[RewardModel]:
    return RewardModel.objects.select_related("run__job", "snapshot")


def snapshot_lineage(snapshot: DatasetSnapshot) -> dict:
    return {
        "id": snapshot.pk, "name": snapshot.name, "content_hash": snapshot.content_hash,
        "aggregation": snapshot.aggregation, "filter": snapshot.filter,
        "campaigns": [{"id": c.pk, "name": c.name} for c in snapshot.campaigns.order_by("id")],
    }


def model_lineage(model: RewardModel) -> dict:
    """RewardModel → run → snapshot → campaigns."""
    return {"run": model.run_id, "job": model.run.job_id, "base_model": model.base_model,
            "preset": model.run.preset, "snapshot": snapshot_lineage(model.snapshot)}


def snapshot_list() -> QuerySet[DatasetSnapshot]:
    return DatasetSnapshot.objects.select_related("job", "created_by").prefetch_related("campaigns")


def score_job(job_id: int) -> Job | None:
    """A scoring job (evaluation jobs of a whole snapshot are RewardEvaluation rows instead)."""
    return Job.objects.filter(pk=job_id, kind=JobKind.EVALUATION, reward_evaluation__isnull=True).first()


def evaluation_list(model: RewardModel) -> QuerySet[RewardEvaluation]:
    """A reward model's evaluations on snapshots, newest first."""
    return model.evaluations.select_related("snapshot", "job")
