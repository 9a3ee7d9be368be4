"""The annotator hot path over the real API: a fixed, small number of statements per `next` and
per submit whatever the campaign's size, a lease cap that holds under concurrency, 409 on a
campaign that is not running, cached campaign-wide progress, and blind side-by-side payloads."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from annotation.api.serializers import (
    CriterionOut,
    JudgmentOut,
    NextIn,
    SubmitIn,
    _media,
    next_input,
    submit_input,
)
from annotation.api.views import NextItemApi, SubmitApi
from annotation.models import (
    Campaign,
    Choice,
    GuidelineVersion,
    Item,
    ItemCandidate,
    ItemStatus,
    Judgment,
    Lease,
    LeaseState,
)
from annotation.selectors import campaign_progress, criteria_with_guidelines
from annotation.services.campaigns import campaign_set_status
from annotation.services.queue import MAX_ACTIVE_LEASES, lease_next
from tests.core.test_throttling import redis_round_trips
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

# What the targets allow (issue: at most 12 statements per `next` and 8 per submit).
MAX_NEXT_STATEMENTS, MAX_SUBMIT_STATEMENTS = 12, 8
# What they are now (token auth; see the queue ADR); a new statement on the path must be a decision.
# Next: the token, the annotator's lock with the campaign, the held leases with the expiry sweep,
# the take with the lease insert and the item's details. Submit reads the lease, its item,
# campaign and slots in one locking statement and writes the judgments, the lease and the item
# in one more (PostgreSQL).
NEXT_STATEMENTS, SUBMIT_STATEMENTS = 4, 3


def token_client(user) -> APIClient:
    """A client that authenticates as a script would: with a token, on every request."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def statements(ctx: CaptureQueriesContext) -> list[str]:
    """The statements a request ran; savepoints are left out because they come from the test's
    own wrapping transaction, not from the request (in production the request's atomic block
    is the outermost one and issues none)."""
    return [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]


def all_at_once(n: int, call) -> list:
    """Run ``call`` in ``n`` threads released together; returns what each returned. Each thread
    closes its own (persistent) database connection, so the test database can be dropped."""
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run() -> None:
        try:
            barrier.wait()
            results.append(call())
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def one_loop(client: APIClient, campaign: Campaign) -> tuple[list[str], list[str]]:
    """One next + submit, as the workspace does it; returns the statements of each call."""
    with CaptureQueriesContext(connection) as nxt:
        response = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert response.status_code == 200, response.content
    payload = response.json()
    answers = {c["slug"]: payload["candidates"][0]["id"] for c in payload["criteria"]}
    with CaptureQueriesContext(connection) as sub:
        response = client.post(f"/api/leases/{payload['lease']}/submit/",
                               {"answers": answers, "idempotency_key": uuid.uuid4().hex}, format="json")
    assert response.status_code == 201, response.content
    return statements(nxt), statements(sub)


def grow(campaign: Campaign, *, n_items: int, annotators: list) -> None:
    """Add ``n_items`` already-judged items to the live campaign (history in the same campaign,
    as a real large campaign has it), with their leases and judgments, in bulk."""
    template = Item.objects.filter(campaign=campaign).first()
    slots = list(template.slots.order_by("position").values_list("candidate_id", flat=True))
    criteria = list(campaign.criteria.all())
    guidelines = {c.pk: GuidelineVersion.objects.filter(criterion=c).order_by("-version").first() for c in criteria}
    items = Item.objects.bulk_create([
        Item(campaign=campaign, sample=template.sample, status=ItemStatus.DONE,
             leased_count=len(annotators), completed_count=len(annotators)) for _ in range(n_items)
    ])
    ItemCandidate.objects.bulk_create([
        ItemCandidate(item=item, candidate_id=cid, position=pos) for item in items for pos, cid in enumerate(slots)
    ])
    now = timezone.now()
    leases = Lease.objects.bulk_create([
        Lease(item=item, annotator=user, state=LeaseState.SUBMITTED, displayed_order=slots, expires_at=now,
              finished_at=now) for item in items for user in annotators
    ])
    Judgment.objects.bulk_create([
        Judgment(item_id=lease.item_id, lease=lease, criterion=c, annotator_id=lease.annotator_id, choice=Choice.A,
                 displayed_order=slots, guideline_version=guidelines[c.pk], idempotency_key=f"h{lease.pk}")
        for lease in leases for c in criteria
    ])


def test_next_and_submit_cost_a_fixed_small_number_of_statements_at_any_campaign_size():
    campaign = make_campaign(n_samples=6, overlap=1, criteria=["structure", "aesthetics"])
    me = make_user("me", "annotator")
    client = token_client(me)
    one_loop(client, campaign)  # steady state: the campaign's criteria are in the cache from here on
    small = one_loop(client, campaign)
    grow(campaign, n_items=1500, annotators=[make_user(f"h{i}", "annotator") for i in range(2)] + [me])
    assert Judgment.objects.filter(item__campaign=campaign).count() > 9000
    large = one_loop(client, campaign)
    assert len(small[0]) == len(large[0]) == NEXT_STATEMENTS <= MAX_NEXT_STATEMENTS, "\n".join(q[:150] for q in large[0])
    assert len(small[1]) == len(large[1]) == SUBMIT_STATEMENTS <= MAX_SUBMIT_STATEMENTS, "\n".join(q[:150] for q in large[1])
    # Nothing on the path scans the campaign: no aggregate, no guideline rendering per call (the
    # expiry sweep counts only the leases it expired, at most a few hundred, per item).
    for sql in large[0] + large[1]:
        sql = sql.upper().replace("COUNT(*) AS N FROM EXPIRED", "")
        assert "COUNT(" not in sql and "SUM(" not in sql, sql


def test_next_and_submit_make_one_cache_round_trip_each(settings):
    """The rate limit's counter is the only cache call on the path (core.throttling): the
    campaign's criteria come from this process's copy (``selectors.campaign_criteria``)."""
    settings.CRITERIA_LOCAL_CACHE_SECONDS = 60
    campaign = make_campaign(n_samples=3, overlap=1, criteria=["structure", "aesthetics"])
    client = token_client(make_user("me", "annotator"))
    one_loop(client, campaign)
    with redis_round_trips() as sent:
        response = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert response.status_code == 200 and len(sent) == 1, sent
    answers = {c["slug"]: "tie" for c in response.json()["criteria"]}
    with redis_round_trips() as sent:
        done = client.post(f"/api/leases/{response.json()['lease']}/submit/",
                           {"answers": answers, "idempotency_key": "k"}, format="json")
    assert done.status_code == 201 and len(sent) == 1, sent


def test_the_held_lease_comes_back_without_extra_statements():
    campaign = make_campaign(n_samples=3, overlap=1, criteria=["structure"])
    client = token_client(make_user("me", "annotator"))
    first = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    with CaptureQueriesContext(connection) as ctx:
        again = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    assert again["lease"] == first["lease"]
    assert len(statements(ctx)) <= MAX_NEXT_STATEMENTS


@pytest.mark.django_db(transaction=True)
def test_the_lease_cap_holds_under_ten_concurrent_requests_of_one_annotator():
    campaign = make_campaign(n_samples=12, overlap=1, criteria=["structure"])
    me = make_user("me", "annotator")

    def ask():
        lease = lease_next(campaign=campaign, annotator=me)
        return lease.uid if lease else None

    got = all_at_once(10, ask)
    active = Lease.objects.filter(annotator=me, state=LeaseState.ACTIVE).count()
    assert 1 <= active <= MAX_ACTIVE_LEASES
    assert len({uid for uid in got if uid}) == active  # every caller got one of the held leases
    assert Item.objects.filter(campaign=campaign, leased_count__gt=0).count() == active


def test_submits_and_edits_on_a_campaign_that_is_not_running_get_409_and_nothing_is_written():
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    me = make_user("me", "annotator")
    client = token_client(me)
    first = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    cid = first["candidates"][0]["id"]
    done = client.post(f"/api/leases/{first['lease']}/submit/",
                       {"answers": {"structure": cid}, "idempotency_key": "k1"}, format="json")
    assert done.status_code == 201
    second = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    campaign_set_status(campaign=campaign, status="paused")

    body = {"answers": {"structure": "tie"}, "idempotency_key": "k2"}
    refused = client.post(f"/api/leases/{second['lease']}/submit/", body, format="json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "campaign_not_active" and "paused" in refused.json()["message"]
    assert Judgment.objects.count() == 1
    assert Lease.objects.get(uid=second["lease"]).state == LeaseState.ACTIVE

    jid = done.json()[0]["id"]
    edit = client.patch(f"/api/judgments/{jid}/", {"answer": "tie"}, format="json")
    assert edit.status_code == 409 and edit.json()["code"] == "campaign_not_active"
    assert Judgment.objects.get(pk=jid).choice != Choice.TIE

    nxt = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert nxt.status_code == 409 and nxt.json()["code"] == "campaign_not_active"

    campaign_set_status(campaign=campaign, status="active")
    assert client.post(f"/api/leases/{second['lease']}/submit/", body, format="json").status_code == 201


def test_a_replayed_submit_answers_200_with_the_stored_rows():
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    client = token_client(make_user("me", "annotator"))
    lease = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()["lease"]
    body = {"answers": {"structure": "tie"}, "idempotency_key": "same"}
    first = client.post(f"/api/leases/{lease}/submit/", body, format="json")
    replay = client.post(f"/api/leases/{lease}/submit/", body, format="json")
    assert (first.status_code, replay.status_code) == (201, 200)
    assert [j["id"] for j in first.json()] == [j["id"] for j in replay.json()]


def test_campaign_wide_progress_is_shared_from_the_cache_and_the_own_count_is_fresh(settings):
    settings.PROGRESS_CACHE_SECONDS = 60
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"progress-{uuid.uuid4()}"}}
    caches._settings = None  # let the overridden CACHES take effect
    try:
        campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
        me = make_user("me", "annotator")
        before = campaign_progress(campaign, me)
        lease = lease_next(campaign=campaign, annotator=me)
        client = token_client(me)
        response = client.post(f"/api/leases/{lease.uid}/submit/",
                               {"answers": {"structure": "tie"}, "idempotency_key": "k"}, format="json")
        assert response.status_code == 201
        after = campaign_progress(campaign, me)
        assert after["slots_done"] == before["slots_done"] == 0  # within the cache window
        assert (before["mine_submitted"], after["mine_submitted"]) == (0, 1)  # always fresh
        settings.PROGRESS_CACHE_SECONDS = 0
        assert campaign_progress(campaign, me)["slots_done"] == 1
    finally:
        caches._settings = None


def test_side_by_side_hand_outs_are_blind():
    """Annotators never learn which system made which image: no names, no canonical position,
    no lineage, and the screen order is the lease's own shuffle."""
    campaign = make_campaign(n_samples=12, overlap=1, criteria=["structure"], name="ckpt-7 vs production")
    campaign.selection = {**campaign.selection, "opponents": ["policy:ckpt-7", "policy:production"]}
    campaign.description = "ckpt-7 (A) vs production (B)"
    campaign.save()
    me = make_user("me", "annotator")
    client = token_client(me)
    firsts = []
    for k in range(12):
        response = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
        payload = response.json()
        text = json.dumps(payload)
        for secret in ("ckpt-7", "production", "sys0", "sys1", "position", "opponents", "lineage"):
            assert secret not in text, (secret, text)
        firsts.append(payload["candidates"][0]["id"] == min(c["id"] for c in payload["candidates"]))
        client.post(f"/api/leases/{payload['lease']}/submit/",
                    {"answers": {"structure": "tie"}, "idempotency_key": f"k{k}"}, format="json")
    assert 0 < sum(firsts) < len(firsts)  # the screen order is not the canonical one every time
    for path in ("/api/campaigns/", f"/api/campaigns/{campaign.pk}/"):
        text = json.dumps(client.get(path).json())
        assert "ckpt-7" not in text and "opponents" not in text and "production" not in text, text
    staff = APIClient()
    staff.force_authenticate(make_user("cur", "curator"))
    assert staff.get(f"/api/campaigns/{campaign.pk}/").json()["name"] == "ckpt-7 vs production"


def test_expired_leases_are_still_reclaimed_on_the_way():
    campaign = make_campaign(n_samples=1, overlap=1, lease_seconds=10, criteria=["structure"])
    a, b = make_user("a", "annotator"), make_user("b", "annotator")
    la = lease_next(campaign=campaign, annotator=a)
    Lease.objects.filter(pk=la.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = token_client(b).post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert response.status_code == 200 and response.json()["item"] == la.item_id
    assert Lease.objects.get(pk=la.pk).state == LeaseState.EXPIRED


@pytest.mark.django_db(transaction=True)
def test_a_published_guideline_reaches_the_next_hand_out_and_the_judgment_records_it():
    """Criteria and guidelines are cached for the hot path; publishing (or changing a campaign's
    criteria) clears the entry once it commits, so nobody judges under a stale version."""
    from annotation.models import Criterion
    from annotation.services.taxonomy import guideline_publish

    campaign = make_campaign(n_samples=3, overlap=1, criteria=["structure"])
    client = token_client(make_user("me", "annotator"))
    first = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    (crit,) = first["criteria"]
    guideline_publish(criterion=Criterion.objects.get(slug="structure"), body_markdown="Look at the **edges**.")
    body = {"answers": {"structure": "tie"}, "idempotency_key": "k1"}
    stored = client.post(f"/api/leases/{first['lease']}/submit/", body, format="json").json()
    assert stored[0]["guideline_version"] == crit["guideline_version"] + 1
    second = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    assert second["criteria"][0]["guideline_version"] == crit["guideline_version"] + 1
    assert "<strong>edges</strong>" in second["criteria"][0]["guideline_html"]

    campaign.criteria.add(Criterion.objects.get(slug="aesthetics"))
    third = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    assert [c["slug"] for c in third["criteria"]] == ["structure", "aesthetics"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_submit_store_it_once_and_only_one_answers_201():
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    me = make_user("me", "annotator")
    lease = lease_next(campaign=campaign, annotator=me)

    def replay() -> int:
        return token_client(me).post(f"/api/leases/{lease.uid}/submit/",
                                     {"answers": {"structure": "tie"}, "idempotency_key": "once"}, format="json"
                                     ).status_code

    codes = all_at_once(6, replay)
    assert sorted(codes) == [200] * 5 + [201]
    assert Judgment.objects.filter(lease=lease).count() == 1


def test_the_hand_out_and_submit_payloads_equal_what_the_serializers_would_send():
    """``next`` and submit build their payloads as plain dicts (``criteria_out``,
    ``judgments_out``) and read their rows with hand-written SQL; what the client receives must
    stay exactly what ``CriterionOut`` and ``JudgmentOut`` make of the stored rows."""
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure", "aesthetics"])
    client = token_client(make_user("me", "annotator"))
    payload = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    as_json = lambda data: json.loads(JSONRenderer().render(data))  # noqa: E731
    criteria = criteria_with_guidelines(campaign.criteria.all())
    assert payload["criteria"] == as_json(CriterionOut(criteria, many=True).data)
    lease = Lease.objects.select_related("item__sample").get(uid=payload["lease"])
    assert payload["item"] == lease.item_id and payload["sample"]["id"] == lease.item.sample.external_id
    assert [c["id"] for c in payload["candidates"]] == lease.displayed_order
    answers = {"structure": payload["candidates"][1]["id"], "aesthetics": "tie"}
    response = client.post(f"/api/leases/{payload['lease']}/submit/",
                           {"answers": answers, "idempotency_key": "k-1", "active_ms": 1234}, format="json")
    assert response.status_code == 201, response.content
    stored = Judgment.objects.filter(lease=lease).select_related("item", "lease", "criterion", "guideline_version")
    assert response.json() == as_json(JudgmentOut(stored.order_by("id"), many=True).data)
    assert {j["criterion"]: j["active_ms"] for j in response.json()} == {"structure": 1234, "aesthetics": 1234}
    lease.refresh_from_db()
    lease.item.refresh_from_db()
    assert (lease.state, lease.item.status, lease.item.completed_count) == (LeaseState.SUBMITTED, ItemStatus.DONE, 1)


def test_next_refuses_an_unknown_campaign_an_outsider_and_a_paused_campaign_in_the_api_error_shape():
    """``next`` reads the campaign in the annotator-lock statement (``lease_next_in``); the
    refusals stay what they were: 404 for no such campaign, 403 for an annotator not listed on a
    restricted campaign, 409 while it is not running, and none of them leaves a lease behind."""
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    member, outsider = make_user("member", "annotator"), make_user("outsider", "annotator")
    campaign.annotators.add(member)
    missing = token_client(member).post("/api/campaigns/987654/next/", {}, format="json")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.content
    refused = token_client(outsider).post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert refused.status_code == 403 and "not assigned" in refused.json()["message"], refused.content
    campaign_set_status(campaign=campaign, status="paused")
    paused = token_client(member).post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert paused.status_code == 409 and paused.json()["code"] == "campaign_not_active", paused.content
    assert not Lease.objects.filter(item__campaign=campaign).exists()
    campaign_set_status(campaign=campaign, status="active")
    assert token_client(member).post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").status_code == 200


U = str(uuid.uuid4())
NEXT_BODIES = [
    {}, {"exclude": []}, {"exclude": [U]}, {"exclude": [U, str(uuid.uuid4())], "other": 1},
    {"exclude": [U.replace("-", "")]}, {"exclude": ["{" + U + "}"]}, {"exclude": [f"urn:uuid:{U}"]},
    {"exclude": [U.upper()]}, {"exclude": ["nope"]}, {"exclude": [""]}, {"exclude": U}, {"exclude": None},
    {"exclude": [1]}, {"exclude": [None]}, {"exclude": {"a": U}}, {"exclude": [U] * 10}, {"exclude": [U] * 11}, [],
]
SUBMIT_BODIES = [
    {"answers": {"structure": 5}, "idempotency_key": "k"},
    {"answers": {"structure": "tie", "aesthetics": {"best": 1, "worst": 2}}, "idempotency_key": "k" * 64,
     "active_ms": 1234, "extra": "ignored"},
    {"answers": {"structure": "x" * 64}, "idempotency_key": "é-ключ", "active_ms": 0},
    {"answers": {"structure": "x" * 65}, "idempotency_key": "k"}, {"answers": {"s": 1.0}, "idempotency_key": "k"},
    {"answers": {"s": True}, "idempotency_key": "k"}, {"answers": {"s": None}, "idempotency_key": "k"},
    {"answers": {"s": [1, 2]}, "idempotency_key": "k"}, {"answers": {"s": {"best": 1}}, "idempotency_key": "k"},
    {"answers": {"s": {"best": 1, "worst": "2"}}, "idempotency_key": "k"}, {"answers": {}, "idempotency_key": "k"},
    {"answers": [], "idempotency_key": "k"}, {"answers": "tie", "idempotency_key": "k"},
    {"answers": {"s": 1}}, {"answers": {"s": 1}, "idempotency_key": ""}, {"answers": {"s": 1}, "idempotency_key": " "},
    {"answers": {"s": 1}, "idempotency_key": " k "}, {"answers": {"s": 1}, "idempotency_key": "k\tk"},
    {"answers": {"s": 1}, "idempotency_key": "k\x00"}, {"answers": {"s": 1}, "idempotency_key": "k\ud800"},
    {"answers": {"s": 1}, "idempotency_key": "k" * 65}, {"answers": {"s": 1}, "idempotency_key": 42},
    {"answers": {"s": 1}, "idempotency_key": None}, {"answers": {"s": 1}, "idempotency_key": ["k"]},
    {"answers": {"s": 1}, "idempotency_key": "k", "active_ms": -1},
    {"answers": {"s": 1}, "idempotency_key": "k", "active_ms": "12"},
    {"answers": {"s": 1}, "idempotency_key": "k", "active_ms": 12.0},
    {"answers": {"s": 1}, "idempotency_key": "k", "active_ms": True},
    {"answers": {"s": 1}, "idempotency_key": "k", "active_ms": None}, {}, [], "body",
]


def outcome(validate, data):
    try:
        return "valid", dict(validate(data))
    except ValidationError as exc:
        return "invalid", exc.detail


def by_serializer(serializer_class):
    def validate(data):
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data
    return validate


@pytest.mark.parametrize(("fast", "serializer_class", "bodies"), [
    (next_input, NextIn, NEXT_BODIES), (submit_input, SubmitIn, SUBMIT_BODIES),
], ids=["next", "submit"])
def test_the_hot_paths_input_checks_return_what_their_serializers_would(fast, serializer_class, bodies):
    """``next_input`` and ``submit_input`` check the usual bodies without a serializer: over valid
    and invalid bodies alike they must give the serializer's validated data or its exact errors."""
    results = [(outcome(fast, body), outcome(by_serializer(serializer_class), body)) for body in bodies]
    for body, (got, expected) in zip(bodies, results, strict=True):
        assert got == expected, body
    assert {kind for (kind, _), _ in results} == {"valid", "invalid"}
    with mock.patch("annotation.api.serializers._validated", side_effect=AssertionError("the serializer ran")):
        assert all(fast(body) for body in bodies[:3])  # the workspace's bodies never build one


@pytest.mark.parametrize("view_class", [NextItemApi, SubmitApi])
@pytest.mark.parametrize(("path", "accept"), [
    ("/", None), ("/", "*/*"), ("/", "application/json"), ("/", "text/html"), ("/", "application/json; indent=4"),
    ("/", "text/html,application/xhtml+xml,*/*;q=0.8"), ("/?format=api", "*/*"), ("/?format=json", "text/html"),
])
def test_the_hot_views_pick_the_renderer_drfs_negotiation_would(view_class, path, accept):
    """They skip the negotiation only for the JSON a client asks for; every answer stays DRF's."""
    extra = {"HTTP_ACCEPT": accept} if accept else {}

    def negotiate(method):
        view = view_class()
        view.args, view.kwargs, view.format_kwarg = (), {}, None
        request = view.initialize_request(APIRequestFactory().post(path, **extra))
        try:
            renderer, media_type = method(view, request)
        except NotAcceptable as exc:
            return str(exc)
        return type(renderer), media_type

    assert negotiate(view_class.perform_content_negotiation) == negotiate(APIView.perform_content_negotiation)


def test_media_urls_are_what_reverse_makes():
    for name in ("samples/a.png", "c/ü ber #1?.png", "x/100%+;=,&$!'()*@:~.png", "/lead.png", "a//b.png"):
        assert _media(SimpleNamespace(name=name)) == reverse("media", kwargs={"path": name}), name
