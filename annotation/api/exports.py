"""Export endpoints (thin): stream a small export, or start / follow / download an export job.

    GET  /api/exports/judgments.<jsonl|parquet>?campaign=<id>&async=1   200 stream, or 202 + job
    GET  /api/exports/jobs/?campaign=<id>                                recent export jobs
    POST /api/exports/jobs/  {"format", "campaign_ids"}                  202 + job
    GET  /api/exports/jobs/<id>/                                         status, progress, download_url
    POST /api/exports/jobs/<id>/cancel/
    GET  /api/exports/jobs/<id>/download/                                the file
"""
from __future__ import annotations

from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError, NotFound
from core.permissions import IsStaffRole
from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel

from ..services.exports import (
    FORMATS,
    export_job_file,
    export_normalize_request,
    export_should_run_as_job,
    export_start,
    export_stream,
)
from .serializers_out import ExportJobListOut, ExportJobOut

_TRUE = {"1", "true", "yes"}


def _job_out(request, job: Job) -> dict:
    result = job.result or {}
    done = job.status == JobStatus.SUCCEEDED
    return {
        "id": job.pk, "status": job.status, "name": job.name,
        "format": job.config.get("format"), "campaign_ids": job.config.get("campaign_ids") or [],
        "progress": job.progress, "rows_done": job.step, "rows_total": job.total_steps,
        "eta_seconds": job.eta_seconds, "error": job.error,
        "rows": result.get("rows"), "size": result.get("size"), "sha256": result.get("sha256"),
        "created_at": job.created_at, "finished_at": job.finished_at,
        "url": request.build_absolute_uri(reverse("api-export-job", args=[job.pk])),
        "download_url": request.build_absolute_uri(reverse("api-export-download", args=[job.pk])) if done else None,
    }


def _accepted(request, job: Job) -> Response:
    body = _job_out(request, job)
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


def _export_job(pk: int) -> Job:
    job = Job.objects.filter(pk=pk, kind=JobKind.EXPORT).first()
    if job is None:
        raise NotFound("No such export.")
    return job


class ExportApi(APIView):
    """Stream judgments as JSONL (ending with a trailer line) or Parquet, hashed annotator ids.
    Exports over EXPORT_SYNC_MAX_ROWS rows, or with ``async=1``, answer 202 with an export job."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses={(200, "application/octet-stream"): bytes, 202: ExportJobOut})
    def get(self, request, fmt: str):
        fmt, campaigns = export_normalize_request(fmt=fmt, campaign_ids=request.query_params.getlist("campaign"))
        force = request.query_params.get("async", "").lower() in _TRUE
        if export_should_run_as_job(campaign_ids=campaigns, force=force):
            return _accepted(request, export_start(fmt=fmt, campaign_ids=campaigns, user=request.user))
        response = StreamingHttpResponse(export_stream(fmt, campaign_ids=campaigns), content_type=FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="judgments.{fmt}"'
        return response


class ExportJobListApi(APIView):
    permission_classes = [IsStaffRole]

    # A list and the detail view would both be "exports_jobs_retrieve": a W001 that fails check --deploy.
    @extend_schema(responses=ExportJobListOut, operation_id="exports_jobs_list")
    def get(self, request):
        """The 20 newest export jobs, optionally only those of one campaign (``?campaign=``)."""
        campaign = request.query_params.get("campaign", "")
        if campaign and not (campaign.isascii() and campaign.isdigit()):  # "²".isdigit() is true, int() refuses it
            raise ApplicationError("The campaign is invalid.", fields={"campaign": ["A campaign id."]})
        # Filtered in Python: SQLite (the embedded default) has no JSON "contains" lookup.
        jobs = [j for j in Job.objects.filter(kind=JobKind.EXPORT).order_by("-id")[:200]
                if not campaign or int(campaign) in (j.config.get("campaign_ids") or [])]
        return Response({"results": [_job_out(request, j) for j in jobs[:20]]})

    @extend_schema(request=dict, responses={202: ExportJobOut})
    def post(self, request):
        """Start an export job: {"format": "jsonl" | "parquet", "campaign_ids": [..]} (none = all)."""
        data = request.data if isinstance(request.data, dict) else {}
        ids = data.get("campaign_ids") or []
        if not isinstance(ids, list):
            raise ApplicationError("The export request is invalid.", fields={"campaign_ids": ["A list of campaign ids."]})
        job = export_start(fmt=str(data.get("format", "")), campaign_ids=ids, user=request.user)
        return _accepted(request, job)


class ExportJobApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=ExportJobOut)
    def get(self, request, pk: int):
        return Response(_job_out(request, _export_job(pk)))


class ExportJobCancelApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(request=None, responses=ExportJobOut)
    def post(self, request, pk: int):
        return Response(_job_out(request, job_cancel(job=_export_job(pk))))


class ExportJobDownloadApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, pk: int):
        job = _export_job(pk)
        path = export_job_file(job)
        fmt = job.config.get("format", "jsonl")
        response = FileResponse(path.open("rb"), as_attachment=True, filename=f"judgments-{job.pk}.{fmt}",
                                content_type=FORMATS.get(fmt, "application/octet-stream"))
        # The digest recorded when the file was written, for clients that check the download.
        response["X-Content-SHA256"] = job.result.get("sha256", "")
        return response
