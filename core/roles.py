"""Roles are Django groups; every permission check goes through these helpers."""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, Group, User
from django.db.models import Exists, OuterRef, QuerySet

ANNOTATOR, CURATOR, SCIENTIST = "annotator", "curator", "scientist"
ALL_ROLES = (ANNOTATOR, CURATOR, SCIENTIST)
# Not a group: a superuser. Accounts name it as a role so admins can be listed and created.
ADMIN = "admin"
ACCOUNT_ROLES = (ANNOTATOR, CURATOR, SCIENTIST, ADMIN)

# Django model permissions each role's group holds, for the admin (the API checks roles instead).
# Curators run campaigns, criteria, guidelines, samples and imports there; they see the rows that
# only services write; nobody deletes through the admin. Granted by annotation.seed on every migrate.
ROLE_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    CURATOR: {
        "annotation": (
            "view_tasktype", "view_criterion", "change_criterion", "view_guidelineversion", "add_guidelineversion",
            "view_sample", "change_sample", "view_candidate", "view_campaign", "add_campaign", "change_campaign",
            "view_item", "view_lease", "view_judgment", "view_adjudication", "view_importbatch", "add_importbatch",
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
    and filter it per request (see ``core.authentication``)."""
    return rows.annotate(**{
        f"has_role_{role}": Exists(Group.objects.filter(name=role, user=OuterRef(user_field))) for role in ALL_ROLES
    })


def remember_roles(user: User, row) -> None:
    """Keep the flags ``with_roles`` read on ``row`` as ``user``'s roles (what ``roles_of`` returns)."""
    user._role_cache = frozenset(role for role in ALL_ROLES if getattr(row, f"has_role_{role}"))


def has_role(user: User | AnonymousUser, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def account_role(user: User) -> str | None:
    """The one role an account is listed and managed under: admin for superusers, else the
    strongest group it holds (an account made by hand may hold several)."""
    if user.is_superuser:
        return ADMIN
    held = roles_of(user)
    return next((role for role in (SCIENTIST, CURATOR, ANNOTATOR) if role in held), None)


def roles_manageable_by(user: User | AnonymousUser) -> frozenset[str]:
    """The account roles ``user`` may create, edit, deactivate and reset: admins every role,
    curators annotators only (their team), everyone else none."""
    if user.is_authenticated and user.is_superuser:
        return frozenset(ACCOUNT_ROLES)
    return frozenset({ANNOTATOR}) if has_role(user, CURATOR) else frozenset()


def may_manage(by: User | AnonymousUser, user: User) -> bool:
    """Whether ``by`` may edit, deactivate and reset ``user``'s account. An account without any
    role is an admin's to sort out."""
    role = account_role(user)
    return role in roles_manageable_by(by) if role else bool(by.is_authenticated and by.is_superuser)


def ensure_groups() -> None:
    for name in ALL_ROLES:
        Group.objects.get_or_create(name=name)
