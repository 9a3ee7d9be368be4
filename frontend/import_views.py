"""The dashboard's Import page for curators: upload a zip with ``manifest.jsonl`` (docs/annotation.md,
"Import format"), follow its import job live, then see what it added (per split) or every row error,
and the recent imports.

A plain form post: the upload goes through the same service as ``POST /api/imports/``
(``import_upload``: stored, recorded, its job enqueued) and the browser is sent to the import's own
view (``?batch=<id>``), where ``imports.js`` polls the dashboard's job API until the job has finished
and then reloads the view to show the result.
"""
from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from annotation.models import ImportBatch, ImportStatus
from annotation.services.imports import import_upload
from core.errors import ApplicationError

from .views import _dash, curator_page

RECENT_IMPORTS = 20


class ImportUploadForm(forms.Form):
    file = forms.FileField(label="Import archive (.zip)")


def _field_errors(exc: ApplicationError) -> list[str]:
    """An ApplicationError's messages for the file field (a bad archive, no manifest), else its message."""
    fields = exc.fields or {}
    return [str(m) for m in fields.get("file", [])] or [exc.message]


def _shown_batch(request: HttpRequest) -> ImportBatch | None:
    """The import named by ``?batch=<id>``; 404 for an id that is not one."""
    raw = request.GET.get("batch", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise Http404("No such import.")
    batch = ImportBatch.objects.select_related("job").filter(pk=int(raw)).first()
    if batch is None:
        raise Http404("No such import.")
    return batch


@curator_page
def imports(request: HttpRequest) -> HttpResponse:
    """GET: the form, the recent imports and, with ``?batch=<id>``, that import (its progress while
    its job runs, then its counts per split or every row error). POST: start importing the upload
    and go to its view; an upload that is not an importable zip is a field error (400)."""
    posted = request.method == "POST"
    # Bound on every POST, even an empty one: "no file" is a field error, not a blank form.
    form = ImportUploadForm(request.POST, request.FILES) if posted else ImportUploadForm()
    if posted and form.is_valid():
        try:
            batch = import_upload(upload=form.cleaned_data["file"], user=request.user)
        except ApplicationError as exc:
            for message in _field_errors(exc):
                form.add_error("file", message)
        else:
            # Post/redirect/get: reloading the import's view never uploads twice.
            return redirect(f"{reverse('dash-imports')}?batch={batch.pk}")
    batch = None if posted else _shown_batch(request)
    job = batch.job if batch is not None else None
    # The batch's status is its job's (ImportBatch.status).
    running = batch is not None and batch.status in (ImportStatus.QUEUED, ImportStatus.RUNNING)
    errors = batch.errors if batch is not None and batch.status == ImportStatus.FAILED else []
    if batch is not None and batch.status == ImportStatus.FAILED and not errors:
        # The job ended before its batch recorded why (cancelled while queued, its worker lost):
        # the batch says so once the task has run; until then the job's reason is the report.
        reason = job.error.splitlines()[0] if job is not None and job.error else "the import job stopped."
        errors = [{"line": 0, "error": reason}]
    recent = ImportBatch.objects.select_related("created_by", "job").order_by("-id")[:RECENT_IMPORTS]
    response = _dash(request, "imports.html", "imports", form=form, batch=batch, running=running, job=job,
                     errors=errors, recent=recent)
    if posted:
        response.status_code = 400  # a refused upload is not a page view (scripts, tests)
    return response
