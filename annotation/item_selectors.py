"""Reads behind the item browser: a campaign's items with their status, per-criterion agreement,
gold and adjudication state, filtered and paginated on the server, and one item in full.

Kept apart from ``selectors`` (progress, quality, exports): these reads serve curators looking at
single items, with a fixed handful of statements per page whatever the campaign's size.

Agreement of an (item, criterion) is the share of its judgments that give the most common label
(A / B / tie / both bad, or the same (best, worst) / no difference). It is *disputed* when it has
at least two judgments, no adjudication yet, and either the most common label is shared by
another (a split) or its share is below the threshold (2/3 by default: 2 of 3 is settled, 3 of
5 is not).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from core.errors import ApplicationError

from .models import (
    Adjudication,
    Campaign,
    Choice,
    Item,
    ItemCandidate,
    ItemStatus,
    Judgment,
    Lease,
    LeaseState,
)

ITEM_STATUSES = ("open", "in_progress", "done", "skipped")
DEFAULT_DISPUTE_BELOW = 2 / 3
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: How long a campaign's disputed set may lag behind new judgments (adjudications show at once).
DISPUTED_CACHE_SECONDS = 30
# Float slack so that a share equal to the threshold (2 of 3 against 2/3) is not "below" it.
_EPS = 1e-9
_LABELS = "ABCDEFGH"


@dataclass(frozen=True)
class ItemFilter:
    """What the item browser shows; ``None`` leaves a dimension unfiltered."""

    status: str | None = None
    gold: bool | None = None
    annotator: User | None = None
    disputed: bool | None = None
    threshold: float = DEFAULT_DISPUTE_BELOW


def _yes_no(value: str | None, field: str, errors: dict) -> bool | None:
    if value in (None, ""):
        return None
    if value.lower() in ("yes", "true", "1"):
        return True
    if value.lower() in ("no", "false", "0"):
        return False
    errors[field] = ["Use yes or no."]
    return None


def item_filter_from_query(params) -> ItemFilter:
    """Parse ``?status=&gold=&annotator=&disputed=&threshold=`` (a QueryDict or dict); raise
    ApplicationError with a message per bad field."""
    errors: dict[str, list[str]] = {}
    status = params.get("status") or None
    if status is not None and status not in ITEM_STATUSES:
        errors["status"] = [f"Use one of {', '.join(ITEM_STATUSES)}."]
    gold = _yes_no(params.get("gold"), "gold", errors)
    disputed = _yes_no(params.get("disputed"), "disputed", errors)
    annotator = None
    if name := params.get("annotator"):
        annotator = User.objects.filter(username=name).first()
        if annotator is None:
            errors["annotator"] = [f"No such user: {name}."]
    threshold = DEFAULT_DISPUTE_BELOW
    if (raw := params.get("threshold")) not in (None, ""):
        try:
            threshold = float(raw)
        except ValueError:
            threshold = -1.0
        if not 0 < threshold <= 1:
            errors["threshold"] = ["A share between 0 (exclusive) and 1."]
    if errors:
        raise ApplicationError("The item filter is invalid.", fields=errors)
    return ItemFilter(status=status, gold=gold, annotator=annotator, disputed=disputed, threshold=threshold)


def _status_q(status: str) -> Q:
    """Item status as the browser names it: done, in progress (someone holds or has judged a
    slot), skipped (nobody holds a slot and someone skipped it), open (untouched)."""
    if status == "done":
        return Q(status=ItemStatus.DONE)
    if status == "in_progress":
        return ~Q(status=ItemStatus.DONE) & Q(leased_count__gt=0)
    idle = ~Q(status=ItemStatus.DONE) & Q(leased_count=0)
    return idle & (Q(was_skipped=True) if status == "skipped" else Q(was_skipped=False))


def _disputed_ids_sql(campaign_id: int, threshold: float) -> RawSQL:
    """The campaign's item ids with at least one disputed, unadjudicated criterion: one
    aggregate over the campaign's judgments (label counts per item × criterion)."""
    j, i, a = Judgment._meta.db_table, Item._meta.db_table, Adjudication._meta.db_table
    sql = f"""
        WITH labels AS (
            SELECT j.item_id, j.criterion_id, COUNT(*) AS n
            FROM {j} j JOIN {i} i ON i.id = j.item_id
            WHERE i.campaign_id = %s
            GROUP BY j.item_id, j.criterion_id, j.choice, j.best_id, j.worst_id
        ), units AS (
            SELECT item_id, criterion_id, SUM(n) AS total, MAX(n) AS top
            FROM labels GROUP BY item_id, criterion_id HAVING SUM(n) >= 2
        )
        SELECT u.item_id FROM units u
        JOIN labels l ON l.item_id = u.item_id AND l.criterion_id = u.criterion_id AND l.n = u.top
        WHERE NOT EXISTS (SELECT 1 FROM {a} a WHERE a.item_id = u.item_id AND a.criterion_id = u.criterion_id)
        GROUP BY u.item_id, u.criterion_id, u.total, u.top
        HAVING COUNT(*) > 1 OR u.top < %s * u.total
    """  # noqa: S608 (table names come from model metadata; every value is a parameter)
    return RawSQL(sql, (campaign_id, threshold - _EPS))  # noqa: S611 (as above)


def _skipped() -> Exists:
    return Exists(Lease.objects.filter(item=OuterRef("pk"), state=LeaseState.SKIPPED))


def campaign_items(*, campaign: Campaign, flt: ItemFilter) -> QuerySet[Item]:
    """The campaign's items matching ``flt`` except ``disputed`` (see ``disputed_item_ids``), in
    id order."""
    qs = Item.objects.filter(campaign=campaign).order_by("id")
    if flt.status in ("open", "skipped"):
        qs = qs.annotate(was_skipped=_skipped())
    if flt.status:
        qs = qs.filter(_status_q(flt.status))
    if flt.gold is not None:
        qs = qs.filter(is_gold=flt.gold)
    if flt.annotator is not None:
        qs = qs.filter(Exists(Judgment.objects.filter(item=OuterRef("pk"), annotator=flt.annotator)))
    return qs


def disputed_item_ids(*, campaign: Campaign, threshold: float = DEFAULT_DISPUTE_BELOW) -> frozenset[int]:
    """The campaign's items with a disputed, unadjudicated criterion.

    One aggregate over every judgment of the campaign, which takes seconds at 100k items while
    annotators keep adding judgments, so the answer is cached for ``DISPUTED_CACHE_SECONDS``
    under a key that every adjudication changes: an adjudicated item leaves the list at once,
    new judgments join it within that time.
    """
    last = Adjudication.objects.filter(item__campaign=campaign).aggregate(last=Max("id"))["last"]
    key = f"items:disputed:{campaign.pk}:{campaign.created_at.timestamp()}:{threshold:.6f}:{last}"
    ids = cache.get(key)
    if ids is None:
        raw = _disputed_ids_sql(campaign.pk, threshold)
        with transaction.atomic(), connection.cursor() as cur:
            if connection.vendor == "postgresql":  # the label counts sort in memory, not on disk
                cur.execute("SET LOCAL work_mem = '64MB'")
            cur.execute(raw.sql, raw.params)
            ids = frozenset(row[0] for row in cur.fetchall())
        cache.set(key, ids, DISPUTED_CACHE_SECONDS)
    return ids


def _status_of(item: Item) -> str:
    if item.status == ItemStatus.DONE:
        return "done"
    if item.leased_count > 0:
        return "in_progress"
    return "skipped" if item.was_skipped else "open"


def answer_text(choice: str, best_id: int | None, worst_id: int | None, labels: dict[int, str]) -> str:
    """A judgment's or adjudication's answer as people read it: "A", "tie", "best C, worst A"."""
    if choice in (Choice.A, Choice.B):
        return choice.upper()
    if choice == Choice.BEST_WORST:
        return f"best {labels.get(best_id, best_id)}, worst {labels.get(worst_id, worst_id)}"
    return choice.replace("_", " ")


def agreement_of(labels: list[str], *, adjudicated: bool, threshold: float = DEFAULT_DISPUTE_BELOW) -> dict:
    """Agreement of one (item, criterion) from its judgments' labels (see the module docstring)."""
    counts = Counter(labels).most_common()
    n = len(labels)
    if not n:
        return {"judgments": 0, "agreement": None, "majority": None, "split": False, "disputed": False}
    top = counts[0][1]
    split = len(counts) > 1 and counts[1][1] == top
    disputed = n >= 2 and not adjudicated and (split or top < (threshold - _EPS) * n)
    return {"judgments": n, "agreement": round(top / n, 4), "majority": None if split else counts[0][0],
            "split": split, "disputed": disputed}


def latest_adjudications(item_ids) -> dict[tuple[int, int], Adjudication]:
    """{(item id, criterion id): the latest adjudication} for ``item_ids`` (ids or a queryset)."""
    out: dict[tuple[int, int], Adjudication] = {}
    for adj in Adjudication.objects.filter(item_id__in=item_ids).select_related("created_by").order_by("id"):
        out[(adj.item_id, adj.criterion_id)] = adj  # ascending ids: the latest overwrites
    return out


def _slot_labels(item_ids) -> dict[int, dict[int, str]]:
    out: dict[int, dict[int, str]] = defaultdict(dict)
    for item_id, cand_id, pos in ItemCandidate.objects.filter(item_id__in=item_ids).values_list(
            "item_id", "candidate_id", "position"):
        out[item_id][cand_id] = _LABELS[pos]
    return out


def campaign_items_page(*, campaign: Campaign, flt: ItemFilter, page: int = 1, page_size: int = PAGE_SIZE) -> dict:
    """One page of the item browser: {count, page, pages, page_size, criteria, threshold, results}.

    A fixed number of statements whatever the campaign's size: the count, the page's ids, its
    rows, judgments, adjudications, slots and the criteria; the disputed filter reads the
    matching ids and ``disputed_item_ids`` (cached) instead of the count.
    """
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    qs = campaign_items(campaign=campaign, flt=flt)
    if flt.disputed is None:
        count = qs.count()
    else:  # the cached disputed set, matched in Python: an IN list of 100k ids would not fit a statement
        disputed = disputed_item_ids(campaign=campaign, threshold=flt.threshold)
        matching = [pk for pk in qs.values_list("pk", flat=True) if (pk in disputed) == flt.disputed]
        count = len(matching)
    pages = max(1, -(-count // page_size))
    page = max(1, min(page, pages))
    window = slice((page - 1) * page_size, page * page_size)
    page_ids = matching[window] if flt.disputed is not None else list(qs.values_list("pk", flat=True)[window])
    # The page's rows are read by id: annotating before the OFFSET would compute it for every skipped row.
    items = list(Item.objects.filter(pk__in=page_ids).annotate(was_skipped=_skipped()).select_related("sample")
                 .order_by("id"))
    ids = [it.pk for it in items]
    criteria = list(campaign.criteria.order_by("id").values_list("id", "slug"))
    by_unit: dict[tuple[int, int], list[str]] = defaultdict(list)
    annotators: dict[int, set[str]] = defaultdict(set)
    for item_id, crit_id, choice, best, worst, username in Judgment.objects.filter(item_id__in=ids).values_list(
            "item_id", "criterion_id", "choice", "best_id", "worst_id", "annotator__username"):
        by_unit[(item_id, crit_id)].append(f"{best}>{worst}" if choice == Choice.BEST_WORST else choice)
        annotators[item_id].add(username)
    adjudicated = latest_adjudications(ids)
    labels = _slot_labels(ids)
    results = []
    for it in items:
        per = {}
        for crit_id, slug in criteria:
            adj = adjudicated.get((it.pk, crit_id))
            per[slug] = {**agreement_of(by_unit[(it.pk, crit_id)], adjudicated=adj is not None,
                                        threshold=flt.threshold),
                         "adjudicated": None if adj is None else answer_text(adj.choice, adj.best_id, adj.worst_id,
                                                                             labels[it.pk])}
        results.append({
            "id": it.pk, "sample": it.sample.external_id, "status": _status_of(it), "is_gold": it.is_gold,
            "judgments": sum(v["judgments"] for v in per.values()), "annotators": sorted(annotators[it.pk]),
            "disputed": any(v["disputed"] for v in per.values()), "criteria": per,
        })
    return {"count": count, "page": page, "pages": pages, "page_size": page_size,
            "criteria": [slug for _, slug in criteria], "threshold": flt.threshold, "results": results}


def item_detail(*, item: Item) -> dict:
    """One item in full for curators: the sample, the candidates with the system that made each,
    every judgment (annotator, criterion, answer, guideline version, time), agreement per
    criterion, the adjudication history and skips. Images are the file fields; the API turns them
    into URLs."""
    item = Item.objects.select_related("campaign", "sample__task_type").annotate(was_skipped=_skipped()).get(pk=item.pk)
    sample, campaign = item.sample, item.campaign
    slots = list(item.slots.select_related("candidate").order_by("position"))
    labels = {s.candidate_id: _LABELS[s.position] for s in slots}
    criteria = list(campaign.criteria.order_by("id"))
    judgments = list(item.judgments.select_related("annotator", "criterion", "guideline_version").order_by("id"))
    adjudications = list(item.adjudications.select_related("criterion", "created_by").order_by("id"))
    latest = {a.criterion_id: a.pk for a in adjudications}
    per_crit: dict[int, list[str]] = defaultdict(list)
    for j in judgments:
        per_crit[j.criterion_id].append(f"{j.best_id}>{j.worst_id}" if j.choice == Choice.BEST_WORST else j.choice)
    return {
        "id": item.pk, "status": _status_of(item), "is_gold": item.is_gold, "gold_answer": item.gold_answer,
        "campaign": {"id": campaign.pk, "name": campaign.name, "mode": campaign.mode, "status": campaign.status},
        "criteria": [{"slug": c.slug, "name": c.name} for c in criteria],
        "sample": {"id": sample.pk, "external_id": sample.external_id, "task": sample.task_type.slug,
                   "prompt": sample.effective_prompt, "split": sample.split, "width": sample.width,
                   "height": sample.height, "source_image": sample.source_image, "mask": sample.mask},
        "candidates": [{"id": s.candidate_id, "label": _LABELS[s.position], "position": s.position,
                        "image": s.candidate.image, "source_name": s.candidate.source_name,
                        "provenance": s.candidate.provenance, "source_ref": s.candidate.source_ref}
                       for s in slots],
        "agreement": {c.slug: agreement_of(per_crit[c.pk], adjudicated=c.pk in latest) for c in criteria},
        "judgments": [{"id": j.pk, "annotator": j.annotator.username, "criterion": j.criterion.slug,
                       "choice": j.choice, "best": j.best_id, "worst": j.worst_id,
                       "answer": answer_text(j.choice, j.best_id, j.worst_id, labels),
                       "guideline_version": j.guideline_version.version, "active_ms": j.active_ms,
                       "created_at": j.created_at.isoformat(), "updated_at": j.updated_at.isoformat()}
                      for j in judgments],
        "adjudications": [{"id": a.pk, "criterion": a.criterion.slug, "choice": a.choice, "best": a.best_id,
                           "worst": a.worst_id, "answer": answer_text(a.choice, a.best_id, a.worst_id, labels),
                           "note": a.note, "by": a.created_by.username if a.created_by else None,
                           "created_at": a.created_at.isoformat(), "latest": latest[a.criterion_id] == a.pk}
                          for a in adjudications],
        "skips": list(item.leases.filter(state=LeaseState.SKIPPED).order_by("id").values(
            "annotator__username", "skip_reason", "finished_at")),
    }
