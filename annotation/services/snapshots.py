"""Dataset snapshots: immutable, content-hashed training sets built from judgments.

``snapshot_create`` records the request (a ``DatasetSnapshot`` + a ``jobs.Job`` of kind
snapshot, started with ``jobs.services.job_start``); ``snapshot_build`` writes the
folder of docs/engine-contracts.md under ``ARTIFACTS_ROOT/snapshots/<id>-<hash12>/``.

Aggregations (docs/reward-model.md has the long form). ``majority-v2``:

- Judgments are read with one server-side cursor ordered by (sample, criterion, item), so only
  one sample's judgments for one criterion are in memory at a time (flat memory).
- Gold items are never exported (their judgments are counted in ``gold_judgments_excluded``).
- An adjudicated (item, criterion) — the latest ``Adjudication`` — turns each of the item's
  judgments on that criterion into a vote for the adjudicated answer (counted in ``adjudicated``).
- Pairwise: each A/B judgment is one vote for an ordered candidate pair; "tie" and "both_bad"
  are excluded and counted (``tie_judgments_excluded``).
- Best–worst of N: each (best, worst) judgment is one vote for best > worst, the pair the paper
  trains on. "no_difference" is excluded and counted (``no_difference_excluded``).
  ``majority-v1`` differs only here: per item, the (best, worst) choice made by strictly the most
  annotators is the item's outcome, worth as many votes as annotators made that exact choice,
  out of all the item's best–worst judgments; a plurality tie is excluded (``tied_excluded``).
  With 3 annotators and 4 candidates most items end in such a tie, so v1 keeps few pairs.
- Votes for the same two candidates on the same criterion are summed over items (and
  campaigns); the direction with strictly more votes wins, a tie is excluded and counted
  (``tied_excluded``). Each row: ``votes`` = winner votes, ``agreement`` = votes / decisive votes.
- ``tie-aware-v1`` (the default for new snapshots): as ``majority-v2``, but tie / both_bad (and best–worst no_difference, a tie
  vote for every two of the item's candidates) votes count (``tie_votes``): a pair needs strictly
  more winner votes than tie votes (else ``tie_outvoted``), and ``agreement`` = winner votes /
  all votes on the pair. Every aggregation writes soft labels: ``votes_loser``, ``votes_tie`` and
  ``p_winner`` = (winner votes + tie votes / 2) / all votes.
- Splits come from ``Sample.split`` (per sample, never per pair).
- Annotator quality (optional filter keys): ``exclude_annotators`` (usernames) and, for
  annotators with at least ``quality_min_evidence`` comparisons, ``min_peer_agreement_ratio`` and
  ``min_gold_accuracy`` (``annotation.selectors.annotator_stats``, measured over the judgments
  the rest of the filter selects) leave an annotator's judgments out; the manifest lists who was
  left out and why (hashed ids, as in exports).
- ``human_ceiling[task][criterion]``: over every (item, criterion) with ≥ 2 judgments, the share
  of annotator pairs giving the same label (A/B/tie/both_bad, or the same (best, worst) /
  no_difference), averaged over those items.
- ``content_hash``: sha256 over the rows in their deterministic order (sample external id,
  criterion, pair) — rows name their images by sha256, so the hash covers the image content —
  and over the ``vocabulary`` when its wording is not the built-in one.
  A succeeded snapshot with the same hash is reused: the new snapshot points at its folder.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date
from itertools import combinations
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from contracts.snapshot import FORMAT_VERSION, PAIR_SCHEMA, PairsWriter, write_manifest  # noqa: F401
from contracts.vocabulary import is_builtin
from core.artifacts import artifact_publish
from core.errors import ApplicationError
from jobs.models import Job, JobKind
from jobs.services import JobReporter, job_run, job_start

from ..models import (
    Adjudication,
    Campaign,
    CampaignMode,
    Candidate,
    Choice,
    Criterion,
    DatasetSnapshot,
    ItemCandidate,
    Judgment,
    TaskType,
)
from ..selectors import annotator_stats, hashed_annotator_id
from .taxonomy import vocabulary_from_db

#: Every aggregation with one line for pickers (the dashboard's snapshot builder); the module
#: docstring has the long form.
AGGREGATION_SUMMARIES = {
    "majority-v2": "every best–worst judgment is one best > worst vote; tie answers are left out",
    "majority-v1": "one pair per best–worst item, only when most annotators chose the same (best, worst)",
    "tie-aware-v1": "as majority-v2, but tie / both-bad / no-difference votes count and can outvote a "
                    "preference (default)",
}
AGGREGATIONS = tuple(AGGREGATION_SUMMARIES)
# New snapshots count tie answers: otherwise two "tie" votes and one flipped vote make a label
# with agreement 1.0. A snapshot stores its aggregation, so one built under another rule is
# rebuilt under that rule (docs/decisions/0013).
DEFAULT_AGGREGATION = "tie-aware-v1"
#: Aggregations whose "tie" votes count (pairwise tie / both_bad, best–worst no_difference).
TIE_AWARE = frozenset({"tie-aware-v1"})
#: Soft-label columns; in the content hash only for tie-aware aggregations (elsewhere they follow
#: from votes and agreement, and leaving them out keeps earlier snapshots' hashes).
SOFT_LABEL_KEYS = ("votes_loser", "votes_tie", "p_winner")
# The folder's row schema, writer and manifest format are contracts.snapshot's (docs/engine-contracts.md).


class SnapshotEmpty(ApplicationError):
    """No (winner, loser) pair matches the filter: the build fails with this message."""


# --- filter ---------------------------------------------------------------------------------------

def _parse_date(value, field: str, errors: dict) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        errors[field] = ["Use an ISO date, e.g. 2026-01-31."]
        return None


#: Annotators with fewer peer comparisons (or gold items) than this are kept whatever their rate:
#: too little evidence to call them careless.
DEFAULT_QUALITY_MIN_EVIDENCE = 10
_FILTER_KEYS = {"campaign_ids", "criteria", "task_types", "date_from", "date_to", "min_peer_agreement_ratio",
                "min_gold_accuracy", "quality_min_evidence", "exclude_annotators"}
#: The bounds of each minimum and what it measures (for the field message).
_QUALITY_MINIMUMS = {
    "min_peer_agreement_ratio": (2.0, "A ratio between 0 and 2 (1 = as often as the others agree with each other)."),
    "min_gold_accuracy": (1.0, "A rate between 0 and 1."),
}


def snapshot_normalize_filter(raw: dict | None) -> dict:
    """Validate a filter {campaign_ids, criteria, task_types, date_from, date_to} plus the optional
    annotator-quality keys {min_peer_agreement_ratio, min_gold_accuracy, quality_min_evidence,
    exclude_annotators}; raise ApplicationError with a message per field."""
    raw = dict(raw or {})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(raw) - _FILTER_KEYS)
    if unknown:
        errors["filter"] = [f"Unknown filter keys: {', '.join(unknown)}."]
    out: dict = {}
    ids = raw.get("campaign_ids") or []
    try:
        ids = sorted({int(i) for i in ids})
    except (TypeError, ValueError):
        errors["campaign_ids"] = ["A list of campaign ids."]
        ids = []
    missing = sorted(set(ids) - set(Campaign.objects.filter(pk__in=ids).values_list("pk", flat=True)))
    if missing:
        errors["campaign_ids"] = [f"No such campaign: {', '.join(map(str, missing))}."]
    out["campaign_ids"] = ids
    for key, model in (("criteria", Criterion), ("task_types", TaskType)):
        slugs = raw.get(key) or []
        if isinstance(slugs, str) or not all(isinstance(x, str) for x in slugs):
            errors[key] = ["A list of slugs."]
            slugs = []
        slugs = sorted(set(slugs))
        unknown_slugs = sorted(set(slugs) - set(model.objects.filter(slug__in=slugs).values_list("slug", flat=True)))
        if unknown_slugs:
            errors[key] = [f"Unknown: {', '.join(unknown_slugs)}."]
        out[key] = slugs
    out["date_from"] = _parse_date(raw.get("date_from"), "date_from", errors)
    out["date_to"] = _parse_date(raw.get("date_to"), "date_to", errors)
    if out["date_from"] and out["date_to"] and out["date_from"] > out["date_to"]:
        errors["date_to"] = ["Must not be before date_from."]
    out.update(_normalize_quality(raw, errors))
    if errors:
        raise ApplicationError("The snapshot filter is invalid.", fields=errors)
    return out


def _normalize_quality(raw: dict, errors: dict[str, list[str]]) -> dict:
    """The annotator-quality keys that are set (absent or null ones stay out of the filter, so
    filters without them read as before)."""
    out: dict = {}
    for key, (upper, message) in _QUALITY_MINIMUMS.items():
        value = raw.get(key)
        if value is None or value == "":
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = -1.0
        if not 0.0 <= value <= upper:
            errors[key] = [message]
            continue
        out[key] = value
    if out:
        evidence = raw.get("quality_min_evidence")
        try:
            evidence = DEFAULT_QUALITY_MIN_EVIDENCE if evidence in (None, "") else int(evidence)
        except (TypeError, ValueError):
            evidence = 0
        if evidence < 1:
            errors["quality_min_evidence"] = ["A whole number of at least 1."]
        out["quality_min_evidence"] = evidence
    names = raw.get("exclude_annotators") or []
    if isinstance(names, str) or not all(isinstance(x, str) for x in names):
        errors["exclude_annotators"] = ["A list of usernames."]
    elif names:
        names = sorted(set(names))
        unknown = sorted(set(names) - set(User.objects.filter(username__in=names).values_list("username", flat=True)))
        if unknown:
            errors["exclude_annotators"] = [f"No such user: {', '.join(unknown)}."]
        out["exclude_annotators"] = names
    return out


def annotator_exclusions(flt: dict) -> list[dict]:
    """The annotators a (normalized) filter leaves out, each with its reasons: named in
    ``exclude_annotators``, or, with at least ``quality_min_evidence`` peer comparisons / gold
    items, a peer agreement ratio / gold accuracy below the filter's minimum. Rates are measured
    over the judgments the rest of the filter selects."""
    named = set(flt.get("exclude_annotators") or [])
    min_peer, min_gold = flt.get("min_peer_agreement_ratio"), flt.get("min_gold_accuracy")
    if not named and min_peer is None and min_gold is None:
        return []
    evidence = flt.get("quality_min_evidence", DEFAULT_QUALITY_MIN_EVIDENCE)
    # The rates read every judgment in scope; names alone need only a count per named annotator.
    stats = ({s["annotator"]: s for s in annotator_stats(judgments=_judgments(flt))}
             if min_peer is not None or min_gold is not None else {})
    counts = dict(_judgments(flt).filter(annotator__username__in=named).values_list("annotator__username")
                  .annotate(n=Count("id"))) if named and not stats else {}
    for username, user_id in User.objects.filter(username__in=named).values_list("username", "id"):
        stats.setdefault(username, {"annotator_id": user_id, "annotator": username,
                                    "judgments": counts.get(username, 0), "peer_agreement": None,
                                    "peer_agreement_ratio": None, "peer_compared": 0, "gold_accuracy": None,
                                    "gold_seen": 0})
    out = []
    for username, s in sorted(stats.items()):
        reasons = []
        if username in named:
            reasons.append("excluded by name")
        ratio = s["peer_agreement_ratio"]
        # No ratio (nobody else to compare the stratum with): too little evidence, like a short record.
        if min_peer is not None and s["peer_compared"] >= evidence and ratio is not None and ratio < min_peer:
            reasons.append(f"agreement with peers {ratio:.2f}× theirs with each other < {min_peer:g}")
        if min_gold is not None and s["gold_seen"] >= evidence and s["gold_accuracy"] < min_gold:
            reasons.append(f"gold accuracy {s['gold_accuracy']:.3f} < {min_gold:g}")
        if reasons:
            out.append({"annotator_id": s["annotator_id"], "annotator": username, "judgments": s["judgments"],
                        "peer_agreement": s["peer_agreement"], "peer_agreement_ratio": ratio,
                        "peer_compared": s["peer_compared"],
                        "gold_accuracy": s["gold_accuracy"], "gold_seen": s["gold_seen"], "reasons": reasons})
    return out


def _judgments(flt: dict) -> QuerySet[Judgment]:
    qs = Judgment.objects.all()
    if flt.get("campaign_ids"):
        qs = qs.filter(item__campaign_id__in=flt["campaign_ids"])
    if flt.get("criteria"):
        qs = qs.filter(criterion__slug__in=flt["criteria"])
    if flt.get("task_types"):
        qs = qs.filter(item__sample__task_type__slug__in=flt["task_types"])
    if flt.get("date_from"):
        qs = qs.filter(created_at__date__gte=flt["date_from"])
    if flt.get("date_to"):
        qs = qs.filter(created_at__date__lte=flt["date_to"])
    return qs


# --- aggregation (pure reads) --------------------------------------------------------------------

_FIELDS = (
    "id", "item_id", "criterion__slug", "choice", "best_id", "worst_id", "annotator_id", "item__campaign__mode",
    "item__sample_id", "item__sample__external_id", "item__sample__split", "item__sample__prompt",
    "item__sample__task_type__slug", "item__sample__task_type__fixed_prompt", "guideline_version__version",
)


def _label(r: dict) -> str:
    return f"{r['best_id']}>{r['worst_id']}" if r["choice"] == Choice.BEST_WORST else r["choice"]


def _adjudications(flt: dict) -> dict[tuple[int, str], dict]:
    """{(item id, criterion slug): the latest adjudication's answer} in the filter's campaigns (one
    is only used where the filter's judgments reach its item and criterion). Curators write these
    one by one, so they fit in memory."""
    qs = Adjudication.objects.all()
    if flt.get("campaign_ids"):
        qs = qs.filter(item__campaign_id__in=flt["campaign_ids"])
    return {(item_id, slug): {"choice": choice, "best_id": best, "worst_id": worst}  # ascending ids: latest wins
            for item_id, slug, choice, best, worst in qs.order_by("id").values_list(
                "item_id", "criterion__slug", "choice", "best_id", "worst_id")}


class _Aggregator:
    """Streams (sample, criterion) groups of judgments into preference rows plus counts."""

    def __init__(self, flt: dict, aggregation: str = DEFAULT_AGGREGATION, chunk_size: int = 2000) -> None:
        self.flt = flt
        self.aggregation = aggregation
        self.chunk_size = chunk_size
        self.counts: Counter = Counter()
        self.ceiling_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.ceiling_n: dict[tuple[str, str], int] = defaultdict(int)
        self.guideline_versions: dict[str, set[int]] = defaultdict(set)
        self.campaign_ids: set[int] = set()
        self.exclusions = annotator_exclusions(flt)
        self._excluded_ids = [e["annotator_id"] for e in self.exclusions]
        self._adjudicated = _adjudications(self.flt)

    def judgments(self) -> QuerySet[Judgment]:
        """The filter's judgments, less those of excluded annotators."""
        return _judgments(self.flt).exclude(annotator_id__in=self._excluded_ids)

    def _slots(self, item_ids: set[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for item_id, cand_id in (ItemCandidate.objects.filter(item_id__in=item_ids)
                                 .order_by("item_id", "position").values_list("item_id", "candidate_id")):
            out[item_id].append(cand_id)
        return out

    def _group_rows(self, group: list[dict]) -> list[dict]:
        """Rows for one (sample, criterion) group; updates counts and the ceiling."""
        first = group[0]
        task, criterion = first["item__sample__task_type__slug"], first["criterion__slug"]
        by_item: dict[int, list[dict]] = defaultdict(list)
        for r in group:
            by_item[r["item_id"]].append(r)
            self.guideline_versions[criterion].add(r["guideline_version__version"])
        slots = self._slots(set(by_item))
        votes: Counter = Counter()  # (winner, loser) -> votes
        decisive: Counter = Counter()  # frozenset{x, y} -> decisive votes
        ties: Counter = Counter()  # frozenset{x, y} -> tie votes (tie-aware aggregations only)
        tie_aware = self.aggregation in TIE_AWARE
        for item_id, js in by_item.items():
            labels = [_label(j) for j in js]
            if len(labels) >= 2:
                pairs = list(combinations(labels, 2))
                self.ceiling_sum[(task, criterion)] += sum(a == b for a, b in pairs) / len(pairs)
                self.ceiling_n[(task, criterion)] += 1
            if (adjudicated := self._adjudicated.get((item_id, criterion))) is not None:
                # The curator's final answer replaces each vote (the ceiling above keeps the votes).
                js = [{**j, **adjudicated} for j in js]
                self.counts["adjudicated"] += 1
            if js[0]["item__campaign__mode"] == CampaignMode.PAIRWISE:
                a, b = slots[item_id][0], slots[item_id][1]
                for j in js:
                    if j["choice"] == Choice.A:
                        votes[(a, b)] += 1
                        decisive[frozenset((a, b))] += 1
                    elif j["choice"] == Choice.B:
                        votes[(b, a)] += 1
                        decisive[frozenset((a, b))] += 1
                    elif tie_aware:
                        ties[frozenset((a, b))] += 1
                        self.counts["tie_votes"] += 1
                    else:
                        self.counts["tie_judgments_excluded"] += 1
            else:
                picks = Counter((j["best_id"], j["worst_id"]) for j in js if j["choice"] == Choice.BEST_WORST)
                n_same = sum(j["choice"] == Choice.NO_DIFFERENCE for j in js)
                if tie_aware:
                    # "No clear difference" says every two of the item's candidates are alike.
                    for pair in combinations(slots[item_id], 2):
                        ties[frozenset(pair)] += n_same
                    self.counts["tie_votes"] += n_same
                else:
                    self.counts["no_difference_excluded"] += n_same
                if not picks:
                    continue
                if self.aggregation != "majority-v1":
                    for (best, worst), n in picks.items():
                        votes[(best, worst)] += n
                        decisive[frozenset((best, worst))] += n
                    continue
                ranked = picks.most_common()
                if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                    self.counts["tied_excluded"] += 1
                    continue
                (best, worst), n = ranked[0]
                votes[(best, worst)] += n
                decisive[frozenset((best, worst))] += sum(picks.values())
        rows = []
        prompt = first["item__sample__prompt"] or first["item__sample__task_type__fixed_prompt"] or ""
        for key in sorted(decisive, key=sorted):
            x, y = sorted(key)
            if votes[(x, y)] == votes[(y, x)]:
                self.counts["tied_excluded"] += 1
                continue
            winner, loser = (x, y) if votes[(x, y)] > votes[(y, x)] else (y, x)
            won, tied = votes[(winner, loser)], ties[key]
            if won <= tied:  # as many "alike" votes as for the winner: no preference to learn
                self.counts["tie_outvoted"] += 1
                continue
            rows.append({
                "split": first["item__sample__split"], "task": task, "criterion": criterion, "prompt": prompt,
                "sample_id": first["item__sample__external_id"], "votes": won,
                "agreement": round(won / (decisive[key] + tied), 6),
                "winner_candidate_id": winner, "loser_candidate_id": loser,
                # Soft label: the chance the winner is preferred, a tie counting half for each side.
                "votes_loser": decisive[key] - won, "votes_tie": tied,
                "p_winner": round((won + tied / 2) / (decisive[key] + tied), 6),
            })
        return rows

    def _groups(self) -> Iterator[list[dict]]:
        base = self.judgments()
        self.counts["gold_judgments_excluded"] = base.filter(item__is_gold=True).count()
        if self.exclusions:
            self.counts["annotators_excluded"] = len(self.exclusions)
            self.counts["judgments_excluded_by_annotator"] = _judgments(self.flt).filter(
                item__is_gold=False, annotator_id__in=self._excluded_ids).count()
        qs = (base.filter(item__is_gold=False)
              .order_by("item__sample__external_id", "criterion__slug", "item_id", "id").values(*_FIELDS,
                                                                                              "item__campaign_id"))
        group: list[dict] = []
        for r in qs.iterator(chunk_size=self.chunk_size):
            self.counts["judgments"] += 1
            self.campaign_ids.add(r["item__campaign_id"])
            if group and (r["item__sample_id"], r["criterion__slug"]) != (group[0]["item__sample_id"],
                                                                           group[0]["criterion__slug"]):
                yield group
                group = []
            group.append(r)
        if group:
            yield group

    def rows(self) -> Iterator[dict]:
        """Preference rows (without image paths) in deterministic order."""
        for group in self._groups():
            yield from self._group_rows(group)

    def human_ceiling(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (task, criterion), n in sorted(self.ceiling_n.items()):
            out[task][criterion] = round(self.ceiling_sum[(task, criterion)] / n, 6)
        return dict(out)


def _check_aggregation(aggregation: str, errors: dict) -> None:
    if aggregation not in AGGREGATIONS:
        errors["aggregation"] = [f"Use one of: {', '.join(AGGREGATIONS)}."]


def snapshot_preview(*, filter: dict | None, aggregation: str = DEFAULT_AGGREGATION) -> dict:  # noqa: A002
    """Live count of the rows a snapshot with this filter would hold (no files written)."""
    errors: dict = {}
    _check_aggregation(aggregation, errors)
    if errors:
        raise ApplicationError("The preview request is invalid.", fields=errors)
    flt = snapshot_normalize_filter(filter)
    agg = _Aggregator(flt, aggregation)
    per_split: Counter = Counter()
    per_task: dict[str, Counter] = defaultdict(Counter)
    for row in agg.rows():
        per_split[row["split"]] += 1
        per_task[row["task"]][row["criterion"]] += 1
    return {
        "filter": flt, "pairs": sum(per_split.values()), "per_split": dict(per_split),
        "per_task": {t: dict(c) for t, c in per_task.items()}, **dict(agg.counts),
        "judgments": agg.counts["judgments"],
        "excluded_annotators": [{k: v for k, v in e.items() if k != "annotator_id"} for e in agg.exclusions],
    }


# --- create / build ---------------------------------------------------------------------------------

def snapshot_create(
    *, name: str, filter: dict | None = None, aggregation: str = DEFAULT_AGGREGATION,  # noqa: A002
    user: User | None = None, enqueue: bool = True,
) -> DatasetSnapshot:
    """Record a snapshot request and (after commit) send its build job."""
    errors = {}
    if not name or not name.strip():
        errors["name"] = ["A name is required."]
    _check_aggregation(aggregation, errors)
    if errors:
        raise ApplicationError("The snapshot request is invalid.", fields=errors)
    flt = snapshot_normalize_filter(filter)
    with transaction.atomic():
        job = job_start(kind=JobKind.SNAPSHOT, name=f"snapshot {name}",
                        config={"filter": flt, "aggregation": aggregation}, user=user, enqueue=enqueue)
        snapshot = DatasetSnapshot.objects.create(name=name.strip()[:200], filter=flt, aggregation=aggregation,
                                                  created_by=user, job=job)
        if flt["campaign_ids"]:
            snapshot.campaigns.set(flt["campaign_ids"])
        job.config = {**job.config, "snapshot_id": snapshot.pk}
        job.save(update_fields=["config"])
    return snapshot


def _snapshots_root() -> Path:
    root = Path(settings.ARTIFACTS_ROOT) / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    return root


class _Progress:
    def __init__(self, reporter: JobReporter | None, total: int) -> None:
        self.reporter, self.total, self.done = reporter, max(total, 1), 0

    def tick(self, n: int = 1) -> None:
        self.done += n
        if self.reporter is not None:
            self.reporter.progress({"step": min(self.done, self.total), "total_steps": self.total, "kind": "train"})


def snapshot_build(snapshot: DatasetSnapshot, reporter: JobReporter | None = None) -> DatasetSnapshot:
    """Write the snapshot folder; raise SnapshotEmpty when no preference pair matches the filter."""
    agg = _Aggregator(snapshot.filter, snapshot.aggregation)
    tmp = _snapshots_root() / f".tmp-{snapshot.pk}-{uuid.uuid4().hex[:8]}"
    images = tmp / "images"
    images.mkdir(parents=True)
    progress = _Progress(reporter, agg.judgments().filter(item__is_gold=False).count())
    try:
        digest = hashlib.sha256()
        if snapshot.aggregation != "majority-v1":
            # Rows of another aggregation are another dataset, even where they happen to coincide;
            # v1 hashes stay as they were.
            digest.update(f"aggregation {snapshot.aggregation}\n".encode())
        per_split: Counter = Counter()
        per_task: dict[str, Counter] = defaultdict(Counter)
        n_images = 0
        cand_cache: dict[int, Candidate] = {}
        with PairsWriter(tmp) as writer:
            seen_judgments = 0
            for row in agg.rows():
                if agg.counts["judgments"] != seen_judgments:
                    progress.tick(agg.counts["judgments"] - seen_judgments)
                    seen_judgments = agg.counts["judgments"]
                paths = []
                for key in ("winner_candidate_id", "loser_candidate_id"):
                    cand = cand_cache.get(row[key])
                    if cand is None:
                        if len(cand_cache) > 10_000:  # bounded: memory stays flat
                            cand_cache.clear()
                        cand = cand_cache[row[key]] = Candidate.objects.only("image", "sha256").get(pk=row[key])
                    target = images / f"{cand.sha256}.png"
                    if not target.exists():
                        with cand.image.open("rb") as src, target.open("wb") as dst:
                            shutil.copyfileobj(src, dst)
                        n_images += 1
                    paths.append(f"images/{cand.sha256}.png")
                winner, loser = paths
                pair_id = hashlib.sha256(
                    f"{row['sample_id']}|{row['task']}|{row['criterion']}|{winner}|{loser}".encode()
                ).hexdigest()[:20]
                out = {"pair_id": pair_id, "split": row["split"], "task": row["task"], "criterion": row["criterion"],
                       "prompt": row["prompt"], "winner": winner, "loser": loser, "sample_id": row["sample_id"],
                       "votes": row["votes"], "agreement": row["agreement"],
                       "winner_candidate_id": row["winner_candidate_id"],
                       "loser_candidate_id": row["loser_candidate_id"],
                       **{k: row[k] for k in SOFT_LABEL_KEYS}}
                writer.write(out)
                # The hash leaves out database ids: the same judgments give the same hash anywhere.
                unhashed = () if snapshot.aggregation in TIE_AWARE else SOFT_LABEL_KEYS
                digest.update(json.dumps({k: v for k, v in out.items()
                                          if not k.endswith("candidate_id") and k not in unhashed},
                                         sort_keys=True).encode() + b"\n")
                per_split[out["split"]] += 1
                per_task[out["task"]][out["criterion"]] += 1
        progress.tick(agg.counts["judgments"] - seen_judgments)
        total = sum(per_split.values())
        if total == 0:
            raise SnapshotEmpty(
                "no preference pairs match the filter "
                f"({agg.counts['judgments']} judgments read; ties, no-difference answers and gold items "
                "are excluded)", code="snapshot_empty")
        # The wording the reward engine will train on: the tasks and criteria of these pairs, as
        # the database words them now. Custom wording is hashed so that a snapshot built after a
        # description changed is not mistaken for (and reused as) the earlier one; the paper's
        # wording adds nothing, so snapshots of the built-in vocabulary keep their hashes.
        vocabulary = vocabulary_from_db(task_criteria=per_task)
        if not is_builtin(vocabulary):
            digest.update(json.dumps(vocabulary.to_dict(), sort_keys=True).encode())
        content_hash = digest.hexdigest()
        counts = {
            "pairs": total, "images": n_images, "per_split": {s: per_split.get(s, 0) for s in ("train", "val", "test")},
            "per_task": {t: dict(sorted(c.items())) for t, c in sorted(per_task.items())},
            "judgments": agg.counts["judgments"],
            "tie_judgments_excluded": agg.counts["tie_judgments_excluded"],
            "no_difference_excluded": agg.counts["no_difference_excluded"],
            "tied_excluded": agg.counts["tied_excluded"],
            **({"tie_votes": agg.counts["tie_votes"], "tie_outvoted": agg.counts["tie_outvoted"]}
               if snapshot.aggregation in TIE_AWARE else {}),
            "gold_judgments_excluded": agg.counts["gold_judgments_excluded"],
            "adjudicated": agg.counts["adjudicated"],
            **({"annotators_excluded": agg.counts["annotators_excluded"],
                "judgments_excluded_by_annotator": agg.counts["judgments_excluded_by_annotator"]}
               if agg.exclusions else {}),
        }
        ceiling = agg.human_ceiling()
        manifest = {
            "content_hash": content_hash, "created_at": timezone.now().isoformat(),
            "filter": _pseudonymous_filter(snapshot.filter),
            "aggregation": snapshot.aggregation, "counts": counts, "human_ceiling": ceiling,
            "guideline_versions": {c: sorted(v) for c, v in sorted(agg.guideline_versions.items())},
            "campaign_ids": sorted(agg.campaign_ids), "format_version": FORMAT_VERSION,
            "snapshot_id": snapshot.pk, "name": snapshot.name,
            # Names, descriptions, uses_prompt and fixed prompts the reward engine words its queries with.
            "vocabulary": vocabulary.to_dict(),
            # Who was left out and why, pseudonymous like the exports (the usernames stay in the database).
            "excluded_annotators": [{"annotator": hashed_annotator_id(e["annotator_id"]), "reasons": e["reasons"],
                                     "judgments": e["judgments"], "peer_agreement": e["peer_agreement"],
                                     "peer_agreement_ratio": e["peer_agreement_ratio"],
                                     "gold_accuracy": e["gold_accuracy"]} for e in agg.exclusions],
        }
        write_manifest(tmp, manifest)
        with transaction.atomic():
            # Only a finished build writes a content hash (just below), so any row with this one is built.
            earlier = (DatasetSnapshot.objects.select_for_update()
                       .filter(content_hash=content_hash)
                       .exclude(pk=snapshot.pk).order_by("id").first())
            if earlier is not None and Path(earlier.path).is_dir():
                shutil.rmtree(tmp, ignore_errors=True)  # immutable: share the earlier, identical folder
                path, reused = earlier.path, earlier
            else:
                final = _snapshots_root() / f"{snapshot.pk}-{content_hash[:12]}"
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
                # Published before the row says succeeded: with an object store, no host is handed
                # a snapshot it cannot fetch (an upload that fails fails the build, which retries).
                artifact_publish(final)
                path, reused = str(final), None
            DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
                content_hash=content_hash, path=path, counts=counts, human_ceiling=ceiling, progress=1.0,
                finished_at=timezone.now(), reused_from=reused,
            )
            if not snapshot.filter.get("campaign_ids"):
                snapshot.campaigns.set(sorted(agg.campaign_ids))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    snapshot.refresh_from_db()
    return snapshot


def _pseudonymous_filter(flt: dict) -> dict:
    """The filter as the manifest records it: ``exclude_annotators`` as export pseudonyms, since a
    snapshot folder leaves the database (training machines, shared storage) and usernames must not."""
    names = flt.get("exclude_annotators")
    if not names:
        return flt
    ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    # A user deleted since the build started has no id left: record that one was named, not who.
    return {**flt, "exclude_annotators": sorted(hashed_annotator_id(ids[n]) if n in ids else "unknown" for n in names)}


def snapshot_build_job(job: Job, reporter: JobReporter) -> dict:
    """The snapshot kind's job body (jobs.registry): build the job's snapshot."""
    snapshot = snapshot_build(DatasetSnapshot.objects.get(job=job), reporter)
    return {"snapshot_id": snapshot.pk, "content_hash": snapshot.content_hash, "path": snapshot.path,
            "counts": snapshot.counts, "reused_from": snapshot.reused_from_id}


def snapshot_execute(job_id: int) -> DatasetSnapshot | None:
    """Build in this process (``jobs.services.job_run``): the demo, the CLI and tests."""
    job_run(job_id)
    return DatasetSnapshot.objects.select_related("job").filter(job_id=job_id).first()
