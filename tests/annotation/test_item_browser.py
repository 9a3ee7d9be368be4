"""The item browser's reads and the curator's item actions: filters, agreement, pages, the item in
full, gold mark / unmark and restricting a campaign's annotators."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotation.item_selectors import ItemFilter, campaign_items_page, item_filter_from_query
from annotation.models import Item
from annotation.services.adjudication import item_adjudicate
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next, lease_skip
from core.errors import ApplicationError, NotAllowed
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def _submit(campaign, annotator, answer):
    lease = lease_next(campaign=campaign, annotator=annotator)
    slots = list(lease.item.slots.order_by("position").values_list("candidate_id", flat=True))
    judgment_submit(lease_uid=lease.uid, annotator=annotator, answers=answer(slots), idempotency_key=str(lease.uid))
    return lease.item


@pytest.fixture
def world():
    """6 items, overlap 3, criteria structure + aesthetics:
    item 0 done, unanimous; item 1 done, structure 2:1 (settled), aesthetics A / tie / B (split);
    item 2 one judgment + one active lease (in progress); item 3 skipped; items 4, 5 untouched."""
    campaign = make_campaign(n_samples=6, overlap=3, criteria=["structure", "aesthetics"])
    anns = [make_user(f"ib{k}", "annotator") for k in range(3)]
    items = list(Item.objects.filter(campaign=campaign).order_by("id"))
    for k, ann in enumerate(anns):
        _submit(campaign, ann, lambda s: {"structure": s[0], "aesthetics": s[0]})  # item 0
        _submit(campaign, ann, lambda s, k=k: {"structure": [s[0], s[0], s[1]][k],
                                                "aesthetics": [s[0], "tie", s[1]][k]})  # item 1
    _submit(campaign, anns[0], lambda s: {"structure": "tie", "aesthetics": "tie"})  # item 2
    lease_next(campaign=campaign, annotator=anns[1])  # item 2 again: held
    skipped = lease_next(campaign=campaign, annotator=anns[0])  # item 3
    lease_skip(lease=skipped, annotator=anns[0], reason="mask unclear")
    curator = make_user("cur", "curator")
    return campaign, items, anns, curator


def ids(page):
    return [r["id"] for r in page["results"]]


def test_status_filters_match_the_row_status(world):
    campaign, items, _, _ = world
    expected = {"done": items[:2], "in_progress": items[2:3], "skipped": items[3:4], "open": items[4:]}
    for status, want in expected.items():
        page = campaign_items_page(campaign=campaign, flt=ItemFilter(status=status))
        assert ids(page) == [i.pk for i in want], status
        assert {r["status"] for r in page["results"]} == {status}
    assert campaign_items_page(campaign=campaign, flt=ItemFilter())["count"] == 6


def test_agreement_and_disputed_filter(world):
    campaign, items, anns, curator = world
    page = campaign_items_page(campaign=campaign, flt=ItemFilter())
    row = {r["id"]: r for r in page["results"]}
    assert row[items[0].pk]["criteria"]["structure"]["agreement"] == 1.0
    settled = row[items[1].pk]["criteria"]["structure"]
    assert (settled["agreement"], settled["disputed"], settled["majority"]) == (0.6667, False, "a")
    split = row[items[1].pk]["criteria"]["aesthetics"]
    assert (split["split"], split["disputed"], split["majority"]) == (True, True, None)
    assert row[items[2].pk]["criteria"]["structure"] == {"judgments": 1, "agreement": 1.0, "majority": "tie",
                                                        "split": False, "disputed": False, "adjudicated": None}
    assert ids(campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=True))) == [items[1].pk]
    # A stricter threshold also disputes the 2:1 structure vote; item 1 stays the only one.
    assert ids(campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=True, threshold=0.9))) == [items[1].pk]
    assert items[1].pk not in ids(campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=False)))
    # Adjudicating the split criterion settles the item.
    item_adjudicate(item=items[1], criterion="aesthetics", answer="tie", note="", user=curator)
    assert campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=True))["count"] == 0
    after = campaign_items_page(campaign=campaign, flt=ItemFilter(status="done"))["results"][1]
    assert after["criteria"]["aesthetics"]["adjudicated"] == "tie" and after["disputed"] is False
    # The 2:1 structure vote is still disputed under a 0.9 threshold.
    assert ids(campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=True, threshold=0.9))) == [items[1].pk]


def test_gold_and_annotator_filters_and_pages(world, django_assert_max_num_queries):
    campaign, items, anns, _ = world
    Item.objects.filter(pk=items[5].pk).update(is_gold=True, gold_answer={"structure": "a"})
    assert ids(campaign_items_page(campaign=campaign, flt=ItemFilter(gold=True))) == [items[5].pk]
    assert len(ids(campaign_items_page(campaign=campaign, flt=ItemFilter(gold=False)))) == 5
    assert ids(campaign_items_page(campaign=campaign, flt=ItemFilter(annotator=anns[0]))) == [i.pk for i in items[:3]]
    assert ids(campaign_items_page(campaign=campaign, flt=ItemFilter(annotator=anns[2]))) == [i.pk for i in items[:2]]
    # ids, last adjudication, the disputed set (savepoint, work_mem, query, release), rows, judgments,
    # adjudications, slots, criteria: the same for any campaign size
    with django_assert_max_num_queries(11):
        page = campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=False, gold=False), page=2, page_size=2)
    assert (page["count"], page["pages"], page["page"]) == (4, 2, 2)
    assert ids(page) == [items[3].pk, items[4].pk]
    assert campaign_items_page(campaign=campaign, flt=ItemFilter(), page=99, page_size=4)["page"] == 2


def test_query_parsing_reports_every_bad_field():
    with pytest.raises(ApplicationError) as err:
        item_filter_from_query({"status": "lost", "gold": "maybe", "annotator": "ghost", "threshold": "2"})
    assert set(err.value.fields) == {"status", "gold", "annotator", "threshold"}
    assert item_filter_from_query({"gold": "no", "disputed": "yes"}) == ItemFilter(gold=False, disputed=True)


def client_as(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_api_lists_and_opens_items_for_staff_only(world):
    campaign, items, anns, curator = world
    scientist = make_user("sci", "scientist")
    url = f"/api/campaigns/{campaign.pk}/items/"
    assert client_as(anns[0]).get(url).status_code == 403
    r = client_as(scientist).get(url, {"disputed": "yes"})
    assert r.status_code == 200 and [x["id"] for x in r.json()["results"]] == [items[1].pk]
    bad = client_as(curator).get(url, {"status": "lost"})
    assert bad.status_code == 400 and "status" in bad.json()["fields"]
    detail = client_as(scientist).get(f"/api/items/{items[1].pk}/").json()
    assert [c["source_name"] for c in detail["candidates"]] == ["sys0", "sys1"]
    assert all(c["url"].startswith("/media/") for c in detail["candidates"])
    assert detail["sample"]["source_url"].startswith("/media/") and detail["sample"]["prompt"] == "a red circle"
    assert len(detail["judgments"]) == 6
    assert {(j["annotator"], j["criterion"], j["answer"], j["guideline_version"]) for j in detail["judgments"]
            if j["annotator"] == "ib1"} == {("ib1", "structure", "A", 1), ("ib1", "aesthetics", "tie", 1)}
    assert detail["agreement"]["aesthetics"]["disputed"] is True
    skipped = client_as(curator).get(f"/api/items/{items[3].pk}/").json()
    assert skipped["status"] == "skipped" and skipped["skips"][0]["skip_reason"] == "mask unclear"
    assert client_as(anns[0]).get(f"/api/items/{items[1].pk}/").status_code == 403


def test_gold_mark_and_unmark(world):
    campaign, items, _, curator = world
    a, b = items[4].slots.order_by("position").values_list("candidate_id", flat=True)
    url = f"/api/items/{items[4].pk}/gold/"
    assert client_as(make_user("sci", "scientist")).post(url, {"answer": {"structure": b}}, format="json").status_code == 403
    r = client_as(curator).post(url, {"answer": {"structure": b, "aesthetics": "tie"}}, format="json")
    assert r.status_code == 200 and r.json()["is_gold"] is True
    items[4].refresh_from_db()
    assert items[4].is_gold and items[4].gold_answer == {"structure": "b", "aesthetics": "tie"}
    bad = client_as(curator).post(url, {"answer": {"structure": 999_999, "nope": "tie"}}, format="json")
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"structure", "nope"}
    r = client_as(curator).delete(url)
    assert r.status_code == 200 and r.json()["is_gold"] is False
    items[4].refresh_from_db()
    assert not items[4].is_gold and items[4].gold_answer is None


def test_best_worst_gold_answer_is_stored_as_picks():
    campaign = make_campaign(n_samples=1, overlap=1, mode="best_worst", criteria=["structure"])
    item = campaign.items.get()
    c = list(item.slots.order_by("position").values_list("candidate_id", flat=True))
    curator = make_user("cur2", "curator")
    r = client_as(curator).post(f"/api/items/{item.pk}/gold/", {"answer": {"structure": {"best": c[2], "worst": c[0]}}},
                                format="json")
    assert r.status_code == 200
    item.refresh_from_db()
    assert item.gold_answer == {"structure": {"best": c[2], "worst": c[0]}}
    bad = client_as(curator).post(f"/api/items/{item.pk}/gold/", {"answer": {"structure": "no_difference"}},
                                  format="json")
    assert bad.status_code == 400 and "structure" in bad.json()["fields"]


def test_restrict_annotators(world):
    campaign, items, anns, curator = world
    outsider = make_user("outsider", "annotator")
    url = f"/api/campaigns/{campaign.pk}/"
    assert client_as(make_user("sci", "scientist")).patch(url, {"annotators": []}, format="json").status_code == 403
    bad = client_as(curator).patch(url, {"annotators": ["ghost", "cur", "ib0"]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["fields"]["annotators"] == ["No such user: ghost.", "Not an annotator: cur."]
    assert not campaign.annotators.exists()
    r = client_as(curator).patch(url, {"annotators": ["ib0", "ib1"]}, format="json")
    assert r.status_code == 200 and r.json()["annotators"] == ["ib0", "ib1"]
    with pytest.raises(NotAllowed):
        lease_next(campaign=campaign, annotator=outsider)
    assert lease_next(campaign=campaign, annotator=anns[1]) is not None
    r = client_as(curator).patch(url, {"annotators": []}, format="json")
    assert r.json()["annotators"] == [] and lease_next(campaign=campaign, annotator=outsider) is not None


def test_pages_render_for_staff_with_curator_tools_for_curators_only(world, client):
    campaign, items, anns, curator = world
    scientist = make_user("sci", "scientist")
    client.force_login(curator)
    page = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    assert 'data-campaign-action="pause"' in page and 'data-campaign-action="start"' not in page
    assert 'value="ib0"' in page and "Browse items" in page
    assert client.get(f"/dashboard/campaigns/{campaign.pk}/items/").status_code == 200
    item = client.get(f"/dashboard/items/{items[1].pk}/").content.decode()
    assert 'id="adjudicate-form"' in item and "sys1" in item and 'id="gold-form"' in item
    client.force_login(scientist)
    assert 'id="c-controls"' not in client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    item = client.get(f"/dashboard/items/{items[1].pk}/").content.decode()
    assert 'id="adjudicate-form"' not in item and "ib2" in item
    client.force_login(anns[0])
    assert client.get(f"/dashboard/items/{items[1].pk}/").status_code == 403
