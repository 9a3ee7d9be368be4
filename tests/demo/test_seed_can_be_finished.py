"""The seeded demo campaigns can be finished by the seeded annotators (overlap vs annotators)."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from annotation.models import Campaign, CampaignMode, Item, ItemStatus
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from demo.seed import DEMO_USERS, demo_seed


@pytest.mark.django_db
def test_the_seeded_annotators_finish_every_seeded_demo_campaign():
    summary = demo_seed()
    annotators = [User.objects.get(username=u) for u, (_, roles) in DEMO_USERS.items() if "annotator" in roles]
    campaigns = Campaign.objects.filter(name__in=summary.campaigns)
    assert campaigns.count() == len(summary.campaigns) and all(c.overlap <= len(annotators) for c in campaigns)
    for campaign in campaigns:
        for user in annotators:
            while lease := lease_next(campaign=campaign, annotator=user):
                cands = [slot.candidate_id for slot in lease.item.slots.all()]
                answer = "tie" if campaign.mode == CampaignMode.PAIRWISE else {"best": cands[0], "worst": cands[1]}
                judgment_submit(lease_uid=lease.uid, annotator=user, idempotency_key=str(lease.uid),
                                answers={c.slug: answer for c in campaign.criteria.all()})
        assert not Item.objects.filter(campaign=campaign).exclude(status=ItemStatus.DONE).exists(), campaign.name
