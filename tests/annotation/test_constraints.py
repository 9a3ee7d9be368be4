"""Invariants enforced by the database itself, not only by Python."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from annotation.models import Campaign, GuidelineVersion, Item, Judgment, TaskType
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def _violates(fn) -> bool:
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


def test_campaign_checks():
    fill = TaskType.objects.get(slug="fill")
    assert _violates(lambda: Campaign.objects.create(name="x", task_type=fill, mode="pairwise", candidates_per_item=3))
    assert _violates(lambda: Campaign.objects.create(name="y", task_type=fill, overlap=0))
    assert _violates(lambda: Campaign.objects.create(name="z", task_type=fill, gold_fraction=1.5))
    assert not _violates(lambda: Campaign.objects.create(name="ok", task_type=fill, mode="best_worst",
                                                         candidates_per_item=4))


def test_item_checks():
    campaign = make_campaign(n_samples=1)
    item = Item.objects.filter(campaign=campaign).first()
    assert _violates(lambda: Item.objects.filter(pk=item.pk).update(completed_count=5, leased_count=1))
    assert _violates(lambda: Item.objects.filter(pk=item.pk).update(is_gold=True, gold_answer=None))


def test_guideline_versions_are_unique_and_positive():
    g = GuidelineVersion.objects.first()
    assert _violates(lambda: GuidelineVersion.objects.create(criterion=g.criterion, version=g.version, body_markdown="x"))
    assert _violates(lambda: GuidelineVersion.objects.create(criterion=g.criterion, version=0, body_markdown="x"))


def test_best_worst_judgment_needs_two_different_candidates():
    campaign = make_campaign(n_samples=1, overlap=1, mode="best_worst", criteria=["structure"])
    ann = make_user("a", "annotator")
    lease = lease_next(campaign=campaign, annotator=ann)
    ids = list(lease.item.slots.values_list("candidate_id", flat=True))
    (j,), _ = judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": {"best": ids[0], "worst": ids[1]}},
                           idempotency_key="k")
    assert _violates(lambda: Judgment.objects.filter(pk=j.pk).update(worst_id=ids[0]))
    assert _violates(lambda: Judgment.objects.filter(pk=j.pk).update(best=None))


def test_migration_seeded_the_paper_taxonomy():
    tasks = {t.slug: sorted(t.criteria.values_list("slug", flat=True)) for t in TaskType.objects.all()}
    assert tasks == {
        "fill": ["aesthetics", "consistency", "structure", "text_alignment"],
        "extend": ["aesthetics", "consistency", "structure", "text_alignment"],
        "removal": ["removal_quality"],
    }
    assert TaskType.objects.get(slug="removal").fixed_prompt == "remove the specified object"
