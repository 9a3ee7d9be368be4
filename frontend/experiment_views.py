"""Experiment pages of the dashboard: several runs' curves overlaid on one chart."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie

from annotation.roles import SCIENTIST, has_role
from jobs.models import JobKind

from . import selectors as dsel
from .views import _dash


@login_required
@ensure_csrf_cookie
def runs_overlay(request: HttpRequest) -> HttpResponse:
    """``?job=1&job=2…``: the runs' curves on one chart (the data comes from /api/dashboard/runs/overlay/);
    the page offers recent reward and RL runs to add."""
    if not has_role(request.user, SCIENTIST):
        raise PermissionDenied("Runs are for scientists.")
    picked = [int(v) for v in request.GET.getlist("job") if v.isdigit()][:dsel.MAX_OVERLAY_RUNS]
    recent = dsel.dashboard_jobs().filter(kind__in=[JobKind.REWARD, JobKind.POLICY]).order_by("-id")[:200]
    return _dash(request, "overlay.html", "runs", picked=picked, recent=recent)
