"""Living with a database that goes away for a moment (a restart, a failover, a dropped socket)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

#: What Django raises when the database went away under a connection or refuses new ones while
#: it comes back (also lock and statement timeouts: worth a retry too).
CONNECTION_ERRORS = (OperationalError, InterfaceError)


def with_reconnect(write: Callable[[], T], *, patience_s: float) -> T:
    """Run ``write``; when the database connection broke, drop it and try again on a new one,
    backing off, until ``patience_s`` seconds have passed (then the error is raised).

    Inside a caller's transaction there is nothing to retry (the transaction died with the
    connection), so the error is raised at once.
    """
    deadline, delay = time.monotonic() + patience_s, 0.1
    while True:
        try:
            return write()
        except CONNECTION_ERRORS:
            if connection.in_atomic_block:
                raise
            connection.close()  # Django opens a fresh connection on the next query
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
