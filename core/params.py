"""Query-string parsing shared by the API views."""
from __future__ import annotations

from .errors import ApplicationError


def int_query_param(request, name: str, default: int = 0) -> int:
    """``?name=`` as an int; a missing or malformed value gives ``default`` (never a 500)."""
    try:
        return int(request.query_params.get(name, default) or default)
    except (TypeError, ValueError):
        return default


def int_list_query_param(request, name: str) -> list[int]:
    """Every ``?name=`` as an int; a value that is not a whole number is the caller's error (400),
    not a filter to drop silently (that would widen the result) nor a 500."""
    values = []
    for raw in request.query_params.getlist(name):
        try:
            value = int(raw)
            if not 0 <= value < 2**63:  # a database id; larger would overflow the query
                raise ValueError(raw)
            values.append(value)
        except ValueError:
            raise ApplicationError(f"?{name}= takes whole numbers.", fields={name: [f"Not a whole number: {raw!r}."]}) from None
    return values
