"""What management commands share: a refused request as one line for ``CommandError``."""
from __future__ import annotations

from core.errors import ApplicationError


def error_line(exc: ApplicationError) -> str:
    """``exc``'s message and its field errors on one line (a command's whole answer to bad input)."""
    details = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in exc.fields.items())
    return f"{exc.message} {details}".strip()
