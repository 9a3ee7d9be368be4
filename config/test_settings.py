"""Settings for the test suite (pyproject: DJANGO_SETTINGS_MODULE): production settings with
test-only secrets and a fast password hasher. Exported into os.environ before config.settings reads
them, so the worker processes that tests start share the same key and salt."""
import os

# Tests talk to PostgreSQL (DATABASE_URL), so config.settings treats them as production and would
# refuse to start without these; fixed values keep pseudonyms stable across the worker and the test.
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-any-deployment-0123456789abcdef")
os.environ.setdefault("ANNOTATOR_ID_SALT", "test-only-annotator-salt")
# The live-server and browser tests speak plain HTTP.
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "false")
# The suite drives the demo (tests/demo) and its seeding, which production leaves out.
os.environ.setdefault("DEMO_APP", "true")
# Every test signs in from 127.0.0.1: suite-wide counts must not lock it out. The tests of the
# limits set low ones themselves.
os.environ.setdefault("LOGIN_FAILURES_PER_ACCOUNT", "100000")
os.environ.setdefault("LOGIN_FAILURES_PER_ADDRESS", "100000")
os.environ.setdefault("THROTTLE_AUTH", "100000/min")
# Concurrent runs share one Redis: keep each run's cache apart (inherited by the Celery workers and
# servers its tests start). Each pytest-xdist process has its own database, so it gets its own prefix
# too: the controller's prefix, inherited by every xdist process, would let one process's cached
# campaign criteria (ids of another database) reach the other.
_CACHE_PREFIX = os.environ.setdefault("TEST_CACHE_KEY_PREFIX", f"test{os.getpid()}")
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER and not _CACHE_PREFIX.endswith(f"-{_XDIST_WORKER}"):
    _CACHE_PREFIX = os.environ["TEST_CACHE_KEY_PREFIX"] = f"{_CACHE_PREFIX}-{_XDIST_WORKER}"

from .settings import *  # noqa: E402, F403

# Hashing thousands of test passwords with PBKDF2 costs minutes; tests only.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = _CACHE_PREFIX  # noqa: F405
