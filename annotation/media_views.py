"""Media is served only to signed-in users, and only from inside MEDIA_ROOT."""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest
from django.utils._os import safe_join


@login_required
def protected_media(request: HttpRequest, path: str) -> FileResponse:
    try:
        full = safe_join(settings.MEDIA_ROOT, path)  # refuses ../ and absolute paths
    except Exception as exc:  # SuspiciousFileOperation, ValueError
        raise Http404("Not found") from exc
    try:
        response = FileResponse(open(full, "rb"))
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise Http404("Not found") from exc
    # Media files are content-addressed, so the browser may keep them (prefetch relies on this).
    response["Cache-Control"] = "private, max-age=86400"
    return response
