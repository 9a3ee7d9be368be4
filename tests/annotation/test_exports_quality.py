"""Exports round-trip; quality numbers match hand computations; the admin drives the services."""
from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from rest_framework.test import APIClient

from annotation.export_format import read_jsonl_rows, verify_jsonl
from annotation.models import Campaign, CampaignStatus, Item, Judgment
from annotation.selectors import (
    annotator_stats,
    campaign_agreement,
    hashed_annotator_id,
    krippendorff_alpha_nominal,
)
from annotation.services.exports import export_jsonl, export_parquet
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def judged_campaign(n_annotators=3, pick_left=True):
    campaign = make_campaign(n_samples=3, overlap=n_annotators, criteria=["structure", "aesthetics"])
    users = [make_user(f"person-{i}", "annotator") for i in range(n_annotators)]
    for user in users:
        while (lease := lease_next(campaign=campaign, annotator=user)) is not None:
            side = lease.displayed_order[0 if pick_left else 1]
            judgment_submit(lease_uid=lease.uid, annotator=user, idempotency_key=f"{user.pk}-{lease.pk}",
                            answers={"structure": side, "aesthetics": "tie"})
    return campaign, users


def test_jsonl_and_parquet_exports_round_trip_with_hashed_ids():
    campaign, users = judged_campaign()
    lines = list(read_jsonl_rows(b"".join(export_jsonl(campaign_ids=[campaign.pk]))))  # trailer checked, skipped
    assert len(lines) == Judgment.objects.count() == 3 * 3 * 2
    assert {r["annotator"] for r in lines} == {hashed_annotator_id(u.pk) for u in users}
    assert not any(u.username in json.dumps(lines) for u in users)
    structure = [r for r in lines if r["criterion"] == "structure"]
    for r in structure:  # the winner is the candidate shown on the left
        assert r["winner_candidate_id"] == r["displayed_order"][0]
        assert r["guideline_version"] == 1
    table = pq.read_table(io.BytesIO(b"".join(export_parquet(campaign_ids=[campaign.pk]))))
    assert table.num_rows == len(lines)
    assert sorted(table.column("judgment_id").to_pylist()) == sorted(r["judgment_id"] for r in lines)


def test_parquet_is_streamed_in_row_groups(monkeypatch):
    from annotation.services import exports

    monkeypatch.setattr(exports, "ROW_GROUP", 4)
    campaign, _ = judged_campaign()
    chunks = list(export_parquet(campaign_ids=[campaign.pk]))
    assert len(chunks) >= 18 // 4  # bytes leave as each row group is written
    assert pq.ParquetFile(io.BytesIO(b"".join(chunks))).num_row_groups == 5


def test_export_endpoint_streams_for_scientists_only():
    campaign, users = judged_campaign()
    sci = APIClient()
    sci.force_authenticate(make_user("sci", "scientist"))
    response = sci.get(f"/api/exports/judgments.jsonl?campaign={campaign.pk}")
    assert response.status_code == 200
    assert response.streaming
    assert verify_jsonl(b"".join(response.streaming_content)) == 18
    annot = APIClient()
    annot.force_authenticate(users[0])
    assert annot.get("/api/exports/judgments.parquet").status_code == 403


def test_krippendorff_alpha_matches_hand_computed_values():
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["b", "b"], 3: ["a", "a"]}) == 1.0
    # Two units, coders disagree on one: o_ab = o_ba = 1, o_aa = 2 (unit 1) → n = 4,
    # Do = 2/4, De = (n_a·n_b·2)/(n(n-1)) = (3·1·2)/12 = 0.5 → alpha = 0.
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["a", "b"]}) == pytest.approx(0.0)
    assert krippendorff_alpha_nominal({1: ["a"]}) is None


def test_annotator_stats_show_left_bias_and_tie_rate_and_agreement():
    campaign, users = judged_campaign(pick_left=True)
    stats = {s["annotator"]: s for s in annotator_stats(campaign)}
    for u in users:
        assert stats[u.username]["left_rate"] == 1.0
        assert stats[u.username]["tie_rate"] == 0.5
    agreement = campaign_agreement(campaign)
    assert agreement["aesthetics"] == 1.0  # everybody said tie


def test_gold_accuracy_is_measured():
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    item = Item.objects.get(campaign=campaign)
    a_id = item.slots.get(position=0).candidate_id
    item.is_gold, item.gold_answer = True, {"structure": "a"}
    item.save()
    good, bad = make_user("good", "annotator"), make_user("bad", "annotator")
    b_id = item.slots.get(position=1).candidate_id
    for user, answer in ((good, a_id), (bad, b_id)):
        lease = lease_next(campaign=campaign, annotator=user)
        judgment_submit(lease_uid=lease.uid, annotator=user, idempotency_key="g", answers={"structure": answer})
    stats = {s["annotator"]: s for s in annotator_stats(campaign)}
    assert (stats["good"]["gold_accuracy"], stats["bad"]["gold_accuracy"]) == (1.0, 0.0)


def test_curator_sets_up_and_starts_a_campaign_in_the_admin(client):
    make_campaign(n_samples=2, start=False, name="seed-only")  # samples with candidates
    curator = make_user("cur", "curator")
    curator.is_staff = True
    curator.save()
    from django.contrib.auth.models import Permission

    curator.user_permissions.add(*Permission.objects.filter(content_type__app_label="annotation"))
    client.force_login(curator)
    from annotation.models import Criterion, TaskType

    response = client.post("/admin/annotation/campaign/add/", {
        "name": "from-admin", "description": "", "task_type": TaskType.objects.get(slug="fill").pk,
        "criteria": [Criterion.objects.get(slug="structure").pk], "mode": "pairwise", "candidates_per_item": 2,
        "overlap": 2, "gold_fraction": 0, "lease_seconds": 600, "priority": 0, "selection": "{}",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(name="from-admin")
    assert list(campaign.criteria.values_list("slug", flat=True)) == ["structure"]
    response = client.post("/admin/annotation/campaign/", {"action": "start_campaigns", "_selected_action": [campaign.pk]})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE
    assert campaign.items.count() == 2
    bad = client.post("/admin/annotation/campaign/add/", {
        "name": "bad", "task_type": TaskType.objects.get(slug="removal").pk,
        "criteria": [Criterion.objects.get(slug="structure").pk], "mode": "pairwise", "candidates_per_item": 2,
        "overlap": 1, "gold_fraction": 0, "lease_seconds": 600, "priority": 0, "selection": "{}",
    })
    assert bad.status_code == 200
    assert "Only criteria of the task type" in bad.content.decode()
