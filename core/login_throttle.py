"""Brute-force protection for every password check (login page, admin login, API token).

Failed checks are counted in the cache (Redis in production, so all web processes share the
counts) per account and per client address, in a window that starts at the first failure. Once
either count reaches its limit, the backend refuses that account / address — even with the right
password — until the window ends. A success clears the account's count, never the address's: an
attacker holding one valid account must not reset the counter for guessing others.

Being the authentication backend (not a view mixin) means no login path can forget the check.
"""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from rest_framework.throttling import BaseThrottle


class LoginLocked(PermissionDenied):
    """Too many failed password checks for this account or address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed sign-in attempts; try again later.")
        self.retry_after = retry_after


def client_address(request) -> str:
    """The client's address the way DRF's throttles see it (honours REST_FRAMEWORK NUM_PROXIES)."""
    if request is None:
        return ""
    return BaseThrottle().get_ident(getattr(request, "_request", request)) or ""


def _keys(username: str | None, address: str) -> list[tuple[str, int]]:
    keys = []
    if isinstance(username, str) and username:  # a JSON body may send any type (a 500 otherwise)
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        keys.append((f"login-fail:acct:{digest}", settings.LOGIN_FAILURES_PER_ACCOUNT))
    if address:
        keys.append((f"login-fail:addr:{address}", settings.LOGIN_FAILURES_PER_ADDRESS))
    return keys


def lockout_seconds(request, username: str | None) -> int:
    """0 when this account and address may try a password; else seconds until they may again."""
    for key, limit in _keys(username, client_address(request)):
        if (cache.get(key) or 0) >= limit:
            ttl = getattr(cache, "ttl", None)  # Redis knows the key's TTL; other caches: the window
            remaining = ttl(key) if ttl else None
            return int(remaining) if remaining and remaining > 0 else settings.LOGIN_LOCKOUT_SECONDS
    return 0


def record_failure(request, username: str | None) -> None:
    for key, _ in _keys(username, client_address(request)):
        cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)  # the window opens at the first failure
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr: start a new window
            cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


def record_success(username: str) -> None:
    for key, _ in _keys(username, ""):
        cache.delete(key)


class ThrottledModelBackend(ModelBackend):
    """ModelBackend behind the failure counters. Raising PermissionDenied stops Django's
    ``authenticate`` from trying further backends and reports the attempt as failed."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self._username_field())
        if username is None or password is None:
            return None
        wait = lockout_seconds(request, username)
        if wait:
            raise LoginLocked(wait)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(request, username)
        else:
            record_success(username)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD


class ThrottledLoginView(LoginView):
    """The sign-in page: while the account or address is locked out, answer 429 with a message
    instead of the usual "wrong password" (the backend refuses the check either way)."""

    def post(self, request, *args, **kwargs):
        wait = lockout_seconds(request, request.POST.get("username"))
        if not wait:
            return super().post(request, *args, **kwargs)
        form = self.get_form()
        form.is_valid()  # the backend refuses without checking the password
        minutes = max(1, round(wait / 60))
        form.errors.clear()
        form.errors[NON_FIELD_ERRORS] = form.error_class(
            [f"Too many failed sign-in attempts. Try again in about {minutes} minute{'s' if minutes > 1 else ''}."])
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(wait)
        return response
