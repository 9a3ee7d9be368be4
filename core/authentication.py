"""Token authentication with an expiry (kept apart from the views: DRF imports this module while
its own views module is still loading)."""
from __future__ import annotations

import functools
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core.roles import remember_roles, with_roles


def token_expired(token: Token) -> bool:
    return token.created < timezone.now() - timedelta(seconds=settings.TOKEN_TTL_SECONDS)


class TokenRefused(exceptions.AuthenticationFailed):
    """A token was sent but is unknown, inactive or expired: 401 (``core.api_errors``), so a
    script can tell "get a new token" from "your role does not allow this" (403)."""

    default_code = "token_invalid"


@functools.cache
def _tokens_with_roles():
    """Built once: the queryset is only ever filtered (cloned), never evaluated itself."""
    return with_roles(Token.objects.select_related("user"), "user_id")


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than TOKEN_TTL_SECONDS; the user's
    roles are read with the token (one statement, see ``core.roles.with_roles``)."""

    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = _tokens_with_roles().get(key=key)
        except model.DoesNotExist:
            raise TokenRefused("Invalid token.") from None
        if not token.user.is_active:
            raise TokenRefused("User inactive or deleted.")
        if token_expired(token):
            token.delete()  # dead anyway; the next token request issues a fresh key
            raise TokenRefused("Token has expired.", code="token_expired")
        remember_roles(token.user, token)
        return token.user, token
