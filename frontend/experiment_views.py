"""Experiment pages of the dashboard: several runs' curves overlaid on one chart."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from jobs.models import JobKind

from . import selectors as dsel
from .views import _dash, science_page


@science_page
def runs_overlay(request: HttpRequest) -> HttpResponse:
    """``?job=1&job=2…``: the runs' curves on one chart (the data comes from /api/dashboard/runs/overlay/);
    the page offers recent reward and RL runs to add."""
    picked = [int(v) for v in request.GET.getlist("job") if v.isdigit()][:dsel.MAX_OVERLAY_RUNS]
    recent = dsel.dashboard_jobs().filter(kind__in=[JobKind.REWARD, JobKind.POLICY]).order_by("-id")[:200]
    return _dash(request, "overlay.html", "runs", picked=picked, recent=recent)
