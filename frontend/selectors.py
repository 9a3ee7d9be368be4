"""Reads for the scientist / curator dashboard (frontend/api.py and the dashboard pages call these).

Nothing here writes and nothing imports torch: runs are described from their database rows
(metric points, log tails, reports) and media storage (sample grids), never by loading a model
and never from a worker's disk, so every web host shows the same run pages (docs/operations.md,
"Several hosts"). A run folder is read only as the fallback for runs recorded before that, on
the host that has the folder.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone

from annotation.models import (
    Campaign,
    Candidate,
    Choice,
    Criterion,
    DatasetSnapshot,
    Item,
    ItemStatus,
    Judgment,
    Lease,
    LeaseState,
    TaskType,
)
from annotation.selectors import (
    annotator_stats,
    campaign_agreement,
    campaign_gsb,
    campaign_progress,
    source_leaderboard,
)
from annotation.vocabulary import CRITERION_NAMES, TASK_NAMES
from core.errors import ApplicationError
from core.roles import has_role
from core.stats import wilson_interval
from jobs.models import Job, JobKind, JobStatus, MetricPoint
from jobs.selectors import job_artifacts, job_list, job_metric_series, job_resumable
from policytrain.models import GenerationJob, PolicyCheckpoint, PolicyRun, policy_source_name
from policytrain.selectors import (
    RL_WINDOW_KIND,
    checkpoint_gsb,
    checkpoint_lineage,
    production_checkpoint,
    run_sample_grids,
)
from rewardtrain.models import RewardModel, RewardRun
from rewardtrain.selectors import accuracy_comparison, baseline_list, evaluation_list, latest_baseline

# The built-in criteria's column order (the paper's Table 1); curators' criteria follow them.
COLUMNS = ("text_alignment", "consistency", "structure", "aesthetics", "removal_quality")
# The paper's Table 1 (arXiv 2508.21066), in percent, shown beside our numbers for orientation;
# it has numbers for the built-in criteria only.
PAPER_TABLE1 = {
    "fill": {"text_alignment": 83.77, "consistency": 74.23, "structure": 74.63, "aesthetics": 72.10},
    "extend": {"text_alignment": 80.36, "consistency": 72.50, "structure": 74.29, "aesthetics": 71.10},
    "removal": {"removal_quality": 84.93},
}
LOG_TAIL_CHARS = 6000


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- jobs ---------------------------------------------------------------------------------------------

def dashboard_jobs(*, kind: str | None = None, status: str | None = None, started_by: str | None = None,
                   q: str | None = None) -> QuerySet[Job]:
    """Every long job (reward, RL, snapshot, generation, evaluation) with what the list shows."""
    qs = job_list(kind=kind or None, status=status or None).select_related(
        "reward_run__reward_model", "policy_run__checkpoint", "generation_job__campaign", "snapshot")
    if started_by:
        qs = qs.filter(created_by__username=started_by)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(pk=int(q) if q.isdigit() else -1))
    return qs


def related(job: Job, name: str):
    try:
        return getattr(job, name)
    except Exception:  # RelatedObjectDoesNotExist
        return None


def job_links(job: Job) -> list[dict]:
    """Where this job sits in the lineage: the objects it read and the ones it produced."""
    links: list[dict] = []
    if job.kind == JobKind.REWARD and (run := related(job, "reward_run")):
        links.append({"label": f"Snapshot #{run.snapshot_id}", "url": reverse("dash-snapshot", args=[run.snapshot_id]),
                      "role": "input"})
        if (model := related(run, "reward_model")) is not None:
            links.append({"label": f"Reward model #{model.pk}", "url": reverse("dash-reward-model", args=[model.pk]),
                          "role": "output"})
    elif job.kind == JobKind.POLICY and (run := related(job, "policy_run")):
        links.append({"label": f"Reward model #{run.reward_model_id}",
                      "url": reverse("dash-reward-model", args=[run.reward_model_id]), "role": "input"})
        if (ckpt := related(run, "checkpoint")) is not None:
            links.append({"label": f"Checkpoint {ckpt.name}", "url": reverse("dash-checkpoint", args=[ckpt.pk]),
                          "role": "output"})
    elif job.kind == JobKind.GENERATION and (gen := related(job, "generation_job")):
        links.append({"label": f"Checkpoint #{gen.checkpoint_id}", "url": reverse("dash-checkpoint",
                                                                                 args=[gen.checkpoint_id]),
                      "role": "input"})
        if gen.campaign_id:
            links.append({"label": f"Campaign {gen.campaign.name}", "url": reverse("dash-campaign",
                                                                                   args=[gen.campaign_id]),
                          "role": "output"})
    elif job.kind == JobKind.SNAPSHOT and (snap := related(job, "snapshot")):
        links.append({"label": f"Snapshot #{snap.pk}", "url": reverse("dash-snapshot", args=[snap.pk]),
                      "role": "output"})
    elif job.kind in (JobKind.EVALUATION, JobKind.SCORE) and job.config.get("reward_model_id"):
        rm = job.config["reward_model_id"]
        links.append({"label": f"Reward model #{rm}", "url": reverse("dash-reward-model", args=[rm]), "role": "input"})
    return links


#: The key config values the runs list shows as columns, per kind of run (the resolved config's
#: names); "lr" is shown for both, so reward and RL runs line up in one column.
PARAM_KEYS = {
    JobKind.REWARD: ("preset", "lr", "batch_size", "max_steps", "lora_r", "full_finetune", "seed"),
    JobKind.POLICY: ("algorithm", "lr", "batch_size", "max_steps", "hinge_lambda", "ema_decay", "lora_rank", "seed"),
}


def run_of(job: Job) -> RewardRun | PolicyRun | None:
    """The reward or RL run behind a job (the rows that carry tags), else None."""
    if job.kind == JobKind.REWARD:
        return related(job, "reward_run")
    if job.kind == JobKind.POLICY:
        return related(job, "policy_run")
    return None


def run_params(job: Job, run: RewardRun | PolicyRun | None) -> dict:
    """The key config values of a reward or RL run (``PARAM_KEYS``); empty for other jobs."""
    if run is None:
        return {}
    config = {**(run.config or {}), "preset": getattr(run, "preset", None), "algorithm": getattr(run, "algorithm", None)}
    if job.kind == JobKind.POLICY:
        config["lr"] = config.get("learning_rate")
        if config.get("algorithm") != 2:  # τ is only used by Algorithm 2
            config["ema_decay"] = None
    return {k: config.get(k) for k in PARAM_KEYS[job.kind] if config.get(k) is not None}


def job_summary(job: Job) -> dict:
    run = run_of(job)
    return {
        "id": job.pk, "kind": job.kind, "kind_label": job.get_kind_display(), "name": job.name,
        "status": job.status, "step": job.step, "total_steps": job.total_steps, "progress": job.progress,
        "eta_seconds": _finite(job.eta_seconds), "last_metrics": job.last_metrics,
        "error": job.error.splitlines()[0][:300] if job.error else "",
        "cancel_requested": job.cancel_requested, "attempts": job.attempts,
        "started_by": job.created_by.username if job.created_by else None,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "can_cancel": not job.is_finished, "can_resume": job_resumable(job),
        "url": reverse("dash-run", args=[job.pk]), "links": job_links(job),
        "tags": list(run.tags) if run is not None else None, "params": run_params(job, run),
    }


def vocabulary(extra: dict | None = None) -> dict:
    """The live vocabulary for tables, filters and choices: ``tasks`` {slug: {"name", "criteria":
    [slugs]}} and ``criteria`` {slug: name}, as curators keep them on the Taxonomy page, the
    built-in ones first in the paper's order. ``extra`` ({task: [criteria]}, e.g. what a report
    holds) adds tasks and criteria a report names that the database no longer has."""
    builtin_tasks = {slug: i for i, slug in enumerate(TASK_NAMES)}
    builtin_cols = {slug: i for i, slug in enumerate(COLUMNS)}
    task_rows = sorted(TaskType.objects.prefetch_related("criteria"),
                       key=lambda t: (builtin_tasks.get(t.slug, len(builtin_tasks)), t.pk))
    crit_rows = sorted(Criterion.objects.all(), key=lambda c: (builtin_cols.get(c.slug, len(builtin_cols)), c.pk))
    tasks = {t.slug: {"name": t.name, "criteria": [c.slug for c in t.criteria.all()]} for t in task_rows}
    criteria = {c.slug: c.name for c in crit_rows}
    for task, crits in (extra or {}).items():
        entry = tasks.setdefault(task, {"name": TASK_NAMES.get(task, task), "criteria": []})
        for crit in crits:
            if crit not in entry["criteria"]:
                entry["criteria"].append(crit)
            criteria.setdefault(crit, CRITERION_NAMES.get(crit, crit))
    return {"tasks": tasks, "criteria": criteria}


def _table_columns(vocab: dict) -> list[dict]:
    """Every criterion some task offers, as table columns; ``builtin`` marks the paper's own."""
    used = {c for t in vocab["tasks"].values() for c in t["criteria"]}
    return [{"slug": c, "name": name, "builtin": c in CRITERION_NAMES} for c, name in vocab["criteria"].items()
            if c in used]


def accuracy_table(report: dict) -> dict:
    """A reward model's eval report in the paper's Table 1 layout (tasks × criteria, percent),
    with the snapshot's human ceiling beside every cell. Tasks and criteria come from the live
    vocabulary (``vocabulary``), so a curator's criterion gets its column; the paper's number
    (``paper``) is there for built-in criteria only."""
    acc, ceiling, counts = report.get("accuracy") or {}, report.get("human_ceiling") or {}, report.get("counts") or {}
    vocab = vocabulary({t: list(c) for t, c in acc.items()})
    columns = _table_columns(vocab)
    rows = []
    for task, entry in vocab["tasks"].items():
        crits = entry["criteria"]
        cells = []
        for col in (c["slug"] for c in columns):
            if col not in crits:
                cells.append({"criterion": col, "applicable": False})
                continue
            a, c = acc.get(task, {}).get(col), ceiling.get(task, {}).get(col)
            n = counts.get(task, {}).get(col, 0)
            cells.append({"criterion": col, "applicable": True, "accuracy": None if a is None else round(a * 100, 2),
                          "ci95": percent_interval(a, n), "ceiling": None if c is None else round(c * 100, 2),
                          "n": n, "paper": PAPER_TABLE1.get(task, {}).get(col)})
        rows.append({"task": task, "name": entry["name"], "cells": cells})
    overall = report.get("overall_accuracy")
    return {"columns": columns, "rows": rows,
            "overall": None if overall is None else round(overall * 100, 2), "pairs": report.get("pairs"),
            "overall_ci95": percent_interval(overall, report.get("pairs") or 0),
            "split": report.get("split"), "position_consistency": report.get("position_consistency"),
            "ece": report.get("ece")}


def percent_interval(rate: float | None, n: int) -> list[float] | None:
    """The 95 % Wilson interval of an accuracy ``rate`` measured on ``n`` pairs, in percent."""
    bounds = None if rate is None else wilson_interval(rate * n, n)
    return None if bounds is None else [round(bounds[0] * 100, 2), round(bounds[1] * 100, 2)]


def reward_model_evaluations(model: RewardModel) -> list[dict]:
    """A reward model's evaluations on snapshots, each with its Table 1 layout once it finished."""
    out = []
    for ev in evaluation_list(model):
        out.append({"id": ev.pk, "snapshot": snapshot_node(ev.snapshot), "split": ev.split, "status": ev.job.status,
                    "job": ev.job_id, "url": reverse("dash-run", args=[ev.job_id]), "error": ev.job.error,
                    "table": accuracy_table(ev.report) if ev.report else None})
    return out


def _percent_cell(cell: dict | None) -> dict | None:
    if cell is None:
        return None
    interval = cell["interval"]
    return {"accuracy": cell["accuracy"] * 100, "n": cell["n"],
            "ci95": [interval[0] * 100, interval[1] * 100] if interval else None}


def reward_model_baseline(model: RewardModel) -> dict:
    """The baseline learner beside a reward model: the newest finished baseline on the model's
    snapshot, the VLM's and the baseline's held-out accuracy per task × criterion (percent, n,
    95 % interval) and any baseline still queued or running on that snapshot."""
    run = latest_baseline(model.snapshot_id)
    rows = [{"task": TASK_NAMES.get(r["task"], r["task"]), "criterion": CRITERION_NAMES.get(r["criterion"], r["criterion"]),
             "vlm": _percent_cell(r["vlm"]), "baseline": _percent_cell(r["baseline"])}
            for r in accuracy_comparison(model.eval_report or {}, run.report if run else None)]
    pending = [{"id": b.pk, "status": b.job.status, "url": reverse("dash-run", args=[b.job_id])}
               for b in baseline_list(snapshot=model.snapshot_id).filter(
                   job__status__in=[JobStatus.QUEUED, JobStatus.RUNNING])]
    return {"run": run, "url": reverse("dash-run", args=[run.job_id]) if run else None, "rows": rows if run else [],
            "pending": pending}


def _metrics_rows(run_dir: str, limit: int = 20000) -> list[dict]:
    path = Path(run_dir or "-") / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    with path.open() as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows[-limit:]


def _reward_windows(run: PolicyRun) -> list[dict]:
    """The RL run's logged windows (metrics rows with ``step`` and ``reward/<task>/<criterion>``),
    oldest first: the metric points the worker recorded (``policytrain.selectors.RL_WINDOW_KIND``;
    the steps a resumed run replays replace the earlier attempt's), in one query. A run recorded
    before the worker recorded them has only its folder's ``metrics.jsonl``, read where it is here."""
    by_step: dict[int, dict] = {}
    for step, values in (MetricPoint.objects.filter(job_id=run.job_id, kind=RL_WINDOW_KIND).order_by("id")
                         .values_list("step", "values")):
        by_step[step] = {**(values or {}), "step": step}
    if by_step:
        return [by_step[step] for step in sorted(by_step)]
    return _metrics_rows(run.output_dir)


def rl_reward_table(run: PolicyRun) -> dict:
    """Policy vs reference P(Yes) per task × criterion from the RL run's logged windows.

    ``reward/<task>/<criterion>`` is the mean P(Yes) that the policy's one-step image beats the
    reference image; 0.5 = no better than the reference. ``latest`` averages the last 5 logged
    windows, ``first`` the first 5.
    """
    rows = _reward_windows(run)
    series: dict[str, list[list[float]]] = defaultdict(list)
    for r in rows:
        for key, value in r.items():
            if key.startswith("reward/") and isinstance(value, int | float):
                series[key].append([r.get("step", 0), value])
    logged: dict[str, list[str]] = defaultdict(list)
    for key in series:
        _prefix, task, crit = (key.split("/", 2) + ["", ""])[:3]
        logged[task].append(crit)
    vocab = vocabulary(logged)
    columns = _table_columns(vocab)
    table = []
    for task, entry in vocab["tasks"].items():
        crits = entry["criteria"]
        cells = []
        for col in (c["slug"] for c in columns):
            pts = series.get(f"reward/{task}/{col}")
            if col not in crits:
                cells.append({"criterion": col, "applicable": False})
            elif not pts:
                cells.append({"criterion": col, "applicable": True, "latest": None, "first": None})
            else:
                vals = [v for _s, v in pts]
                cells.append({"criterion": col, "applicable": True, "latest": sum(vals[-5:]) / len(vals[-5:]),
                              "first": sum(vals[:5]) / len(vals[:5]), "points": len(vals)})
        table.append({"task": task, "name": entry["name"], "cells": cells})
    step = max(1, len(rows) // 500)  # keep the curve light
    thinned = {k: v[::step] + ([v[-1]] if (len(v) - 1) % step else []) for k, v in series.items()}
    return {"columns": columns, "rows": table,
            "series": thinned}


def log_tail(job: Job) -> str:
    """The job's own log tail (recorded in the database, so the same on every host), else the end
    of the newest log-like file in its run folder where this host has that folder."""
    if job.log_tail:
        return job.log_tail[-LOG_TAIL_CHARS:]
    root = Path(job.run_dir or "-")
    if not root.is_dir():
        return ""
    files = [p for p in root.glob("*") if p.is_file() and not p.is_symlink() and p.suffix in (".log", ".txt", ".jsonl")]
    if not files:
        return ""
    newest = max(files, key=lambda p: p.stat().st_mtime)
    with newest.open("rb") as fh:
        fh.seek(max(0, newest.stat().st_size - LOG_TAIL_CHARS))
        return f"# {newest.name}\n" + fh.read().decode("utf-8", "replace")


def _media(field) -> str:
    return reverse("media", kwargs={"path": field.name})


def generation_pairs(gen: GenerationJob, limit: int = 12) -> list[dict]:
    """Checkpoint (A) vs opponent (B) outputs of a generation job, per sample and seed."""
    cands = Candidate.objects.filter(generation_params__generation_job=gen.pk).select_related("sample")
    by_key: dict[tuple[int, int | None], dict] = {}
    for c in cands.order_by("sample_id", "seed", "id"):
        side = "a" if (c.generation_params or {}).get("checkpoint_id") == gen.checkpoint_id else "b"
        by_key.setdefault((c.sample_id, c.seed), {"sample": c.sample.external_id, "seed": c.seed,
                                                  "prompt": c.sample.effective_prompt})[side] = _media(c.image)
    return list(by_key.values())[:limit]


def job_detail(job: Job, *, after_id: int = 0) -> dict:
    """Everything the run page shows; ``after_id`` limits metrics to new points (polling)."""
    out = job_summary(job)
    out.update({
        "config": job.config, "result": job.result, "error_full": job.error, "traceback": job.traceback,
        "metrics": job_metric_series(job, after_id=after_id), "log_tail": log_tail(job), "run_dir": job.run_dir,
        "artifacts": [{**a, "url": reverse("dash-api-artifact", args=[job.pk, a["path"]])}
                      for a in job_artifacts(job)],
        "heartbeat_at": job.heartbeat_at,
    })
    if job.kind == JobKind.REWARD and (run := related(job, "reward_run")):
        model = related(run, "reward_model")
        out["reward"] = {"run_id": run.pk, "snapshot": {"id": run.snapshot_id, "name": run.snapshot.name},
                         "base_model": run.base_model, "preset": run.preset,
                         "reward_model": {"id": model.pk, "name": model.name} if model else None,
                         "table": accuracy_table(model.eval_report) if model else None}
    elif job.kind == JobKind.POLICY and (run := related(job, "policy_run")):
        ckpt = related(run, "checkpoint")
        out["policy"] = {
            "run_id": run.pk, "algorithm": run.algorithm, "base_policy": run.base_policy,
            "reward_model": {"id": run.reward_model_id, "name": run.reward_model.name},
            "checkpoint": {"id": ckpt.pk, "name": ckpt.name} if ckpt else None,
            "rl_table": rl_reward_table(run),
            "sample_grids": [grid["url"] for grid in run_sample_grids(run)][-8:],
        }
    elif job.kind == JobKind.GENERATION and (gen := related(job, "generation_job")):
        out["generation"] = {
            "checkpoint": {"id": gen.checkpoint_id, "name": gen.checkpoint.name},
            "opponent": {"id": gen.opponent_id, "name": gen.opponent.name} if gen.opponent_id else None,
            "campaign": {"id": gen.campaign_id, "name": gen.campaign.name} if gen.campaign_id else None,
            "campaign_name": gen.campaign_name, "samples": len(gen.sample_ids), "seeds": gen.seeds,
            "candidates_created": gen.candidates_created, "pairs": generation_pairs(gen),
        }
    elif job.kind == JobKind.SNAPSHOT and (snap := related(job, "snapshot")):
        out["snapshot"] = {"id": snap.pk, "name": snap.name, "status": snap.status, "counts": snap.counts,
                           "human_ceiling": snap.human_ceiling, "content_hash": snap.content_hash}
    elif job.kind in (JobKind.EVALUATION, JobKind.SCORE):
        out["scores"] = (job.result or {}).get("scores", [])[:50]
    return out


MAX_OVERLAY_RUNS = 12
MAX_OVERLAY_POINTS = 2000


def _thin(points: list[list[float]], limit: int = MAX_OVERLAY_POINTS) -> list[list[float]]:
    """Every k-th point (and always the last) so one curve stays under ``limit`` points."""
    step = max(1, math.ceil(len(points) / limit))
    return points[::step] + ([points[-1]] if points and (len(points) - 1) % step else [])


def run_curves(job: Job) -> dict[str, list[list[float]]]:
    """Every numeric metric a job logged, as ``{"<metric> · <train|eval (split)>": [[step, value], …]}``,
    plus an RL run's reward per task × criterion (``reward/<task>/<criterion>``, from its logged
    windows, which are not listed again under their own kind)."""
    series: dict[str, list[list[float]]] = defaultdict(list)
    points = MetricPoint.objects.filter(job=job).exclude(kind=RL_WINDOW_KIND).order_by("id")
    for step, kind, values in points.values_list("step", "kind", "values"):
        split = (values or {}).get("split")
        suffix = kind if kind != "eval" or not split else f"eval ({split})"
        for key, value in (values or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                series[f"{key} · {suffix}"].append([step, value])
    if job.kind == JobKind.POLICY and (run := related(job, "policy_run")):
        series.update(rl_reward_table(run)["series"])
    return {k: _thin(v) for k, v in sorted(series.items())}


def overlay_runs(job_ids: list[int]) -> dict:
    """The runs ``job_ids`` (in that order, unknown ids reported) with their curves, for one overlay chart."""
    jobs = {j.pk: j for j in dashboard_jobs().filter(pk__in=job_ids)}
    missing = [pk for pk in job_ids if pk not in jobs]
    if missing:
        raise ApplicationError("Unknown runs.", fields={"job": [f"No run with id {pk}." for pk in missing]})
    return {"runs": [{**job_summary(jobs[pk]), "curves": run_curves(jobs[pk])} for pk in job_ids]}


# --- lineage: campaigns → snapshot → reward model → policy checkpoint → generated campaign -------
# The dashboard's graphs of linked nodes (*_graph); the API's lineage serialisers are
# rewardtrain.selectors.snapshot_lineage / model_lineage and policytrain.selectors.checkpoint_lineage.

def url_for_viewer(user, url: str | None) -> str | None:
    """``url`` when ``user`` may open that dashboard page, else None. Pages made by
    ``views.role_page`` carry the roles they admit (``page_roles``); any other URL is kept."""
    if not url:
        return url
    try:
        func = resolve(urlsplit(url).path).func
    except Resolver404:
        return url
    roles = getattr(func, "page_roles", None)
    return url if not roles or has_role(user, *roles) else None


def links_for_viewer(user, data):
    """A copy of ``data`` (lineage nodes, a page's payload) in which every ``"url"`` the user's
    role cannot open is None, so pages render those nodes as plain text instead of a link to a 403."""
    if isinstance(data, dict):
        return {k: (url_for_viewer(user, v) if k == "url" and isinstance(v, str) else links_for_viewer(user, v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [links_for_viewer(user, v) for v in data]
    return data


# The tie-aware aggregations' own counters (annotation.services.snapshots), with what each means;
# snapshots built by a majority rule have no tie_votes / tie_outvoted.
TIE_AWARE_COUNTS = (
    ("tie_votes", "Tie votes", "tie and both-bad answers counted as votes against a preference"),
    ("tie_outvoted", "Outvoted by ties", "pairs left out because tie votes matched or beat the winner's votes"),
    ("adjudicated", "Adjudicated", "(item, criterion) pairs whose votes a curator's adjudication decided"),
)


def snapshot_tie_counts(counts: dict | None) -> list[dict]:
    """The tie-aware counters a snapshot (or a preview) reports, in display order."""
    counts = counts or {}
    return [{"key": k, "label": label, "help": help_text, "value": counts[k]}
            for k, label, help_text in TIE_AWARE_COUNTS if k in counts]


def _node(kind: str, obj, label: str, url_name: str, extra: str = "") -> dict:
    return {"kind": kind, "id": obj.pk, "label": label, "url": reverse(url_name, args=[obj.pk]), "extra": extra}


def campaign_node(c: Campaign) -> dict:
    return _node("campaign", c, c.name, "dash-campaign", c.status)


def snapshot_node(s: DatasetSnapshot) -> dict:
    return _node("snapshot", s, s.name, "dash-snapshot", f"{(s.counts or {}).get('pairs', 0)} pairs · {s.status}")


def reward_model_node(m: RewardModel) -> dict:
    acc = (m.eval_report or {}).get("overall_accuracy")
    return _node("reward_model", m, m.name, "dash-reward-model", f"acc {acc * 100:.1f}%" if acc is not None else "")


def checkpoint_node(c: PolicyCheckpoint) -> dict:
    return _node("checkpoint", c, c.name, "dash-checkpoint",
                 f"Algorithm {c.algorithm}" if c.algorithm else "base policy")


def _generation_of(campaign: Campaign) -> GenerationJob | None:
    if campaign.source_ref.startswith("generation-job:"):
        return GenerationJob.objects.filter(pk=campaign.source_ref.split(":", 1)[1] or 0).select_related(
            "checkpoint").first()
    return GenerationJob.objects.filter(campaign=campaign).select_related("checkpoint").first()


def campaign_graph(campaign: Campaign) -> dict:
    gen = _generation_of(campaign)
    snapshots = list(campaign.snapshots.order_by("-id"))
    models = RewardModel.objects.filter(snapshot__in=snapshots).order_by("-id")
    return {"upstream": ([checkpoint_node(gen.checkpoint)] if gen else []),
            "generation_job": {"id": gen.job_id, "url": reverse("dash-run", args=[gen.job_id])} if gen else None,
            "downstream": {"snapshots": [snapshot_node(s) for s in snapshots],
                           "reward_models": [reward_model_node(m) for m in models]}}


def snapshot_graph(snapshot: DatasetSnapshot) -> dict:
    campaigns = list(snapshot.campaigns.order_by("id"))
    models = list(RewardModel.objects.filter(snapshot=snapshot).order_by("-id"))
    runs = RewardRun.objects.filter(snapshot=snapshot).select_related("job").order_by("-id")
    return {"upstream": {"campaigns": [campaign_node(c) for c in campaigns]},
            "downstream": {"reward_models": [reward_model_node(m) for m in models],
                           "reward_runs": [{"id": r.pk, "job": r.job_id, "status": r.job.status,
                                            "url": reverse("dash-run", args=[r.job_id])} for r in runs],
                           "checkpoints": [checkpoint_node(c) for c in
                                           PolicyCheckpoint.objects.filter(reward_model__in=models).order_by("-id")]}}


def reward_model_graph(model: RewardModel) -> dict:
    snapshot = model.snapshot
    checkpoints = list(PolicyCheckpoint.objects.filter(Q(reward_model=model) | Q(run__reward_model=model))
                       .distinct().order_by("-id"))
    gens = GenerationJob.objects.filter(checkpoint__in=checkpoints, campaign__isnull=False).select_related("campaign")
    return {
        "chain": [*(campaign_node(c) for c in snapshot.campaigns.order_by("id")), snapshot_node(snapshot),
                  reward_model_node(model)],
        "upstream": {"snapshot": snapshot_node(snapshot),
                     "campaigns": [campaign_node(c) for c in snapshot.campaigns.order_by("id")],
                     "run": {"id": model.run_id, "job": model.run.job_id,
                             "url": reverse("dash-run", args=[model.run.job_id])}},
        "downstream": {
            "policy_runs": [{"id": r.pk, "job": r.job_id, "status": r.job.status, "algorithm": r.algorithm,
                             "url": reverse("dash-run", args=[r.job_id])}
                            for r in PolicyRun.objects.filter(reward_model=model).select_related("job")],
            "checkpoints": [checkpoint_node(c) for c in checkpoints],
            "campaigns": [campaign_node(g.campaign) for g in gens],
        },
    }


def checkpoint_graph(ckpt: PolicyCheckpoint) -> dict:
    up = checkpoint_lineage(ckpt)
    gens = GenerationJob.objects.filter(Q(checkpoint=ckpt) | Q(opponent=ckpt)).select_related("job", "campaign")
    chain = []
    if up["snapshot"]:
        snap = DatasetSnapshot.objects.get(pk=up["snapshot"]["id"])
        chain += [*(campaign_node(c) for c in snap.campaigns.order_by("id")), snapshot_node(snap)]
    if up["reward_model"]:
        chain.append(reward_model_node(RewardModel.objects.get(pk=up["reward_model"]["id"])))
    chain.append(checkpoint_node(ckpt))
    chain += [campaign_node(g.campaign) for g in gens if g.campaign_id]
    return {"chain": chain, "upstream": up,
            "downstream": {"generation_jobs": [{"id": g.pk, "job": g.job_id, "status": g.job.status,
                                                "url": reverse("dash-run", args=[g.job_id]),
                                                "campaign": campaign_node(g.campaign) if g.campaign_id else None,
                                                "side_by_side": (checkpoint_gsb(ckpt, [g.campaign])
                                                                 if g.campaign_id else None)}
                                               for g in gens]}}


def checkpoint_grids(ckpt: PolicyCheckpoint, limit: int = 6) -> list[dict]:
    """The RL run's sample grids (newest last): ``{"name", "url"}``."""
    if ckpt.run is None:
        return []
    return run_sample_grids(ckpt.run)[-limit:]


def checkpoint_outputs(a: PolicyCheckpoint, b: PolicyCheckpoint, limit: int = 12) -> list[dict]:
    """Samples both checkpoints filled with the same seed: side-by-side rows."""
    names = {a.pk: f"policy:{a.name}"[:200], b.pk: f"policy:{b.name}"[:200]}
    cands = Candidate.objects.filter(source_name__in=names.values()).select_related("sample").order_by("sample_id",
                                                                                                         "seed")
    rows: dict[tuple[int, int | None], dict] = {}
    for c in cands:
        side = "a" if c.source_name == names[a.pk] else "b"
        rows.setdefault((c.sample_id, c.seed), {"sample": c.sample.external_id, "seed": c.seed,
                                                "prompt": c.sample.effective_prompt})[side] = _media(c.image)
    return [r for r in rows.values() if "a" in r and "b" in r][:limit]


def leaderboard(params) -> dict:
    """The systems people judged side by side, ranked (``source_leaderboard``), for the query
    ``params`` (``task``, ``criterion``: blank = all); each row links to its checkpoint and marks
    production. ``groups`` holds the rows per connected comparison group (ranked within it; ratings
    of two groups are not comparable). An unknown task or criterion is a field error."""
    task, criterion = params.get("task") or None, params.get("criterion") or None
    errors = {}
    tasks = {slug: entry["criteria"] for slug, entry in vocabulary()["tasks"].items()}  # curators' too
    if task and task not in tasks:
        errors["task"] = [f"Unknown task; use one of {', '.join(tasks)}."]
    allowed = tasks.get(task) if task else {c for crits in tasks.values() for c in crits}
    if criterion and criterion not in (allowed or ()):
        errors["criterion"] = [f"Unknown criterion{' for ' + task if task else ''}."]
    if errors:
        raise ApplicationError("Invalid leaderboard filter.", fields=errors)
    rows = source_leaderboard(task=task, criterion=criterion)
    prefix = policy_source_name(PolicyCheckpoint(name=""))  # how a checkpoint's outputs are named
    candidates = [r["system"][len(prefix):] for r in rows if r["system"].startswith(prefix)]
    checkpoints = {policy_source_name(c): c for c in PolicyCheckpoint.objects.filter(name__in=candidates)}
    production = production_checkpoint()
    for r in rows:
        ckpt = checkpoints.get(r["system"])
        r["url"] = reverse("dash-checkpoint", args=[ckpt.pk]) if ckpt else None
        r["production"] = bool(ckpt and production and ckpt.pk == production.pk)
    groups = [{"component": k, "rows": [r for r in rows if r["component"] == k]}
              for k in sorted({r["component"] for r in rows})]
    return {"task": task, "criterion": criterion, "rows": rows, "groups": groups, "components": len(groups)}


# --- curator ------------------------------------------------------------------------------------------

def campaign_overview() -> list[dict]:
    """Every campaign with items done / leased / left and judgment counts (one query per table)."""
    items = {r["campaign_id"]: r for r in Item.objects.filter(is_gold=False).values("campaign_id").annotate(
        total=Count("id"), done=Count("id", filter=Q(status=ItemStatus.DONE)),
        full=Count("id", filter=Q(status=ItemStatus.FULL)), open=Count("id", filter=Q(status=ItemStatus.OPEN)))}
    leases = dict(Lease.objects.filter(state=LeaseState.ACTIVE).values_list("item__campaign_id")
                  .annotate(n=Count("id")))
    judg = {r["item__campaign_id"]: r for r in Judgment.objects.values("item__campaign_id").annotate(
        n=Count("id"), ties=Count("id", filter=Q(choice__in=[Choice.TIE, Choice.BOTH_BAD, Choice.NO_DIFFERENCE])),
        last=Max("created_at"))}
    out = []
    for c in Campaign.objects.select_related("task_type").order_by("-id"):
        i, j = items.get(c.pk, {}), judg.get(c.pk, {})
        total = i.get("total", 0)
        out.append({"id": c.pk, "name": c.name, "status": c.status, "task": c.task_type.slug, "mode": c.mode,
                    "overlap": c.overlap, "items_total": total, "items_done": i.get("done", 0),
                    "items_full": i.get("full", 0), "items_open": i.get("open", 0),
                    "leases_active": leases.get(c.pk, 0), "judgments": j.get("n", 0),
                    "tie_rate": (j["ties"] / j["n"]) if j.get("n") else None, "last_judgment": j.get("last"),
                    "fraction_done": (i.get("done", 0) / total) if total else 0.0,
                    "url": reverse("dash-campaign", args=[c.pk])})
    return out


def campaign_criteria_progress(campaign: Campaign) -> list[dict]:
    """Per criterion: items with `overlap` judgments (done), with some (in progress), with none (left)."""
    items = Item.objects.filter(campaign=campaign, is_gold=False)
    total = items.count()
    per_item = (Judgment.objects.filter(item__campaign=campaign, item__is_gold=False)
                .values("criterion__slug", "item_id").annotate(n=Count("id")))
    done: Counter = Counter()
    started: Counter = Counter()
    for r in per_item:
        if r["n"] >= campaign.overlap:
            done[r["criterion__slug"]] += 1
        else:
            started[r["criterion__slug"]] += 1
    stats = {r["criterion__slug"]: r for r in Judgment.objects.filter(item__campaign=campaign)
             .values("criterion__slug").annotate(n=Count("id"), ties=Count(
                 "id", filter=Q(choice__in=[Choice.TIE, Choice.BOTH_BAD, Choice.NO_DIFFERENCE])))}
    agreement = campaign_agreement(campaign)
    out = []
    for crit in campaign.criteria.order_by("id"):
        s = stats.get(crit.slug, {})
        out.append({"criterion": crit.slug, "name": crit.name, "items_done": done[crit.slug],
                    "items_in_progress": started[crit.slug],
                    "items_left": max(0, total - done[crit.slug] - started[crit.slug]), "items_total": total,
                    "judgments": s.get("n", 0), "tie_rate": (s["ties"] / s["n"]) if s.get("n") else None,
                    "agreement": agreement.get(crit.slug)})
    return out


def annotator_activity(campaign: Campaign) -> list[dict]:
    """annotator_stats plus activity: last judgment, judgments in the last hour / day, throughput."""
    now = timezone.now()
    times = {r["annotator__username"]: r for r in Judgment.objects.filter(item__campaign=campaign)
             .values("annotator__username").annotate(
                 first=Min("created_at"), last=Max("created_at"),
                 hour=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))),
                 day=Count("id", filter=Q(created_at__gte=now - timedelta(days=1))))}
    active = dict(Lease.objects.filter(item__campaign=campaign, state=LeaseState.ACTIVE)
                  .values_list("annotator__username").annotate(n=Count("id")))
    out = []
    for s in annotator_stats(campaign):
        t = times.get(s["annotator"], {})
        span_h = ((t["last"] - t["first"]).total_seconds() / 3600) if t.get("first") else 0
        out.append({**s, "last_active": t.get("last"), "judgments_last_hour": t.get("hour", 0),
                    "judgments_last_day": t.get("day", 0), "leases_active": active.get(s["annotator"], 0),
                    "per_hour": (s["judgments"] / span_h) if span_h > 1 / 60 else None,
                    "median_seconds": (s["median_active_ms"] / 1000) if s["median_active_ms"] is not None else None})
    return out


def campaign_dashboard(campaign: Campaign) -> dict:
    return {"id": campaign.pk, "name": campaign.name, "status": campaign.status, "task": campaign.task_type.slug,
            "mode": campaign.mode, "overlap": campaign.overlap, "selection": campaign.selection,
            "progress": campaign_progress(campaign), "criteria": campaign_criteria_progress(campaign),
            "annotators": annotator_activity(campaign), "lineage": campaign_graph(campaign),
            "gsb": campaign_gsb(campaign)}
