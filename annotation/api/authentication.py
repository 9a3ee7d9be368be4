"""Token authentication with an expiry (kept apart from the views: DRF imports this module while
its own views module is still loading)."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


def token_expired(token: Token) -> bool:
    return token.created < timezone.now() - timedelta(seconds=settings.TOKEN_TTL_SECONDS)


class TokenRefused(exceptions.AuthenticationFailed):
    """A token was sent but is unknown, inactive or expired: 401 (annotation.api.errors), so a
    script can tell "get a new token" from "your role does not allow this" (403)."""

    default_code = "token_invalid"


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than TOKEN_TTL_SECONDS."""

    def authenticate_credentials(self, key):
        try:
            user, token = super().authenticate_credentials(key)
        except exceptions.AuthenticationFailed as exc:
            raise TokenRefused(exc.detail) from exc
        if token_expired(token):
            token.delete()  # dead anyway; the next token request issues a fresh key
            raise TokenRefused("Token has expired.", code="token_expired")
        return user, token
