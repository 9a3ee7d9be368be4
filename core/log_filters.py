"""Logging filters (wired in ``settings.LOGGING``)."""
from __future__ import annotations

import logging


class OneLineRefusals(logging.Filter):
    """Expected refusals on one line, without a traceback.

    Django logs every 403 (PermissionDenied) and 404 (Http404) with the exception attached, so each
    annotator who opens a page they may not see printed a full traceback, which buried the real
    errors. A refusal is the app working as designed: the status, path and the refusal's own
    message are all an operator needs. Server errors (5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.exc_info and isinstance(status, int) and 400 <= status < 500:
            exc = record.exc_info[1]
            reason = " ".join(str(exc).split()) if exc is not None else ""
            message = " ".join(record.getMessage().split())
            record.msg = f"{message} ({type(exc).__name__}: {reason})" if reason else message
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True
