"""The work queue: hand out items under leases, reclaim expired ones, skip.

A hand-out costs the same few indexed statements whatever the campaign's size: the pop is one
``SELECT … FOR UPDATE SKIP LOCKED`` over the partial index of a campaign's open items, so
concurrent annotators never wait on each other's rows and never receive the same slot. Overlap k
is enforced by ``Item.leased_count`` under that row lock; the per-annotator lease cap by a lock
on the annotator's own user row (one annotator's requests queue behind each other, nobody
else's do). Campaign-wide progress is never computed here (``selectors.campaign_progress``).
"""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Prefetch, Value, When, prefetch_related_objects
from django.utils import timezone

from core.errors import Conflict, NotAllowed

from ..models import Campaign, CampaignStatus, Item, ItemCandidate, ItemStatus, Lease, LeaseState

_rng = random.SystemRandom()

MAX_ACTIVE_LEASES = 2  # the current item plus one prefetched ahead

# Each item's slots in canonical order with their candidates, read once per hand-out and kept
# on the item (``item.slots.all()``) for the lease's display order and for the payload.
SLOTS = Prefetch("slots", queryset=ItemCandidate.objects.select_related("candidate").order_by("position"))


def _lock_annotator(*, campaign: Campaign, annotator: User) -> bool:
    """Lock the annotator's user row for this transaction and say whether they may work here.

    The lock serialises one annotator's concurrent hand-outs (two tabs, retries), which is what
    keeps ``MAX_ACTIVE_LEASES`` a hard cap; the membership test rides on the same statement.
    Open campaigns admit every annotator; restricted ones only their listed annotators.
    """
    members = Campaign.annotators.through.objects.filter(campaign_id=campaign.pk)
    row = (
        User.objects.filter(pk=annotator.pk)
        .annotate(restricted=Exists(members), member=Exists(members.filter(user_id=OuterRef("pk"))))
        .select_for_update(of=("self",))
        .values("restricted", "member")
        .get()
    )
    return not row["restricted"] or row["member"]


def _pop_item(*, campaign: Campaign, annotator: User, gold: bool) -> Item | None:
    seen = Lease.objects.filter(item=OuterRef("pk"), annotator=annotator)
    return (
        Item.objects.filter(campaign=campaign, status=ItemStatus.OPEN, is_gold=gold)
        .exclude(Exists(seen))
        .order_by("-priority", "id")
        .select_related("sample__task_type")
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )


def lease_next(
    *, campaign: Campaign, annotator: User, rng: random.Random | None = None, exclude: list[str] | None = None
) -> Lease | None:
    """An active lease of the annotator not in ``exclude`` (lease uids), or a new one.

    The browser asks once for the item to show and once more, excluding it, for the item to
    prefetch; at most ``MAX_ACTIVE_LEASES`` are held at a time. None means nothing is left.
    The returned lease carries its item, sample, task type and slots (no further reads needed).
    """
    if campaign.status != CampaignStatus.ACTIVE:
        raise Conflict(f"The campaign is {campaign.status}, not active.", code="campaign_not_active")
    now = timezone.now()
    rng = rng or _rng
    excluded = {str(u) for u in exclude or []}
    with transaction.atomic():
        if not _lock_annotator(campaign=campaign, annotator=annotator):
            raise NotAllowed("You are not assigned to this campaign.")
        held = list(
            Lease.objects.filter(annotator=annotator, item__campaign=campaign, state=LeaseState.ACTIVE,
                                 expires_at__gt=now)
            .select_related("item__sample__task_type").order_by("id")[: MAX_ACTIVE_LEASES + len(excluded)]
        )
        current = next((lease for lease in held if str(lease.uid) not in excluded), None)
        if current:
            prefetch_related_objects([current.item], SLOTS)
            return current
        if len(held) >= MAX_ACTIVE_LEASES:
            return None
        _reclaim_expired(campaign=campaign, now=now)
        want_gold = campaign.gold_fraction > 0 and rng.random() < campaign.gold_fraction
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
        prefetch_related_objects([item], SLOTS)
        order = [slot.candidate_id for slot in item.slots.all()]
        rng.shuffle(order)  # left/right bias control: every hand-out gets its own order
        item.campaign = campaign
        return Lease.objects.create(
            item=item, annotator=annotator, displayed_order=order,
            expires_at=now + timedelta(seconds=campaign.lease_seconds),
        )


def _release_slots(item_ids: Counter) -> None:
    """Give leased slots back to items (after expiries or a skip): {item id: how many}."""
    for item_id, n in item_ids.items():
        Item.objects.filter(pk=item_id).update(
            leased_count=F("leased_count") - n,
            status=Case(When(status=ItemStatus.FULL, then=Value(ItemStatus.OPEN)), default=F("status")),
        )


def _reclaim_expired(*, campaign: Campaign | None, now: datetime, limit: int = 500) -> int:
    """Expire active leases past their time and reopen their slots, inside the caller's
    transaction; one indexed statement when nothing has expired (the usual case)."""
    qs = Lease.objects.filter(state=LeaseState.ACTIVE, expires_at__lte=now)
    if campaign is not None:
        qs = qs.filter(item__campaign=campaign)
    expired = list(qs.select_for_update(skip_locked=True, of=("self",)).order_by("id")
                   .values_list("pk", "item_id")[:limit])
    if expired:
        Lease.objects.filter(pk__in=[pk for pk, _ in expired]).update(state=LeaseState.EXPIRED, finished_at=now)
        _release_slots(Counter(item_id for _, item_id in expired))
    return len(expired)


def lease_reclaim_expired(*, campaign: Campaign | None = None, limit: int = 500) -> int:
    """Mark expired active leases as expired and reopen their slots; returns how many."""
    with transaction.atomic():
        return _reclaim_expired(campaign=campaign, now=timezone.now(), limit=limit)


@transaction.atomic
def lease_skip(*, lease: Lease, annotator: User, reason: str = "") -> Lease:
    """Give the item back (it will not come to this annotator again) and record why."""
    lease = Lease.objects.select_for_update(of=("self",)).select_related("item__campaign").get(pk=lease.pk)
    if lease.annotator_id != annotator.pk:
        raise NotAllowed("This is not your lease.")
    if lease.state != LeaseState.ACTIVE:
        raise Conflict(f"The lease is already {lease.state}.")
    lease.state = LeaseState.SKIPPED
    lease.skip_reason = reason[:200]
    lease.finished_at = timezone.now()
    lease.save(update_fields=["state", "skip_reason", "finished_at"])
    _release_slots(Counter([lease.item_id]))
    return lease


@transaction.atomic
def lease_release(*, lease: Lease, annotator: User) -> None:
    """Hand back an item the annotator never worked on (the browser's prefetched item when the
    page closes), as if it had never been handed out.

    Unlike a skip, the lease row goes: the item may come back to this annotator later (a lease
    row would block that for good) and its slot reopens for everyone at once instead of when
    the lease expires. Only active leases can be released; a submitted or skipped one is final.
    """
    lease = Lease.objects.select_for_update(of=("self",)).get(pk=lease.pk)
    if lease.annotator_id != annotator.pk:
        raise NotAllowed("This is not your lease.")
    if lease.state != LeaseState.ACTIVE:
        raise Conflict(f"The lease is already {lease.state}.", code="lease_not_active")
    item_id = lease.item_id
    lease.delete()
    _release_slots(Counter([item_id]))
