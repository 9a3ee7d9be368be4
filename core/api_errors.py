"""One error shape for every API response: {"message", "code", "fields"} (REST_FRAMEWORK's
EXCEPTION_HANDLER)."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from core.authentication import TokenRefused
from core.errors import ApplicationError


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "code": exc.code, "fields": exc.fields}, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):  # Django's SuspiciousOperation would be an HTML 400 page
        return Response({"message": "The request body is too large.", "code": "too_large",
                         "fields": {"max_bytes": [str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)]}},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = drf_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"message": "Invalid input.", "code": "invalid", "fields": detail}
    else:
        response.data = {"message": str(getattr(exc, "detail", exc)), "code": getattr(exc, "default_code", "error"),
                         "fields": {}}
    if isinstance(exc, TokenRefused):
        # DRF turns it into 403 because session authentication comes first; a sent token that is
        # wrong or expired is a 401 (no credentials at all stays 403).
        response.status_code = status.HTTP_401_UNAUTHORIZED
        response["WWW-Authenticate"] = 'Token realm="api"'
    elif response.status_code == status.HTTP_401_UNAUTHORIZED and not response.get("WWW-Authenticate"):
        response.status_code = status.HTTP_403_FORBIDDEN
    return response
