"""Roles are Django groups; every permission check goes through these helpers."""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, Group, User

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


def has_role(user: User | AnonymousUser, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def ensure_groups() -> None:
    for name in ALL_ROLES:
        Group.objects.get_or_create(name=name)
