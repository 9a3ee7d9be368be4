"""Request rate limits that cost one cache round trip: a fixed-window counter per client.

DRF's ``UserRateThrottle`` keeps each client's request times as a pickled list, read and written
back on every request: two Redis round trips and a list to unpickle, filter and pickle again,
about a tenth of the annotator's ``next`` and submit. Here each request increments a counter
named after the client and the current window (``INCR``, with its expiry set in the same
server-side script), so a request costs one round trip and no pickling.

A fixed window counts differently from DRF's sliding one at the edges: a client may make up to
twice the rate across a window boundary (the end of one window and the start of the next), never
more than the rate inside one window. The limits here are a guard against runaway scripts, not a
billing meter, so that edge is acceptable. The rates and scopes stay DRF's (``THROTTLE_USER``,
``THROTTLE_ANON``), and a refused request is the same 429 with ``Retry-After``: the seconds until
the window ends.
"""
from __future__ import annotations

import hashlib
import math

from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCacheClient
from redis.exceptions import NoScriptError
from rest_framework import throttling

# INCR and, on a window's first hit, EXPIRE, in one atomic server-side step: a client that dies
# between the two cannot leave a counter that never expires.
_INCR_WITH_EXPIRY = (
    "local n = redis.call('INCR', KEYS[1]) "
    "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return n"
)
# Redis names a loaded script by its SHA-1.
_INCR_WITH_EXPIRY_SHA = hashlib.sha1(_INCR_WITH_EXPIRY.encode(), usedforsecurity=False).hexdigest()


def count_hit(cache: BaseCache, key: str, seconds: int) -> int:
    """Add one to the counter ``key`` (created to live ``seconds``) and return its new value.

    One round trip on Django's Redis cache: the script runs by its SHA (``EVALSHA``); only when
    the server does not know it yet (first use, or after a restart) is it sent whole (``EVAL``,
    which also keeps it there). Any other backend (the local-memory cache of development and
    some tests) gets ``add`` then ``incr``: correct, in two calls.
    """
    # Django's RedisCache keeps its redis-py client factory in ``_cache`` (asked through the
    # ``django.core.cache.cache`` proxy too, which an isinstance test on the proxy would miss).
    redis_cache = getattr(cache, "_cache", None)
    if isinstance(redis_cache, RedisCacheClient):
        full_key = cache.make_key(key)  # the key is ours: no need to validate it for memcached
        client = redis_cache.get_client(full_key, write=True)
        try:
            return int(client.evalsha(_INCR_WITH_EXPIRY_SHA, 1, full_key, seconds))
        except NoScriptError:
            return int(client.eval(_INCR_WITH_EXPIRY, 1, full_key, seconds))
    cache.add(key, 0, seconds)
    try:
        return cache.incr(key)
    except ValueError:  # the counter expired between the two calls: this hit starts the next one
        cache.add(key, 1, seconds)
        return 1


class FixedWindowThrottleMixin:
    """``allow_request`` and ``wait`` of a DRF ``SimpleRateThrottle`` as a fixed-window counter
    (see the module's docstring); the subclass's ``scope`` and ``get_cache_key`` say whom it counts."""

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:  # this throttle does not apply (e.g. the anonymous one to a signed-in user)
            return True
        now = self.timer()
        window = int(now // self.duration)
        self._window_left = (window + 1) * self.duration - now
        return count_hit(self.cache, f"{key}:w{window}", self.duration) <= self.num_requests

    def wait(self) -> int:
        """Whole seconds until the current window ends (``Retry-After``; at least 1)."""
        return max(1, math.ceil(self._window_left))


class UserRateThrottle(FixedWindowThrottleMixin, throttling.UserRateThrottle):
    """Per signed-in user (anonymous requests per address), rate ``user`` (``THROTTLE_USER``)."""


class AnonRateThrottle(FixedWindowThrottleMixin, throttling.AnonRateThrottle):
    """Per client address for anonymous requests only, rate ``anon`` (``THROTTLE_ANON``)."""
