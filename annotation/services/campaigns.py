"""Campaign life cycle: create → start (materialise items) → pause/resume → complete."""
from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, Conflict
from core.roles import ANNOTATOR, has_role

from ..models import (
    Campaign,
    CampaignMode,
    CampaignStatus,
    Candidate,
    Choice,
    Criterion,
    Item,
    ItemCandidate,
    Sample,
    TaskType,
    default_skip_reasons,
)
from ..selectors import candidate_selection
from .adjudication import parse_item_answer


def _is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def selection_errors(selection) -> list[str]:
    """Messages for a malformed ``selection`` (empty when valid or absent). Checked on every write,
    and again when a campaign starts, because a stored bad one would break every reader of it.
    Keys this module does not read are kept as they are."""
    if selection is None:
        return []
    if not isinstance(selection, dict):
        return ['An object, e.g. {"sample_ids": [1, 2], "max_items_per_sample": 1}.']
    msgs = []
    ids = selection.get("sample_ids")
    if ids is not None and not (isinstance(ids, list) and all(_is_count(i, 1) for i in ids)):
        msgs.append("sample_ids: a list of sample ids (whole numbers).")
    for key in ("sources", "opponents"):
        names = selection.get(key)
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
            msgs.append(f"{key}: a list of candidate source names.")
    most = selection.get("max_items_per_sample")
    if most is not None and not _is_count(most, 0):
        msgs.append("max_items_per_sample: a whole number, 0 or more (0 = no limit).")
    return msgs


def campaign_validate(*, name: str, task_type: TaskType, criteria: Sequence[Criterion], mode: str,
                      candidates_per_item: int, overlap: int, gold_fraction: float, lease_seconds: int,
                      exclude_pk: int | None = None, selection=None) -> dict[str, list[str]]:
    """Field errors for a campaign definition (empty when valid); shared by the API and the admin."""
    errors: dict[str, list[str]] = {}
    if msgs := selection_errors(selection):
        errors["selection"] = msgs
    if Campaign.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        errors["name"] = ["A campaign with this name already exists."]
    if mode not in CampaignMode.values:
        errors["mode"] = [f"Must be one of {', '.join(CampaignMode.values)}."]
    if mode == CampaignMode.PAIRWISE and candidates_per_item != 2:
        errors["candidates_per_item"] = ["Pairwise campaigns compare exactly 2 candidates."]
    elif candidates_per_item < 2:
        errors["candidates_per_item"] = ["At least 2 candidates per item."]
    if overlap < 1:
        errors["overlap"] = ["Must be at least 1."]
    if not 0 <= gold_fraction <= 1:
        errors["gold_fraction"] = ["Must be between 0 and 1."]
    if lease_seconds < 10:
        errors["lease_seconds"] = ["Must be at least 10 seconds."]
    allowed = set(task_type.criteria.values_list("pk", flat=True))
    if not criteria:
        errors["criteria"] = ["Pick at least one criterion."]
    elif any(c.pk not in allowed for c in criteria):
        errors["criteria"] = [f"Only criteria of the task type '{task_type.slug}' may be used."]
    return errors


@transaction.atomic
def campaign_create(
    *,
    name: str,
    task_type: TaskType,
    criteria: Sequence[Criterion] | None = None,
    mode: str = CampaignMode.PAIRWISE,
    candidates_per_item: int | None = None,
    overlap: int = 3,
    gold_fraction: float = 0.0,
    lease_seconds: int = 600,
    priority: int = 0,
    selection: dict | None = None,
    description: str = "",
    created_by: User | None = None,
    source_ref: str = "",
    skip_reasons: list[str] | None = None,
    annotators: Sequence[str] | None = None,
) -> Campaign:
    """Create a draft campaign; criteria default to all of the task type's criteria, skip
    reasons to ``models.default_skip_reasons()`` (``[]`` offers free text only). ``annotators``
    (usernames) restricts it from the start, so no one else can lease an item once it is started;
    none or empty = open to every annotator."""
    n = candidates_per_item or (2 if mode == CampaignMode.PAIRWISE else 4)
    chosen = list(criteria) if criteria else list(task_type.criteria.all())
    errors = campaign_validate(name=name, task_type=task_type, criteria=chosen, mode=mode, candidates_per_item=n,
                               overlap=overlap, gold_fraction=gold_fraction, lease_seconds=lease_seconds,
                               selection=selection)
    if errors:
        raise ApplicationError("The campaign is not valid.", fields=errors)
    campaign = Campaign.objects.create(
        name=name, description=description, mode=mode, task_type=task_type, candidates_per_item=n,
        overlap=overlap, gold_fraction=gold_fraction, lease_seconds=lease_seconds, priority=priority,
        selection=selection or {}, created_by=created_by, source_ref=source_ref,
        skip_reasons=default_skip_reasons() if skip_reasons is None else list(skip_reasons),
    )
    campaign.criteria.set(chosen)
    if annotators:  # a refused name rolls the whole creation back (this function is atomic)
        campaign = campaign_set_annotators(campaign=campaign, usernames=annotators)
    return campaign


def _candidate_groups(campaign: Campaign, rng: random.Random) -> Iterable[tuple[Sample, list[Candidate]]]:
    """Yield (sample, candidates) groups that become items, following ``campaign.selection``."""
    if msgs := selection_errors(campaign.selection):  # saved before selections were checked
        raise ApplicationError("The campaign's selection is malformed; fix it before starting.",
                               fields={"selection": msgs})
    sel = campaign.selection or {}
    samples = Sample.objects.filter(task_type=campaign.task_type)
    if sel.get("sample_ids"):
        samples = samples.filter(pk__in=sel["sample_ids"])
    candidates = Candidate.objects.filter(sample__in=samples).order_by("sample_id", "id")
    sources = sel.get("opponents") or sel.get("sources")
    if sources:
        candidates = candidates.filter(source_name__in=sources)
    per_sample: dict[int, list[Candidate]] = {}
    for cand in candidates:
        per_sample.setdefault(cand.sample_id, []).append(cand)
    by_id = Sample.objects.in_bulk(per_sample.keys())
    max_items = int(sel.get("max_items_per_sample", 0)) or None
    n = campaign.candidates_per_item
    for sample_id, cands in per_sample.items():
        if sel.get("opponents"):
            a_name, b_name = sel["opponents"][:2]
            lefts = [c for c in cands if c.source_name == a_name]
            rights = [c for c in cands if c.source_name == b_name]
            groups = [list(g) for g in zip(lefts, rights, strict=False)]
        elif campaign.mode == CampaignMode.PAIRWISE:
            groups = [list(g) for g in itertools.combinations(cands, 2)]
        else:
            shuffled = cands[:]
            rng.shuffle(shuffled)
            groups = [shuffled[i:i + n] for i in range(0, len(shuffled) - n + 1, n)]
        for group in groups[:max_items]:
            yield by_id[sample_id], group


def campaign_add_items(
    *, campaign: Campaign, groups: Iterable[tuple[Sample, Sequence[Candidate]]],
    gold_answers: dict[int, dict] | None = None,
) -> int:
    """Materialise items for (sample, candidates) groups; returns how many were created."""
    created = 0
    for sample, cands in groups:
        if len(cands) != campaign.candidates_per_item:
            raise ApplicationError(
                f"Item for sample {sample.external_id} has {len(cands)} candidates, "
                f"the campaign needs {campaign.candidates_per_item}."
            )
        if any(c.sample_id != sample.pk for c in cands):
            raise ApplicationError("Every candidate of an item must belong to its sample.")
        item = Item.objects.create(campaign=campaign, sample=sample, priority=campaign.priority)
        ItemCandidate.objects.bulk_create(
            [ItemCandidate(item=item, candidate=c, position=i) for i, c in enumerate(cands)]
        )
        created += 1
    return created


@transaction.atomic
def campaign_start(*, campaign: Campaign, seed: int | None = None) -> Campaign:
    """Materialise the campaign's items (first start only) and open it to annotators."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status == CampaignStatus.ACTIVE:
        return campaign
    if campaign.status == CampaignStatus.COMPLETED:
        raise Conflict("A completed campaign cannot be started again.")
    if campaign.started_at is None:
        if not campaign.items.exists():
            campaign_add_items(campaign=campaign, groups=_candidate_groups(campaign, random.Random(seed)))
        if not campaign.items.exists():
            raise ApplicationError(
                "No items could be built: the selection has no sample with enough candidates.",
                fields={"selection": ["No sample has enough candidates for this campaign."]},
            )
        campaign.started_at = timezone.now()
    campaign.status = CampaignStatus.ACTIVE
    campaign.save(update_fields=["status", "started_at", "updated_at"])
    return campaign


@transaction.atomic
def campaign_set_status(*, campaign: Campaign, status: str) -> Campaign:
    """Pause, resume (→ active) or complete a campaign."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    allowed = {
        CampaignStatus.PAUSED: {CampaignStatus.ACTIVE},
        CampaignStatus.ACTIVE: {CampaignStatus.PAUSED},
        CampaignStatus.COMPLETED: {CampaignStatus.ACTIVE, CampaignStatus.PAUSED},
    }
    if status == CampaignStatus.ACTIVE and campaign.started_at is None:
        raise Conflict("Start the campaign first.")
    if campaign.status not in allowed.get(status, set()):
        raise Conflict(f"Cannot go from {campaign.status} to {status}.")
    campaign.status = status
    campaign.save(update_fields=["status", "updated_at"])
    return campaign


def campaign_create_from_candidates(
    *, name: str, task_type: TaskType, sources: Sequence[str], pairing: str = "opponents", split: str | None = None,
    criteria: Sequence[str] = (), overlap: int = 3, max_items_per_sample: int = 0, description: str = "",
    annotators: Sequence[str] = (), start: bool = True, created_by: User | None = None,
) -> Campaign:
    """A campaign over the samples of ``task_type`` that have candidates from ``sources``: side A
    against side B (``pairing="opponents"``, the first source is A) or every pair among them
    (``"all_pairs"``), at most ``max_items_per_sample`` items a sample (0 = no cap); restricted to
    ``annotators`` when given (``campaign_create``) and started unless ``start`` is false."""
    picked = candidate_selection(task=task_type.slug, sources=list(sources), split=split or None, pairing=pairing,
                                 max_items_per_sample=max_items_per_sample)
    if not picked["items"]:
        raise ApplicationError("No items could be built from these candidates.", fields={
            "sources": ["No sample has candidates from these sources (in this split)."]})
    chosen = list(Criterion.objects.filter(slug__in=criteria)) if criteria else None
    if chosen is not None and len(chosen) != len(set(criteria)):
        raise ApplicationError("Unknown criteria.", fields={"criteria": ["Unknown criterion."]})
    key = "opponents" if pairing == "opponents" else "sources"
    selection = {"sample_ids": picked["sample_ids"], key: list(sources)}
    if max_items_per_sample:
        selection["max_items_per_sample"] = max_items_per_sample
    with transaction.atomic():
        campaign = campaign_create(name=name, task_type=task_type, criteria=chosen, overlap=overlap,
                                   selection=selection, description=description, created_by=created_by,
                                   source_ref="dashboard:candidates", annotators=list(annotators))
        if start:
            campaign = campaign_start(campaign=campaign)
    return campaign


def _gold_answer(item: Item, answer) -> dict:
    """``answer`` ({criterion slug: answer in the submit shape}) as stored on a gold item:
    pairwise choices by canonical position ("a", "b", "tie", "both_bad"), best–worst as
    {"best": id, "worst": id}. Raises ApplicationError with a message per criterion."""
    slugs = set(item.campaign.criteria.values_list("slug", flat=True))
    if not isinstance(answer, dict) or not answer:
        raise ApplicationError("Give the expected answer for at least one criterion.",
                               fields={"answer": [f"An object keyed by criterion: {', '.join(sorted(slugs))}."]})
    errors: dict[str, list[str]] = {}
    stored: dict = {}
    for slug, value in answer.items():
        if slug not in slugs:
            errors[str(slug)] = [f"Not a criterion of this campaign (use {', '.join(sorted(slugs))})."]
            continue
        try:
            choice, best, worst = parse_item_answer(item=item, answer=value)
        except ValueError as exc:
            errors[slug] = [str(exc)]
            continue
        if choice == Choice.NO_DIFFERENCE:  # gold checks compare (best, worst) picks
            errors[slug] = ["A best–worst gold answer names the best and the worst candidate."]
            continue
        stored[slug] = {"best": best, "worst": worst} if choice == Choice.BEST_WORST else choice
    if errors:
        raise ApplicationError("The gold answer is not valid.", fields=errors)
    return stored


@transaction.atomic
def item_mark_gold(*, item: Item, answer: dict) -> Item:
    """Turn an item into a gold item with its expected answer per criterion slug (answers as
    annotators submit them; see ``_gold_answer``). Gold items are handed out at the campaign's
    gold fraction, scored in annotator statistics and never exported to snapshots."""
    item = Item.objects.select_for_update().select_related("campaign").get(pk=item.pk)
    item.gold_answer = _gold_answer(item, answer)
    item.is_gold = True
    item.save(update_fields=["is_gold", "gold_answer"])
    return item


@transaction.atomic
def item_unmark_gold(*, item: Item) -> Item:
    """Make a gold item an ordinary one again: its judgments count in snapshots from now on."""
    item = Item.objects.select_for_update().get(pk=item.pk)
    item.is_gold = False
    item.gold_answer = None
    item.save(update_fields=["is_gold", "gold_answer"])
    return item


@transaction.atomic
def campaign_set_annotators(*, campaign: Campaign, usernames: Sequence[str]) -> Campaign:
    """Restrict the campaign to these annotators (by username); an empty list opens it to every
    annotator. Unknown users and users without the annotator role are refused by name. Leases
    already handed out run to their end."""
    names = sorted(set(usernames))
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    unknown = [n for n in names if n not in users]
    not_annotators = [n for n in names if n in users and not has_role(users[n], ANNOTATOR)]
    msgs = ([f"No such user: {', '.join(unknown)}."] if unknown else []) + (
        [f"Not an annotator: {', '.join(not_annotators)}."] if not_annotators else [])
    if msgs:
        raise ApplicationError("Only annotators can be assigned to a campaign.", fields={"annotators": msgs})
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    campaign.annotators.set(users.values())
    return campaign
