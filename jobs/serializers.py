"""Output serializers shared by the job-backed endpoints: the job behind a domain row, its metric
points and the resolved config a run-start preview answers.

``MetricPointOut`` and ``JobPayloadOut`` describe (for the OpenAPI schema) the dicts
``jobs.selectors.job_metric_series`` and ``job_payload`` build; the endpoints return those dicts as
they are.
"""
from __future__ import annotations

from rest_framework import serializers


class MetricPointOut(serializers.Serializer):
    """One logged metric point; the logged values (``loss``, ``accuracy``, ``split``, …) sit beside
    these keys, as the run logged them."""

    id = serializers.IntegerField(help_text="Poll with ?after=<the last id> for newer points.")
    step = serializers.IntegerField()
    kind = serializers.CharField(help_text="train or eval")


class ResolvedConfigOut(serializers.Serializer):
    """What a ``runs/preview/`` route answers: the config the run would train with."""

    config = serializers.DictField(help_text="The final resolved config; nothing was written or queued.")


def job_payload(job) -> dict | None:
    """The job behind a snapshot, run, baseline, evaluation or scoring request (``JobPayloadOut``)."""
    if job is None:
        return None
    return {"id": job.pk, "kind": job.kind, "status": job.status, "step": job.step, "total_steps": job.total_steps,
            "progress": job.progress, "eta_seconds": job.eta_seconds, "last_metrics": job.last_metrics,
            "error": job.error, "attempts": job.attempts, "cancel_requested": job.cancel_requested,
            "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at}


class JobOut(serializers.Serializer):
    """A job's state, progress and outcome (rendered from the Job row; the RL endpoints nest it)."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    progress = serializers.FloatField()
    eta_seconds = serializers.FloatField(allow_null=True)
    last_metrics = serializers.JSONField()
    result = serializers.JSONField()
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class JobPayloadOut(JobOut):
    """The job behind a snapshot, run, baseline, evaluation or scoring request (``job_payload``):
    ``JobOut`` with the job's kind and without its result."""

    kind = serializers.CharField()
    result = None
