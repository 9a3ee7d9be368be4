"""/api/jobs/: the jobs domain's own endpoints (staff roles), whatever the job's kind.

Cancel and resume act on the Job row through ``jobs.services``; what differs between kinds is the
registry's (``jobs.registry``): whether a kind resumes at all and the check that may refuse one
job (a reward run that already registered its model). The runs' own routes
(``/api/reward/runs/{id}/cancel/`` …) answer with the run; these answer with the job
(``JobOut``). Nothing here imports a domain app or torch.
"""
from __future__ import annotations

from collections.abc import Callable

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsStaffRole

from .models import Job
from .serializers import JobOut
from .services import job_cancel, job_resume


class _JobActionApi(APIView):
    permission_classes = [IsStaffRole]
    #: ``(*, job) -> Job``: the state change; raises ``core.errors.Conflict`` (409) when the job's
    #: state does not allow it.
    change: Callable[..., Job]

    def post(self, request, pk: int):
        job = type(self).change(job=get_object_or_404(Job, pk=pk))
        job.refresh_from_db()
        return Response(JobOut(job).data)


@extend_schema(request=None, responses=JobOut)
class JobCancelApi(_JobActionApi):
    """POST: ask the job to stop. A queued job is cancelled at once, a running one stops at its next
    poll (``cancel_requested``); 409 when it already finished."""

    change = staticmethod(job_cancel)


@extend_schema(request=None, responses=JobOut)
class JobResumeApi(_JobActionApi):
    """POST: a failed or cancelled job of a resumable kind (reward and RL runs) goes back to
    queued and is sent again; the engine continues from its newest checkpoint. 409 when the job
    is not failed or cancelled, its kind does not resume, or its kind's check refuses it."""

    change = staticmethod(job_resume)
