"""The work queue: hand out items under leases, reclaim expired ones, skip.

A hand-out costs the same few indexed statements whatever the campaign's size: the pop is one
``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`` over the partial index of a campaign's
open items, so concurrent annotators never wait on each other's rows and never receive the same
slot. On PostgreSQL a hand-out is three statements after the token check: the annotator's lock
(with the campaign), the held leases (with the sweep of expired ones as data-modifying CTEs) and
the take (slot count, shuffled order, lease insert and the item's details in one statement); each
round trip saved is CPU saved on both sides. The hot statements are fixed SQL read back through
``core.rows`` (the ORM's compile cost more CPU than PostgreSQL spent running them). Overlap k
is enforced by ``Item.leased_count`` under that row lock; the per-annotator lease cap by a lock
on the annotator's own user row (one annotator's requests queue behind each other, nobody
else's do). Campaign-wide progress is never computed here (``selectors.campaign_progress``).
"""
from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Case, F, Prefetch, Value, When
from django.utils import timezone

from core.errors import Conflict, NotAllowed, NotFound
from core.rows import Columns, cache_related, fetch, for_update, prep

from ..models import (
    Campaign,
    CampaignStatus,
    Candidate,
    Item,
    ItemCandidate,
    ItemStatus,
    Lease,
    LeaseState,
    Sample,
    TaskType,
)

_rng = random.SystemRandom()

MAX_ACTIVE_LEASES = 2  # the current item plus one prefetched ahead

# Each item's slots in canonical order with their candidates, for ORM reads of a lease's item
# (the hand-out itself reads them with ``_load_details``).
SLOTS = Prefetch("slots", queryset=ItemCandidate.objects.select_related("candidate").order_by("position"))


# The hot statements are SQL written once (``core.rows``): the ORM's Python to compile
# each of them cost more CPU than PostgreSQL spent running all of them.
_ITEM, _SAMPLE, _TASK = Columns(Item, "i"), Columns(Sample, "s"), Columns(TaskType, "t")
_LEASE, _SLOT, _CANDIDATE = Columns(Lease, "l"), Columns(ItemCandidate, "ic"), Columns(Candidate, "c")
_CAMPAIGN = Columns(Campaign, "c")
_ITEM_RETURNED = Columns(Item, "annotation_item")  # an UPDATE's RETURNING names the table itself
_MEMBERS = Campaign.annotators.through._meta.db_table


def _load_details(item: Item) -> None:
    """Read the item's sample, task type and slots with their candidates in one statement, into
    ``item.sample`` and ``item.slots.all()`` (as ``select_related`` and ``SLOTS`` would)."""
    rows = fetch(
        f"SELECT {_SLOT.sql}, {_CANDIDATE.sql}, {_SAMPLE.sql}, {_TASK.sql} FROM annotation_itemcandidate ic "  # noqa: S608 (fixed SQL, values are parameters)
        "JOIN annotation_candidate c ON c.id = ic.candidate_id JOIN annotation_sample s ON s.id = %s "
        "JOIN annotation_tasktype t ON t.id = s.task_type_id WHERE ic.item_id = %s ORDER BY ic.position",
        [item.sample_id, item.pk],
    )
    _attach_details(item, rows, 0)


def _attach_details(item: Item, rows: list[tuple], start: int) -> None:
    """Attach the slots, candidates, sample and task type in ``rows[…][start:]`` (slot, candidate,
    sample, task type columns, one row per slot in position order) to ``item``."""
    slots = []
    for row in rows:
        slot = _SLOT.load(row, start)
        cache_related(slot, "candidate", _CANDIDATE.load(row, start + _SLOT.width))
        cache_related(slot, "item", item)
        slots.append(slot)
    if rows:
        at = start + _SLOT.width + _CANDIDATE.width
        sample = _SAMPLE.load(rows[0], at)
        cache_related(sample, "task_type", _TASK.load(rows[0], at + _SAMPLE.width))
        cache_related(item, "sample", sample)
    # The related queryset, as a prefetch leaves it: filtered to the item (so a further
    # ``.values_list()`` or ``.order_by()`` on it still reads this item's slots) with its rows in.
    cached = item.slots.get_queryset()
    cached._result_cache, cached._prefetch_done = slots, True
    item._prefetched_objects_cache = {"slots": cached}


# Whether the annotator may work in the campaign: open campaigns admit every annotator,
# restricted ones only their listed annotators (``u`` is the annotator's user row).
_MEMBER_SQL = (f"(NOT EXISTS (SELECT 1 FROM {_MEMBERS} m WHERE m.campaign_id = %s) "  # noqa: S608 (fixed SQL, values are parameters)
               f"OR EXISTS (SELECT 1 FROM {_MEMBERS} m WHERE m.campaign_id = %s AND m.user_id = u.id))")


def _lock_annotator(*, campaign: Campaign, annotator: User) -> bool:
    """Lock the annotator's user row for this transaction and say whether they may work here.

    The lock serialises one annotator's concurrent hand-outs (two tabs, retries), which is what
    keeps ``MAX_ACTIVE_LEASES`` a hard cap; the membership test rides on the same statement.
    """
    rows = fetch(f"SELECT {_MEMBER_SQL} FROM auth_user u WHERE u.id = %s{for_update('u')}",  # noqa: S608 (fixed SQL, values are parameters)
                 [campaign.pk, campaign.pk, annotator.pk])
    return bool(rows and rows[0][0])


def _lock_annotator_in(*, campaign_id: int, annotator: User) -> tuple[Campaign, bool] | None:
    """``_lock_annotator`` that also reads the campaign (every field) in the same statement, for
    a caller that has only its id; None when there is no such campaign."""
    rows = fetch(
        f"SELECT {_CAMPAIGN.sql}, {_MEMBER_SQL} FROM annotation_campaign c JOIN auth_user u ON u.id = %s "  # noqa: S608 (fixed SQL, values are parameters)
        f"WHERE c.id = %s{for_update('u')}",
        [campaign_id, campaign_id, annotator.pk, campaign_id],
    )
    return (_CAMPAIGN.load(rows[0]), bool(rows[0][-1])) if rows else None


def _held_leases(*, campaign: Campaign, annotator: User, now: datetime, limit: int) -> list[Lease]:
    """The annotator's unexpired active leases in this campaign, oldest first, with their items.

    On PostgreSQL the same statement first expires the campaign's leases past their time and
    reopens their slots (``_EXPIRE``): the sweep every hand-out needs costs no round trip of its
    own. The held leases are unaffected by it (they expire later than now)."""
    sweep, sweep_params = "", []
    if connection.vendor == "postgresql":
        sweep, sweep_params = _EXPIRE, _expire_params(campaign=campaign, now=now, limit=_RECLAIM_LIMIT)
    rows = fetch(
        f"{sweep}SELECT {_LEASE.sql}, {_ITEM.sql} FROM annotation_lease l JOIN annotation_item i ON i.id = l.item_id "  # noqa: S608 (fixed SQL, values are parameters)
        "WHERE l.annotator_id = %s AND i.campaign_id = %s AND l.state = %s AND l.expires_at > %s "
        "ORDER BY l.id LIMIT %s",
        [*sweep_params, annotator.pk, campaign.pk, LeaseState.ACTIVE, prep(Lease, "expires_at", now), limit],
    )
    held = []
    for row in rows:
        lease = _LEASE.load(row)
        item = _ITEM.load(row, _LEASE.width)
        item.campaign = campaign
        cache_related(lease, "item", item)
        cache_related(lease, "annotator", annotator)
        held.append(lease)
    return held


# The first open item (priority, then age) this annotator has never had, locked; rows other
# hand-outs hold are skipped, so concurrent hand-outs take different items and never wait.
_FREE_ITEM = ("SELECT i.id FROM annotation_item i WHERE i.campaign_id = %s AND i.status = %s AND i.is_gold = %s "
              "AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.item_id = i.id AND l.annotator_id = %s) "
              "ORDER BY i.priority DESC, i.id LIMIT 1")
# Count the slot under that row lock and mark the item full when its overlap is reached (gold
# items never fill up: everyone sees them).
_TAKE = ("UPDATE annotation_item SET leased_count = leased_count + 1, "
         "status = CASE WHEN NOT is_gold AND leased_count + 1 >= %s THEN %s ELSE status END "
         "WHERE id = ({free}{lock}) RETURNING {returning}")


def _take_params(*, campaign: Campaign, annotator: User, gold: bool) -> list:
    return [campaign.overlap, ItemStatus.FULL, campaign.pk, ItemStatus.OPEN, gold, annotator.pk]


def _take_item(*, campaign: Campaign, annotator: User, gold: bool) -> Item | None:
    """Take a slot of a free item (``_FREE_ITEM``, ``_TAKE``) in one statement."""
    rows = fetch(_TAKE.format(free=_FREE_ITEM, lock=for_update("i", skip_locked=True), returning=_ITEM_RETURNED.sql),
                 _take_params(campaign=campaign, annotator=annotator, gold=gold))
    return _ITEM_RETURNED.load(rows[0]) if rows else None


_LEASE_COLUMNS = "uid, item_id, annotator_id, state, displayed_order, created_at, expires_at, finished_at, skip_reason"
_TAKEN, _LEASED = Columns(Item, "taken"), Columns(Lease, "leased")
# PostgreSQL: take the slot, shuffle the item's candidates, insert the lease and read the item's
# sample, task type and slots back, all in one statement. The order of the candidates is the
# caller's random keys, one per slot position (``_shuffle_keys``).
_TAKE_AND_LEASE = (
    "WITH taken AS (" + _TAKE.format(free=_FREE_ITEM, lock=" FOR UPDATE OF i SKIP LOCKED", returning="*") + "), "  # noqa: S608 (fixed SQL, values are parameters)
    "shown AS (SELECT ic.item_id, jsonb_agg(ic.candidate_id ORDER BY (%s::float8[])[ic.position + 1], ic.position) "
    "AS ord FROM annotation_itemcandidate ic JOIN taken ON ic.item_id = taken.id GROUP BY ic.item_id), "
    f"leased AS (INSERT INTO annotation_lease ({_LEASE_COLUMNS}) "
    "SELECT %s, shown.item_id, %s, %s, shown.ord, %s, %s, NULL, '' FROM shown RETURNING *) "
    f"SELECT {_LEASED.sql}, {_TAKEN.sql}, {_SLOT.sql}, {_CANDIDATE.sql}, {_SAMPLE.sql}, "
    f"{_TASK.sql} FROM taken CROSS JOIN leased JOIN annotation_itemcandidate ic ON ic.item_id = taken.id "
    "JOIN annotation_candidate c ON c.id = ic.candidate_id JOIN annotation_sample s ON s.id = taken.sample_id "
    "JOIN annotation_tasktype t ON t.id = s.task_type_id ORDER BY ic.position"
)


def _shuffle_keys(campaign: Campaign, rng: random.Random) -> list[float]:
    """One random sort key per slot position: the left/right order of one hand-out (bias control)."""
    return [rng.random() for _ in range(campaign.candidates_per_item)]


def _take_and_lease(*, campaign: Campaign, annotator: User, gold: bool, rng: random.Random, now: datetime,
                    expires_at: datetime) -> Lease | None:
    """PostgreSQL's hand-out of a new item in one statement (``_TAKE_AND_LEASE``): the lease with
    its item, sample, task type and slots attached, or None when no free item is left."""
    uid = uuid.uuid4()
    rows = fetch(_TAKE_AND_LEASE, [
        *_take_params(campaign=campaign, annotator=annotator, gold=gold), _shuffle_keys(campaign, rng),
        prep(Lease, "uid", uid), annotator.pk, LeaseState.ACTIVE, prep(Lease, "created_at", now),
        prep(Lease, "expires_at", expires_at)])
    if not rows:
        return None
    lease, item = _LEASED.load(rows[0]), _TAKEN.load(rows[0], _LEASED.width)
    _attach_details(item, rows, _LEASED.width + _TAKEN.width)
    item.campaign = campaign
    cache_related(lease, "item", item)
    cache_related(lease, "annotator", annotator)
    return lease


def _refuse_unless_active(campaign: Campaign) -> None:
    if campaign.status != CampaignStatus.ACTIVE:
        raise Conflict(f"The campaign is {campaign.status}, not active.", code="campaign_not_active")


def lease_next(
    *, campaign: Campaign, annotator: User, rng: random.Random | None = None, exclude: list[str] | None = None
) -> Lease | None:
    """An active lease of the annotator not in ``exclude`` (lease uids), or a new one.

    The browser asks once for the item to show and once more, excluding it, for the item to
    prefetch; at most ``MAX_ACTIVE_LEASES`` are held at a time. None means nothing is left.
    The returned lease carries its item, sample, task type and slots (no further reads needed).
    """
    _refuse_unless_active(campaign)
    with transaction.atomic():
        if not _lock_annotator(campaign=campaign, annotator=annotator):
            raise NotAllowed("You are not assigned to this campaign.")
        return _hand_out(campaign=campaign, annotator=annotator, rng=rng or _rng, exclude=exclude)


def lease_next_in(*, campaign_id: int, annotator: User, exclude: list[str] | None = None) -> Lease | None:
    """``lease_next`` for a campaign known by id (the API's ``next``): the campaign is read with
    the annotator's lock, one statement fewer on the hottest call. 404 when it does not exist."""
    with transaction.atomic():
        locked = _lock_annotator_in(campaign_id=campaign_id, annotator=annotator)
        if locked is None:
            raise NotFound("No Campaign matches the given query.", code="not_found")
        campaign, allowed = locked
        _refuse_unless_active(campaign)
        if not allowed:
            raise NotAllowed("You are not assigned to this campaign.")
        return _hand_out(campaign=campaign, annotator=annotator, rng=_rng, exclude=exclude)


def _hand_out(*, campaign: Campaign, annotator: User, rng: random.Random, exclude: list[str] | None) -> Lease | None:
    """The held lease to show or a new one, inside the caller's transaction and annotator lock."""
    now = timezone.now()
    excluded = {str(u) for u in exclude or []}
    held = _held_leases(campaign=campaign, annotator=annotator, now=now, limit=MAX_ACTIVE_LEASES + len(excluded))
    current = next((lease for lease in held if str(lease.uid) not in excluded), None)
    if current:
        _load_details(current.item)
        return current
    if len(held) >= MAX_ACTIVE_LEASES:
        return None
    want_gold = campaign.gold_fraction > 0 and rng.random() < campaign.gold_fraction
    expires_at = now + timedelta(seconds=campaign.lease_seconds)
    if connection.vendor == "postgresql":  # swept with the held leases; one statement per try
        for gold in (want_gold, not want_gold):
            lease = _take_and_lease(campaign=campaign, annotator=annotator, gold=gold, rng=rng, now=now,
                                    expires_at=expires_at)
            if lease:
                return lease
        return None
    _reclaim_expired(campaign=campaign, now=now)
    item = None
    for gold in (want_gold, not want_gold):
        item = _take_item(campaign=campaign, annotator=annotator, gold=gold)
        if item:
            break
    if item is None:
        return None
    _load_details(item)
    order = [slot.candidate_id for slot in item.slots.all()]
    rng.shuffle(order)  # left/right bias control: every hand-out gets its own order
    item.campaign = campaign
    return _lease_create(item=item, annotator=annotator, order=order, now=now, expires_at=expires_at)


def _lease_create(*, item: Item, annotator: User, order: list[int], now: datetime, expires_at: datetime) -> Lease:
    """Insert the active lease and return it with its item and annotator attached."""
    uid = uuid.uuid4()
    values = {"uid": uid, "item": item.pk, "annotator": annotator.pk, "state": LeaseState.ACTIVE,
              "displayed_order": order, "created_at": now, "expires_at": expires_at, "finished_at": None,
              "skip_reason": ""}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO annotation_lease ({_LEASE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",  # noqa: S608 (fixed SQL, values are parameters)
            [prep(Lease, name, value) for name, value in values.items()],
        )
        pk = cursor.fetchone()[0]
    lease = Lease(id=pk, uid=uid, item=item, annotator=annotator, state=LeaseState.ACTIVE, displayed_order=order,
                  created_at=now, expires_at=expires_at, finished_at=None, skip_reason="")
    lease._state.adding = False
    return lease


def _release_slots(item_ids: Counter) -> None:
    """Give leased slots back to items (after expiries or a skip): {item id: how many}."""
    for item_id, n in item_ids.items():
        Item.objects.filter(pk=item_id).update(
            leased_count=F("leased_count") - n,
            status=Case(When(status=ItemStatus.FULL, then=Value(ItemStatus.OPEN)), default=F("status")),
        )


_RECLAIM_LIMIT = 500  # leases expired per sweep; a larger backlog goes over the next hand-outs

# PostgreSQL: expire a campaign's (or every campaign's) active leases past their time and give
# their slots back, as data-modifying CTEs ahead of whatever query the caller puts after them.
_EXPIRE = (
    "WITH expired AS (SELECT l.id, l.item_id FROM annotation_lease l JOIN annotation_item i ON i.id = l.item_id "
    "WHERE l.state = %s AND l.expires_at <= %s AND (%s::bigint IS NULL OR i.campaign_id = %s::bigint) "
    "ORDER BY l.id LIMIT %s FOR UPDATE OF l SKIP LOCKED), "
    "lease_expired AS (UPDATE annotation_lease SET state = %s, finished_at = %s WHERE id IN (SELECT id FROM expired)), "
    "slots_back AS (UPDATE annotation_item it SET leased_count = it.leased_count - e.n, "
    "status = CASE WHEN it.status = %s THEN %s ELSE it.status END "
    "FROM (SELECT item_id, count(*) AS n FROM expired GROUP BY item_id) e WHERE it.id = e.item_id) "
)


def _expire_params(*, campaign: Campaign | None, now: datetime, limit: int) -> list:
    at = prep(Lease, "expires_at", now)
    pk = campaign.pk if campaign is not None else None
    return [LeaseState.ACTIVE, at, pk, pk, limit, LeaseState.EXPIRED, at, ItemStatus.FULL, ItemStatus.OPEN]


def _reclaim_expired(*, campaign: Campaign | None, now: datetime, limit: int = _RECLAIM_LIMIT) -> int:
    """Expire active leases past their time and reopen their slots, inside the caller's
    transaction; one indexed statement (``_EXPIRE`` on PostgreSQL)."""
    if connection.vendor == "postgresql":
        return fetch(f"{_EXPIRE}SELECT count(*) FROM expired",  # noqa: S608 (fixed SQL, values are parameters)
                     _expire_params(campaign=campaign, now=now, limit=limit))[0][0]
    params = [LeaseState.ACTIVE, prep(Lease, "expires_at", now)]
    scope = ""
    if campaign is not None:
        scope = " AND i.campaign_id = %s"
        params.append(campaign.pk)
    expired = fetch(
        "SELECT l.id, l.item_id FROM annotation_lease l JOIN annotation_item i ON i.id = l.item_id "  # noqa: S608 (fixed SQL, values are parameters)
        f"WHERE l.state = %s AND l.expires_at <= %s{scope} ORDER BY l.id LIMIT %s",
        [*params, limit],
    )
    if expired:
        Lease.objects.filter(pk__in=[pk for pk, _ in expired]).update(state=LeaseState.EXPIRED, finished_at=now)
        _release_slots(Counter(item_id for _, item_id in expired))
    return len(expired)


def lease_reclaim_expired(*, campaign: Campaign | None = None, limit: int = _RECLAIM_LIMIT) -> int:
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
