"""Accounts: /api/users/ for curators (their annotators) and admins (everyone), invitations,
deactivation and set-password links through the real reset views; the guideline preview."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def people():
    admin = User.objects.create_superuser("root", "root@example.org", "pw-test-1234")
    return {"admin": admin, **{r: make_user(r, r) for r in ("annotator", "curator", "scientist")}}


def test_curator_invites_an_annotator_who_sets_a_password_and_signs_in(people):
    curator = api_as(people["curator"])
    created = curator.post("/api/users/", {"username": "newbie", "role": "annotator", "email": "n@example.org"},
                           format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["role"] == "annotator" and body["is_active"] and body["can_manage"] and body["emailed"]
    user = User.objects.get(username="newbie")
    assert not user.has_usable_password() and user.groups.filter(name="annotator").exists() and not user.is_staff

    # The console backend in production; the test backend here: the e-mail carries the same link.
    (message,) = mail.outbox
    assert message.to == ["n@example.org"] and body["set_password_url"] in message.body
    path = re.sub(r"^https?://[^/]+", "", body["set_password_url"])
    browser = Client()
    form_page = browser.get(path, follow=True)
    assert form_page.status_code == 200 and b"Choose a password" in form_page.content
    done = browser.post(form_page.redirect_chain[-1][0], {"new_password1": "a-long-new-secret-9",
                                                          "new_password2": "a-long-new-secret-9"}, follow=True)
    assert b"Your password is set." in done.content
    assert Client().login(username="newbie", password="a-long-new-secret-9")
    # The link is spent once the password changed.
    assert b"expired or was already used" in Client().get(path, follow=True).content


@pytest.mark.parametrize("role", ["curator", "scientist", "admin"])
def test_a_curator_cannot_create_or_edit_other_roles(people, role):
    curator = api_as(people["curator"])
    refused = curator.post("/api/users/", {"username": "x", "role": role, "password": "a-long-new-secret-9"},
                           format="json")
    assert refused.status_code == 403 and refused.json()["fields"] == {"role": ["Roles you can give: annotator."]}
    assert not User.objects.filter(username="x").exists()
    target = people[role] if role != "curator" else make_user("cur2", "curator")
    for call in (lambda: curator.patch(f"/api/users/{target.pk}/", {"is_active": False}, format="json"),
                 lambda: curator.post(f"/api/users/{target.pk}/reset-password/")):
        assert call().status_code == 403
    target.refresh_from_db()
    assert target.is_active
    # ... nor turn an annotator into one.
    promote = curator.patch(f"/api/users/{people['annotator'].pk}/", {"role": role}, format="json")
    assert promote.status_code == 403 and not people["annotator"].groups.filter(name=role).exists()


def test_admin_creates_curators_and_scientists_and_changes_roles(people):
    admin = api_as(people["admin"])
    cur = admin.post("/api/users/", {"username": "cur9", "role": "curator", "password": "a-long-new-secret-9"},
                     format="json")
    assert cur.status_code == 201 and "set_password_url" not in cur.json()
    user = User.objects.get(username="cur9")
    assert user.is_staff and not user.is_superuser and list(user.groups.values_list("name", flat=True)) == ["curator"]
    moved = admin.patch(f"/api/users/{user.pk}/", {"role": "scientist"}, format="json").json()
    user.refresh_from_db()
    assert moved["role"] == "scientist" and not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["scientist"]
    made_admin = admin.patch(f"/api/users/{user.pk}/", {"role": "admin"}, format="json").json()
    user.refresh_from_db()
    assert made_admin["role"] == "admin" and user.is_superuser and not user.groups.exists()
    # Nobody locks themselves out.
    self_off = admin.patch(f"/api/users/{people['admin'].pk}/", {"is_active": False}, format="json")
    assert self_off.status_code == 403


def test_deactivated_annotator_loses_session_and_token_and_is_reactivated(people):
    annotator = people["annotator"]
    token = Token.objects.create(user=annotator)
    session = Client()
    assert session.login(username="annotator", password="pw-test-1234")
    assert session.get("/").status_code == 200
    curator = api_as(people["curator"])

    off = curator.patch(f"/api/users/{annotator.pk}/", {"is_active": False}, format="json")
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert not Token.objects.filter(pk=token.pk).exists()
    assert session.get("/").status_code == 302  # back to the login page
    assert not Client().login(username="annotator", password="pw-test-1234")
    assert curator.post(f"/api/users/{annotator.pk}/reset-password/").status_code == 400

    on = curator.patch(f"/api/users/{annotator.pk}/", {"is_active": True}, format="json")
    assert on.json()["is_active"] is True and Client().login(username="annotator", password="pw-test-1234")


def test_list_shows_role_status_last_login_and_assigned_campaigns(people):
    campaign = make_campaign(n_samples=1)
    campaign.annotators.add(people["annotator"])
    Client().login(username="annotator", password="pw-test-1234")
    listing = api_as(people["curator"]).get("/api/users/").json()
    rows = {u["username"]: u for u in listing["users"]}
    assert listing["roles_you_can_give"] == ["annotator"]
    assert rows["annotator"]["campaigns"] == [{"id": campaign.pk, "name": campaign.name, "status": campaign.status}]
    assert rows["annotator"]["last_login"] is not None and rows["scientist"]["last_login"] is None
    assert rows["root"]["role"] == "admin" and rows["scientist"]["role"] == "scientist"
    assert rows["annotator"]["can_manage"] and not rows["scientist"]["can_manage"] and not rows["curator"]["can_manage"]
    only = api_as(people["curator"]).get("/api/users/", {"role": "scientist"}).json()["users"]
    assert [u["username"] for u in only] == ["scientist"]
    bad = api_as(people["curator"]).get("/api/users/", {"role": "boss", "active": "maybe"})
    assert bad.status_code == 400 and "role" in bad.json()["fields"]


def test_field_errors_and_who_may_call(people):
    curator = api_as(people["curator"])
    make_user("taken", "annotator")
    bad = curator.post("/api/users/", {"username": "Taken", "role": "annotator", "email": "nope",
                                       "password": "123"}, format="json")
    assert bad.status_code == 400
    fields = bad.json()["fields"]
    assert fields["username"] == ["An account with this username already exists."]
    assert fields["email"] == ["Enter a valid e-mail address."] and fields["password"]
    assert curator.post("/api/users/", {"username": "bad name!", "role": "annotator"}, format="json").json()[
        "fields"]["username"]
    assert curator.post("/api/users/", {"role": "annotator"}, format="json").json()["fields"]["username"]
    assert curator.patch(f"/api/users/{people['annotator'].pk}/", {}, format="json").status_code == 400
    for role in ("annotator", "scientist"):
        client = api_as(people[role])
        assert client.get("/api/users/").status_code == 403
        assert client.post("/api/users/", {"username": "y", "role": "annotator"}, format="json").status_code == 403
    assert APIClient().get("/api/users/").status_code == 403


def test_guideline_preview_renders_sanitised_html(people):
    curator = api_as(people["curator"])
    body = "# Rule\n\n[x](javascript:alert(1)) <script>alert(2)</script>"
    html = curator.post("/api/guidelines/preview/", {"body_markdown": body}, format="json").json()["html"]
    assert "<h1>Rule</h1>" in html and "javascript:" not in html and "<script>" not in html
    assert curator.post("/api/guidelines/preview/", {"body_markdown": ""}, format="json").status_code == 400
    assert api_as(people["annotator"]).post("/api/guidelines/preview/", {"body_markdown": "x"},
                                            format="json").status_code == 403


def test_forgotten_password_is_e_mailed_from_the_login_page(people):
    people["annotator"].email = "ann@example.org"
    people["annotator"].save()
    assert 'href="/accounts/password-reset/"' in Client().get("/accounts/login/").content.decode()
    sent = Client().post("/accounts/password-reset/", {"email": "ann@example.org"}, follow=True)
    assert b"Check your e-mail" in sent.content
    (message,) = mail.outbox
    assert message.to == ["ann@example.org"] and "/accounts/reset/" in message.body
    # An unknown address gets the same answer and no e-mail (no account enumeration).
    assert b"Check your e-mail" in Client().post("/accounts/password-reset/", {"email": "x@example.org"},
                                                 follow=True).content
    assert len(mail.outbox) == 1
