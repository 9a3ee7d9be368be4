"""Adjudication: a curator settles a disputed (item, criterion) with a final answer and a note.

Adjudications are versioned rows: a new answer never overwrites the last, and the latest one
(highest id) per (item, criterion) is the one that counts. Snapshots use it instead of the
annotators' votes on that item (``services.snapshots``); the votes stay as they were, so the
human ceiling and annotator statistics still measure what people answered.
"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from core.errors import ApplicationError

from ..models import Adjudication, CampaignMode, Choice, Criterion, Item
from .judgments import parse_answer

#: Longest note kept with an adjudication (it is read on the item page, not in snapshots).
NOTE_MAX_CHARS = 5_000


def item_candidate_ids(item: Item) -> list[int]:
    """The item's candidate ids in canonical order (A = position 0)."""
    return list(item.slots.order_by("position").values_list("candidate_id", flat=True))


def parse_item_answer(*, item: Item, answer) -> tuple[str, int | None, int | None]:
    """An answer for ``item`` in the shape annotators submit it — pairwise: the better
    candidate's id, "tie" or "both_bad" (or the canonical "a" / "b"); best–worst:
    {"best": id, "worst": id} or "no_difference" — as (choice, best_id, worst_id).
    Raises ValueError with the message for the field."""
    mode = item.campaign.mode
    if mode == CampaignMode.PAIRWISE and answer in (Choice.A, Choice.B):
        return answer, None, None
    return parse_answer(mode=mode, answer=answer, candidate_ids=item_candidate_ids(item))


def _campaign_criterion(item: Item, slug) -> Criterion:
    criterion = item.campaign.criteria.filter(slug=slug).first() if isinstance(slug, str) else None
    if criterion is None:
        slugs = sorted(item.campaign.criteria.values_list("slug", flat=True))
        raise ApplicationError("Pick a criterion of the item's campaign.",
                               fields={"criterion": [f"Use one of {', '.join(slugs)}."]})
    return criterion


@transaction.atomic
def item_adjudicate(*, item: Item, criterion: str, answer, note: str = "", user: User | None) -> Adjudication:
    """Record ``user``'s final answer for ``item`` on the criterion (by slug), with a note.

    Only (item, criterion) pairs that annotators have judged can be adjudicated: an adjudication
    settles their votes, it does not label items nobody looked at (gold items do that).
    """
    item = Item.objects.select_related("campaign").get(pk=item.pk)
    crit = _campaign_criterion(item, criterion)
    errors: dict[str, list[str]] = {}
    try:
        choice, best, worst = parse_item_answer(item=item, answer=answer)
    except ValueError as exc:
        errors["answer"] = [str(exc)]
    if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
        errors["note"] = [f"Text of at most {NOTE_MAX_CHARS} characters."]
    if not item.judgments.filter(criterion=crit).exists():
        errors["criterion"] = ["Nobody has judged this item on this criterion yet: there is nothing to adjudicate."]
    if errors:
        raise ApplicationError("The adjudication is not valid.", fields=errors)
    return Adjudication.objects.create(item=item, criterion=crit, choice=choice, best_id=best, worst_id=worst,
                                       note=note.strip(), created_by=user)

