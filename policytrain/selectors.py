"""Reads for policy runs, checkpoints and generation jobs (lists, lineage, sample grids), and for
production: which checkpoint it is, and whether another may replace it (the promotion gate)."""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils.crypto import salted_hmac

from annotation.models import Campaign
from annotation.selectors import gsb_rows, side_by_side_outcomes
from rewardtrain.selectors import campaign_refs, snapshot_ref

from .models import GenerationJob, PolicyCheckpoint, PolicyRun, Promotion, policy_source_name

REQUIRE_BETTER = ("any", "all")
#: The metric-point kind of an RL run's logged windows: the engine's ``metrics.jsonl`` train rows
#: (window means of loss and ``reward/<task>/<criterion>``), which the worker records as it runs
#: (``policytrain.services``) so that every web host reads them from the database.
RL_WINDOW_KIND = "window"
#: A GSB verdict for side A, said from the checkpoint's side (it is always A in checkpoint_gsb).
_OURS = {"A better": "better", "B better": "worse", "no clear difference": "no clear difference"}


def policy_run_list() -> QuerySet[PolicyRun]:
    return PolicyRun.objects.select_related("job", "reward_model", "started_by", "checkpoint")


def checkpoint_list() -> QuerySet[PolicyCheckpoint]:
    return PolicyCheckpoint.objects.select_related("run__job", "reward_model")


def generation_job_list() -> QuerySet[GenerationJob]:
    return GenerationJob.objects.select_related("job", "checkpoint", "opponent", "campaign", "started_by")


def sample_grid_folder(run: PolicyRun) -> str:
    """The media folder the worker copies a run's sample grids into (``policytrain.services``).

    Media are served to every signed-in user, annotators too, and a grid shows which image the
    policy made: the folder's name carries a keyed hash of the job, so nobody can guess it from
    a job number. Every host computes the same name (they share ``DJANGO_SECRET_KEY``).
    """
    token = salted_hmac("policytrain.sample-grids", str(run.job_id)).hexdigest()[:20]
    return f"policy-runs/job-{run.job_id}-{token}/samples"


def run_sample_grids(run: PolicyRun) -> list[dict]:
    """A run's sample grids, oldest first: ``{"name": "step-000010", "url"}``.

    From media storage (the bucket, when configured), where the worker copies each grid as it is
    written, so every host shows them. A run recorded before that has its grids only in its
    folder: those are served from there (the run's artifact URL) on the host that has it.
    """
    folder = sample_grid_folder(run)
    try:
        names = default_storage.listdir(folder)[1]
    except FileNotFoundError:  # nothing copied yet (a local media folder is made on the first save)
        names = []
    grids = sorted(n for n in names if n.startswith("step-") and n.endswith(".png"))
    if grids:
        return [{"name": Path(n).stem, "url": reverse("media", kwargs={"path": f"{folder}/{n}"})} for n in grids]
    local = Path(run.output_dir or "-") / "samples"
    if not local.is_dir():
        return []
    return [{"name": p.stem, "url": reverse("api-policy-run-artifact", args=[run.pk, f"samples/{p.name}"])}
            for p in sorted(local.glob("*.png"))]


def _attr(obj, name: str, default=None):
    return getattr(obj, name, default) if obj is not None else default


def checkpoint_lineage(checkpoint: PolicyCheckpoint) -> dict:
    """checkpoint → run → reward model → snapshot → campaigns (each level may be missing)."""
    run = checkpoint.run
    rm = checkpoint.reward_model or (run.reward_model if run else None)
    snapshot = _attr(rm, "snapshot")
    campaigns = []
    if snapshot is not None and hasattr(snapshot, "campaigns"):
        campaigns = campaign_refs(snapshot.campaigns.all())
    return {
        "checkpoint": {"id": checkpoint.pk, "name": checkpoint.name, "base_policy": checkpoint.base_policy,
                       "weights_dir": checkpoint.weights_dir, "algorithm": checkpoint.algorithm},
        "run": ({"id": run.pk, "job_id": run.job_id, "status": run.job.status, "algorithm": run.algorithm,
                 "output_dir": run.output_dir,
                 "init_checkpoint": ({"id": run.init_checkpoint_id, "name": run.init_checkpoint.name}
                                     if run.init_checkpoint_id else None)} if run else None),
        "reward_model": ({"id": rm.pk, "name": _attr(rm, "name", str(rm)), "path": _attr(rm, "path", ""),
                          "base_model": _attr(rm, "base_model", ""),
                          "template_version": _attr(rm, "template_version", ""),
                          "run_id": _attr(rm, "run_id")} if rm else None),
        "snapshot": snapshot_ref(snapshot) if snapshot is not None else None,
        "campaigns": campaigns,
    }


# --- Side by side and production ----------------------------------------------------------------

def checkpoint_gsb(ckpt: PolicyCheckpoint, campaigns: Iterable[Campaign]) -> dict | None:
    """The annotators' side-by-side (GSB) of ``ckpt`` against its opponent, pooled over
    ``campaigns`` (each a generation campaign in which ``ckpt`` is A or B) and seen from the
    checkpoint's side: overall and per criterion, with the criteria on which it is clearly
    better or worse (a checkpoint that wins overall can still lose one). None before any judgment.
    """
    ours = policy_source_name(ckpt)
    per_criterion: dict[str, dict[int, list[int]]] = defaultdict(dict)
    overall: dict[int, list[int]] = {}
    criteria: dict[str, object] = {}
    opponents: set[str] = set()
    used: list[int] = []
    for campaign in campaigns:
        names = (campaign.selection or {}).get("opponents") or []
        if ours not in names[:2]:
            continue
        per_campaign, campaign_overall = side_by_side_outcomes(campaign, side=ours)
        for slug, items in per_campaign.items():
            per_criterion[slug].update(items)  # item ids are unique across campaigns
        overall.update(campaign_overall)
        criteria.update({c.slug: c for c in campaign.criteria.order_by("id")})
        opponents.update(n for n in names[:2] if n != ours)
        used.append(campaign.pk)
    if not overall:
        return None
    rows = gsb_rows(per_criterion, overall, criteria.values())
    for row in [*rows["criteria"], rows["overall"]]:
        row["verdict"] = _OURS.get(row["verdict"], row["verdict"])
    judged = [r for r in rows["criteria"] if r["judgments"]]
    head = rows["overall"]
    return {"win_rate": head["win_rate"], "ci95": head["ci95"], "judgments": head["judgments"],
            "items": head["items"], "verdict": head["verdict"], "items_to_decide": head["items_to_decide"],
            "opponent": ", ".join(sorted(opponents)),
            "criteria": rows["criteria"], "campaigns": used,
            "better_on": [r["name"] for r in judged if r["verdict"] == "better"],
            "worse_on": [r["name"] for r in judged if r["verdict"] == "worse"]}


def production_checkpoint() -> PolicyCheckpoint | None:
    """The production policy's checkpoint; None = nothing promoted yet (the base policy serves)."""
    latest = Promotion.objects.select_related("checkpoint").order_by("-number").first()
    return latest.checkpoint if latest else None


def promotion_history() -> QuerySet[Promotion]:
    return Promotion.objects.select_related("checkpoint", "previous", "promoted_by").order_by("-number")


@dataclass(frozen=True)
class PromotionRule:
    """What a checkpoint's side-by-side against production must show before it replaces it.

    The paper measures each model with GSB campaigns but gives no deployment rule; this default
    ships nothing that people judged clearly worse on any task or criterion, and something that
    they judged clearly better on at least one task. Configure with ``settings.POLICY_PROMOTION``.
    """

    min_judgments: int = 30
    require_better: str = "any"  # "any" or "all" of the required tasks clearly better overall
    allow_worse_criteria: bool = False
    tasks: tuple[str, ...] = ()  # tasks that must have been judged; () = the tasks its RL run trained

    def __post_init__(self) -> None:
        if self.min_judgments < 1:
            raise ValueError("POLICY_PROMOTION min_judgments must be at least 1")
        if self.require_better not in REQUIRE_BETTER:
            raise ValueError(f"POLICY_PROMOTION require_better must be one of {REQUIRE_BETTER}")

    @classmethod
    def from_settings(cls) -> PromotionRule:
        raw = dict(getattr(settings, "POLICY_PROMOTION", {}) or {})
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"POLICY_PROMOTION has unknown keys {sorted(unknown)}")
        return cls(**{**raw, "tasks": tuple(raw.get("tasks") or ())})


def _trained_tasks(ckpt: PolicyCheckpoint) -> list[str]:
    """The tasks the checkpoint's RL run sampled (probability > 0); none for a bare base."""
    probs = ((ckpt.run.config or {}).get("task_probs") or {}) if ckpt.run_id else {}
    return [task for task, p in probs.items() if p and p > 0]


def promotion_evidence(ckpt: PolicyCheckpoint, production: PolicyCheckpoint | None) -> list[GenerationJob]:
    """Generation jobs whose campaign puts ``ckpt`` side by side with production (with no
    production: with its own base policy), either way round."""
    if production is None:
        match = Q(checkpoint=ckpt, opponent__isnull=True)
    else:
        match = Q(checkpoint=ckpt, opponent=production) | Q(checkpoint=production, opponent=ckpt)
    return list(GenerationJob.objects.filter(match, campaign__isnull=False)
                .select_related("campaign__task_type").order_by("id"))


def promotion_gate(ckpt: PolicyCheckpoint, rule: PromotionRule | None = None) -> dict:
    """Whether ``ckpt`` may replace production, per ``rule``, from the annotators' side-by-side
    judgments against production, pooled per task: every required task judged at least
    ``min_judgments`` times; no task clearly worse overall; no criterion clearly worse (unless
    allowed); clearly better overall on any (or all) of them. ``reasons`` says what is missing.
    """
    rule = rule or PromotionRule.from_settings()
    production = production_checkpoint()
    opponent = production.name if production else policy_source_name(None, ckpt.base_policy)
    head = {"checkpoint": {"id": ckpt.pk, "name": ckpt.name},
            "production": {"id": production.pk, "name": production.name} if production else None,
            "opponent": opponent, "rule": dataclasses.asdict(rule)}
    if production is not None and production.pk == ckpt.pk:
        return {**head, "tasks": [], "eligible": False, "reasons": ["This checkpoint is already the production policy."]}
    by_task: dict[str, list[Campaign]] = defaultdict(list)
    for gen in promotion_evidence(ckpt, production):
        by_task[gen.campaign.task_type.slug].append(gen.campaign)
    required = list(rule.tasks) or _trained_tasks(ckpt) or sorted(by_task)
    reasons: list[str] = []
    if not required:
        reasons.append(f"No side-by-side campaign against {opponent} yet: start a generation job with it as the opponent.")
    tasks = []
    for task in sorted(set(required) | set(by_task)):
        gsb = checkpoint_gsb(ckpt, by_task.get(task, []))
        judgments = gsb["judgments"] if gsb else 0
        row = {"task": task, "required": task in required, "judgments": judgments,
               "campaigns": gsb["campaigns"] if gsb else [c.pk for c in by_task.get(task, [])],
               **({k: gsb[k] for k in ("win_rate", "ci95", "items", "verdict", "items_to_decide", "better_on",
                                       "worse_on")} if gsb else
                  {"win_rate": None, "ci95": None, "items": 0, "verdict": None, "items_to_decide": None,
                   "better_on": [], "worse_on": []})}
        tasks.append(row)
        if task in required and judgments < rule.min_judgments:
            reasons.append(f"{task}: {judgments} side-by-side judgments against {opponent}; the rule needs "
                           f"{rule.min_judgments}.")
        if row["verdict"] == "worse":
            reasons.append(f"{task}: clearly worse than {opponent} overall (win rate {row['win_rate']:.3f}).")
        if row["worse_on"] and not rule.allow_worse_criteria:
            reasons.append(f"{task}: clearly worse on {', '.join(row['worse_on'])}.")
    # Unjudged tasks already have their reason; this one is about the verdicts people gave.
    better = [r["verdict"] == "better" for r in tasks if r["required"] and r["verdict"]]
    if better and not (any(better) if rule.require_better == "any" else all(better)):
        reasons.append("Not clearly better overall on any required task." if rule.require_better == "any"
                       else "Not clearly better overall on every required task.")
    return {**head, "tasks": tasks, "eligible": not reasons, "reasons": reasons}
