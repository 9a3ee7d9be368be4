"""The annotation API during a database restart: a clear 503 to retry, and a retry that lands once."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Judgment
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_submit_during_a_restart_is_told_to_retry_and_the_retry_lands_once(database_outage):
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure", "aesthetics"])
    ann = make_user("ann", "annotator")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ann).key}")
    item = api.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    left = item["candidates"][0]["id"]
    body = {"answers": {"structure": left, "aesthetics": "tie"}, "idempotency_key": "restart-1", "active_ms": 900}
    staff = Client()
    staff.force_login(make_user("sci", "scientist"))

    database_outage.start()
    refused = api.post(f"/api/leases/{item['lease']}/submit/", body, format="json")
    page = staff.get("/dashboard/")
    database_outage.end()

    assert refused.status_code == 503 and refused["Retry-After"] == "5"
    assert refused.json() == {"message": "The database is unavailable for a moment; retry shortly.",
                              "code": "database_unavailable", "fields": {}}
    assert page.status_code == 503 and page["Retry-After"] == "5" and b"retry shortly" in page.content
    stored = api.post(f"/api/leases/{item['lease']}/submit/", body, format="json")
    replay = api.post(f"/api/leases/{item['lease']}/submit/", body, format="json")
    assert (stored.status_code, replay.status_code) == (201, 200)
    assert sorted(j["id"] for j in stored.json()) == sorted(j["id"] for j in replay.json())
    assert Judgment.objects.filter(annotator=ann).count() == 2
