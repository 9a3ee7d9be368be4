"""Reward-model runs: start, cancel, resume, execute (Celery body), and scoring jobs.

Web processes import this module, so it never imports torch at module level: the engine's heavy
modules (train, evaluate, scorer, tiny) are imported inside the functions the Celery worker runs.
``rewardtrain.engine.config`` is plain dataclasses and is safe to import here.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from annotation.models import Candidate, DatasetSnapshot
from contracts.cards import REWARD_CARD, read_reward_card
from contracts.vocabulary import BUILTIN, VocabularyError
from core.artifacts import (
    artifact_checkpoint_written,
    artifact_fetch,
    artifact_fetch_if_published,
    artifact_fetch_latest_child,
    artifact_file,
    artifact_local,
    artifact_publish,
    artifact_store,
)
from core.errors import ApplicationError, Conflict
from core.model_sources import check_model_source
from enginekit.checkpoints import CHECKPOINTS, atomic_folder
from jobs.models import Job, JobKind, JobStatus
from jobs.services import (
    JobCancelled,
    JobReporter,
    job_cancel,
    job_create,
    job_execute,
    job_resume,
    job_run,
    job_start,
)

from .engine.baseline_config import BaselineConfig
from .engine.config import RewardTrainConfig
from .models import BaselineRun, RewardEvaluation, RewardModel, RewardRun
from .presets import load_preset, preset_names

TINY_BASE_MODEL_NAME = "tiny-qwen25vl"
MAX_SCORE_PAIRS = 256
#: Which of a snapshot's pairs an evaluation scores ("all" = every split).
EVALUATION_SPLITS = ("all", "test", "val", "train")


def default_base_model_dir() -> Path:
    """The built-in tiny Qwen2.5-VL backbone (built by the worker on first use)."""
    return Path(settings.ARTIFACTS_ROOT) / "base-models" / TINY_BASE_MODEL_NAME


def _finite(value):
    """JSON for PostgreSQL: NaN/inf become null (jsonb rejects them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --- start / cancel / resume -----------------------------------------------------------------------

#: What a preview's config says where the run folder will be (its job id names it).
PREVIEW_OUTPUT_DIR = "(assigned when the run starts)"


def reward_run_config(
    *, snapshot: DatasetSnapshot, base_model: str | None = None, preset: str = "tiny",
    overrides: dict | None = None, output_dir: str = PREVIEW_OUTPUT_DIR,
) -> tuple[str, RewardTrainConfig]:
    """The base model and validated ``RewardTrainConfig`` a run would train with, writing nothing:
    the preset, the user's overrides, then the platform's fields (device, base model, snapshot and
    run folders). The run form's live preview (``runs/preview/``) shows exactly this."""
    overrides = dict(overrides or {})
    if snapshot.status != JobStatus.SUCCEEDED or not snapshot.path:
        raise ApplicationError("The snapshot has not been built successfully.",
                               fields={"snapshot": [f"Snapshot {snapshot.pk} is {snapshot.status}."]})
    try:
        preset_fields = load_preset(preset)
    except KeyError:
        raise ApplicationError("Unknown preset.", fields={"preset": [f"Use one of: {', '.join(preset_names())}."]}) \
            from None
    reserved = sorted(set(overrides) & {"snapshot_dir", "output_dir", "resume", "base_model"})
    if reserved:
        raise ApplicationError("Some overrides are set by the platform.", fields={
            "overrides": [f"{', '.join(reserved)} cannot be overridden (use the snapshot / base_model fields)."]})
    # A base model is loaded on the worker: only from the model roots, a registered reward model's
    # folder, or (where the deployment allows it) a hub id. Empty = the built-in tiny backbone.
    if (base_model or "").strip():
        base = check_model_source(base_model, field="base_model", what="base model",
                                  is_registered=lambda value: RewardModel.objects.filter(path=value).exists())
    else:
        base = str(default_base_model_dir())
    data = {"device": settings.ML_DEVICE, **preset_fields, **overrides,
            "base_model": base, "snapshot_dir": snapshot.path, "output_dir": output_dir}
    try:
        return base, RewardTrainConfig.from_dict(data)
    except ValueError as exc:
        raise ApplicationError("The training configuration is invalid.", fields={"overrides": [str(exc)]}) from None


def reward_run_start(
    *, snapshot: DatasetSnapshot, base_model: str | None = None, preset: str = "tiny",
    overrides: dict | None = None, user: User | None = None, name: str = "", enqueue: bool = True,
    processes: int = 1,
) -> RewardRun:
    """Validate (``reward_run_config``), record a RewardRun + Job with the final resolved config,
    send it after commit.

    ``processes`` > 1 trains under torchrun (DDP) on the worker's machine; the global batch and
    so the loss curve stay the same (docs/reward-model.md).
    """
    if not 1 <= int(processes) <= 64:
        raise ApplicationError("Invalid process count.", fields={"processes": ["Use 1 to 64."]})
    with transaction.atomic():  # a refused config rolls the new job back
        job = job_start(kind=JobKind.REWARD, name=name or f"reward model on {snapshot.name}", config={}, user=user,
                        enqueue=enqueue)
        output_dir = Path(settings.ARTIFACTS_ROOT) / "reward-runs" / f"run-{job.pk}"
        base, config = reward_run_config(snapshot=snapshot, base_model=base_model, preset=preset,
                                         overrides=overrides, output_dir=str(output_dir))
        resolved = config.to_dict()
        job.config = resolved
        job.run_dir = str(output_dir)
        job.save(update_fields=["config", "run_dir"])
        run = RewardRun.objects.create(job=job, snapshot=snapshot, base_model=base, preset=preset, config=resolved,
                                       output_dir=str(output_dir), started_by=user, processes=processes)
    return run


def reward_run_processes(job: Job) -> int:
    """How many ranks the reward kind's job trains on (jobs.registry: one CUDA device each)."""
    return RewardRun.objects.values_list("processes", flat=True).get(job=job)


def reward_run_resume_check(job: Job) -> None:
    """A run that already registered its model is done: resuming would train it again."""
    if RewardModel.objects.filter(run__job=job).exists():
        raise Conflict("This run already produced a reward model.")


def reward_run_cancel(*, run: RewardRun) -> RewardRun:
    job_cancel(job=run.job)
    run.job.refresh_from_db()
    return run


def reward_run_resume(*, run: RewardRun, enqueue: bool = True) -> RewardRun:
    """failed/cancelled → queued; the engine continues from the newest checkpoint in the run folder."""
    job_resume(job=run.job, enqueue=enqueue)
    run.job.refresh_from_db()
    return run


# --- execute (worker) -------------------------------------------------------------------------------

def _ensure_tiny_base_model(path: Path) -> None:
    """Build the default tiny backbone once (atomically: build aside, then rename)."""
    if (path / "config.json").exists():
        return
    import shutil
    import uuid

    from .engine.tiny import build_tiny_reward_model

    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    build_tiny_reward_model(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(path)
    except OSError:  # another worker won the race
        shutil.rmtree(tmp, ignore_errors=True)


def _localized_config(config: RewardTrainConfig) -> RewardTrainConfig:
    """The run's folders on this host. With an object store (hosts share no disk) the snapshot and
    a registered base model are fetched, and the newest checkpoint published by an earlier attempt
    (on any host) is fetched into the run folder so that the run resumes from it."""
    if not artifact_store().enabled:
        return config
    data = config.to_dict()
    data["snapshot_dir"] = str(artifact_fetch(config.snapshot_dir))
    if config.base_model.startswith("/"):
        # A folder under MODEL_ROOTS, outside the artifacts, is not in the store (ValueError): each
        # host has its own copy, used where it is.
        with contextlib.suppress(ValueError):
            data["base_model"] = str(artifact_fetch_if_published(config.base_model))
    data["output_dir"] = str(artifact_local(config.output_dir))
    artifact_fetch_latest_child(Path(data["output_dir"]) / CHECKPOINTS)  # a no-op when it is here already
    return RewardTrainConfig.from_dict(data)


def reward_run_execute(job: Job, reporter: JobReporter,
                       on_progress: Callable[[dict], None] | None = None) -> dict:
    """Train, evaluate on the test split (val if test is empty) and register the RewardModel.

    Every engine error ends the job failed (``job_execute`` records it); the RewardModel row is
    written in one transaction only after both training and evaluation succeeded.
    """
    from .engine.train import CHECKPOINT_MARKER, RunCancelled, train

    run = RewardRun.objects.select_related("snapshot").get(job=job)
    config = _localized_config(RewardTrainConfig.from_dict({k: v for k, v in job.config.items()}))
    if Path(config.base_model) == default_base_model_dir():
        _ensure_tiny_base_model(default_base_model_dir())
    elif config.base_model.startswith(("/", ".")) and not Path(config.base_model).exists():
        raise FileNotFoundError(f"base model folder not found: {config.base_model}")

    def progress(event: dict) -> None:
        if event.get("kind") == "checkpoint":
            # As written, so a resume on another host finds it; what the engine pruned goes from the store too.
            artifact_checkpoint_written(event["path"], marker=CHECKPOINT_MARKER, keep=config.keep_checkpoints)
        reporter.progress(event)
        if on_progress is not None:
            on_progress(event)

    if run.processes > 1:
        from jobs.launcher import run_distributed

        # The ranks' events (checkpoints included) are read from their metrics file into ``progress``.
        result = run_distributed(module="rewardtrain.engine", config=config.to_dict(), run_dir=Path(config.output_dir),
                                 processes=run.processes, reporter=reporter, total_steps=config.max_steps or 0,
                                 progress=progress)
    else:
        try:
            result = train(config, progress=progress, should_stop=reporter.should_stop)
        except RunCancelled as exc:
            raise JobCancelled(str(exc)) from exc
    model = reward_model_register(run=run, final_dir=result["final_dir"], name=job.name,
                                  snapshot_dir=config.snapshot_dir, template_version=result.get("template_version") or "",
                                  batch_size=config.eval_batch_size, device=config.resolved_device())
    report = model.eval_report
    reporter.progress({"step": result["steps"], "total_steps": result["total_steps"], "kind": "eval",
                       "split": model.eval_split, "overall_accuracy": report.get("overall_accuracy")})
    return _finite({"train": result, "eval_split": model.eval_split, "overall_accuracy": report.get("overall_accuracy"),
                    "reward_model_id": model.pk})


def reward_model_register(*, run: RewardRun, final_dir: str, name: str, snapshot_dir: str, template_version: str = "",
                          batch_size: int = 8, device: str = "cpu") -> RewardModel:
    """Evaluate a finished model folder on its run's snapshot (the test split, else val), publish it to the
    object store and register it as a RewardModel of ``run``.

    The one way a model folder becomes a registered model: a trained run's ``final/`` and a control run's
    untrained copy (``reward_control_run_record``) both go through here.
    """
    from .engine.data import read_pairs
    from .engine.evaluate import evaluate, format_table

    split = "test" if read_pairs(snapshot_dir, split="test") else "val"
    if not read_pairs(snapshot_dir, split=split):
        raise ValueError(f"snapshot {run.snapshot_id} has no test or val pairs to evaluate the model on")
    report = evaluate(final_dir, snapshot_dir, split=split, batch_size=batch_size, device=device)
    report["table"] = format_table(report)
    report = _finite(report)
    artifact_publish(final_dir)  # before the model is registered: every host can fetch what it names
    return RewardModel.objects.create(
        run=run, name=name, path=str(final_dir), base_model=run.base_model,
        template_version=template_version or report.get("template_version") or "",
        snapshot=run.snapshot, eval_split=split, eval_report=report,
    )


def reward_control_run_record(*, snapshot: DatasetSnapshot, base_model: str, name: str,
                              user: User | None = None) -> RewardRun:
    """Record a control run: a reward job that trains nothing (preset ``control-untrained``, 0 steps).

    Its body, run in-process by the caller, writes an untrained copy of ``base_model`` with a model card
    into ``run.output_dir / "final"`` and registers it with ``reward_model_register``, so RL can be
    started on the control through ``policy_run_start`` like on any model.
    """
    config = {"control": True, "base_model": str(base_model), "steps": 0}
    with transaction.atomic():
        job = job_create(kind=JobKind.REWARD, name=f"{name} reward model on {snapshot.name}", config=config,
                         user=user)
        out = Path(settings.ARTIFACTS_ROOT) / "reward-runs" / f"run-{job.pk}"
        job.run_dir = str(out)
        job.save(update_fields=["run_dir"])
        return RewardRun.objects.create(job=job, snapshot=snapshot, base_model=str(base_model),
                                        preset="control-untrained", config=config, output_dir=str(out),
                                        started_by=user)


def reward_run_execute_job(job_id: int, on_progress: Callable[[dict], None] | None = None) -> Job | None:
    """Train in this process (``jobs.services.job_run``); ``on_progress`` also sees each event."""
    if on_progress is None:
        return job_run(job_id)
    return job_execute(job_id, lambda job, reporter: reward_run_execute(job, reporter, on_progress))


# --- scoring (a job: scoring needs torch, which the web process never imports) ----------------------

def reward_score_start(*, model: RewardModel, pairs: list[dict], user: User | None = None,
                       enqueue: bool = True) -> Job:
    """Queue a scoring job: each pair {first, second (candidate ids), criterion, task?, prompt?}.

    ``task`` and ``prompt`` default to the first candidate's sample. Results land in
    ``job.result["scores"]`` as {first, second, task, criterion, p_yes, log_odds}.
    """
    if not pairs:
        raise ApplicationError("Give at least one pair.", fields={"pairs": ["Required."]})
    if len(pairs) > MAX_SCORE_PAIRS:
        raise ApplicationError("Too many pairs.", fields={"pairs": [f"At most {MAX_SCORE_PAIRS} per request."]})
    ids = {p.get(k) for p in pairs for k in ("first", "second")}
    cands = {c.pk: c for c in Candidate.objects.filter(pk__in=[i for i in ids if isinstance(i, int)])
             .select_related("sample__task_type")}
    errors: dict[str, list[str]] = {}
    resolved = []
    # The criteria a model can score are those of the vocabulary it was trained on (its card).
    card = Path(model.path) / REWARD_CARD
    try:
        read = read_reward_card(artifact_file(model.path, REWARD_CARD).parent)  # the card, not the weights
        vocabulary = read.vocabulary() if read is not None else BUILTIN
    except (ValueError, VocabularyError) as exc:
        raise ApplicationError("The reward model's card is unreadable.", fields={"model": [f"{card}: {exc}"]}) from None
    task_criteria = vocabulary.task_criteria
    for n, p in enumerate(pairs):
        first, second = cands.get(p.get("first")), cands.get(p.get("second"))
        if first is None or second is None:
            errors[str(n)] = ["first and second must be existing candidate ids."]
            continue
        task = p.get("task") or first.sample.task_type.slug
        criterion = p.get("criterion")
        if criterion not in task_criteria.get(task, ()):
            errors[str(n)] = [f"criterion must be one of {', '.join(task_criteria.get(task, ()))} for task {task}."]
            continue
        prompt = p.get("prompt")
        if prompt is None:
            prompt = first.sample.effective_prompt
        resolved.append({"first": first.pk, "second": second.pk, "task": task, "criterion": criterion,
                         "prompt": prompt})
    if errors:
        raise ApplicationError("Some pairs are invalid.", fields={"pairs": errors})
    with transaction.atomic():
        job = job_start(kind=JobKind.SCORE, name=f"score {len(resolved)} pairs with {model.name}",
                        config={"reward_model_id": model.pk, "pairs": resolved}, user=user, enqueue=enqueue)
    return job


def _scoring_device(model: RewardModel) -> str:
    """Where a registered model is loaded for scoring: the device its training run resolved to."""
    return RewardTrainConfig.from_dict({**model.run.config, "resume": False}).resolved_device()


def reward_score_execute(job: Job, reporter: JobReporter) -> dict:
    from PIL import Image

    from .engine.scorer import RewardScorer, ScoreRequest

    model = RewardModel.objects.get(pk=job.config["reward_model_id"])
    pairs = job.config["pairs"]
    cands = {c.pk: c for c in Candidate.objects.filter(pk__in={p[k] for p in pairs for k in ("first", "second")})}
    scorer = RewardScorer.from_pretrained(str(artifact_fetch_if_published(model.path)), device=_scoring_device(model))
    requests = []
    for p in pairs:
        images = []
        for key in ("first", "second"):
            with cands[p[key]].image.open("rb") as f:
                images.append(Image.open(f).convert("RGB"))
        requests.append(ScoreRequest(images[0], images[1], p["task"], p["criterion"], p["prompt"]))
    scores = scorer.score(requests)
    reporter.progress({"step": len(pairs), "total_steps": len(pairs), "kind": "eval"})
    return _finite({"reward_model_id": model.pk, "scores": [
        {**p, "p_yes": s.p_yes, "log_odds": s.log_odds} for p, s in zip(pairs, scores, strict=True)]})


def reward_score_execute_job(job_id: int) -> Job | None:
    """Score in this process (``jobs.services.job_run``): tests."""
    return job_run(job_id)



# --- evaluation on any snapshot ----------------------------------------------------------------------

def reward_evaluation_start(*, model: RewardModel, snapshot: DatasetSnapshot, split: str = "all",
                            user: User | None = None, enqueue: bool = True) -> RewardEvaluation:
    """Queue an evaluation of ``model`` against the majority labels of a built ``snapshot``.

    Typical use: the snapshot of a generation campaign's judgments (a checkpoint's outputs against
    the base), to see whether the reward model still agrees with people on what RL makes.
    Refused with field errors for an unknown split, a snapshot that is not built, or a split
    without pairs.
    """
    errors: dict[str, list[str]] = {}
    if split not in EVALUATION_SPLITS:
        errors["split"] = [f"Use one of {', '.join(EVALUATION_SPLITS)}."]
    if snapshot.status != JobStatus.SUCCEEDED or not snapshot.path:
        errors["snapshot"] = [f"Snapshot {snapshot.pk} is not built (status {snapshot.status})."]
    elif not errors:
        per_split = (snapshot.counts or {}).get("per_split") or {}
        pairs = sum(per_split.values()) if split == "all" else per_split.get(split, 0)
        if not pairs:
            errors["split"] = [f"Snapshot {snapshot.pk} has no {'' if split == 'all' else split + ' '}pairs."]
    if errors:
        raise ApplicationError("The evaluation request is invalid.", fields=errors)
    with transaction.atomic():
        job = job_start(kind=JobKind.EVALUATION, name=f"evaluate {model.name} on {snapshot.name} ({split})"[:200],
                        config={"reward_model_id": model.pk, "snapshot_id": snapshot.pk, "split": split}, user=user,
                        enqueue=enqueue)
        evaluation = RewardEvaluation.objects.create(reward_model=model, snapshot=snapshot, split=split, job=job,
                                                     started_by=user)
    return evaluation


def reward_evaluation_execute(job: Job, reporter: JobReporter) -> dict:
    """The Celery body: the engine's ``evaluate`` on the snapshot; the report lands on the row."""
    from .engine.evaluate import evaluate, format_table

    evaluation = RewardEvaluation.objects.select_related("reward_model__run", "snapshot").get(job=job)
    model = evaluation.reward_model
    report = evaluate(str(artifact_fetch_if_published(model.path)), str(artifact_fetch(evaluation.snapshot.path)), split=None if evaluation.split == "all" else evaluation.split,
                      device=_scoring_device(model))
    report["table"] = format_table(report)
    report = _finite(report)
    RewardEvaluation.objects.filter(pk=evaluation.pk).update(report=report)
    reporter.progress({"step": report["pairs"], "total_steps": report["pairs"], "kind": "eval",
                       "overall_accuracy": report.get("overall_accuracy")})
    return {"evaluation_id": evaluation.pk, "pairs": report["pairs"], "overall_accuracy": report.get("overall_accuracy")}


def reward_evaluation_execute_job(job_id: int) -> Job | None:
    """Evaluate in this process (``jobs.services.job_run``): tests."""
    return job_run(job_id)


# --- baseline learner (a small siamese CNN: are the snapshot's labels learnable?) -------------------

def baseline_start(*, snapshot: DatasetSnapshot, overrides: dict | None = None, user: User | None = None,
                   name: str = "", enqueue: bool = True) -> BaselineRun:
    """Validate, record a BaselineRun + Job with the resolved BaselineConfig, enqueue after commit.

    Refused with field errors for a snapshot that is not built, one without train pairs or
    without test / val pairs to measure on, and an invalid setting in ``overrides``.
    """
    errors: dict[str, list[str]] = {}
    if snapshot.status != JobStatus.SUCCEEDED or not snapshot.path:
        errors["snapshot"] = [f"Snapshot {snapshot.pk} is not built (status {snapshot.status})."]
    else:
        per_split = (snapshot.counts or {}).get("per_split") or {}
        if not per_split.get("train"):
            errors["snapshot"] = [f"Snapshot {snapshot.pk} has no train pairs to learn from."]
        elif not (per_split.get("test") or per_split.get("val")):
            errors["snapshot"] = [f"Snapshot {snapshot.pk} has no test or val pairs to measure on."]
    try:
        config = BaselineConfig.from_dict(dict(overrides or {}))
    except ValueError as exc:
        errors["overrides"] = [str(exc)]
    if errors:
        raise ApplicationError("The baseline request is invalid.", fields=errors)
    with transaction.atomic():
        job = job_start(kind=JobKind.BASELINE, name=name or f"baseline on {snapshot.name}", config=config.to_dict(),
                        user=user, enqueue=enqueue)
        output_dir = Path(settings.ARTIFACTS_ROOT) / "baselines" / f"baseline-{job.pk}"
        job.run_dir = str(output_dir)
        job.save(update_fields=["run_dir"])
        run = BaselineRun.objects.create(job=job, snapshot=snapshot, config=config.to_dict(),
                                         output_dir=str(output_dir), started_by=user)
    return run


def baseline_execute(job: Job, reporter: JobReporter, on_progress: Callable[[dict], None] | None = None) -> dict:
    """The Celery body: train the baseline, keep its held-out report on the row.

    A rerun (resume, redelivery) trains from scratch and replaces the folder: the learner takes CPU
    minutes, so checkpoints would cost more than they save. The finished folder is published (with
    an object store) before the report is recorded.
    """
    from .engine.baseline import BaselineStopped, train_baseline

    run = BaselineRun.objects.select_related("snapshot").get(job=job)
    output_dir = artifact_local(run.output_dir)  # this host's copy of the folder the row names

    def progress(event: dict) -> None:
        reporter.progress(event)
        if on_progress is not None:
            on_progress(event)

    try:
        # Trained aside and renamed into place complete: a host never holds a half-trained copy at
        # the path it would take for the published model (an attempt that failed there, say).
        with atomic_folder(output_dir) as work:
            card = train_baseline(BaselineConfig.from_dict(run.config), str(artifact_fetch(run.snapshot.path)), work,
                                  progress=progress, should_stop=reporter.should_stop)
    except BaselineStopped as exc:
        raise JobCancelled(str(exc)) from exc
    artifact_publish(output_dir)  # before the report is recorded: every host can fetch the model it describes
    report = _finite(card["evaluation"])
    BaselineRun.objects.filter(pk=run.pk).update(report=report)
    return _finite({"baseline_id": run.pk, "split": report["split"], "pairs": report["pairs"],
                    "overall_accuracy": report["overall_accuracy"], "steps": card["steps"],
                    "best_step": card["best_step"], "seconds": card["seconds"]})


def baseline_model_dir(run: BaselineRun) -> Path:
    """The trained baseline's model folder (weights and ``baseline.json`` card) on this host,
    fetched from the object store when another host trained it."""
    return artifact_fetch(run.output_dir)


def baseline_execute_job(job_id: int, on_progress: Callable[[dict], None] | None = None) -> Job | None:
    """Train the baseline in this process (``jobs.services.job_run``); ``on_progress`` also sees each event."""
    if on_progress is None:
        return job_run(job_id)
    return job_execute(job_id, lambda job, reporter: baseline_execute(job, reporter, on_progress))


def baseline_cancel(*, run: BaselineRun) -> BaselineRun:
    job_cancel(job=run.job)
    run.job.refresh_from_db()
    return run
