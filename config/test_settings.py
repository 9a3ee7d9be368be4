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
# Concurrent runs share one Redis: keep each run's counters apart (inherited by its workers).
_CACHE_PREFIX = os.environ.setdefault("TEST_CACHE_KEY_PREFIX", f"test{os.getpid()}")

from .settings import *  # noqa: E402, F403

# Hashing thousands of test passwords with PBKDF2 costs minutes; tests only.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = _CACHE_PREFIX  # noqa: F405
