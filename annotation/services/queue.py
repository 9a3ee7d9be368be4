"""The work queue: hand out items under leases, reclaim expired ones, skip.

``lease_next`` is one short indexed query: ``SELECT … FOR UPDATE SKIP LOCKED`` over the partial
index of a campaign's open items, so concurrent annotators never wait on each other's rows and
never receive the same slot. Overlap k is enforced by ``Item.leased_count`` under that row lock.
"""
from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.utils import timezone

from core.errors import Conflict, NotAllowed

from ..models import Campaign, CampaignStatus, Item, ItemStatus, Lease, LeaseState

_rng = random.SystemRandom()


def annotator_may_work_on(*, campaign: Campaign, annotator: User) -> bool:
    """Open campaigns admit every annotator; restricted ones only their listed annotators."""
    return not campaign.annotators.exists() or campaign.annotators.filter(pk=annotator.pk).exists()


def _pop_item(*, campaign: Campaign, annotator: User, gold: bool) -> Item | None:
    seen = Lease.objects.filter(item=OuterRef("pk"), annotator=annotator)
    return (
        Item.objects.filter(campaign=campaign, status=ItemStatus.OPEN, is_gold=gold)
        .exclude(Exists(seen))
        .order_by("-priority", "id")
        .select_for_update(skip_locked=True)
        .first()
    )


MAX_ACTIVE_LEASES = 2  # the current item plus one prefetched ahead


def lease_next(
    *, campaign: Campaign, annotator: User, rng: random.Random | None = None, exclude: list[str] | None = None
) -> Lease | None:
    """An active lease of the annotator not in ``exclude`` (lease uids), or a new one.

    The browser asks once for the item to show and once more, excluding it, for the item to
    prefetch; at most ``MAX_ACTIVE_LEASES`` are held at a time. None means nothing is left.
    """
    if campaign.status != CampaignStatus.ACTIVE:
        raise Conflict(f"The campaign is {campaign.status}, not active.", code="campaign_not_active")
    if not annotator_may_work_on(campaign=campaign, annotator=annotator):
        raise NotAllowed("You are not assigned to this campaign.")
    now = timezone.now()
    held = Lease.objects.filter(annotator=annotator, item__campaign=campaign, state=LeaseState.ACTIVE, expires_at__gt=now)
    current = held.exclude(uid__in=exclude or []).order_by("id").first()
    if current:
        return current
    if held.count() >= MAX_ACTIVE_LEASES:
        return None
    lease_reclaim_expired(campaign=campaign)
    rng = rng or _rng
    want_gold = campaign.gold_fraction > 0 and rng.random() < campaign.gold_fraction
    with transaction.atomic():
        item = None
        for gold in (want_gold, not want_gold):
            item = _pop_item(campaign=campaign, annotator=annotator, gold=gold)
            if item:
                break
        if item is None:
            return None
        item.leased_count += 1
        # Gold items are shown to everyone, so they never fill up.
        if not item.is_gold and item.leased_count >= campaign.overlap:
            item.status = ItemStatus.FULL
        item.save(update_fields=["leased_count", "status"])
        order = list(item.slots.order_by("position").values_list("candidate_id", flat=True))
        rng.shuffle(order)  # left/right bias control: every hand-out gets its own order
        return Lease.objects.create(
            item=item, annotator=annotator, displayed_order=order,
            expires_at=now + timedelta(seconds=campaign.lease_seconds),
        )


def _release_slot(item_id: int) -> None:
    """Give one leased slot back to an item (after an expiry or a skip)."""
    Item.objects.filter(pk=item_id).update(
        leased_count=F("leased_count") - 1,
        status=Case(When(status=ItemStatus.FULL, then=Value(ItemStatus.OPEN)), default=F("status")),
    )


def lease_reclaim_expired(*, campaign: Campaign | None = None, limit: int = 500) -> int:
    """Mark expired active leases as expired and reopen their slots; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        qs = Lease.objects.filter(state=LeaseState.ACTIVE, expires_at__lte=now)
        if campaign is not None:
            qs = qs.filter(item__campaign=campaign)
        expired = list(qs.select_for_update(skip_locked=True, of=("self",)).order_by("id")[:limit])
        for lease in expired:
            lease.state = LeaseState.EXPIRED
            lease.finished_at = now
            lease.save(update_fields=["state", "finished_at"])
            _release_slot(lease.item_id)
    return len(expired)


@transaction.atomic
def lease_skip(*, lease: Lease, annotator: User, reason: str = "") -> Lease:
    """Give the item back (it will not come to this annotator again) and record why."""
    lease = Lease.objects.select_for_update().get(pk=lease.pk)
    if lease.annotator_id != annotator.pk:
        raise NotAllowed("This is not your lease.")
    if lease.state != LeaseState.ACTIVE:
        raise Conflict(f"The lease is already {lease.state}.")
    lease.state = LeaseState.SKIPPED
    lease.skip_reason = reason[:200]
    lease.finished_at = timezone.now()
    lease.save(update_fields=["state", "skip_reason", "finished_at"])
    _release_slot(lease.item_id)
    return lease
