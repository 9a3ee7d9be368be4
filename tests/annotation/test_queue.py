"""The work queue: hand-out order, overlap, leases, skips, and correctness under concurrency."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.models import Item, ItemStatus, Judgment, Lease, LeaseState
from annotation.services.campaigns import campaign_set_status
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next, lease_reclaim_expired, lease_skip
from core.errors import Conflict, NotAllowed
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


def _answer_all(lease: Lease, key: str) -> None:
    answers = {c.slug: lease.displayed_order[0] for c in lease.item.campaign.criteria.all()}
    judgment_submit(lease_uid=lease.uid, annotator=lease.annotator, answers=answers, idempotency_key=key)


def test_next_returns_held_lease_until_submitted_then_a_new_item():
    campaign = make_campaign(n_samples=2, overlap=1)
    ann = make_user("a1", "annotator")
    first = lease_next(campaign=campaign, annotator=ann)
    assert lease_next(campaign=campaign, annotator=ann).pk == first.pk
    _answer_all(first, "k1")
    second = lease_next(campaign=campaign, annotator=ann)
    assert second.item_id != first.item_id
    assert sorted(second.displayed_order) == sorted(second.item.slots.values_list("candidate_id", flat=True))


def test_prefetch_lease_is_a_second_item_and_at_most_two_are_held():
    campaign = make_campaign(n_samples=3, overlap=1)
    ann = make_user("a1", "annotator")
    first = lease_next(campaign=campaign, annotator=ann)
    ahead = lease_next(campaign=campaign, annotator=ann, exclude=[str(first.uid)])
    assert ahead.item_id != first.item_id
    assert lease_next(campaign=campaign, annotator=ann, exclude=[str(first.uid), str(ahead.uid)]) is None


def test_an_item_never_goes_twice_to_the_same_annotator_and_overlap_caps_it():
    campaign = make_campaign(n_samples=1, overlap=2)
    a, b, c = (make_user(n, "annotator") for n in ("a", "b", "c"))
    la = lease_next(campaign=campaign, annotator=a)
    _answer_all(la, "ka")
    assert lease_next(campaign=campaign, annotator=a) is None  # already judged it
    lb = lease_next(campaign=campaign, annotator=b)
    assert lb.item_id == la.item_id
    assert lease_next(campaign=campaign, annotator=c) is None  # both slots taken
    _answer_all(lb, "kb")
    item = Item.objects.get(pk=la.item_id)
    assert (item.status, item.completed_count, item.leased_count) == (ItemStatus.DONE, 2, 2)


def test_expired_leases_are_reclaimed_and_the_slot_reopens():
    campaign = make_campaign(n_samples=1, overlap=1, lease_seconds=10)
    a, b = make_user("a", "annotator"), make_user("b", "annotator")
    la = lease_next(campaign=campaign, annotator=a)
    assert lease_next(campaign=campaign, annotator=b) is None
    Lease.objects.filter(pk=la.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    lb = lease_next(campaign=campaign, annotator=b)  # reclaims on the way
    assert lb is not None and lb.item_id == la.item_id
    assert Lease.objects.get(pk=la.pk).state == LeaseState.EXPIRED
    # The late submit of the expired lease is refused: the slot belongs to b now (overlap is a cap).
    with pytest.raises(Conflict):
        _answer_all(Lease.objects.get(pk=la.pk), "late")


def test_late_submit_of_an_expired_lease_is_kept_when_the_slot_is_still_free():
    campaign = make_campaign(n_samples=1, overlap=1, lease_seconds=10)
    a = make_user("a", "annotator")
    la = lease_next(campaign=campaign, annotator=a)
    Lease.objects.filter(pk=la.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_reclaim_expired() == 1
    _answer_all(Lease.objects.get(pk=la.pk), "late")
    item = Item.objects.get(pk=la.item_id)
    assert (item.status, item.leased_count, item.completed_count) == (ItemStatus.DONE, 1, 1)


def test_skip_releases_the_slot_and_records_the_reason():
    campaign = make_campaign(n_samples=1, overlap=1)
    a, b = make_user("a", "annotator"), make_user("b", "annotator")
    la = lease_next(campaign=campaign, annotator=a)
    lease_skip(lease=la, annotator=a, reason="image does not load")
    la.refresh_from_db()
    assert (la.state, la.skip_reason) == (LeaseState.SKIPPED, "image does not load")
    assert lease_next(campaign=campaign, annotator=a) is None
    assert lease_next(campaign=campaign, annotator=b).item_id == la.item_id
    with pytest.raises(NotAllowed):
        lease_skip(lease=la, annotator=b)


def test_paused_campaign_hands_out_nothing_and_restricted_campaign_checks_membership():
    campaign = make_campaign(n_samples=1)
    a, outsider = make_user("a", "annotator"), make_user("o", "annotator")
    campaign.annotators.add(a)
    with pytest.raises(NotAllowed):
        lease_next(campaign=campaign, annotator=outsider)
    campaign_set_status(campaign=campaign, status="paused")
    campaign.refresh_from_db()
    with pytest.raises(Conflict):
        lease_next(campaign=campaign, annotator=a)


def test_gold_items_are_interleaved_at_the_configured_rate():
    import random

    campaign = make_campaign(n_samples=4, overlap=1, gold_fraction=1.0)
    gold = Item.objects.filter(campaign=campaign).first()
    gold.is_gold, gold.gold_answer = True, {"structure": "a"}
    gold.save()
    ann = make_user("a", "annotator")
    lease = lease_next(campaign=campaign, annotator=ann, rng=random.Random(0))
    assert lease.item_id == gold.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_exceed_overlap_nor_get_an_item_twice():
    """8 threads hammer one campaign on PostgreSQL; invariants hold in the database."""
    overlap, n_items, n_workers = 2, 6, 8
    campaign = make_campaign(n_samples=n_items, overlap=overlap)
    users = [make_user(f"w{i}", "annotator") for i in range(n_workers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_workers)

    def work(user):
        try:
            barrier.wait()
            for step in range(n_items):
                lease = lease_next(campaign=campaign, annotator=user)
                if lease is None:
                    break
                _answer_all(lease, f"{user.username}-{step}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own (persistent) connection

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    per_item = Counter(Lease.objects.filter(item__campaign=campaign, state="submitted").values_list("item_id", flat=True))
    assert per_item and max(per_item.values()) <= overlap
    assert sum(per_item.values()) == n_items * overlap  # every slot filled exactly once
    pairs = Lease.objects.filter(item__campaign=campaign).values_list("item_id", "annotator_id")
    assert len(pairs) == len(set(pairs))
    n_criteria = campaign.criteria.count()
    assert Judgment.objects.filter(item__campaign=campaign).count() == n_items * overlap * n_criteria
    assert not Item.objects.filter(campaign=campaign).exclude(status=ItemStatus.DONE).exists()
