"""Curator pages of the dashboard: people (accounts) and the taxonomy (task types, criteria and
their guidelines). Pages render the current rows and the form choices; every change goes through
the REST API (/api/users/, /api/task-types/, /api/criteria/, the guideline publish and preview
endpoints) from ``curation.js``."""
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from annotation.guidelines import render_guideline
from annotation.models import Criterion, GuidelineVersion, TaskType
from core.roles import ACCOUNT_ROLES, CURATOR, SCIENTIST, has_role, roles_manageable_by

from . import views
from .views import _dash, curator_page


@login_required
def dashboard_home(request: HttpRequest) -> HttpResponse:
    """/dashboard/: the runs for scientists; a curator's dashboard starts at the campaigns."""
    if has_role(request.user, CURATOR) and not has_role(request.user, SCIENTIST):
        return redirect("dash-campaigns")
    return views.dashboard_runs(request)


@curator_page
def people(request: HttpRequest) -> HttpResponse:
    grantable = roles_manageable_by(request.user)
    return _dash(request, "people.html", "people", grantable=[r for r in ACCOUNT_ROLES if r in grantable])


@curator_page
def taxonomy(request: HttpRequest) -> HttpResponse:
    latest = GuidelineVersion.objects.only("id", "criterion_id", "version", "created_at").order_by("-version")
    criteria = Criterion.objects.prefetch_related("task_types", Prefetch("guidelines", latest, to_attr="versions"))
    return _dash(request, "taxonomy.html", "taxonomy", criteria=criteria,
                 task_types=TaskType.objects.prefetch_related("criteria"))


@curator_page
def criterion_form(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """New criterion (no ``slug``) or edit one; the form PATCHes /api/criteria/<slug>/."""
    criterion = get_object_or_404(Criterion.objects.prefetch_related("task_types"), slug=slug) if slug else None
    chosen = {t.slug for t in criterion.task_types.all()} if criterion else set()
    return _dash(request, "taxonomy_criterion.html", "taxonomy", criterion=criterion, chosen=chosen,
                 task_types=TaskType.objects.all())


@curator_page
def task_type_form(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """New task type (no ``slug``) or edit one; the form PATCHes /api/task-types/<slug>/."""
    task_type = get_object_or_404(TaskType.objects.prefetch_related("criteria"), slug=slug) if slug else None
    chosen = {c.slug for c in task_type.criteria.all()} if task_type else set()
    return _dash(request, "taxonomy_task_type.html", "taxonomy", task_type=task_type, chosen=chosen,
                 criteria=Criterion.objects.all())


@curator_page
def guideline_editor(request: HttpRequest, slug: str) -> HttpResponse:
    """The editor starts from the current version's Markdown; every version is shown rendered,
    newest first (as annotators saw it)."""
    criterion = get_object_or_404(Criterion, slug=slug)
    versions = list(GuidelineVersion.objects.filter(criterion=criterion).select_related("created_by")
                    .order_by("-version"))
    for version in versions:
        # Stored rendered and sanitised on save; rows written by a migration may predate that.
        version.html = version.body_html or render_guideline(version.body_markdown)
    return _dash(request, "guideline.html", "taxonomy", criterion=criterion, versions=versions,
                 current=versions[0] if versions else None)
