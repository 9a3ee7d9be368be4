"""Media is served only to signed-in users — a browser session or an API token — and only from
inside MEDIA_ROOT (or the media prefix of the object store, when media live there).

Scripts and simulated annotators hold an API token, not a session: ``Authorization: Token <key>``
is checked the way the API checks it (``ExpiringTokenAuthentication``), so every image a script is
handed by ``next`` can be fetched with the same header. Any signed-in user may see any media file,
whichever way they signed in (file names are content hashes, not guessable listings).
"""
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils._os import safe_join
from rest_framework import exceptions

from core.authentication import ExpiringTokenAuthentication


def _token_refusal(exc: exceptions.AuthenticationFailed) -> JsonResponse:
    """The API's error shape and status for a token that was sent but is not good (401), so a
    script can tell "get a new token" from "file not found"."""
    response = JsonResponse({"message": str(exc.detail), "code": exc.get_codes(), "fields": {}}, status=401)
    response["WWW-Authenticate"] = 'Token realm="api"'
    return response


def protected_media(request: HttpRequest, path: str) -> HttpResponse:
    if request.META.get("HTTP_AUTHORIZATION"):
        try:
            signed_in = ExpiringTokenAuthentication().authenticate(request) is not None
        except exceptions.AuthenticationFailed as exc:
            return _token_refusal(exc)
        # Another scheme (Basic, Bearer …) is no token: fall back to the session like a browser.
        signed_in = signed_in or request.user.is_authenticated
    else:
        signed_in = request.user.is_authenticated
    if not signed_in:
        return redirect_to_login(request.get_full_path())  # what login_required does for browsers
    try:
        safe_join(settings.MEDIA_ROOT, path)  # refuses ../ and absolute paths
    except Exception as exc:  # SuspiciousFileOperation, ValueError
        raise Http404("Not found") from exc
    try:
        # Through the storage: MEDIA_ROOT on disk, or the object store when one is configured.
        response = FileResponse(default_storage.open(path, "rb"))
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise Http404("Not found") from exc
    # Media files are content-addressed, so the browser may keep them (prefetch relies on this).
    response["Cache-Control"] = "private, max-age=86400"
    return response
