"""Accounts: curators create annotators, admins (superusers) create every role; deactivate,
reactivate, and hand out set-password links (also e-mailed when the account has an address).

One role per account (``roles.account_role``): the group it belongs to, or admin for superusers.
Who may touch whom is ``roles.roles_manageable_by``; every write here checks it, so the API, the
dashboard and any script get the same answer.
"""
from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from core.errors import ApplicationError, NotAllowed
from core.roles import ADMIN, ALL_ROLES, CURATOR, account_role, may_manage, roles_manageable_by


def _check_may_grant(by: User, role: str) -> None:
    if role not in roles_manageable_by(by):
        allowed = ", ".join(sorted(roles_manageable_by(by))) or "none"
        raise NotAllowed(f"You cannot give accounts the {role} role.", code="forbidden",
                         fields={"role": [f"Roles you can give: {allowed}."]})


def _check_may_manage(by: User, user: User) -> None:
    if not may_manage(by, user):
        role = account_role(user) or "no role"
        raise NotAllowed(f"You cannot manage {user.username}'s account ({role}).", code="forbidden")


def _apply_role(user: User, role: str) -> None:
    # Curators are staff so the admin (the power tool whose permissions match their group) opens.
    user.is_superuser = role == ADMIN
    user.is_staff = role in (ADMIN, CURATOR)
    user.save(update_fields=["is_superuser", "is_staff"])
    user.groups.remove(*Group.objects.filter(name__in=ALL_ROLES))
    if role != ADMIN:
        user.groups.add(Group.objects.get(name=role))
    user.__dict__.pop("_role_cache", None)


def _clean_email(email: str) -> str:
    email = email.strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ApplicationError("Invalid e-mail address.", fields={"email": ["Enter a valid e-mail address."]}) from None
    return email


@transaction.atomic
def account_create(*, by: User, username: str, role: str, email: str = "", first_name: str = "",
                   last_name: str = "", password: str = "") -> User:
    """Create an account with ``role``. Without a password it cannot sign in until its owner sets
    one through ``password_set_link`` (an invitation)."""
    _check_may_grant(by, role)
    username = username.strip()
    fields: dict[str, list[str]] = {}
    try:
        User.username_validator(username)
    except ValidationError as exc:
        fields["username"] = list(exc.messages)
    if not fields and User.objects.filter(username__iexact=username).exists():
        fields["username"] = ["An account with this username already exists."]
    try:
        email = _clean_email(email)
    except ApplicationError as exc:
        fields.update(exc.fields)
    if password:
        try:
            validate_password(password, User(username=username, email=email, first_name=first_name,
                                             last_name=last_name))
        except ValidationError as exc:
            fields["password"] = list(exc.messages)
    if fields:
        raise ApplicationError("The account cannot be created.", fields=fields)
    user = User(username=username, email=email, first_name=first_name.strip(), last_name=last_name.strip())
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    _apply_role(user, role)
    return user


@transaction.atomic
def account_update(*, by: User, user: User, role: str | None = None, is_active: bool | None = None,
                   email: str | None = None) -> User:
    """Change an account's role, e-mail or whether it may sign in. Deactivating ends its API tokens;
    its sessions stop at the next request (inactive users are not loaded from a session)."""
    _check_may_manage(by, user)
    if user.pk == by.pk and (role not in (None, account_role(user)) or is_active is False):
        raise NotAllowed("You cannot change your own role or deactivate yourself.", code="forbidden")
    if email is not None:
        user.email = _clean_email(email)
        user.save(update_fields=["email"])
    if role is not None and role != account_role(user):
        _check_may_grant(by, role)
        _apply_role(user, role)
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
        if not is_active:
            Token.objects.filter(user=user).delete()
    return user


def password_set_link(*, by: User, user: User) -> str:
    """The path of a one-time link where ``user`` chooses a new password (valid for
    ``PASSWORD_RESET_TIMEOUT``; spent once the password changes or the account signs in)."""
    _check_may_manage(by, user)
    if not user.is_active:
        raise ApplicationError("Reactivate the account first.", code="inactive",
                               fields={"is_active": ["An inactive account cannot set a password."]})
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": default_token_generator.make_token(user)})


def password_reset_send(*, by: User, user: User, absolute_link: str) -> bool:
    """E-mail ``absolute_link`` (from ``password_set_link``) to ``user`` when the account has an
    address; returns whether it was sent. The caller hands the link over either way."""
    if not user.email:
        return False
    send_mail(
        subject="Set your OneReward password",
        message=(f"Hello {user.get_username()},\n\n{by.get_username()} asked for a new password for your "
                 f"OneReward account. Choose it here:\n\n{absolute_link}\n\nThe link works once."),
        from_email=None, recipient_list=[user.email],
    )
    return True
