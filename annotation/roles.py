"""Roles are Django groups; every permission check goes through these helpers."""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, Group, User
from django.db.models import Exists, OuterRef, QuerySet

ANNOTATOR, CURATOR, SCIENTIST = "annotator", "curator", "scientist"
ALL_ROLES = (ANNOTATOR, CURATOR, SCIENTIST)

# Django model permissions each role's group holds, for the admin (the API checks roles instead).
# Curators run campaigns, criteria, guidelines, samples and imports there; they see the rows that
# only services write; nobody deletes through the admin. Granted by annotation.seed on every migrate.
ROLE_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    CURATOR: {
        "annotation": (
            "view_tasktype", "view_criterion", "change_criterion", "view_guidelineversion", "add_guidelineversion",
            "view_sample", "change_sample", "view_candidate", "view_campaign", "add_campaign", "change_campaign",
            "view_item", "view_lease", "view_judgment", "view_importbatch", "add_importbatch",
            "view_datasetsnapshot",
        ),
    },
}
# The admin's import view (annotation.admin.SampleAdmin.import_view) requires this permission.
IMPORT_PERMISSION = "annotation.add_importbatch"


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


def with_roles(rows: QuerySet, user_field: str = "pk") -> QuerySet:
    """``rows`` (users, or rows naming a user in ``user_field``) with one role flag per role,
    read in the same statement: every API request needs the caller's roles. Building these
    subqueries costs more Python than a second query would, so callers build the queryset once
    and filter it per request (see ``annotation.api.authentication``)."""
    return rows.annotate(**{
        f"has_role_{role}": Exists(Group.objects.filter(name=role, user=OuterRef(user_field))) for role in ALL_ROLES
    })


def remember_roles(user: User, row) -> None:
    """Keep the flags ``with_roles`` read on ``row`` as ``user``'s roles (what ``roles_of`` returns)."""
    user._role_cache = frozenset(role for role in ALL_ROLES if getattr(row, f"has_role_{role}"))


def has_role(user: User | AnonymousUser, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def ensure_groups() -> None:
    for name in ALL_ROLES:
        Group.objects.get_or_create(name=name)
