"""Reads for the accounts pages: who has which role, whether they can sign in, where they work."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Prefetch

from core.roles import ADMIN, remember_roles, with_roles

from .models import Campaign


def account_list(*, role: str | None = None, active: bool | None = None, ids: list[int] | None = None) -> list[User]:
    """Every account (or those with ``role`` / ``active`` / primary keys ``ids``), by username, with its roles loaded
    (``roles.roles_of`` answers without a query) and the campaigns it is restricted to in
    ``assigned_campaigns``, newest first. Curators see everyone, to know who is who; which rows
    they may change is ``roles.may_manage``."""
    rows = with_roles(User.objects.all()).prefetch_related(
        Prefetch("campaigns", Campaign.objects.only("id", "name", "status").order_by("-id"),
                 to_attr="assigned_campaigns")
    ).order_by("username")
    if role == ADMIN:
        rows = rows.filter(is_superuser=True)
    elif role:
        rows = rows.filter(groups__name=role, is_superuser=False)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    if active is not None:
        rows = rows.filter(is_active=active)
    users = list(rows)
    for user in users:
        remember_roles(user, user)
    return users
