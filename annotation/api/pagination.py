"""Page-number pagination for list endpoints that can grow without bound."""
from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class PagePagination(PageNumberPagination):
    """``?page=`` (1-based) and ``?page_size=`` (default 50, at most 500): ``{count, next,
    previous, results}``. The cap keeps one request's memory and statements bounded."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
