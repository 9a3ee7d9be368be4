"""An annotator's own progress in items, releasing an unused lease (the workspace's page-leave
beacon: session cookie + CSRF token in a form body), and a campaign's skip presets."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Item, ItemStatus, Lease, LeaseState, default_skip_reasons
from annotation.services.queue import lease_next
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def _submit(client: APIClient, lease: Lease) -> None:
    answers = {c.slug: "tie" for c in lease.item.campaign.criteria.all()}
    resp = client.post(f"/api/leases/{lease.uid}/submit/", {"answers": answers, "idempotency_key": str(lease.uid)},
                       format="json")
    assert resp.status_code == 201, resp.content


def test_progress_counts_items_left_for_this_annotator_then_items_left_for_others(settings):
    settings.PROGRESS_CACHE_SECONDS = 0
    campaign = make_campaign(n_samples=3, overlap=2, criteria=["structure"])
    ann, other = make_user("ann", "annotator"), make_user("other", "annotator")
    client = APIClient()
    client.force_authenticate(ann)
    url = f"/api/campaigns/{campaign.pk}/progress/"

    start = client.get(url).json()
    assert (start["items_total"], start["mine_left"], start["mine_submitted"]) == (3, 3, 0)
    assert start["items_left_for_others"] == 3

    held = lease_next(campaign=campaign, annotator=ann)
    assert client.get(url).json()["mine_left"] == 3  # a held item is still left for its holder
    lease_next(campaign=campaign, annotator=other)  # someone else's lease takes nothing from ann
    assert client.get(url).json()["mine_left"] == 3

    _submit(client, held)
    after_one = client.get(url).json()
    assert (after_one["mine_left"], after_one["mine_submitted"]) == (2, 1)
    for _ in range(2):
        _submit(client, lease_next(campaign=campaign, annotator=ann, exclude=[]))
    done = client.get(url).json()
    # Each item wants two judgments: ann's part is done, every item still waits for another annotator.
    assert (done["mine_left"], done["mine_submitted"], done["items_left_for_others"]) == (0, 3, 3)
    assert lease_next(campaign=campaign, annotator=ann) is None


def test_the_home_page_lists_only_campaigns_with_work_for_the_annotator(settings):
    settings.PROGRESS_CACHE_SECONDS = 0
    busy = make_campaign(n_samples=1, overlap=2, criteria=["structure"], name="still-open")
    done = make_campaign(n_samples=1, overlap=2, criteria=["structure"], name="done-for-ann")
    ann = make_user("ann", "annotator")
    api = APIClient()
    api.force_authenticate(ann)
    _submit(api, lease_next(campaign=done, annotator=ann))
    web = Client()
    web.force_login(ann)
    page = web.get("/").content.decode()
    assert f'href="/annotate/{busy.pk}/"' in page and "1 left for you" in page
    assert f'href="/annotate/{done.pk}/"' not in page  # done for ann, though it still wants a judgment
    assert "Done for you" in page and "done-for-ann" in page


@pytest.mark.parametrize(("role", "home"), [("curator", "/dashboard/campaigns/"), ("scientist", "/dashboard/")])
def test_staff_roles_get_their_own_home(role, home):
    web = Client()
    web.force_login(make_user(role, role))
    resp = web.get("/")
    assert resp.status_code == 302 and resp["Location"] == home


# --- release -------------------------------------------------------------------------------------

def _csrf_session(user) -> tuple[Client, str]:
    """A browser-like client that enforces CSRF, signed in, with its CSRF token."""
    web = Client(enforce_csrf_checks=True)
    web.force_login(user)
    web.get("/")  # the home page sets the CSRF cookie
    return web, web.cookies["csrftoken"].value


def test_a_beacon_form_with_the_csrf_token_releases_the_lease_and_the_item_can_come_back():
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    ann = make_user("ann", "annotator")
    lease = lease_next(campaign=campaign, annotator=ann)
    assert Item.objects.get(pk=lease.item_id).status == ItemStatus.FULL
    web, token = _csrf_session(ann)

    resp = web.post(f"/api/leases/{lease.uid}/release/", {"csrfmiddlewaretoken": token})  # multipart, as a beacon
    assert resp.status_code == 204
    assert not Lease.objects.filter(pk=lease.pk).exists()
    item = Item.objects.get(pk=lease.item_id)
    assert (item.status, item.leased_count) == (ItemStatus.OPEN, 0)
    again = lease_next(campaign=campaign, annotator=ann)  # never judged, so it may come back
    assert again.item_id == lease.item_id
    # Released twice: already gone.
    assert web.post(f"/api/leases/{lease.uid}/release/", {"csrfmiddlewaretoken": token}).status_code == 404


def test_release_without_the_csrf_token_is_refused_and_changes_nothing():
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    ann = make_user("ann", "annotator")
    lease = lease_next(campaign=campaign, annotator=ann)
    web, _ = _csrf_session(ann)
    resp = web.post(f"/api/leases/{lease.uid}/release/", {})
    assert resp.status_code == 403 and "CSRF" in resp.json()["message"]
    assert Lease.objects.get(pk=lease.pk).state == LeaseState.ACTIVE


def test_only_the_holder_releases_and_only_an_active_lease():
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    ann, other = make_user("ann", "annotator"), make_user("other", "annotator")
    lease = lease_next(campaign=campaign, annotator=ann)
    thief = APIClient()
    thief.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other).key}")
    assert thief.post(f"/api/leases/{lease.uid}/release/").status_code == 404
    assert Lease.objects.filter(pk=lease.pk).exists()

    owner = APIClient()
    owner.force_authenticate(ann)
    _submit(owner, lease)
    resp = owner.post(f"/api/leases/{lease.uid}/release/")
    assert resp.status_code == 409 and resp.json()["code"] == "lease_not_active"
    assert Lease.objects.get(pk=lease.pk).state == LeaseState.SUBMITTED


# --- skip presets --------------------------------------------------------------------------------

def _create(client: APIClient, name: str, **extra):
    return client.post("/api/campaigns/", {"name": name, "task_type": "fill", **extra}, format="json")


def test_a_campaign_takes_its_skip_presets_and_the_workspace_offers_them():
    curator = APIClient()
    curator.force_authenticate(make_user("cur", "curator"))
    default = _create(curator, "defaults")
    assert default.status_code == 201 and default.json()["skip_reasons"] == default_skip_reasons()
    custom = _create(curator, "custom", skip_reasons=["  Mask is empty ", "Prompt in another language"])
    assert custom.status_code == 201 and custom.json()["skip_reasons"] == ["Mask is empty", "Prompt in another language"]
    assert _create(curator, "free-text-only", skip_reasons=[]).json()["skip_reasons"] == []

    for bad, why in ((["Broken", "broken"], "different"), (["ok", " "], "blank"), (["x" * 201], "200")):
        resp = _create(curator, f"bad-{why}", skip_reasons=bad)
        assert resp.status_code == 400 and "skip_reasons" in resp.json()["fields"], resp.content
        assert why in str(resp.json()["fields"]["skip_reasons"])

    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"], skip_reasons=["Mask is empty"])
    web = Client()
    web.force_login(make_user("ann", "annotator"))
    page = web.get(f"/annotate/{campaign.pk}/").content.decode()
    assert 'data-reason="Mask is empty"' in page and "Other…" in page
