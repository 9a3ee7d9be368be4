"""Browser pages. Pages only render templates; the data comes from the REST API."""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from annotation.models import Campaign, DatasetSnapshot, Split, TaskType
from annotation.selectors import campaign_list_for, campaign_progress_for_annotator, campaigns_as_seen_by
from annotation.services.snapshots import AGGREGATION_SUMMARIES, DEFAULT_AGGREGATION
from core.errors import ApplicationError
from core.roles import ANNOTATOR, CURATOR, SCIENTIST, has_role
from jobs.models import Job, JobKind, JobStatus
from policytrain.models import PolicyCheckpoint
from policytrain.selectors import production_checkpoint, promotion_gate, promotion_history
from rewardtrain.models import RewardModel
from rewardtrain.presets import load_preset, preset_names
from rewardtrain.services import EVALUATION_SPLITS

from . import selectors as dsel
from .api import checkpoint_compare, reward_model_compare


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Each role's own start page: annotators their campaigns (those with work for them first,
    the ones they have finished apart), curators the campaigns dashboard, scientists the runs."""
    if not has_role(request.user, ANNOTATOR):
        if has_role(request.user, CURATOR):
            return redirect("dash-campaigns")
        if has_role(request.user, SCIENTIST):
            return redirect("dashboard")
        return render(request, "frontend/home.html", {"no_role": True})
    open_now, finished = [], []
    for campaign in campaigns_as_seen_by(request.user, campaign_list_for(request.user)):
        campaign.progress = campaign_progress_for_annotator(campaign, request.user)
        (open_now if campaign.progress["mine_left"] else finished).append(campaign)
    return render(request, "frontend/home.html", {"campaigns": open_now, "finished": finished})


@login_required
@ensure_csrf_cookie
def annotate(request: HttpRequest, pk: int) -> HttpResponse:
    """The annotator workspace for one campaign; everything on it is driven by the REST API."""
    if not has_role(request.user, ANNOTATOR):
        raise PermissionDenied("Only annotators can annotate.")
    (campaign,) = campaigns_as_seen_by(request.user, [get_object_or_404(campaign_list_for(request.user), pk=pk)])
    return render(request, "frontend/workspace.html", {"campaign": campaign})


# --- dashboard (scientists and curators) -------------------------------------------------------------
# Pages render a shell plus the choices a form needs; live data comes from /api/dashboard/ (frontend/api.py).

def role_page(*roles: str):
    """A page for signed-in holders of one of ``roles`` (superusers hold every role): anonymous →
    login, everyone else → 403. The dashboard nav (``_layout.html``) shows a link by the same roles."""

    def decorate(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page is for: {', '.join(roles)}.")
            return view(request, *args, **kwargs)

        wrapped.page_roles = roles  # copied onto the outer wrappers; dsel.url_for_viewer reads it
        return login_required(ensure_csrf_cookie(wrapped))

    return decorate


# Runs, models and their lineage are the scientists'; the vocabulary and accounts the curators';
# both watch campaigns and the snapshots built from them (a campaign's lineage links there).
science_page = role_page(SCIENTIST)
campaign_page = role_page(CURATOR, SCIENTIST)
curator_page = role_page(CURATOR)


def _dash(request: HttpRequest, template: str, section: str, **context) -> HttpResponse:
    return render(request, f"frontend/dashboard/{template}", {"section": section, **context})


@science_page
def dashboard_runs(request: HttpRequest) -> HttpResponse:
    return _dash(request, "runs.html", "runs", kinds=JobKind.choices, statuses=JobStatus.values,
                 users=sorted(set(Job.objects.exclude(created_by=None).values_list("created_by__username", flat=True))))


@science_page
def dashboard_run(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    return _dash(request, "run.html", "runs", job=job)


def _task_criteria() -> list[dict]:
    """The live vocabulary (task types and their criteria, as curators keep them on the Taxonomy
    page), so a criterion made there can be picked at once."""
    return [{"slug": t.slug, "name": t.name, "criteria": [{"slug": c.slug, "name": c.name} for c in t.criteria.all()]}
            for t in TaskType.objects.prefetch_related("criteria")]


@science_page
def new_reward_run(request: HttpRequest) -> HttpResponse:
    snapshots = DatasetSnapshot.objects.filter(job__status=JobStatus.SUCCEEDED).select_related("job").order_by("-id")[:200]
    return _dash(request, "new_reward.html", "new", snapshots=snapshots, presets=preset_names(),
                 campaigns=Campaign.objects.select_related("task_type").order_by("-id")[:300],
                 tasks=_task_criteria(), criteria=dsel.vocabulary()["criteria"],
                 preset_configs={n: load_preset(n) for n in preset_names()},
                 aggregations=AGGREGATION_SUMMARIES.items(), default_aggregation=DEFAULT_AGGREGATION)


@science_page
def new_policy_run(request: HttpRequest) -> HttpResponse:
    return _dash(request, "new_policy.html", "new", reward_models=RewardModel.objects.order_by("-id")[:200],
                 splits=Split.values, production=production_checkpoint(),
                 init_checkpoints=PolicyCheckpoint.objects.exclude(weights_dir="").order_by("-id")[:200])


@science_page
def new_generation(request: HttpRequest) -> HttpResponse:
    return _dash(request, "new_generation.html", "new", checkpoints=PolicyCheckpoint.objects.order_by("-id")[:200],
                 tasks=_task_criteria(), splits=Split.values, production=production_checkpoint())


@science_page
def registry(request: HttpRequest) -> HttpResponse:
    models = list(RewardModel.objects.select_related("run__job__created_by", "snapshot").order_by("-id"))
    for m in models:
        report = m.eval_report or {}
        acc, m.pairs = report.get("overall_accuracy"), report.get("pairs") or 0
        m.overall, m.overall_ci95 = None if acc is None else acc * 100, dsel.percent_interval(acc, m.pairs)
    return _dash(request, "registry.html", "registry", reward_models=models,
                 production=promotion_history().first(),
                 checkpoints=PolicyCheckpoint.objects.select_related("run__job", "reward_model").order_by("-id"),
                 snapshots=DatasetSnapshot.objects.select_related("job").order_by("-id")[:100])


@science_page
def leaderboard(request: HttpRequest) -> HttpResponse:
    try:
        board, error = dsel.leaderboard(request.GET), None
    except ApplicationError as exc:
        board, error = None, exc
    vocab = dsel.vocabulary()  # the live vocabulary: a curator's new criterion is a choice at once
    return _dash(request, "leaderboard.html", "registry", board=board, error=error, tasks=list(vocab["tasks"]),
                 criteria=vocab["criteria"], task=request.GET.get("task", ""), criterion=request.GET.get("criterion", ""))


@science_page
def reward_model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(RewardModel.objects.select_related("run__job", "snapshot"), pk=pk)
    return _dash(request, "reward_model.html", "registry", model=model, table=dsel.accuracy_table(model.eval_report),
                 lineage=dsel.reward_model_graph(model),
                 others=RewardModel.objects.exclude(pk=pk).order_by("-id")[:100],
                 evaluations=dsel.reward_model_evaluations(model), baseline=dsel.reward_model_baseline(model),
                 snapshots=DatasetSnapshot.objects.filter(job__status=JobStatus.SUCCEEDED).select_related("job").order_by("-id")[:100],
                 splits=EVALUATION_SPLITS)


@science_page
def checkpoint_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ckpt = get_object_or_404(PolicyCheckpoint.objects.select_related("run__job", "reward_model"), pk=pk)
    production = production_checkpoint()
    return _dash(request, "checkpoint.html", "registry", ckpt=ckpt, lineage=dsel.checkpoint_graph(ckpt),
                 grids=dsel.checkpoint_grids(ckpt), gate=promotion_gate(ckpt), production=production,
                 is_production=production is not None and production.pk == ckpt.pk,
                 promotions=promotion_history().filter(Q(checkpoint=ckpt) | Q(previous=ckpt)),
                 can_promote=has_role(request.user, SCIENTIST),
                 rl_table=dsel.rl_reward_table(ckpt.run) if ckpt.run else None,
                 others=PolicyCheckpoint.objects.exclude(pk=pk).order_by("-id")[:100])


@campaign_page
def snapshot_detail(request: HttpRequest, pk: int) -> HttpResponse:
    snapshot = get_object_or_404(DatasetSnapshot.objects.select_related("job", "created_by"), pk=pk)
    per_task_counts = (snapshot.counts or {}).get("per_task") or {}
    vocab = dsel.vocabulary(per_task_counts)  # names as curators keep them, custom criteria included
    task_names, crit_names = {t: e["name"] for t, e in vocab["tasks"].items()}, vocab["criteria"]
    ceiling = [{"task": task_names.get(t, t), "criterion": crit_names.get(c, c), "value": v * 100}
               for t, crits in (snapshot.human_ceiling or {}).items() for c, v in crits.items()]
    per_task = [{"task": task_names.get(t, t), "criterion": crit_names.get(c, c), "pairs": n}
                for t, crits in per_task_counts.items() for c, n in crits.items()]
    job_url = dsel.url_for_viewer(request.user, reverse("dash-run", args=[snapshot.job_id])) if snapshot.job_id else None
    can_registry = dsel.url_for_viewer(request.user, reverse("dash-registry")) is not None
    return _dash(request, "snapshot.html", "registry", snapshot=snapshot, job_url=job_url, can_registry=can_registry,
                 lineage=dsel.links_for_viewer(request.user, dsel.snapshot_graph(snapshot)),
                 ceiling=ceiling, per_task=per_task, tie_counts=dsel.snapshot_tie_counts(snapshot.counts))


def _picked_pair(request: HttpRequest, queryset):
    """``?a=&b=`` → (a, b, (obj_a, obj_b)) when both name rows of ``queryset``, else (a, b, None)."""
    a, b = request.GET.get("a"), request.GET.get("b")
    if not (a and b and a.isdigit() and b.isdigit()):
        return a, b, None
    first, second = queryset.filter(pk=a).first(), queryset.filter(pk=b).first()
    return a, b, (first, second) if first and second else None


@science_page
def compare_reward_models(request: HttpRequest) -> HttpResponse:
    models = RewardModel.objects.order_by("-id")
    a, b, pair = _picked_pair(request, models)
    data = reward_model_compare(*pair) if pair else None
    return _dash(request, "compare_reward.html", "registry", models=models[:200], data=data, a=a, b=b)


@science_page
def compare_checkpoints(request: HttpRequest) -> HttpResponse:
    ckpts = PolicyCheckpoint.objects.select_related("run").order_by("-id")
    a, b, pair = _picked_pair(request, ckpts)
    data = checkpoint_compare(*pair) if pair else None
    return _dash(request, "compare_checkpoints.html", "registry", checkpoints=ckpts[:200], data=data, a=a, b=b)


@campaign_page
def campaigns(request: HttpRequest) -> HttpResponse:
    return _dash(request, "campaigns.html", "campaigns", rows=dsel.campaign_overview())


@campaign_page
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    from .items_views import annotator_choices  # that module builds on this one's page gates

    campaign = get_object_or_404(Campaign.objects.select_related("task_type"), pk=pk)
    can_curate = has_role(request.user, CURATOR)
    return _dash(request, "campaign.html", "campaigns", campaign=campaign, can_curate=can_curate,
                 annotator_choices=annotator_choices().values_list("username", flat=True) if can_curate else [],
                 assigned=set(campaign.annotators.values_list("username", flat=True)))


@campaign_page
def new_campaign(request: HttpRequest) -> HttpResponse:
    from .items_views import annotator_choices  # that module builds on this one's page gates

    is_curator = has_role(request.user, CURATOR)
    return _dash(request, "new_campaign.html", "campaigns", tasks=_task_criteria(), splits=Split.values,
                 is_curator=is_curator,
                 annotator_choices=annotator_choices().values_list("username", flat=True) if is_curator else [])
