"""Token authentication with an expiry (kept apart from the views: DRF imports this module while
its own views module is still loading)."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core.roles import ALL_ROLES, remember_roles
from core.rows import Columns, cache_related, fetch


def token_expired(token: Token) -> bool:
    return token.created < timezone.now() - timedelta(seconds=settings.TOKEN_TTL_SECONDS)


class TokenRefused(exceptions.AuthenticationFailed):
    """A token was sent but is unknown, inactive or expired: 401 (``core.api_errors``), so a
    script can tell "get a new token" from "your role does not allow this" (403)."""

    default_code = "token_invalid"


_TOKEN, _USER = Columns(Token, "t"), Columns(get_user_model(), "u")
# One flag per role, in ALL_ROLES order (what ``core.roles.with_roles`` reads through the ORM).
_ROLE_FLAGS = ", ".join(
    "EXISTS (SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id "
    "WHERE ug.user_id = u.id AND g.name = %s)" for _ in ALL_ROLES
)


def _token_with_roles(key: str) -> Token | None:
    """The token with its user and the user's roles, in one statement written as SQL: every
    API request runs it, and the ORM's compile cost more Python than the rest of a small request."""
    rows = fetch(
        f"SELECT {_TOKEN.sql}, {_USER.sql}, {_ROLE_FLAGS} FROM authtoken_token t "  # noqa: S608 (fixed SQL, values are parameters)
        "JOIN auth_user u ON u.id = t.user_id WHERE t.key = %s",
        [*ALL_ROLES, key],
    )
    if not rows:
        return None
    token, user = _TOKEN.load(rows[0]), _USER.load(rows[0], _TOKEN.width)
    flags = rows[0][_TOKEN.width + _USER.width:]
    remember_roles(user, SimpleNamespace(**{f"has_role_{role}": bool(flag) for role, flag in zip(ALL_ROLES, flags,
                                                                                                  strict=True)}))
    cache_related(token, "user", user)
    return token


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than TOKEN_TTL_SECONDS; the user's
    roles are read with the token (one statement)."""

    def authenticate_credentials(self, key):
        token = _token_with_roles(key)
        if token is None:
            raise TokenRefused("Invalid token.")
        if not token.user.is_active:
            raise TokenRefused("User inactive or deleted.")
        if token_expired(token):
            token.delete()  # dead anyway; the next token request issues a fresh key
            raise TokenRefused("Token has expired.", code="token_expired")
        return token.user, token
