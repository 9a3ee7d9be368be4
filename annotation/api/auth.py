"""API tokens: issued by a throttled endpoint, valid for TOKEN_TTL_SECONDS, revoked by logout."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import logout
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from core.authentication import token_expired
from core.login_throttle import lockout_seconds

from .serializers_out import TokenOut


class TokenObtainApi(APIView):
    """POST username + password → {"token", "expires_at"}. Throttled per address (scope "auth");
    failed passwords lock the account and the address out (core.login_throttle) → 429."""

    authentication_classes = ()
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=AuthTokenSerializer, responses=TokenOut)
    def post(self, request):
        wait = lockout_seconds(request, request.data.get("username") if hasattr(request.data, "get") else None)
        if wait:
            raise exceptions.Throttled(wait=wait, detail="Too many failed sign-in attempts; try again later.")
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        if token_expired(token):
            token.delete()
            token = Token.objects.create(user=user)
        expires_at = token.created + timedelta(seconds=settings.TOKEN_TTL_SECONDS)
        return Response({"token": token.key, "expires_at": expires_at.isoformat()})


class LogoutApi(APIView):
    """Revoke the caller's API token (and end the session, if the call came with one)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        Token.objects.filter(user=request.user).delete()
        if request.session.session_key:
            logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)
