"""JSON API behind the dashboard pages, under /api/dashboard/ (scientists and curators only).

What only the dashboard's pages need: the unified job list and detail, overlays, lineage graphs,
comparisons, campaign progress and the leaderboard. Its only write is a job's tags
(``frontend.services``); jobs are cancelled and resumed through ``/api/jobs/`` (jobs/api.py), runs
and campaigns started through their own apps' APIs (``/api/reward/``, ``/api/policy/``,
``/api/campaigns/``). Nothing here imports torch.
"""
from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign, DatasetSnapshot
from core.artifacts import StoreUnavailable
from core.errors import ApplicationError
from core.params import int_query_param
from core.permissions import IsStaffRole
from enginekit.objectstore import ObjectStoreUnavailable
from jobs.models import Job, JobKind, JobStatus
from jobs.selectors import job_artifact_file, queue_overview
from policytrain.models import PolicyCheckpoint
from rewardtrain.models import RewardModel

from . import selectors as sel
from . import serializers as out
from .services import run_tags_set

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
INLINE_SUFFIXES = IMAGE_SUFFIXES | {".json", ".jsonl", ".txt", ".log", ".md"}


class _Staff(APIView):
    permission_classes = [IsStaffRole]



# --- jobs ---------------------------------------------------------------------------------------------

class JobListApi(_Staff):
    """GET ?kind=reward|policy|snapshot|generation|evaluation&status=…&started_by=<username>&q=…&limit=…"""

    @extend_schema(responses=out.JobListOut, operation_id="dashboard_jobs_list")
    def get(self, request):
        q = request.query_params
        kind, state = q.get("kind") or None, q.get("status") or None
        if kind and kind not in JobKind.values:
            raise ApplicationError("Unknown kind.", fields={"kind": [f"Use one of {', '.join(JobKind.values)}."]})
        if state and state not in JobStatus.values:
            raise ApplicationError("Unknown status.", fields={"status": [f"Use one of {', '.join(JobStatus.values)}."]})
        started_by = request.user.username if q.get("mine") in ("1", "true") else q.get("started_by")
        limit = min(max(int_query_param(request, "limit", 100), 1), 500)
        jobs = sel.dashboard_jobs(kind=kind, status=state, started_by=started_by, q=q.get("q"))
        counts = {s: 0 for s in JobStatus.values}
        for value in sel.dashboard_jobs(kind=kind, started_by=started_by, q=q.get("q")).values_list("status",
                                                                                                  flat=True):
            counts[value] += 1
        return Response({"jobs": [sel.job_summary(j) for j in jobs[:limit]], "counts": counts})


class QueueOverviewApi(_Staff):
    """GET: per queue, the workers consuming it and its jobs waiting and running
    (``jobs.selectors.queue_overview``; the workers are asked at most every few seconds)."""

    @extend_schema(responses=out.QueueOverviewOut)
    def get(self, request):
        return Response(queue_overview())


class JobDetailApi(_Staff):
    """GET ?after=<metric id>: the job, its config, metrics after ``after``, log tail, artifacts, error."""

    @extend_schema(responses=out.JobDetailOut)
    def get(self, request, pk: int):
        job = get_object_or_404(sel.dashboard_jobs(), pk=pk)
        return Response(sel.job_detail(job, after_id=int_query_param(request, "after")))


class JobTagsIn(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(allow_blank=True, trim_whitespace=False), max_length=100)


class JobTagsApi(_Staff):
    """PUT {"tags": [...]}: replace a reward or RL run's tags (``frontend.services.run_tags_set``)."""

    @extend_schema(request=JobTagsIn, responses=out.JobSummaryOut)
    def put(self, request, pk: int):
        job = get_object_or_404(sel.dashboard_jobs(), pk=pk)
        data = JobTagsIn(data=request.data)
        data.is_valid(raise_exception=True)
        run_tags_set(job=job, tags=data.validated_data["tags"])
        return Response(sel.job_summary(sel.dashboard_jobs().get(pk=pk)))


class RunOverlayApi(_Staff):
    """GET ?job=1&job=2…: the runs' summaries and every curve they logged, for one overlay chart."""

    @extend_schema(responses=out.OverlayOut)
    def get(self, request):
        raw = request.query_params.getlist("job")
        bad = [v for v in raw if not v.isdigit()]
        if bad or not raw:
            raise ApplicationError("Pick runs to overlay.", fields={"job": [f"Not a run id: {v!r}." for v in bad]
                                                                       or ["Pick at least one run."]})
        ids = list(dict.fromkeys(int(v) for v in raw))
        if len(ids) > sel.MAX_OVERLAY_RUNS:
            raise ApplicationError("Too many runs.", fields={"job": [f"At most {sel.MAX_OVERLAY_RUNS} runs at once."]})
        return Response(sel.overlay_runs(ids))


class JobArtifactApi(_Staff):
    """A file from the job's run folder (this host's copy, else a folder of the run published in
    the object store); refuses ../, absolute paths and symlinks that leave the folder."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, pk: int, path: str):
        job = get_object_or_404(Job, pk=pk)
        try:
            full = job_artifact_file(job, path)
        except ObjectStoreUnavailable as exc:
            raise StoreUnavailable(exc) from exc
        if full is None:
            raise Http404("Not found")
        inline = full.suffix.lower() in INLINE_SUFFIXES
        response = FileResponse(full.open("rb"), as_attachment=not inline, filename=full.name)
        if full.suffix.lower() in {".json", ".jsonl", ".txt", ".log", ".md"}:
            response["Content-Type"] = "text/plain; charset=utf-8"
        response["X-Content-Type-Options"] = "nosniff"
        return response


# --- registry, lineage, comparisons -------------------------------------------------------------------

LINEAGE = {
    "campaign": (Campaign, sel.campaign_graph),
    "snapshot": (DatasetSnapshot, sel.snapshot_graph),
    "reward-model": (RewardModel, sel.reward_model_graph),
    "checkpoint": (PolicyCheckpoint, sel.checkpoint_graph),
}


class LineageApi(_Staff):
    """GET /lineage/{campaign|snapshot|reward-model|checkpoint}/{id}/: upstream and downstream links."""

    @extend_schema(responses=out.LineageOut)
    def get(self, request, kind: str, pk: int):
        if kind not in LINEAGE:
            raise Http404("Unknown kind")
        model, fn = LINEAGE[kind]
        # Like the pages: nodes on pages this role cannot open come without a url.
        return Response(sel.links_for_viewer(request.user, fn(get_object_or_404(model, pk=pk))))


def _pair(request, model):
    a, b = int_query_param(request, "a"), int_query_param(request, "b")
    errors = {k: [f"No {model._meta.verbose_name} with id {v}."] for k, v in (("a", a), ("b", b))
              if not model.objects.filter(pk=v).exists()}
    if errors:
        raise ApplicationError("Pick two to compare.", fields=errors)
    return model.objects.get(pk=a), model.objects.get(pk=b)


def reward_model_compare(a: RewardModel, b: RewardModel) -> dict:
    return {"a": {"id": a.pk, "name": a.name, "table": sel.accuracy_table(a.eval_report)},
            "b": {"id": b.pk, "name": b.name, "table": sel.accuracy_table(b.eval_report)}}


def checkpoint_compare(a: PolicyCheckpoint, b: PolicyCheckpoint) -> dict:
    def side(c):
        return {"id": c.pk, "name": c.name, "algorithm": c.algorithm, "grids": sel.checkpoint_grids(c),
                "rl_table": sel.rl_reward_table(c.run) if c.run else None}
    return {"a": side(a), "b": side(b), "pairs": sel.checkpoint_outputs(a, b)}


class CompareRewardModelsApi(_Staff):
    @extend_schema(responses=out.CompareRewardModelsOut)
    def get(self, request):
        return Response(reward_model_compare(*_pair(request, RewardModel)))


class CompareCheckpointsApi(_Staff):
    @extend_schema(responses=out.CompareCheckpointsOut)
    def get(self, request):
        return Response(checkpoint_compare(*_pair(request, PolicyCheckpoint)))


# --- curator ------------------------------------------------------------------------------------------

class CampaignListApi(_Staff):
    """GET: every campaign with progress (curators create them from candidates with
    POST /api/campaigns/from-candidates/)."""

    @extend_schema(responses=out.CampaignOverviewOut(many=True), operation_id="dashboard_campaigns_list")
    def get(self, request):
        return Response(sel.campaign_overview())


class CampaignDashboardApi(_Staff):
    """Progress per criterion, annotator activity and speed, tie rates, agreement, lineage."""

    @extend_schema(responses=out.CampaignDashboardOut)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign.objects.select_related("task_type"), pk=pk)
        # Lineage may reach scientist-only pages: a curator gets those nodes without a link.
        return Response(sel.links_for_viewer(request.user, sel.campaign_dashboard(campaign)))


class LeaderboardApi(_Staff):
    """GET ?task=&criterion= → every system judged side by side, ranked by Bradley–Terry rating."""

    @extend_schema(responses=out.LeaderboardOut)
    def get(self, request):
        return Response(sel.leaderboard(request.query_params))
