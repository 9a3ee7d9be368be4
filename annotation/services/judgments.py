"""Submitting and editing judgments.

A submission carries a client idempotency key: replaying it (a retry after a lost response)
returns the stored judgments and never writes twice.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import ApplicationError, Conflict, NotAllowed, NotFound
from core.rows import Columns, cache_related, fetch, for_update, prep, run

from ..models import (
    Campaign,
    CampaignMode,
    CampaignStatus,
    Choice,
    Criterion,
    GuidelineVersion,
    Item,
    ItemStatus,
    Judgment,
    JudgmentRevision,
    Lease,
    LeaseState,
)
from ..selectors import campaign_criteria

PAIRWISE_WORDS = {Choice.TIE.value, Choice.BOTH_BAD.value}


def parse_answer(*, mode: str, answer, candidate_ids: list[int]) -> tuple[str, int | None, int | None]:
    """Turn one criterion's answer into (choice, best_id, worst_id); raise ValueError if invalid.

    Pairwise: the better candidate's id, or "tie" / "both_bad". Best–worst: {"best": id,
    "worst": id} or "no_difference". Choices are stored by canonical position (A = first).
    """
    if mode == CampaignMode.PAIRWISE:
        if isinstance(answer, str) and answer in PAIRWISE_WORDS:
            return answer, None, None
        if isinstance(answer, int) and not isinstance(answer, bool) and answer in candidate_ids:
            return (Choice.A if candidate_ids.index(answer) == 0 else Choice.B), None, None
        raise ValueError(f"Use one of the candidate ids {candidate_ids}, 'tie' or 'both_bad'.")
    if answer == Choice.NO_DIFFERENCE:
        return Choice.NO_DIFFERENCE, None, None
    if isinstance(answer, dict) and set(answer) == {"best", "worst"}:
        best, worst = answer["best"], answer["worst"]
        if best in candidate_ids and worst in candidate_ids and best != worst:
            return Choice.BEST_WORST, best, worst
    raise ValueError("Use {'best': id, 'worst': id} with two different candidates of the item, or 'no_difference'.")


def _validate_answers(*, campaign: Campaign, candidate_ids: list[int],
                      answers: dict) -> dict[Criterion, tuple[str, int | None, int | None]]:
    criteria = {c.slug: c for c in campaign_criteria(campaign)}
    errors: dict[str, list[str]] = {}
    parsed = {}
    for slug in criteria.keys() - answers.keys():
        errors[slug] = ["An answer is required."]
    for slug in answers.keys() - criteria.keys():
        errors[slug] = ["Not a criterion of this campaign."]
    for slug, answer in answers.items():
        if slug in criteria:
            try:
                parsed[criteria[slug]] = parse_answer(mode=campaign.mode, answer=answer, candidate_ids=candidate_ids)
            except ValueError as exc:
                errors[slug] = [str(exc)]
    if errors:
        raise ApplicationError("Some answers are missing or invalid.", fields={"answers": errors})
    return parsed


def _current_guideline(criterion: Criterion) -> GuidelineVersion:
    """The criterion's current guideline version from the fields ``criteria_with_guidelines``
    read along with it (no further query; versions are immutable)."""
    return GuidelineVersion(pk=criterion.guideline_id, criterion=criterion, version=criterion.guideline_version)


def _refuse_unless_active(campaign: Campaign) -> None:
    """Judgments are taken only while a campaign runs; the client keeps the answers to retry."""
    if campaign.status != CampaignStatus.ACTIVE:
        raise Conflict(f"The campaign is {campaign.status}, so answers are not taken now; they are kept on this "
                       "page and can be sent when it runs again.", code="campaign_not_active")


def judgment_submit(
    *, lease_uid, annotator: User, answers: dict, idempotency_key: str, active_ms: int = 0
) -> tuple[list[Judgment], bool]:
    """Store one answer per campaign criterion for the annotator's leased item (by lease uid).

    Idempotent per key: returns (judgments, created); a replay returns the stored judgments and
    ``created=False``. Locks only the lease and its item, so submits to one campaign run in
    parallel; a constant handful of statements whatever the campaign's size.
    """
    if not idempotency_key or len(idempotency_key) > 64:
        raise ApplicationError("An idempotency key (1–64 characters) is required.",
                               fields={"idempotency_key": ["Required, at most 64 characters."]})
    try:
        with transaction.atomic():
            return _submit_locked(lease_uid=lease_uid, annotator=annotator, answers=answers,
                                  idempotency_key=idempotency_key, active_ms=active_ms)
    except IntegrityError:
        # The key is taken: a concurrent replay won the race (return what it stored), or the key
        # was used for another item.
        stored = list(Judgment.objects.filter(annotator=annotator, idempotency_key=idempotency_key)
                      .select_related("lease", "criterion", "guideline_version"))
        if not stored:
            raise
        if str(stored[0].lease.uid) != str(lease_uid):
            raise Conflict("This idempotency key was already used for another item.", code="key_reused") from None
        return stored, False


# The submit's statements are SQL written once (``core.rows``): compiling them through the
# ORM cost more Python per submit than PostgreSQL spent running them.
_LEASE, _ITEM, _CAMPAIGN = Columns(Lease, "l"), Columns(Item, "i"), Columns(Campaign, "c")
_JUDGMENT_FIELDS = [Judgment._meta.get_field(name) for name in (
    "created_at", "updated_at", "item", "lease", "criterion", "annotator", "choice", "best", "worst",
    "displayed_order", "guideline_version", "active_ms", "idempotency_key")]
# Columns whose value is the same for every judgment of one submission (``_submit_locked`` gives
# them all the same time, item, lease, annotator, order, time spent and key): converted once.
_PER_SUBMISSION = frozenset({"created_at", "updated_at", "item", "lease", "annotator", "displayed_order", "active_ms",
                             "idempotency_key"})


def _lock_lease(*, lease_uid, annotator: User) -> tuple[Lease, list[int]] | None:
    """Lock the annotator's lease and its item (not the campaign: submits of a campaign run side
    by side); returns the lease with item and campaign attached, and the item's candidate ids in
    canonical order, all from one statement."""
    rows = fetch(
        f"SELECT {_LEASE.sql}, {_ITEM.sql}, {_CAMPAIGN.sql}, ic.candidate_id FROM annotation_lease l "  # noqa: S608 (fixed SQL, values are parameters)
        "JOIN annotation_item i ON i.id = l.item_id JOIN annotation_campaign c ON c.id = i.campaign_id "
        "JOIN annotation_itemcandidate ic ON ic.item_id = i.id WHERE l.uid = %s AND l.annotator_id = %s "
        f"ORDER BY ic.position{for_update('l, i')}",
        [prep(Lease, "uid", lease_uid), annotator.pk],
    )
    if not rows:
        return None
    lease = _LEASE.load(rows[0])
    item = _ITEM.load(rows[0], _LEASE.width)
    cache_related(item, "campaign", _CAMPAIGN.load(rows[0], _LEASE.width + _ITEM.width))
    cache_related(lease, "item", item)
    cache_related(lease, "annotator", annotator)
    return lease, [row[-1] for row in rows]


def _write_submission(*, judgments: list[Judgment], lease: Lease, item: Item) -> None:
    """Insert the judgments (setting their ids) and store the lease's and the item's new state.

    On PostgreSQL the two updates ride on the INSERT as data-modifying CTEs: one statement and one
    round trip, all or nothing (a reused idempotency key fails the whole statement). SQLite has no
    such CTEs, so there they are three statements in the caller's transaction."""
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(_JUDGMENT_FIELDS)) + ")"] * len(judgments))
    shared = {f.name: f.get_db_prep_save(getattr(judgments[0], f.attname), connection)
              for f in _JUDGMENT_FIELDS if f.name in _PER_SUBMISSION}
    params = [shared[f.name] if f.name in shared else f.get_db_prep_save(getattr(j, f.attname), connection)
              for j in judgments for f in _JUDGMENT_FIELDS]
    columns = ", ".join(f.column for f in _JUDGMENT_FIELDS)
    insert = f"INSERT INTO annotation_judgment ({columns}) VALUES {placeholders} RETURNING id"  # noqa: S608 (fixed SQL, values are parameters)
    lease_sql, lease_params = ("UPDATE annotation_lease SET state = %s, finished_at = %s WHERE id = %s",
                               [lease.state, prep(Lease, "finished_at", lease.finished_at), lease.pk])
    item_sql, item_params = (
        "UPDATE annotation_item SET leased_count = %s, completed_count = %s, status = %s WHERE id = %s",
        [item.leased_count, item.completed_count, item.status, item.pk])
    if connection.vendor == "postgresql":
        ids = fetch(f"WITH lease_done AS ({lease_sql}), item_done AS ({item_sql}) {insert}",
                    [*lease_params, *item_params, *params])
    else:
        ids = fetch(insert, params)
        run(lease_sql, lease_params)
        run(item_sql, item_params)
    for judgment, (pk,) in zip(judgments, ids, strict=True):
        judgment.pk = pk
        judgment._state.adding = False


def _submit_locked(*, lease_uid, annotator: User, answers: dict, idempotency_key: str,
                   active_ms: int) -> tuple[list[Judgment], bool]:
    locked = _lock_lease(lease_uid=lease_uid, annotator=annotator)
    if locked is None:
        raise NotFound("No such lease of yours.")
    lease, candidate_ids = locked
    item = lease.item
    campaign = item.campaign
    if lease.state == LeaseState.SUBMITTED:
        replay = list(lease.judgments.filter(idempotency_key=idempotency_key)
                      .select_related("item", "criterion", "guideline_version"))
        if replay:
            for judgment in replay:
                judgment.lease = lease
            return replay, False
        raise Conflict("This item is already judged; edit the judgments instead.", code="already_submitted")
    if lease.state == LeaseState.SKIPPED:
        raise Conflict("This item was skipped.", code="skipped")
    _refuse_unless_active(campaign)
    if lease.state == LeaseState.EXPIRED:
        # The slot was given back; take it again only if nobody else has it (overlap is a hard cap).
        if not item.is_gold and item.leased_count >= campaign.overlap:
            raise Conflict("The lease expired and the item went to someone else.", code="lease_expired")
        item.leased_count += 1
    parsed = _validate_answers(campaign=campaign, candidate_ids=candidate_ids, answers=answers)
    now = timezone.now()
    judgments = [
        Judgment(
            item=item, lease=lease, criterion=criterion, annotator=annotator, choice=choice,
            best_id=best, worst_id=worst, displayed_order=lease.displayed_order,
            guideline_version=_current_guideline(criterion), active_ms=max(0, min(int(active_ms), 86_400_000)),
            idempotency_key=idempotency_key, created_at=now, updated_at=now,
        )
        for criterion, (choice, best, worst) in parsed.items()
    ]
    lease.state = LeaseState.SUBMITTED
    lease.finished_at = now
    item.completed_count += 1
    if not item.is_gold:
        if item.completed_count >= campaign.overlap:
            item.status = ItemStatus.DONE
        elif item.leased_count >= campaign.overlap:
            item.status = ItemStatus.FULL
    _write_submission(judgments=judgments, lease=lease, item=item)
    return judgments, True


@transaction.atomic
def judgment_edit(*, judgment: Judgment, annotator: User, answer) -> Judgment:
    """Change an own judgment within the edit window; the previous state goes to history."""
    judgment = (Judgment.objects.select_for_update(of=("self",)).select_related("item__campaign")
                .get(pk=judgment.pk))
    if judgment.annotator_id != annotator.pk:
        raise NotAllowed("You can only edit your own judgments.")
    _refuse_unless_active(judgment.item.campaign)
    window = timedelta(seconds=settings.ANNOTATION_EDIT_WINDOW_SECONDS)
    if timezone.now() - judgment.created_at > window:
        raise Conflict("The edit window for this judgment has closed.", code="edit_window_closed")
    candidate_ids = list(judgment.item.slots.order_by("position").values_list("candidate_id", flat=True))
    try:
        choice, best, worst = parse_answer(mode=judgment.item.campaign.mode, answer=answer, candidate_ids=candidate_ids)
    except ValueError as exc:
        raise ApplicationError("Invalid answer.", fields={"answer": [str(exc)]}) from exc
    JudgmentRevision.objects.create(judgment=judgment, choice=judgment.choice, best_id=judgment.best_id,
                                    worst_id=judgment.worst_id)
    judgment.choice, judgment.best_id, judgment.worst_id = choice, best, worst
    judgment.save(update_fields=["choice", "best", "worst", "updated_at"])
    return judgment
