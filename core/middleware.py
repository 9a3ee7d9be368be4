"""Answer 503 with Retry-After, not a 500 traceback, while the database is unreachable."""
from __future__ import annotations

import logging

from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from .db import CONNECTION_ERRORS

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying (a PostgreSQL restart takes a few).
RETRY_AFTER_S = 5


class DatabaseUnavailableMiddleware:
    """A request that hit a database restart or failover is safe to retry: every write the API
    takes is one transaction, and submits carry an idempotency key. So tell the client to retry
    (503 + ``Retry-After``) in the API's error shape, instead of failing with a 500."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, CONNECTION_ERRORS):
            return None
        logger.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        close_old_connections()  # a broken connection is dropped now, not reused by the next request
        message = "The database is unavailable for a moment; retry shortly."
        if request.path.startswith("/api/"):
            response = JsonResponse({"message": message, "code": "database_unavailable", "fields": {}}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response


class StatementCountMiddleware:
    """Tell the client how many SQL statements its request ran (``X-DB-Statements``).

    Off unless ``DB_STATEMENT_COUNT_HEADER`` is set: benchmarks read it to report statements per
    call through the production server, where ``connection.queries`` is not kept.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        count = 0

        def counter(execute, sql, params, many, context):
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            response = self.get_response(request)
        response["X-DB-Statements"] = str(count)
        return response
