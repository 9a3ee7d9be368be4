"""Query-string parsing shared by the API views."""
from __future__ import annotations


def int_query_param(request, name: str, default: int = 0) -> int:
    """``?name=`` as an int; a missing or malformed value gives ``default`` (never a 500)."""
    try:
        return int(request.query_params.get(name, default) or default)
    except (TypeError, ValueError):
        return default
