"""Roles are Django groups; every permission check goes through these helpers."""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, Group, User

ANNOTATOR, CURATOR, SCIENTIST = "annotator", "curator", "scientist"
ALL_ROLES = (ANNOTATOR, CURATOR, SCIENTIST)


def roles_of(user: User | AnonymousUser) -> frozenset[str]:
    """The role names of ``user`` (superusers hold every role)."""
    if not user.is_authenticated:
        return frozenset()
    if user.is_superuser:
        return frozenset(ALL_ROLES)
    cached = getattr(user, "_role_cache", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        user._role_cache = cached
    return cached


def has_role(user: User | AnonymousUser, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def ensure_groups() -> None:
    for name in ALL_ROLES:
        Group.objects.get_or_create(name=name)
