"""Browser pages. Pages only render templates; the data comes from the REST API."""
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from annotation.roles import ANNOTATOR, has_role
from annotation.selectors import campaign_list_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/home.html", {"campaigns": campaign_list_for(request.user)})


@login_required
@ensure_csrf_cookie
def annotate(request: HttpRequest, pk: int) -> HttpResponse:
    """The annotator workspace for one campaign; everything on it is driven by the REST API."""
    if not has_role(request.user, ANNOTATOR):
        raise PermissionDenied("Only annotators can annotate.")
    campaign = get_object_or_404(campaign_list_for(request.user), pk=pk)
    return render(request, "frontend/workspace.html", {"campaign": campaign})
