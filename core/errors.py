"""Domain errors. The API maps them to 4xx responses with a stable JSON shape."""
from __future__ import annotations


class ApplicationError(Exception):
    """A request the domain refuses; ``fields`` maps field names to messages."""

    status_code = 400

    def __init__(self, message: str, *, fields: dict | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.code = code


class Conflict(ApplicationError):
    status_code = 409


class NotAllowed(ApplicationError):
    status_code = 403


class NotFound(ApplicationError):
    """Missing, or not the caller's to see: the API does not tell the two apart."""

    status_code = 404
