"""Media for API clients: a script with a token fetches every image ``next`` hands it; a bad token
is a 401 in the API's shape; browsers without a session are still sent to the login page."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def _token(user) -> str:
    return Token.objects.create(user=user).key


def test_a_token_fetches_every_image_next_hands_out():
    campaign = make_campaign(n_samples=2, overlap=1)
    key = _token(make_user("script", "annotator"))
    client = Client()  # no session: only the header signs it in
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    payload = client.post(f"/api/campaigns/{campaign.pk}/next/", **auth).json()
    urls = [payload["sample"]["source_url"], payload["sample"]["mask_url"], *(c["url"] for c in payload["candidates"])]
    assert len(urls) == 4 and all(u.startswith("/media/") for u in urls)
    for url in urls:
        response = client.get(url, **auth)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    assert client.get("/media/samples/none.png", **auth).status_code == 404
    assert client.get("/media/../config/settings.py", **auth).status_code == 404


@pytest.mark.parametrize("case", ["expired", "unknown", "inactive"])
def test_a_bad_token_is_a_401_in_the_api_shape(case, settings):
    campaign = make_campaign(n_samples=1, overlap=1)
    url = f"/media/{campaign.items.first().sample.source_image.name}"
    user = make_user("script", "annotator")
    key = _token(user)
    if case == "expired":
        Token.objects.filter(key=key).update(created=timezone.now() - timedelta(seconds=settings.TOKEN_TTL_SECONDS + 5))
    elif case == "unknown":
        key = "0" * 40
    else:
        user.is_active = False
        user.save(update_fields=["is_active"])
    response = Client().get(url, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401 and response["WWW-Authenticate"] == 'Token realm="api"'
    body = response.json()
    assert set(body) == {"message", "code", "fields"}
    assert body["code"] == ("token_expired" if case == "expired" else "token_invalid")
    if case == "expired":
        assert not Token.objects.filter(key=key).exists()  # the API's rule: an expired token is gone


def test_without_a_token_browsers_keep_the_session_rule(settings):
    campaign = make_campaign(n_samples=1, overlap=1)
    url = f"/media/{campaign.items.first().sample.source_image.name}"
    client = Client()
    response = client.get(url)
    assert response.status_code == 302 and response["Location"] == f"{settings.LOGIN_URL}?next={url}"
    # Another scheme is no token: the session decides, as for any browser request.
    assert client.get(url, HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==").status_code == 302
    client.force_login(make_user("viewer", "annotator"))
    assert client.get(url).status_code == 200
    assert client.get(url, HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==").status_code == 200
