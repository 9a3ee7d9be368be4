"""One error shape for every API response: {"message", "code", "fields"}."""
from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from core.errors import ApplicationError


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "code": exc.code, "fields": exc.fields}, status=exc.status_code)
    response = drf_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"message": "Invalid input.", "code": "invalid", "fields": detail}
    else:
        response.data = {"message": str(getattr(exc, "detail", exc)), "code": getattr(exc, "default_code", "error"),
                         "fields": {}}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and not response.get("WWW-Authenticate"):
        response.status_code = status.HTTP_403_FORBIDDEN
    return response
