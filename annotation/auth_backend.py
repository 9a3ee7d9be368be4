"""The sign-in backend: the throttled model backend, and a session's user loaded with its roles."""
from __future__ import annotations

import functools

from django.contrib.auth import get_user_model

from core.login_throttle import ThrottledModelBackend
from core.roles import remember_roles, with_roles


@functools.cache
def _users_with_roles():
    """Built once: the queryset is only ever filtered (cloned), never evaluated itself."""
    return with_roles(get_user_model()._default_manager.all())


class RoleAwareBackend(ThrottledModelBackend):
    """Every browser request loads its user from the session; reading the roles in that same
    statement saves the per-request roles query (the workspace's hot path)."""

    def get_user(self, user_id):
        user = _users_with_roles().filter(pk=user_id).first()
        if user is None:
            return None
        remember_roles(user, user)
        return user if self.user_can_authenticate(user) else None
