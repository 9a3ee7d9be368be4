"""The REST API: a role × endpoint permission matrix, the annotate flow, errors, schema."""
from __future__ import annotations

import uuid

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Judgment, Lease
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "annotator", "curator", "scientist")


@pytest.fixture
def world():
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    users = {r: make_user(r, r) for r in ROLES[1:]}
    return campaign, users


def client_for(role, users) -> APIClient:
    c = APIClient()
    if role != "anonymous":
        c.force_authenticate(users[role])
    return c


# (method, path template, body, roles allowed); "{c}" is the campaign id.
MATRIX = [
    ("get", "/api/me/", None, {"annotator", "curator", "scientist"}),
    ("get", "/api/task-types/", None, {"annotator", "curator", "scientist"}),
    ("get", "/api/criteria/", None, {"annotator", "curator", "scientist"}),
    ("post", "/api/criteria/structure/guidelines/", {"body_markdown": "new"}, {"curator"}),
    ("get", "/api/campaigns/", None, {"annotator", "curator", "scientist"}),
    ("post", "/api/campaigns/", {"name": "n", "task_type": "fill"}, {"curator"}),
    ("get", "/api/campaigns/{c}/", None, {"annotator", "curator", "scientist"}),
    ("get", "/api/campaigns/{c}/progress/", None, {"annotator", "curator", "scientist"}),
    ("get", "/api/campaigns/{c}/quality/", None, {"curator", "scientist"}),
    ("post", "/api/campaigns/{c}/next/", {}, {"annotator"}),
    ("get", "/api/campaigns/{c}/last/", None, {"annotator"}),
    ("post", "/api/campaigns/{c}/pause/", None, {"curator"}),
    ("get", "/api/judgments/", None, {"annotator", "curator", "scientist"}),
    ("get", "/api/samples/", None, {"curator", "scientist"}),
    ("post", "/api/imports/", {}, {"curator"}),
    ("get", "/api/exports/judgments.jsonl", None, {"curator", "scientist"}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_permission_matrix(world, role, method, path, body, allowed):
    campaign, users = world
    response = getattr(client_for(role, users), method)(path.format(c=campaign.pk), body, format="json")
    if role in allowed:
        assert response.status_code not in (401, 403), (role, path, response.content)  # reached the view
    else:
        assert response.status_code == 403, (role, path, response.status_code)


def test_annotators_see_only_their_own_leases_and_judgments(world):
    campaign, users = world
    other = make_user("other", "annotator")
    mine = client_for("annotator", users)
    theirs = APIClient()
    theirs.force_authenticate(other)
    payload = mine.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    cid = payload["candidates"][0]["id"]
    r = mine.post(f"/api/leases/{payload['lease']}/submit/",
                  {"answers": {"structure": cid}, "idempotency_key": "k1"}, format="json")
    assert r.status_code == 201
    assert theirs.get("/api/judgments/").json() == []
    assert len(mine.get("/api/judgments/").json()) == 1
    # Another annotator cannot touch my lease or judgment: they are invisible (404), not forbidden.
    assert theirs.post(f"/api/leases/{payload['lease']}/skip/", {}, format="json").status_code == 404
    jid = Judgment.objects.get().pk
    assert theirs.patch(f"/api/judgments/{jid}/", {"answer": "tie"}, format="json").status_code == 404


def test_full_annotate_flow_with_prefetch_replay_and_skip(world):
    campaign, users = world
    c = client_for("annotator", users)
    first = c.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    ahead = c.post(f"/api/campaigns/{campaign.pk}/next/", {"exclude": [first["lease"]]}, format="json").json()
    assert ahead["item"] != first["item"]
    assert [x["id"] for x in first["candidates"]] == Lease.objects.get(uid=first["lease"]).displayed_order
    assert first["criteria"][0]["slug"] == "structure" and "<p>" in first["criteria"][0]["guideline_html"]
    body = {"answers": {"structure": "tie"}, "idempotency_key": str(uuid.uuid4()), "active_ms": 900}
    assert c.post(f"/api/leases/{first['lease']}/submit/", body, format="json").status_code == 201
    replay = c.post(f"/api/leases/{first['lease']}/submit/", body, format="json")
    assert replay.status_code == 200 and Judgment.objects.count() == 1
    assert c.post(f"/api/leases/{ahead['lease']}/skip/", {"reason": "broken"}, format="json").json()["state"] == "skipped"
    assert c.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").status_code == 204
    last = c.get(f"/api/campaigns/{campaign.pk}/last/").json()
    assert last["lease"] == first["lease"] and last["judgments"][0]["choice"] == "tie"


def test_errors_have_one_shape_with_field_messages(world):
    campaign, users = world
    c = client_for("annotator", users)
    lease = c.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()["lease"]
    r = c.post(f"/api/leases/{lease}/submit/", {"answers": {"structure": "sideways"}, "idempotency_key": "k"},
               format="json")
    assert r.status_code == 400
    assert set(r.json()) == {"message", "code", "fields"} and "structure" in r.json()["fields"]["answers"]
    r = c.post(f"/api/leases/{lease}/submit/", {"answers": {}}, format="json")
    assert r.status_code == 400 and {"answers", "idempotency_key"} <= set(r.json()["fields"])
    curator = client_for("curator", users)
    r = curator.post("/api/campaigns/", {"name": "bad", "task_type": "removal", "criteria": ["structure"],
                                         "mode": "pairwise", "candidates_per_item": 3}, format="json")
    assert r.status_code == 400 and {"criteria", "candidates_per_item"} <= set(r.json()["fields"])


def test_curator_creates_and_starts_a_campaign_and_token_auth_works(world):
    _, users = world
    token = Token.objects.create(user=users["curator"])
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    r = c.post("/api/campaigns/", {"name": "via-api", "task_type": "fill", "criteria": ["structure"]}, format="json")
    assert r.status_code == 201 and r.json()["status"] == "draft"
    started = c.post(f"/api/campaigns/{r.json()['id']}/start/")
    assert started.status_code == 200 and started.json()["status"] == "active"
    assert c.post(f"/api/campaigns/{r.json()['id']}/start/").json()["status"] == "active"  # idempotent


def test_openapi_schema_and_docs_are_served(client, world):
    _, users = world
    client.force_login(users["scientist"])
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/campaigns/{id}/next/" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_media_requires_login_and_refuses_traversal(client, world, settings):
    campaign, users = world
    sample = campaign.items.first().sample
    url = f"/media/{sample.source_image.name}"
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(users["annotator"])
    assert client.get(url).status_code == 200
    assert client.get("/media/../config/settings.py").status_code == 404
    assert client.get("/media/%2e%2e/%2e%2e/etc/passwd").status_code == 404
