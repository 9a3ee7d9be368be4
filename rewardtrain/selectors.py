"""Reads for reward runs, reward models and snapshots (views, admin and commands call these)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from annotation.models import Campaign, DatasetSnapshot
from core.stats import wilson_interval
from jobs.models import Job, JobKind, JobStatus
from jobs.selectors import job_metric_series

from .models import BaselineRun, RewardEvaluation, RewardModel, RewardRun


def run_list(*, status: str | None = None) -> QuerySet[RewardRun]:
    qs = RewardRun.objects.select_related("job", "snapshot", "started_by", "reward_model")
    return qs.filter(job__status=status) if status else qs


def run_metrics(run: RewardRun, *, after_id: int = 0) -> list[dict]:
    return job_metric_series(run.job, after_id=after_id)


def model_list() -> QuerySet[RewardModel]:
    return RewardModel.objects.select_related("run__job", "snapshot")


# --- lineage: the one serialiser of the chain campaigns → snapshot → reward model (the API's);
# policytrain.selectors.checkpoint_lineage extends it to checkpoints, and the dashboard draws it as
# a graph of linked nodes (frontend.selectors.*_graph).

def snapshot_ref(snapshot: DatasetSnapshot) -> dict:
    """A snapshot as every lineage names it: id, name and content hash."""
    return {"id": snapshot.pk, "name": snapshot.name, "content_hash": snapshot.content_hash}


def campaign_refs(campaigns: Iterable[Campaign]) -> list[dict]:
    """Campaigns as every lineage names them (in the order given)."""
    return [{"id": c.pk, "name": c.name} for c in campaigns]


def snapshot_lineage(snapshot: DatasetSnapshot) -> dict:
    """Snapshot → campaigns, with the aggregation and filter that made it."""
    return {**snapshot_ref(snapshot), "aggregation": snapshot.aggregation, "filter": snapshot.filter,
            "campaigns": campaign_refs(snapshot.campaigns.order_by("id"))}


def model_lineage(model: RewardModel) -> dict:
    """RewardModel → run → snapshot → campaigns."""
    return {"run": model.run_id, "job": model.run.job_id, "base_model": model.base_model,
            "preset": model.run.preset, "snapshot": snapshot_lineage(model.snapshot)}


def score_job(job_id: int) -> Job | None:
    """A scoring job (kind ``score``; evaluations of a whole snapshot are RewardEvaluation rows)."""
    return Job.objects.filter(pk=job_id, kind=JobKind.SCORE).first()


def evaluation_list(model: RewardModel) -> QuerySet[RewardEvaluation]:
    """A reward model's evaluations on snapshots, newest first."""
    return model.evaluations.select_related("snapshot", "job")


def baseline_list(*, snapshot: int | None = None) -> QuerySet[BaselineRun]:
    qs = BaselineRun.objects.select_related("job", "snapshot", "started_by")
    return qs.filter(snapshot_id=snapshot) if snapshot else qs


def latest_baseline(snapshot_id: int) -> BaselineRun | None:
    """The newest baseline that finished on this snapshot (the one shown beside its reward models)."""
    return baseline_list(snapshot=snapshot_id).filter(job__status=JobStatus.SUCCEEDED).first()


def _cell(report: dict, task: str, criterion: str) -> dict | None:
    """One cell of a report as {accuracy, n, interval}; the interval is recomputed from accuracy and
    n (Wilson, 95 %) so the VLM's reports, which carry none, get one too."""
    accuracy = (report.get("accuracy") or {}).get(task, {}).get(criterion)
    n = (report.get("counts") or {}).get(task, {}).get(criterion)
    if accuracy is None or not n:
        return None
    bounds = wilson_interval(accuracy * n, n)
    return {"accuracy": accuracy, "n": n, "interval": list(bounds) if bounds else None}


def accuracy_comparison(vlm_report: dict, baseline_report: dict | None) -> list[dict]:
    """Rows of the evaluation table, per task x criterion: the VLM's held-out accuracy and the
    baseline learner's on the same snapshot, each with n and a 95 % interval (None where absent)."""
    baseline_report = baseline_report or {}
    keys: dict[tuple[str, str], None] = {}
    for report in (vlm_report, baseline_report):
        for task, crits in (report.get("accuracy") or {}).items():
            for criterion in crits:
                keys[(task, criterion)] = None
    return [{"task": t, "criterion": c, "vlm": _cell(vlm_report, t, c), "baseline": _cell(baseline_report, t, c)}
            for t, c in keys]
