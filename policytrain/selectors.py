"""Reads for policy runs, checkpoints and generation jobs (lists, lineage, artifacts)."""
from __future__ import annotations

from pathlib import Path

from django.db.models import QuerySet

from .models import GenerationJob, PolicyCheckpoint, PolicyRun


def policy_run_list() -> QuerySet[PolicyRun]:
    return PolicyRun.objects.select_related("job", "reward_model", "started_by", "checkpoint")


def checkpoint_list() -> QuerySet[PolicyCheckpoint]:
    return PolicyCheckpoint.objects.select_related("run__job", "reward_model")


def generation_job_list() -> QuerySet[GenerationJob]:
    return GenerationJob.objects.select_related("job", "checkpoint", "opponent", "campaign", "started_by")


def run_sample_grids(run: PolicyRun) -> list[str]:
    """Sample-grid PNGs of a run, relative to its output folder, oldest first."""
    folder = Path(run.output_dir) / "samples"
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(run.output_dir)) for p in folder.glob("*.png"))


def _attr(obj, name: str, default=None):
    return getattr(obj, name, default) if obj is not None else default


def checkpoint_lineage(checkpoint: PolicyCheckpoint) -> dict:
    """checkpoint → run → reward model → snapshot → campaigns (each level may be missing)."""
    run = checkpoint.run
    rm = checkpoint.reward_model or (run.reward_model if run else None)
    snapshot = _attr(rm, "snapshot")
    campaigns = []
    if snapshot is not None and hasattr(snapshot, "campaigns"):
        campaigns = [{"id": c.pk, "name": c.name} for c in snapshot.campaigns.all()]
    return {
        "checkpoint": {"id": checkpoint.pk, "name": checkpoint.name, "base_policy": checkpoint.base_policy,
                       "weights_dir": checkpoint.weights_dir, "algorithm": checkpoint.algorithm},
        "run": ({"id": run.pk, "job_id": run.job_id, "status": run.job.status, "algorithm": run.algorithm,
                 "output_dir": run.output_dir} if run else None),
        "reward_model": ({"id": rm.pk, "name": _attr(rm, "name", str(rm)), "path": _attr(rm, "path", ""),
                          "base_model": _attr(rm, "base_model", ""),
                          "template_version": _attr(rm, "template_version", ""),
                          "run_id": _attr(rm, "run_id")} if rm else None),
        "snapshot": ({"id": snapshot.pk, "name": snapshot.name, "content_hash": snapshot.content_hash}
                     if snapshot is not None else None),
        "campaigns": campaigns,
    }
