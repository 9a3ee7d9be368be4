"""The dashboard's Import page for curators: upload a zip with ``manifest.jsonl`` (docs/annotation.md,
"Import format"), see what it added (per split) or every row error, and the recent imports.

A plain form post rather than a script: the upload goes through the same service as
``POST /api/imports/`` (``import_upload``) and the result is rendered in the response.
"""
from django import forms
from django.http import HttpRequest, HttpResponse

from annotation.models import ImportBatch
from annotation.services.imports import ImportFailed, import_upload
from core.errors import ApplicationError

from .views import _dash, curator_page

RECENT_IMPORTS = 20


class ImportUploadForm(forms.Form):
    file = forms.FileField(label="Import archive (.zip)")


def _field_errors(exc: ApplicationError) -> list[str]:
    """An ApplicationError's messages for the file field (a bad archive, no manifest), else its message."""
    fields = exc.fields or {}
    return [str(m) for m in fields.get("file", [])] or [exc.message]


@curator_page
def imports(request: HttpRequest) -> HttpResponse:
    """GET: the form and the recent imports. POST: import the upload (all or nothing) and show the
    result: counts and new samples per split, or every row error of a failed import."""
    posted = request.method == "POST"
    # Bound on every POST, even an empty one: "no file" is a field error, not a blank form.
    form = ImportUploadForm(request.POST, request.FILES) if posted else ImportUploadForm()
    batch = None
    if posted and form.is_valid():
        try:
            batch = import_upload(upload=form.cleaned_data["file"], user=request.user)
        except ImportFailed as exc:
            batch = exc.batch  # stored with its row errors, as the failed import's record
        except ApplicationError as exc:
            for message in _field_errors(exc):
                form.add_error("file", message)
    recent = ImportBatch.objects.select_related("created_by").order_by("-id")[:RECENT_IMPORTS]
    response = _dash(request, "imports.html", "imports", form=form, batch=batch, recent=recent)
    if posted and (batch is None or batch.errors):
        response.status_code = 400  # a refused upload is not a page view (scripts, tests)
    return response
