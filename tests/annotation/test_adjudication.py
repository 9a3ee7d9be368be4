"""Adjudication: a curator's final answer for (item, criterion) is recorded, versioned, and wins
over the annotators' votes in snapshots."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotation.models import Adjudication, Item
from annotation.services.adjudication import item_adjudicate
from annotation.services.snapshots import snapshot_preview
from core.errors import ApplicationError
from tests.annotation.test_snapshots import annotate, build, rows_of
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def voted():
    """2 items × 3 annotators on structure: item 0 votes A, A, B (A wins); item 1 is untouched."""
    campaign = make_campaign(n_samples=2, overlap=3, criteria=["structure"])
    anns = [make_user(f"adj{k}", "annotator") for k in range(3)]

    def answer(k, i, slots):
        return {"structure": [slots[0], slots[0], slots[1]][k] if i == 0 else slots[0]}

    annotate(campaign, anns, answer)
    items = list(Item.objects.filter(campaign=campaign).order_by("id"))
    curator = make_user("cur", "curator")
    return campaign, items, curator


def _slots(item):
    return list(item.slots.order_by("position").values_list("candidate_id", flat=True))


def test_an_adjudication_flips_the_snapshot_label_and_is_counted(voted):
    campaign, items, curator = voted
    a, b = _slots(items[0])
    before = build("before", campaign_ids=[campaign.pk])
    row = next(r for r in rows_of(before) if r["sample_id"] == items[0].sample.external_id)
    assert (row["winner_candidate_id"], row["votes"], row["agreement"]) == (a, 2, round(2 / 3, 6))
    assert before.counts["adjudicated"] == 0

    item_adjudicate(item=items[0], criterion="structure", answer=b, note="A has a seam", user=curator)
    after = build("after", campaign_ids=[campaign.pk])
    row = next(r for r in rows_of(after) if r["sample_id"] == items[0].sample.external_id)
    # Every vote of the item now goes to the adjudicated answer: B wins with the item's full weight.
    assert (row["winner_candidate_id"], row["loser_candidate_id"], row["votes"], row["agreement"]) == (b, a, 3, 1.0)
    assert after.counts["adjudicated"] == 1 and after.content_hash != before.content_hash
    # The human ceiling still measures what annotators answered.
    assert after.human_ceiling == before.human_ceiling


def test_latest_adjudication_wins_and_history_is_kept(voted):
    campaign, items, curator = voted
    a, b = _slots(items[0])
    item_adjudicate(item=items[0], criterion="structure", answer=b, note="first look", user=curator)
    item_adjudicate(item=items[0], criterion="structure", answer="tie", note="on reflection, equal", user=curator)
    assert list(Adjudication.objects.filter(item=items[0]).values_list("choice", flat=True)) == ["b", "tie"]
    snap = build("tie", campaign_ids=[campaign.pk])
    # A tie adjudication turns each of the item's votes into a tie: the pair leaves A > B.
    assert all(r["sample_id"] != items[0].sample.external_id or r["winner_candidate_id"] != a
               for r in rows_of(snap))
    assert snap.counts["adjudicated"] == 1


def test_service_refuses_bad_answers_unknown_criteria_and_unjudged_items(voted):
    campaign, items, curator = voted
    with pytest.raises(ApplicationError) as err:
        item_adjudicate(item=items[0], criterion="structure", answer=999_999, user=curator)
    assert "answer" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        item_adjudicate(item=items[0], criterion="aesthetics", answer="tie", user=curator)
    assert "structure" in err.value.fields["criterion"][0]
    fresh = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    with pytest.raises(ApplicationError) as err:
        item_adjudicate(item=fresh.items.get(), criterion="structure", answer="tie", user=curator)
    assert "Nobody has judged" in err.value.fields["criterion"][0]
    assert not Adjudication.objects.exists()


def test_best_worst_adjudication_replaces_the_picks(voted):
    campaign = make_campaign(n_samples=1, overlap=2, mode="best_worst", criteria=["structure"])
    anns = [make_user(f"bwa{k}", "annotator") for k in range(2)]
    annotate(campaign, anns, lambda k, i, s: {"structure": [{"best": s[0], "worst": s[3]},
                                                            {"best": s[3], "worst": s[0]}][k]})
    item = campaign.items.get()
    c = _slots(item)
    split = snapshot_preview(filter={"campaign_ids": [campaign.pk]})
    assert (split["pairs"], split["tied_excluded"]) == (0, 1)  # one vote each way: nothing to train on
    adj = item_adjudicate(item=item, criterion="structure", answer={"best": c[1], "worst": c[2]}, user=voted[2])
    assert (adj.choice, adj.best_id, adj.worst_id) == ("best_worst", c[1], c[2])
    rows = rows_of(build("settled", campaign_ids=[campaign.pk]))
    assert [(r["winner_candidate_id"], r["loser_candidate_id"], r["votes"]) for r in rows] == [(c[1], c[2], 2)]


def test_api_adjudicate_is_for_curators_and_reports_field_errors(voted):
    campaign, items, curator = voted
    scientist = make_user("sci", "scientist")
    a, b = _slots(items[0])
    url = f"/api/items/{items[0].pk}/adjudicate/"
    body = {"criterion": "structure", "answer": b, "note": "seam on A"}
    other = APIClient()
    other.force_authenticate(scientist)
    assert other.post(url, body, format="json").status_code == 403
    client = APIClient()
    client.force_authenticate(curator)
    r = client.post(url, body, format="json")
    assert r.status_code == 201, r.content
    (adj,) = r.json()["adjudications"]
    assert (adj["criterion"], adj["answer"], adj["note"], adj["by"], adj["latest"]) == (
        "structure", "B", "seam on A", "cur", True)
    assert r.json()["agreement"]["structure"]["disputed"] is False
    bad = client.post(url, {"criterion": "nope", "answer": [1]}, format="json")
    assert bad.status_code == 400 and "answer" in bad.json()["fields"]
    bad = client.post(url, {"criterion": "aesthetics", "answer": "tie"}, format="json")
    assert bad.status_code == 400 and "criterion" in bad.json()["fields"]
    assert client.post("/api/items/999999/adjudicate/", body, format="json").status_code == 404
