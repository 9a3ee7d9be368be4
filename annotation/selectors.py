"""Reads: progress, quality, exports. Views and tasks call these; they never write."""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Avg, Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from core.roles import ANNOTATOR, CURATOR, SCIENTIST, has_role
from core.stats import wilson_interval

from .export_format import ndjson_chunks
from .models import (
    Campaign,
    CampaignMode,
    CampaignStatus,
    Candidate,
    Choice,
    Criterion,
    DatasetSnapshot,
    GuidelineVersion,
    Item,
    ItemCandidate,
    ItemStatus,
    Judgment,
    Lease,
    LeaseState,
    Sample,
    TaskType,
)


def hashed_annotator_id(user_id: int) -> str:
    """A stable pseudonym for exports and snapshot manifests: an HMAC keyed with the deployment's
    secret ANNOTATOR_ID_SALT, so without the key nobody can map pseudonyms back to user ids by
    hashing every small integer."""
    return hmac.new(settings.ANNOTATOR_ID_SALT.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()[:16]


def campaign_list_for(user: User) -> QuerySet[Campaign]:
    """Curators and scientists see every campaign; annotators the active ones open to them."""
    qs = Campaign.objects.select_related("task_type").prefetch_related("criteria")
    if has_role(user, CURATOR, SCIENTIST):
        return qs
    if has_role(user, ANNOTATOR):
        return qs.filter(status=CampaignStatus.ACTIVE).filter(Q(annotators=None) | Q(annotators=user)).distinct()
    return qs.none()


def is_side_by_side(campaign: Campaign) -> bool:
    """A campaign that pits named systems against each other (its selection names opponents)."""
    return isinstance(campaign.selection, dict) and bool(campaign.selection.get("opponents"))


def annotator_title(campaign: Campaign) -> str:
    """The campaign's name as annotators see it: side-by-side campaigns are often named after
    the systems they compare, which would unblind the verdict, so annotators get a neutral one."""
    if is_side_by_side(campaign):
        return f"Side-by-side #{campaign.pk}"
    return campaign.name


def blind_for(user: User) -> bool:
    """Whether ``user`` must not learn which system made which image (annotators without a staff
    role: their side-by-side verdicts decide promotions)."""
    return not has_role(user, CURATOR, SCIENTIST)


def campaigns_as_seen_by(user: User, campaigns) -> list[Campaign]:
    """The campaigns with ``display_name`` and ``display_description`` set for ``user``:
    neutral for side-by-side campaigns when the user judges blind."""
    out = list(campaigns)
    blind = blind_for(user)
    for c in out:
        hide = blind and is_side_by_side(c)
        c.display_name = annotator_title(c) if blind else c.name
        c.display_description = "" if hide else c.description
    return out


def criteria_with_guidelines(criteria: QuerySet[Criterion]) -> list[Criterion]:
    """The criteria in one statement, each with its current guideline as ``guideline_id``,
    ``guideline_version``, ``guideline_markdown`` and ``guideline_html`` (None while a criterion
    has no guideline). The hand-out and the submit read guidelines only through this."""
    latest = GuidelineVersion.objects.filter(criterion=OuterRef("pk")).order_by("-version")
    return list(criteria.annotate(
        guideline_id=Subquery(latest.values("id")[:1]),
        guideline_version=Subquery(latest.values("version")[:1]),
        guideline_markdown=Subquery(latest.values("body_markdown")[:1]),
        guideline_html=Subquery(latest.values("body_html")[:1]),
    ).order_by("id"))


CRITERIA_FIELDS = ("id", "slug", "name", "description", "uses_prompt", "guideline_id", "guideline_version",
                   "guideline_markdown", "guideline_html")


def _campaign_criteria_key(campaign_id: int) -> str:
    # The version names the row layout (CRITERIA_FIELDS): entries cached by older code are ignored.
    return f"campaign-criteria:v2:{campaign_id}"


# A copy of each campaign's cached rows in this process, for CRITERIA_LOCAL_CACHE_SECONDS: the
# shared cache's read was one Redis round trip on every hand-out and every submit. A change made
# in this process drops its copy at once (``forget_campaign_criteria``); other processes keep
# theirs until it expires, so a change reaches every hand-out and submit within that many seconds.
# That lag is harmless: a submit within it records the guideline version before the new one,
# which is the one its annotator was shown with the item, and a judgment taken under the previous
# criteria set is what every item judged before the change has too.
# {campaign id: (expires at, on ``_clock``, rows)}; single dict reads and writes are atomic, so
# the server's threads share it without a lock.
_local_criteria: dict[int, tuple[float, list[tuple]]] = {}
_LOCAL_CRITERIA_MAX = 1000  # campaigns remembered at once; past it the copy starts over
_clock = time.monotonic


def campaign_criteria(campaign: Campaign) -> list[Criterion]:
    """The campaign's criteria with their current guidelines (as ``criteria_with_guidelines``),
    cached: every hand-out and every submit needs them, and they change only when a curator
    publishes a guideline or edits the campaign's criteria, which clears the shared entry and
    this process's copy (``forget_campaign_criteria``). Other processes' copies live
    ``CRITERIA_LOCAL_CACHE_SECONDS``; ``CRITERIA_CACHE_SECONDS`` bounds any other staleness
    (0 turns both off)."""
    seconds = settings.CRITERIA_CACHE_SECONDS
    local_seconds = min(settings.CRITERIA_LOCAL_CACHE_SECONDS, seconds)
    now = _clock()
    local = _local_criteria.get(campaign.pk) if local_seconds > 0 else None
    if local is not None and local[0] > now:
        rows = local[1]
    else:
        rows = _shared_campaign_criteria(campaign, seconds)
        if local_seconds > 0:
            if len(_local_criteria) >= _LOCAL_CRITERIA_MAX:
                _local_criteria.clear()
            _local_criteria[campaign.pk] = (now + local_seconds, rows)
    out = []
    for row in rows:
        values = dict(zip(CRITERIA_FIELDS, row, strict=True))
        criterion = Criterion(**{f: values.pop(f) for f in ("id", "slug", "name", "description", "uses_prompt")})
        criterion.__dict__.update(values)
        out.append(criterion)
    return out


def _shared_campaign_criteria(campaign: Campaign, seconds: int) -> list[tuple]:
    """The campaign's criteria rows (``CRITERIA_FIELDS``) from the shared cache, read from the
    database and cached for ``seconds`` on a miss."""
    key = _campaign_criteria_key(campaign.pk)
    rows = cache.get(key) if seconds > 0 else None
    if rows is None:
        rows = [tuple(getattr(c, f) for f in CRITERIA_FIELDS)
                for c in criteria_with_guidelines(campaign.criteria.all())]
        if seconds > 0:
            cache.set(key, rows, seconds)
    return rows


def forget_campaign_criteria(*, campaign_ids=None, criterion: Criterion | None = None) -> None:
    """Drop cached criteria of these campaigns, or of every campaign using ``criterion``: the
    shared entries, and this process's copies (other processes' expire by themselves)."""
    ids = list(campaign_ids or [])
    if criterion is not None:
        ids += list(criterion.campaigns.values_list("id", flat=True))
    for i in ids:
        _local_criteria.pop(i, None)
    if ids:
        cache.delete_many([_campaign_criteria_key(i) for i in ids])


def campaign_progress(campaign: Campaign, user: User | None = None) -> dict:
    """Items done/leased/left, judgments per criterion, and the caller's own counts.

    The campaign-wide part scans the whole campaign, so it is cached for
    ``settings.PROGRESS_CACHE_SECONDS`` (shared by every process through the cache); the
    caller's own counts (``campaign_progress_for_annotator``) are always fresh. Nothing on the
    hand-out path calls this.
    """
    key, seconds = f"campaign-progress:{campaign.pk}", settings.PROGRESS_CACHE_SECONDS
    out = cache.get(key) if seconds > 0 else None
    if out is None:
        out = _campaign_progress_uncached(campaign)
        if seconds > 0:
            cache.set(key, out, seconds)
    out = dict(out)
    if user is not None:
        out.update(campaign_progress_for_annotator(campaign, user))
        out["items_left_for_others"] = out["items_total"] - out["items_done"]
    return out


def campaign_progress_for_annotator(campaign: Campaign, user: User) -> dict:
    """The annotator's own standing in a campaign, in items: ``mine_left`` (items they can still
    judge: the ones they hold now plus open ones never handed to them, gold included since the
    queue hands those out too) and ``mine_submitted``.

    Always fresh (a reload right after a submit must not show the old count): two indexed
    statements, the open items (the queue's partial index) and the annotator's own leases here.
    """
    now = timezone.now()
    open_items = Item.objects.filter(campaign=campaign, status=ItemStatus.OPEN).count()
    mine = Lease.objects.filter(annotator=user, item__campaign=campaign).aggregate(
        # Open items already handed to this annotator never come back to them …
        on_open=Count("id", filter=Q(item__status=ItemStatus.OPEN)),
        # … except the ones they hold right now (open or full).
        held=Count("id", filter=Q(state=LeaseState.ACTIVE, expires_at__gt=now)),
        submitted=Count("id", filter=Q(state=LeaseState.SUBMITTED)),
    )
    return {"mine_left": open_items - mine["on_open"] + mine["held"], "mine_submitted": mine["submitted"]}


def _campaign_progress_uncached(campaign: Campaign) -> dict:
    items = Item.objects.filter(campaign=campaign, is_gold=False)
    totals = items.aggregate(
        total=Count("id"), slots_done=Sum("completed_count", default=0),
        done=Count("id", filter=Q(status=ItemStatus.DONE)), full=Count("id", filter=Q(status=ItemStatus.FULL)),
        open=Count("id", filter=Q(status=ItemStatus.OPEN)),
    )
    slots = totals["total"] * campaign.overlap
    per_criterion = dict(
        Judgment.objects.filter(item__campaign=campaign).values_list("criterion__slug").annotate(n=Count("id"))
    )
    return {
        "items_total": totals["total"],
        "items_done": totals["done"],
        "items_full": totals["full"],
        "items_open": totals["open"],
        "leases_active": Lease.objects.filter(item__campaign=campaign, state=LeaseState.ACTIVE).count(),
        "slots_total": slots,
        "slots_done": totals["slots_done"],
        "fraction_done": (totals["slots_done"] / slots) if slots else 0.0,
        "judgments_per_criterion": per_criterion,
        "as_of": timezone.now().isoformat(),
    }


def judgments_for(user: User) -> QuerySet[Judgment]:
    """Annotators see only their own judgments; curators and scientists see all."""
    qs = Judgment.objects.select_related("criterion", "item__campaign")
    return qs if has_role(user, CURATOR, SCIENTIST) else qs.filter(annotator=user)


EXPORT_COLUMNS = [
    ("judgment_id", pa.int64()),
    ("campaign", pa.string()),
    ("mode", pa.string()),
    ("task", pa.string()),
    ("criterion", pa.string()),
    ("sample_id", pa.string()),
    ("split", pa.string()),
    ("prompt", pa.string()),
    ("candidate_ids", pa.list_(pa.int64())),
    ("candidate_sources", pa.list_(pa.string())),
    ("candidate_provenance", pa.list_(pa.string())),
    ("displayed_order", pa.list_(pa.int64())),
    ("choice", pa.string()),
    ("winner_candidate_id", pa.int64()),
    ("loser_candidate_id", pa.int64()),
    ("annotator", pa.string()),
    ("guideline_version", pa.int64()),
    ("active_ms", pa.int64()),
    ("is_gold", pa.bool_()),
    ("created_at", pa.string()),
]


def _winner_loser(choice: str, best_id: int | None, worst_id: int | None,
                  candidate_ids: list[int]) -> tuple[int | None, int | None]:
    """The (winner, loser) candidate ids a judgment names, given its item's slots in canonical
    order; (None, None) for a tie, no clear difference or both bad."""
    if choice == Choice.A:
        return candidate_ids[0], candidate_ids[1]
    if choice == Choice.B:
        return candidate_ids[1], candidate_ids[0]
    if choice == Choice.BEST_WORST:
        return best_id, worst_id
    return None, None


def _canonical_slots(campaign: Campaign | None = None, *, judgments: QuerySet[Judgment] | None = None
                     ) -> dict[int, list[int]]:
    """Each item's candidate ids in canonical (position) order, read in one query: the campaign's
    items, or the items ``judgments`` name."""
    if judgments is not None:
        qs = ItemCandidate.objects.filter(item_id__in=judgments.values("item_id"))
    elif campaign is not None:
        qs = ItemCandidate.objects.filter(item__campaign=campaign)
    else:
        qs = ItemCandidate.objects.all()
    slots: dict[int, list[int]] = defaultdict(list)
    for item_id, cand_id in qs.order_by("item_id", "position").values_list("item_id", "candidate_id").iterator(
            chunk_size=10_000):
        slots[item_id].append(cand_id)
    return slots


#: The Judgment fields one export row is made of (through its item, sample, campaign, criterion).
_EXPORT_VALUES = (
    "id", "item_id", "item__campaign__name", "item__campaign__mode", "item__sample__task_type__slug",
    "criterion__slug", "item__sample__external_id", "item__sample__split", "item__sample__prompt",
    "displayed_order", "choice", "best_id", "worst_id", "annotator_id", "guideline_version__version",
    "active_ms", "item__is_gold", "created_at",
)


def _export_scope(campaign_ids: list[int] | None) -> QuerySet[Judgment]:
    qs = Judgment.objects.all()
    return qs.filter(item__campaign_id__in=campaign_ids) if campaign_ids else qs


def judgment_export_count(*, campaign_ids: list[int] | None = None) -> int:
    """How many rows an export of these campaigns (all when None) has right now."""
    return _export_scope(campaign_ids).count()


def judgment_export_rows(*, campaign_ids: list[int] | None = None, chunk_size: int = 2000) -> Iterator[dict]:
    """Every judgment as a flat dict (hashed annotator ids) in id order: the portable reader.

    Per chunk, one query for ``chunk_size`` judgments (keyset on id, so no cursor stays open and
    nothing is re-read) and one for their items' slots: memory stays flat and the query count
    does not grow with the items. PostgreSQL exports use ``judgment_export_ndjson`` instead.
    """
    qs = _export_scope(campaign_ids).order_by("id").values(*_EXPORT_VALUES)
    pseudonyms: dict[int, str] = {}  # one entry per annotator: small, and hashing is not free
    last_id = 0
    while chunk := list(qs.filter(id__gt=last_id)[:chunk_size]):
        last_id = chunk[-1]["id"]
        slots: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
        for item_id, *cand in (ItemCandidate.objects.filter(item_id__in={r["item_id"] for r in chunk})
                               .order_by("item_id", "position")
                               .values_list("item_id", "candidate_id", "candidate__source_name",
                                            "candidate__provenance")):
            slots[item_id].append(cand)
        for r in chunk:
            ids = [c[0] for c in slots[r["item_id"]]]
            winner, loser = _winner_loser(r["choice"], r["best_id"], r["worst_id"], ids)
            annotator = pseudonyms.get(r["annotator_id"])
            if annotator is None:
                annotator = pseudonyms[r["annotator_id"]] = hashed_annotator_id(r["annotator_id"])
            yield {
                "judgment_id": r["id"], "campaign": r["item__campaign__name"], "mode": r["item__campaign__mode"],
                "task": r["item__sample__task_type__slug"], "criterion": r["criterion__slug"],
                "sample_id": r["item__sample__external_id"], "split": r["item__sample__split"],
                "prompt": r["item__sample__prompt"], "candidate_ids": ids,
                "candidate_sources": [c[1] for c in slots[r["item_id"]]],
                "candidate_provenance": [c[2] for c in slots[r["item_id"]]], "displayed_order": r["displayed_order"],
                "choice": r["choice"], "winner_candidate_id": winner, "loser_candidate_id": loser,
                "annotator": annotator,
                "guideline_version": r["guideline_version__version"], "active_ms": r["active_ms"],
                "is_gold": r["item__is_gold"], "created_at": r["created_at"].isoformat(),
            }


def _uses_copy() -> bool:
    """PostgreSQL through psycopg 3 streams the rows with COPY; anything else (SQLite, the
    embedded default) takes the portable ORM reader."""
    return connection.vendor == "postgresql" and connection.Database.__name__ == "psycopg"


def _export_sql(campaign_ids: list[int] | None) -> str:
    """One SELECT that makes each export row as a JSON line, in judgment id order, with the same
    keys, order and values as ``judgment_export_rows`` (a test holds the two equal).
    Parameters: [campaign ids], user ids, their pseudonyms as JSON strings.

    Built with format() from fragments rather than json_build_object: the item's part (campaign,
    sample, prompt, slots) is escaped once per item instead of once per judgment, and format()
    skips json_build_object's per-argument type lookups: about half the database CPU per row.
    """
    t = {m.__name__: m._meta.db_table for m in (Judgment, Item, Campaign, Sample, TaskType, Criterion,
                                                GuidelineVersion, ItemCandidate, Candidate)}
    ids_text = "'[' || array_to_string(sl.ids, ', ') || ']'"  # json.dumps spacing: "[3, 1]"
    # datetime.isoformat(): microseconds only when there are any, and the UTC offset as +00:00.
    utc = "(j.created_at AT TIME ZONE 'UTC')"
    created = (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN extract(microseconds FROM {utc})::bigint "
               f"%% 1000000 = 0 THEN '' ELSE to_char({utc}, '.US') END")
    a, b, bw = (f"'{c.value}'" for c in (Choice.A, Choice.B, Choice.BEST_WORST))
    return f"""
        WITH it AS MATERIALIZED (
            SELECT i.id, sl.ids, CASE WHEN i.is_gold THEN 'true' ELSE 'false' END AS gold,
                   format('"campaign": %%s, "mode": %%s, "task": %%s',
                          to_json(c.name), to_json(c.mode), to_json(tt.slug)) AS head,
                   format(', "sample_id": %%s, "split": %%s, "prompt": %%s, "candidate_ids": %%s, '
                          '"candidate_sources": %%s, "candidate_provenance": %%s',
                          to_json(s.external_id), to_json(s.split), to_json(s.prompt), {ids_text},
                          to_json(sl.sources), to_json(sl.provenance)) AS body
            FROM {t['Item']} i
            JOIN {t['Campaign']} c ON c.id = i.campaign_id
            JOIN {t['Sample']} s ON s.id = i.sample_id
            JOIN {t['TaskType']} tt ON tt.id = s.task_type_id
            CROSS JOIN LATERAL (
                SELECT coalesce(array_agg(ic.candidate_id ORDER BY ic.position), '{{}}') AS ids,
                       coalesce(array_agg(ca.source_name ORDER BY ic.position), '{{}}') AS sources,
                       coalesce(array_agg(ca.provenance ORDER BY ic.position), '{{}}') AS provenance
                FROM {t['ItemCandidate']} ic JOIN {t['Candidate']} ca ON ca.id = ic.candidate_id
                WHERE ic.item_id = i.id) sl
            {"WHERE i.campaign_id = ANY(%s::bigint[])" if campaign_ids else ""}
        ),
        cr AS (SELECT id, to_json(slug)::text AS slug FROM {t['Criterion']}),
        ann AS (SELECT * FROM unnest(%s::bigint[], %s::text[]) AS a(id, pseudonym))
        SELECT format('{{"judgment_id": %%s, %%s, "criterion": %%s%%s, "displayed_order": %%s, "choice": %%s, '
                      '"winner_candidate_id": %%s, "loser_candidate_id": %%s, "annotator": %%s, '
                      '"guideline_version": %%s, "active_ms": %%s, "is_gold": %%s, "created_at": "%%s+00:00"}}',
            j.id, it.head, cr.slug, it.body, j.displayed_order, to_json(j.choice),
            coalesce((CASE j.choice WHEN {a} THEN it.ids[1] WHEN {b} THEN it.ids[2] WHEN {bw} THEN j.best_id END)::text,
                     'null'),
            coalesce((CASE j.choice WHEN {a} THEN it.ids[2] WHEN {b} THEN it.ids[1] WHEN {bw} THEN j.worst_id END)::text,
                     'null'),
            coalesce(ann.pseudonym, 'null'), g.version, j.active_ms, it.gold, {created})
        FROM {t['Judgment']} j
        JOIN it ON it.id = j.item_id
        JOIN cr ON cr.id = j.criterion_id
        JOIN {t['GuidelineVersion']} g ON g.id = j.guideline_version_id
        LEFT JOIN ann ON ann.id = j.annotator_id
        ORDER BY j.id"""  # noqa: S608 (table names come from model metadata; every value is a parameter)


def _ndjson_copy(campaign_ids: list[int] | None, rows_per_chunk: int) -> Iterator[tuple[int, bytes]]:
    # Repeatable read: the statement and the user list the pseudonyms come from see one snapshot,
    # so nobody appears without a pseudonym.
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:  # inside a caller's transaction (tests) the snapshot is the caller's
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # Room for the per-item fragments' hash table; the id-order sort of a big export still
        # goes to temporary files on the server (flat memory on both sides).
        cursor.execute("SET LOCAL work_mem = '32MB'")
        # Pseudonyms come from hashed_annotator_id itself (one per user, users are few), so the
        # SQL can never drift from the keyed hash the rest of the product uses.
        user_ids = list(User.objects.order_by("id").values_list("id", flat=True))
        params = [*([list(campaign_ids)] if campaign_ids else []), user_ids,
                  [json.dumps(hashed_annotator_id(u)) for u in user_ids]]
        # One COPY for the whole export: rows stream as PostgreSQL makes them, no Python object per
        # value. Its text format only doubles the backslashes of a JSON line (JSON escapes every
        # control character itself), which the replace below undoes.
        with cursor.cursor.copy(f"COPY ({_export_sql(campaign_ids)}) TO STDOUT", params) as copy:
            parts: list = []
            while data := copy.read():
                parts.append(data)
                if len(parts) >= rows_per_chunk:
                    yield len(parts), b"".join(parts).replace(b"\\\\", b"\\")
                    parts = []
            if parts:
                yield len(parts), b"".join(parts).replace(b"\\\\", b"\\")


def _ndjson_portable(campaign_ids: list[int] | None, rows_per_chunk: int) -> Iterator[tuple[int, bytes]]:
    return ndjson_chunks(judgment_export_rows(campaign_ids=campaign_ids), rows_per_chunk=rows_per_chunk)


def judgment_export_ndjson(*, campaign_ids: list[int] | None = None, rows_per_chunk: int = 2000
                           ) -> Iterator[tuple[int, bytes]]:
    """The export rows as JSON lines, ``(rows, bytes)`` per chunk of ``rows_per_chunk`` rows.

    On PostgreSQL, PostgreSQL itself builds each line (json_build_object) and streams them with
    COPY: one statement for the whole export, flat memory, no per-value Python work. Elsewhere
    the lines come from ``judgment_export_rows``. The rows are the same either way (a test).
    """
    reader = _ndjson_copy if _uses_copy() else _ndjson_portable
    yield from reader(campaign_ids, max(1, rows_per_chunk))


# --- Quality -------------------------------------------------------------------------------------

def _label(choice: str, best_id: int | None, worst_id: int | None) -> str:
    """A nominal label for agreement: which canonical position won (or tie / none)."""
    if choice == Choice.BEST_WORST:
        return f"{best_id}>{worst_id}"
    return choice


def krippendorff_alpha_nominal(units: dict[object, list[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels; units with fewer than two labels are ignored."""
    coincidence: Counter = Counter()
    for labels in units.values():
        m = len(labels)
        if m < 2:
            continue
        counts = Counter(labels)
        for a in counts:
            for b in counts:
                pairs = counts[a] * (counts[b] - (1 if a == b else 0))
                coincidence[(a, b)] += pairs / (m - 1)
    n = sum(coincidence.values())
    if n <= 1:
        return None
    marginals: Counter = Counter()
    for (a, _b), v in coincidence.items():
        marginals[a] += v
    observed = sum(v for (a, b), v in coincidence.items() if a != b) / n
    expected = sum(marginals[a] * marginals[b] for a in marginals for b in marginals if a != b) / (n * (n - 1))
    if expected == 0:
        return 1.0
    return 1 - observed / expected


def campaign_agreement(campaign: Campaign) -> dict[str, float | None]:
    """Krippendorff's alpha per criterion over the campaign's non-gold items."""
    units: dict[str, dict[object, list[str]]] = defaultdict(lambda: defaultdict(list))
    rows = (Judgment.objects.filter(item__campaign=campaign, item__is_gold=False)
            .values_list("criterion__slug", "item_id", "choice", "best_id", "worst_id"))
    for slug, item_id, choice, best_id, worst_id in rows.iterator(chunk_size=10_000):
        units[slug][item_id].append(_label(choice, best_id, worst_id))
    return {slug: krippendorff_alpha_nominal(u) for slug, u in units.items()}


def annotator_stats(campaign: Campaign | None = None, *, judgments: QuerySet[Judgment] | None = None) -> list[dict]:
    """Per annotator: submissions, gold accuracy, agreement with peers, tie rate, left bias,
    median-ish speed; over one campaign's judgments, or over ``judgments`` (any queryset, e.g. a
    snapshot's filter).

    Peer agreement is the share of other annotators' judgments of the same item and criterion that
    gave the same answer (A / B / tie / both bad, or the same best and worst): it needs no gold
    items. How often people agree depends on the work, though (best–worst answers agree far less
    often than pairwise ones, close candidates less than distinct ones), so ``peer_expected`` is how
    often the *other* annotators agree with each other in the same campaigns and criteria, weighted
    like this annotator's comparisons, and ``peer_agreement_ratio`` the one over the other: about 1
    for a careful annotator on any mix of work, well below 1 for one who answers at random.

    Without a campaign or judgments it reads every item's slots at once (memory grows with the
    item table); every caller today passes one.
    """
    qs = judgments if judgments is not None else Judgment.objects.all()
    if campaign is not None:
        qs = qs.filter(item__campaign=campaign)
    # Plain value rows and one query for the slots: the campaign page polls this every 2 s, and
    # model instances with per-item prefetches cost ~15x more (bench/campaign_dashboard.py).
    slots = _canonical_slots(campaign, judgments=judgments)
    rows: dict[int, dict] = {}
    units: dict[tuple[int, str, int], list[tuple[int, str]]] = defaultdict(list)
    values = qs.values_list("annotator_id", "annotator__username", "choice", "best_id", "worst_id", "displayed_order",
                            "active_ms", "item_id", "item__is_gold", "item__gold_answer", "criterion__slug",
                            "item__campaign__mode", "item__campaign_id")
    for (user_id, username, choice, best_id, worst_id, shown, active_ms, item_id, is_gold, gold, slug,
         mode, campaign_id) in values.iterator(chunk_size=10_000):
        s = rows.setdefault(user_id, {"annotator_id": user_id, "annotator": username, "judgments": 0, "ties": 0,
                                      "left_picks": 0, "sided": 0, "gold_seen": 0, "gold_correct": 0,
                                      "active_ms": []})
        s["judgments"] += 1
        if choice in (Choice.TIE, Choice.NO_DIFFERENCE, Choice.BOTH_BAD):
            s["ties"] += 1
        winner, _ = _winner_loser(choice, best_id, worst_id, slots[item_id])
        if winner is not None:
            s["sided"] += 1
            s["left_picks"] += int(bool(shown) and shown[0] == winner)
        if is_gold and gold and slug in gold:
            s["gold_seen"] += 1
            s["gold_correct"] += int(_matches_gold(mode, choice, best_id, worst_id, gold[slug]))
        s["active_ms"].append(active_ms)
        units[(campaign_id, slug, item_id)].append((user_id, _label(choice, best_id, worst_id)))
    peers = _peer_agreement(units)
    out = []
    for user_id, s in rows.items():
        ms = sorted(s.pop("active_ms"))
        peer = peers.get(user_id, _NO_PEERS)
        out.append({
            **s,
            "tie_rate": s["ties"] / s["judgments"],
            "left_rate": (s["left_picks"] / s["sided"]) if s["sided"] else None,
            "gold_accuracy": (s["gold_correct"] / s["gold_seen"]) if s["gold_seen"] else None,
            "peer_compared": peer.compared,
            "peer_agreement": (peer.agreed / peer.compared) if peer.compared else None,
            "peer_expected": (peer.expected / peer.baseline_compared) if peer.baseline_compared else None,
            "peer_agreement_ratio": (peer.baseline_agreed / peer.expected) if peer.expected else None,
            "median_active_ms": ms[len(ms) // 2] if ms else None,
        })
    return sorted(out, key=lambda r: r["annotator"])


@dataclass(frozen=True)
class _PeerCounts:
    """One annotator's comparisons with other annotators' judgments of the same units."""

    compared: int = 0  # judgments of others on the same (item, criterion)
    agreed: int = 0  # … that gave the same answer
    baseline_compared: int = 0  # the comparisons in strata where the others can be compared among themselves
    baseline_agreed: int = 0
    expected: float = 0.0  # agreements expected at the others' own rate, stratum by stratum


_NO_PEERS = _PeerCounts()


def _peer_agreement(units: dict[tuple[int, str, int], list[tuple[int, str]]]) -> dict[int, _PeerCounts]:
    """Per annotator, from units keyed (campaign, criterion, item) holding (annotator, label) pairs.

    The expectation is stratified by campaign × criterion (mode, task and criterion fix how hard it
    is to agree) and leaves the annotator out: the pairs of judgments among the *others* in that
    stratum. It is not per unit, so campaigns with an overlap of 2 get one too.
    """
    strata: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])  # pairs, agreeing pairs
    own: dict[tuple[int, int, str], list[int]] = defaultdict(lambda: [0, 0])  # (annotator, stratum) -> same
    for (campaign_id, slug, _item), unit in units.items():
        n = len(unit)
        if n < 2:
            continue
        counts = Counter(label for _, label in unit)
        stratum = strata[(campaign_id, slug)]
        stratum[0] += n * (n - 1) // 2
        stratum[1] += sum(c * (c - 1) // 2 for c in counts.values())
        for user_id, label in unit:
            mine = own[(user_id, campaign_id, slug)]
            mine[0] += n - 1  # every pair with this annotator in it, once
            mine[1] += counts[label] - 1
    sums: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for (user_id, campaign_id, slug), (mine_pairs, mine_agreeing) in own.items():
        s = sums[user_id]
        s[0] += mine_pairs
        s[1] += mine_agreeing
        pairs, agreeing = strata[(campaign_id, slug)]
        if pairs > mine_pairs:  # someone else's pair to learn the stratum's rate from
            s[2] += mine_pairs
            s[3] += mine_agreeing
            s[4] += mine_pairs * (agreeing - mine_agreeing) / (pairs - mine_pairs)
    return {user_id: _PeerCounts(int(s[0]), int(s[1]), int(s[2]), int(s[3]), s[4]) for user_id, s in sums.items()}


def _matches_gold(mode: str, choice: str, best_id: int | None, worst_id: int | None, expected) -> bool:
    if mode == CampaignMode.PAIRWISE:
        return choice == expected
    return isinstance(expected, dict) and best_id == expected.get("best") and worst_id == expected.get("worst")


def guideline_usage(campaign: Campaign) -> dict:
    return dict(
        Judgment.objects.filter(item__campaign=campaign)
        .values_list("guideline_version__version")
        .annotate(n=Count("id"))
    )


def mean_active_ms(campaign: Campaign) -> float | None:
    return Judgment.objects.filter(item__campaign=campaign).aggregate(v=Avg("active_ms"))["v"]


# --- Side by side (GSB) ----------------------------------------------------------------------------

#: Verdicts of a GSB row: A's win rate is above / below ½ with 95 % confidence, or neither.
GSB_VERDICTS = ("A better", "B better", "no clear difference")
#: Student's t 97.5 % quantiles for 1–30 degrees of freedom (above 30 the normal 1.96 is close):
#: with few items a normal interval would claim more confidence than the data hold.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def gsb_row(per_item: dict[int, list[int]]) -> dict:
    """Good / same / bad counts and A's win rate (G + S/2) / N with a 95 % interval.

    ``per_item`` maps an item to its judgments' outcomes (1 good, 0 same, -1 bad). Judgments of one
    item share its two images, so they are not independent: the interval is the ratio estimator's
    cluster-robust interval, clustered by item (one item judged by three annotators counts as
    about one observation when they agree, not three), with Student's t for (items − 1) degrees
    of freedom.
    """
    good = sum(o == 1 for outs in per_item.values() for o in outs)
    bad = sum(o == -1 for outs in per_item.values() for o in outs)
    n = sum(len(outs) for outs in per_item.values())
    same = n - good - bad
    if not n:
        return {"good": 0, "same": 0, "bad": 0, "judgments": 0, "items": 0, "good_rate": None, "same_rate": None,
                "bad_rate": None, "net": None, "win_rate": None, "ci95": None, "verdict": None}
    win = (good + same / 2) / n
    k = len(per_item)
    # Var of a ratio of sums over k clusters: sum_i (w_i - r n_i)^2 / (k (k-1) nbar^2).
    residuals = [sum((o + 1) / 2 for o in outs) - win * len(outs) for outs in per_item.values()]
    se = (sum(r * r for r in residuals) / (k * (k - 1))) ** 0.5 / (n / k) if k > 1 else 0.5
    t = _T975[k - 2] if 1 < k <= len(_T975) + 1 else 1.96
    lo, hi = max(0.0, win - t * se), min(1.0, win + t * se)
    if se == 0:
        # Every item came out alike (e.g. all judgments "A"): the clustered spread is 0 and would
        # claim certainty ("100–100 %"); the Wilson interval over the judgments stays honest there.
        lo, hi = wilson_interval(good + same / 2, n)
    verdict = GSB_VERDICTS[0] if lo > 0.5 else GSB_VERDICTS[1] if hi < 0.5 else GSB_VERDICTS[2]
    return {"good": good, "same": same, "bad": bad, "judgments": n, "items": k, "good_rate": good / n,
            "same_rate": same / n, "bad_rate": bad / n, "net": (good - bad) / n, "win_rate": win,
            "ci95": [lo, hi], "verdict": verdict,
            "items_to_decide": _items_to_decide(k, se, win) if verdict == GSB_VERDICTS[2] else 0}


def _items_to_decide(items: int, se: float, win: float) -> int | None:
    """About how many more items (judged like these) the interval needs to exclude ½, if the win
    rate stays where it is: the standard error shrinks as 1/√items. None when it cannot tell (one
    item, or a win rate of exactly ½)."""
    gap = abs(win - 0.5)
    if items < 2 or gap == 0 or se == 0:
        return None
    return max(1, math.ceil(items * (1.96 * se / gap) ** 2) - items)


Outcomes = dict[int, list[int]]  # item id → its judgments' outcomes for one side (1 good, 0 same, -1 bad)


def side_by_side_outcomes(campaign: Campaign, side: str | None = None
                          ) -> tuple[dict[str, Outcomes], Outcomes] | None:
    """Per criterion slug and over all criteria, each item's judgment outcomes seen from ``side``
    (one of the campaign's two ``selection.opponents`` source names; default the first, A).
    None for a campaign without two opponents.

    Kept per item so that several campaigns' outcomes can be pooled (item ids never collide) and
    the interval still clusters by item. Sides come from each candidate's source, not from screen
    or slot order; gold items are left out (they measure annotators, not the systems).
    """
    # Selections are validated on write, but one stored before that must not break readers.
    selection = campaign.selection if isinstance(campaign.selection, dict) else {}
    opponents = selection.get("opponents") or []
    if not isinstance(opponents, list) or len(opponents) < 2 or not all(isinstance(o, str) for o in opponents[:2]):
        return None
    ours = side or opponents[0]
    if ours not in opponents[:2]:
        raise ValueError(f"{ours!r} is not one of the campaign's opponents {opponents[:2]}")
    side_of = dict(
        Candidate.objects.filter(items__campaign=campaign, source_name__in=opponents[:2])
        .values_list("id", "source_name").distinct()
    )
    slots = _canonical_slots(campaign)
    per_criterion: dict[str, Outcomes] = defaultdict(lambda: defaultdict(list))
    overall: Outcomes = defaultdict(list)
    judgments = (Judgment.objects.filter(item__campaign=campaign, item__is_gold=False)
                 .values_list("item_id", "criterion__slug", "choice", "best_id", "worst_id"))
    for item_id, slug, choice, best_id, worst_id in judgments.iterator(chunk_size=2000):
        winner, _ = _winner_loser(choice, best_id, worst_id, slots[item_id])
        outcome = 0 if winner is None else (1 if side_of.get(winner) == ours else -1)
        per_criterion[slug][item_id].append(outcome)
        overall[item_id].append(outcome)
    return per_criterion, overall


def gsb_rows(per_criterion: dict[str, Outcomes], overall: Outcomes, criteria) -> dict:
    """GSB rows (``gsb_row``) for each of ``criteria`` (Criterion rows, in display order) and over all."""
    return {"criteria": [{"criterion": c.slug, "name": c.name, **gsb_row(per_criterion.get(c.slug, {}))}
                         for c in criteria],
            "overall": gsb_row(overall)}


def source_leaderboard(*, task: str | None = None, criterion: str | None = None, bootstrap: int = 200,
                       seed: int = 0) -> list[dict]:
    """Every system (candidate source: a checkpoint, a base policy, an imported model) that people
    judged side by side, ranked by a Bradley–Terry rating fitted to all A-versus-B campaigns
    (``annotation.bradley_terry``), with 95 % intervals from resampling items; optionally only
    one task's campaigns and one criterion's judgments. Gold items are left out."""
    from .bradley_terry import PairItems, leaderboard

    campaigns = Campaign.objects.filter(selection__has_key="opponents").select_related("task_type").order_by("id")
    if task:
        campaigns = campaigns.filter(task_type__slug=task)
    items = []
    for campaign in campaigns:
        outcomes = side_by_side_outcomes(campaign)
        if outcomes is None:
            continue
        per_item = outcomes[0].get(criterion, {}) if criterion else outcomes[1]
        counts = [(outs.count(1), outs.count(-1), outs.count(0)) for outs in per_item.values()]
        if counts:
            a, b = campaign.selection["opponents"][:2]
            items.append(PairItems(a=a, b=b, counts=np.array(counts, dtype=float)))
    return leaderboard(items, bootstrap=bootstrap, seed=seed)


def campaign_gsb(campaign: Campaign) -> dict | None:
    """The side-by-side result of an A-versus-B campaign (``selection.opponents``: a generation
    job's checkpoint against its opponent, or a curator's versus campaign), per criterion and
    over all criteria: Good = annotators preferred A, Same = tie / no clear difference / both
    bad, Bad = they preferred B (the paper's GSB, Fig. 7). None for other campaigns.
    """
    outcomes = side_by_side_outcomes(campaign)
    if outcomes is None:
        return None
    a_name, b_name = campaign.selection["opponents"][:2]
    return {"a": a_name, "b": b_name, **gsb_rows(*outcomes, campaign.criteria.order_by("id"))}


def snapshot_list() -> QuerySet[DatasetSnapshot]:
    """Every dataset snapshot with its build job and campaigns loaded (the snapshot API's rows)."""
    return DatasetSnapshot.objects.select_related("job", "created_by").prefetch_related("campaigns")


# --- candidates: what a campaign from candidate sources would hold ------------------------------

def candidate_sources(*, task: str, split: str | None = None) -> list[dict]:
    """Candidate sources (systems, checkpoints) for a task: how many candidates and samples each has."""
    qs = Candidate.objects.filter(sample__task_type__slug=task)
    if split:
        qs = qs.filter(sample__split=split)
    rows = qs.values("source_name", "provenance").annotate(candidates=Count("id"),
                                                           samples=Count("sample", distinct=True))
    return sorted(rows, key=lambda r: (-r["samples"], r["source_name"]))


def candidate_selection(*, task: str, sources: list[str], split: str | None = None, pairing: str = "opponents",
                        max_items_per_sample: int = 0) -> dict:
    """The samples that have candidates from the chosen sources and how many items they would make."""
    qs = Candidate.objects.filter(sample__task_type__slug=task, source_name__in=sources)
    if split:
        qs = qs.filter(sample__split=split)
    per_sample: dict[int, Counter] = defaultdict(Counter)
    for sample_id, source in qs.values_list("sample_id", "source_name"):
        per_sample[sample_id][source] += 1
    sample_ids, items = [], 0
    for sample_id, counts in sorted(per_sample.items()):
        if pairing == "opponents" and len(sources) >= 2:
            n = min(counts[sources[0]], counts[sources[1]])
        else:
            k = sum(counts.values())
            n = k * (k - 1) // 2
        if max_items_per_sample:
            n = min(n, max_items_per_sample)
        if n > 0:
            sample_ids.append(sample_id)
            items += n
    return {"sample_ids": sample_ids, "samples": len(sample_ids), "items": items}


def sample_split_counts(task: str) -> dict:
    """Samples of task ``task`` per split."""
    return dict(Sample.objects.filter(task_type__slug=task).values_list("split").annotate(n=Count("id")))
