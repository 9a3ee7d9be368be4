"""Concurrent test processes share one Redis and one PostgreSQL server; each keeps its own cache keys."""
import os

from django.conf import settings


def test_each_xdist_process_has_its_own_cache_prefix():
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    assert prefix == os.environ["TEST_CACHE_KEY_PREFIX"]  # what the workers and servers it starts inherit
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:  # under -n N: the controller's prefix plus this process's id, never the bare shared one
        assert prefix.endswith(f"-{worker}")
