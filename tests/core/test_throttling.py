"""The API's rate limits (core.throttling): a fixed-window counter per client that holds the
limit, answers 429 with Retry-After, counts each user apart, costs one Redis round trip per
request, and works the same on the local-memory cache."""
from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
import redis.connection
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCacheClient
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from core import throttling
from core.throttling import AnonRateThrottle, UserRateThrottle, count_hit
from tests.factories import make_user

pytestmark = pytest.mark.django_db

WINDOW = 60


@pytest.fixture
def clock(monkeypatch):
    """The throttles' clock, held 15 s into the current minute (so no window ends mid-test);
    ``clock.now`` moves it."""

    class Clock:
        now = (time.time() // WINDOW) * WINDOW + 15

    monkeypatch.setattr(UserRateThrottle, "timer", lambda self: Clock.now)
    monkeypatch.setattr(AnonRateThrottle, "timer", lambda self: Clock.now)
    return Clock


@pytest.fixture
def low_rates(monkeypatch):
    rates = {"user": "3/min", "anon": "2/min"}  # WINDOW seconds
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", rates)
    return rates


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@contextmanager
def redis_round_trips():
    """The commands redis-py sends, one entry per write to the server (a pipeline is one)."""
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, *args, **kwargs):
        sent.append(command if isinstance(command, bytes) else b"".join(command))
        return original(self, command, *args, **kwargs)

    redis.connection.AbstractConnection.send_packed_command = counting
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = original


def test_the_user_limit_holds_then_429_with_retry_after_and_each_user_counts_apart(clock, low_rates):
    alice, bob = token_client(make_user("alice", "annotator")), token_client(make_user("bob", "annotator"))
    assert [alice.get("/api/me/").status_code for _ in range(3)] == [200, 200, 200]
    refused = alice.get("/api/me/")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "45"  # the window's 60 s, 15 s of them gone
    assert refused.json()["code"] == "throttled"
    assert bob.get("/api/me/").status_code == 200  # another user's counter

    clock.now += 40
    assert alice.get("/api/me/")["Retry-After"] == "5"
    clock.now += 5  # the next window
    assert alice.get("/api/me/").status_code == 200


def test_an_api_request_costs_one_redis_round_trip_for_its_rate_limit(clock):
    assert isinstance(getattr(cache, "_cache", None), RedisCacheClient), "the suite's cache is Redis (REDIS_URL)"
    client = token_client(make_user("me", "annotator"))
    assert client.get("/api/me/").status_code == 200  # the first one may load the script
    with redis_round_trips() as sent:
        assert client.get("/api/me/").status_code == 200
    assert len(sent) == 1 and b"EVALSHA" in sent[0], sent


def test_the_counter_expires_with_its_window_and_survives_a_server_that_forgot_the_script(monkeypatch):
    key = f"throttle-test-{time.time_ns()}"
    assert [count_hit(cache, key, WINDOW) for _ in range(3)] == [1, 2, 3]
    ttl = cache._cache.get_client().ttl(cache.make_key(key))
    assert 0 < ttl <= WINDOW
    # A Redis restarted since the script was loaded answers NOSCRIPT: the script is sent whole.
    monkeypatch.setattr(throttling, "_INCR_WITH_EXPIRY_SHA", "0" * 40)
    with redis_round_trips() as sent:
        assert count_hit(cache, key, WINDOW) == 4
    assert len(sent) == 2 and b"\r\nEVAL\r\n" in sent[1]
    cache.delete(key)


@pytest.mark.parametrize("backend", ["redis", "locmem"])
def test_the_anonymous_limit_counts_per_address_on_either_cache(backend, settings, clock, low_rates):
    if backend == "locmem":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                       "LOCATION": f"throttle-{time.time_ns()}"}}

    class Open(APIView):
        permission_classes = [AllowAny]
        throttle_classes = [AnonRateThrottle]

        def get(self, request):
            return Response({"ok": True})

    view, factory = Open.as_view(), APIRequestFactory()
    address = f"10.{time.time_ns() % 250}.0.1"  # a fresh counter on the shared Redis
    codes = [view(factory.get("/", REMOTE_ADDR=address)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert view(factory.get("/", REMOTE_ADDR=address))["Retry-After"] == "45"
    assert view(factory.get("/", REMOTE_ADDR="10.250.0.2")).status_code == 200  # another address
