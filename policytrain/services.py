"""Policy RL runs and generation jobs: start (validate, export, enqueue), execute (Celery bodies),
cancel and resume. Views, commands and tasks call these; nothing here imports torch at module level
(the engine is imported inside the ``*_execute`` bodies, which only workers and ``--sync`` run).
"""
from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import logging
import random
import shutil
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet

from annotation.images import sha256_of
from annotation.models import Campaign, Candidate, Criterion, Provenance, Sample
from annotation.services.campaigns import campaign_add_items, campaign_create, campaign_start
from annotation.services.imports import candidate_create_from_png
from contracts.cards import REWARD_CARD, read_reward_card
from contracts.presets import load_preset_file
from core.artifacts import (
    artifact_available,
    artifact_fetch,
    artifact_fetch_if_published,
    artifact_fetch_latest_child,
    artifact_file,
    artifact_local,
    artifact_publish,
    artifact_publish_checkpoints,
    artifact_store,
)
from core.errors import ApplicationError, Conflict
from core.model_sources import check_model_source
from enginekit.checkpoints import CHECKPOINTS
from enginekit.metrics import read_new_lines
from jobs.models import Job, JobKind, MetricPoint
from jobs.services import JobCancelled, JobReporter, job_cancel, job_resume, job_start
from policytrain.engine.config import GenerateConfig, RLConfig, read_policy_meta

from .conditions import export_conditions
from .models import TINY_BASE, GenerationJob, PolicyCheckpoint, PolicyRun, Promotion, policy_source_name
from .selectors import (
    RL_WINDOW_KIND,
    PromotionRule,
    production_checkpoint,
    promotion_gate,
    sample_grid_folder,
)

logger = logging.getLogger(__name__)
MODEL_CARD = REWARD_CARD
# Fields the platform sets itself; a user override of them is refused. ``resume`` only ever comes
# from the platform's Resume action (policy_run_resume), never from a form.
PLATFORM_FIELDS = ("base_policy", "conditions_dir", "output_dir", "reward_model", "algorithm", "init_weights",
                   "resume")
# With the tiny base policy, a run defaults to sizes a CPU finishes in seconds (user overrides win):
# configs/policy/tiny_rl.json and tiny_generate.json, read by the one strict preset loader.
POLICY_PRESETS_DIR = Path(settings.BASE_DIR) / "configs" / "policy"


def _tiny_preset(name: str, config_class: type) -> dict:
    fields = {f.name for f in dataclasses.fields(config_class)}
    return load_preset_file(POLICY_PRESETS_DIR, name, fields=fields, what="policy preset")
GENERATE_PARAMS = ("num_inference_steps", "guidance", "true_cfg", "negative_prompt", "max_sequence_length", "paste_back")


# ----------------------------------------------------------------------------------------------
# Base policies
# ----------------------------------------------------------------------------------------------
def tiny_base_dir() -> Path:
    """Where the tiny base is cached; the build version is in the name, so a changed build is rebuilt."""
    from policytrain.engine.tiny import TINY_BUILD_VERSION

    return Path(settings.ARTIFACTS_ROOT) / "base-models" / f"tiny-flux-fill-v{TINY_BUILD_VERSION}"


def resolve_base_policy(base: str | None) -> str:
    """``"tiny"`` (or nothing) → the cached tiny Fill folder; anything else is a folder or hub id as given."""
    base = (base or TINY_BASE).strip()
    return str(tiny_base_dir()) if base == TINY_BASE else base


def validate_base_policy(base: str | None) -> str:
    """``"tiny"``, or a FLUX.1-Fill location the worker may load: under the model roots, the base of a
    registered checkpoint, or a hub id where ALLOW_HUB_MODELS is on (core.model_sources)."""
    base = (base or TINY_BASE).strip()
    if base == TINY_BASE:
        return base
    base = check_model_source(base, field="base_policy", what="base policy",
                              is_registered=lambda value: PolicyCheckpoint.objects.filter(base_policy=value).exists())
    looks_local = base.startswith(("/", ".", "~")) or Path(base).exists()
    if looks_local and not Path(base).expanduser().is_dir():
        raise ApplicationError("The base policy folder does not exist.",
                               fields={"base_policy": [f"No folder at {base!r} (give a FLUX.1-Fill folder or hub id)."]})
    return base


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_base_policy(base: str | None) -> str:
    """The path/hub id to load; builds the tiny Fill pipeline once (worker side, needs torch)."""
    resolved = resolve_base_policy(base)
    if (base or TINY_BASE).strip() != TINY_BASE:
        return resolved
    target = tiny_base_dir()
    if (target / "model_index.json").is_file():
        return resolved
    with _file_lock(target.parent / f".{target.name}.lock"):
        if not (target / "model_index.json").is_file():
            from policytrain.engine.tiny import build_tiny_fill_pipeline

            tmp = target.parent / f".tmp-{uuid.uuid4().hex[:8]}"
            try:
                build_tiny_fill_pipeline(tmp, seed=0)
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return resolved


def _set_torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, int(settings.TORCH_NUM_THREADS)))


# ----------------------------------------------------------------------------------------------
# Reward model coverage
# ----------------------------------------------------------------------------------------------
def reward_model_criteria(reward_model) -> dict[str, list[str]]:
    """{task: [criteria]} the reward model was trained on, from its ``onereward.json`` model card.

    Read like the policy engine reads it (``contracts.cards``: ``trained_on``, else ``tasks``).
    """
    path = Path(reward_model.path) / MODEL_CARD
    try:
        card = read_reward_card(artifact_file(reward_model.path, MODEL_CARD).parent)
    except ValueError as exc:
        raise ApplicationError("The reward model card is not valid JSON.",
                               fields={"reward_model": [str(exc)]}) from exc
    if card is None:
        raise ApplicationError(
            "The reward model has no model card.",
            fields={"reward_model": [f"{path} is missing: this is not a trained OneReward model folder."]},
        )
    tasks = card.trained_on()
    if tasks is None:
        raise ApplicationError("The reward model card names no tasks.",
                               fields={"reward_model": [f"{path} has no 'trained_on' (or 'tasks') map."]})
    return tasks


def check_reward_coverage(reward_model, config: RLConfig) -> dict[str, list[str]]:
    """{task: criteria RL will score}: what the reward model covers of each active task, less the
    criteria ``criterion_weights`` sets to 0. A task left with none is a field error."""
    covered = reward_model_criteria(reward_model)
    # Criterion names are the reward model's (its card's vocabulary; the built-in one for older cards).
    card = read_reward_card(artifact_file(reward_model.path, MODEL_CARD).parent)  # read and checked just above
    try:
        config.check_vocabulary(card.vocabulary())
    except ValueError as exc:
        raise ApplicationError(str(exc), fields={"criterion_weights": [str(exc)]}, code="invalid_config") from None
    missing = [t for t in config.active_tasks if not covered.get(t)]
    if missing:
        have = sorted(t for t, c in covered.items() if c) or ["nothing"]
        message = (f"Reward model '{reward_model.name}' has no criteria for task(s) {', '.join(missing)} "
                   f"(it covers {', '.join(have)}). Set their task_probs to 0 or pick a reward model trained on them.")
        raise ApplicationError(message, fields={"reward_model": [message], "task_probs": [message]},
                               code="reward_model_coverage")
    scored = config.scored_criteria(covered)
    unweighted = [t for t, crits in scored.items() if not crits]
    if unweighted:
        message = (f"criterion_weights set every criterion the reward model scores for {', '.join(unweighted)} "
                   f"to 0 (it scores {'; '.join(f'{t}: ' + ', '.join(covered[t]) for t in unweighted)}).")
        raise ApplicationError(message, fields={"criterion_weights": [message]}, code="invalid_config")
    return scored


# ----------------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------------
def resolve_samples(samples: QuerySet[Sample] | Iterable[int] | None = None, sample_filter: dict | None = None,
                    ) -> tuple[QuerySet[Sample], dict]:
    """A queryset of Samples from a queryset, a list of ids, or a filter {"sample_ids", "tasks", "split"}."""
    sample_filter = dict(sample_filter or {})
    qs = Sample.objects.select_related("task_type").order_by("id")
    if isinstance(samples, QuerySet):
        ids = list(samples.values_list("pk", flat=True))
        sample_filter.setdefault("sample_ids", ids)
    elif samples is not None:
        sample_filter["sample_ids"] = list(samples)
    ids = sample_filter.get("sample_ids")
    if ids:
        try:
            ids = sorted({int(i) for i in ids})
        except (TypeError, ValueError) as exc:
            raise ApplicationError("Sample ids must be integers.", fields={"samples": [str(exc)]}) from exc
        qs = qs.filter(pk__in=ids)
        found = set(qs.values_list("pk", flat=True))
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise ApplicationError("Unknown samples.", fields={"samples": [f"No sample with id {unknown[:10]}."]})
        sample_filter["sample_ids"] = ids
    if sample_filter.get("tasks"):
        qs = qs.filter(task_type__slug__in=sample_filter["tasks"])
    if sample_filter.get("split"):
        qs = qs.filter(split=sample_filter["split"])
    return qs, sample_filter


# ----------------------------------------------------------------------------------------------
# Policy runs
# ----------------------------------------------------------------------------------------------
def _config_error(exc: Exception) -> ApplicationError:
    message = str(exc)
    first = message.split(" ", 1)[0].rstrip(":").split("[", 1)[0]
    known = set(RLConfig.__dataclass_fields__)
    field = first if first in known else "overrides"
    if message.startswith("unknown RLConfig field"):
        field = "overrides"
    return ApplicationError(f"Invalid RL configuration: {message}", fields={field: [message]}, code="invalid_config")


def build_rl_config(*, base_policy: str, algorithm: int, overrides: dict | None, reward_model_path: str,
                    conditions_dir: str = "-", output_dir: str = "-") -> RLConfig:
    overrides = dict(overrides or {})
    refused = sorted(set(overrides) & set(PLATFORM_FIELDS))
    if refused:
        raise ApplicationError("Some settings are set by the platform.",
                               fields={k: ["Set by the platform; use the dedicated field."] for k in refused})
    data: dict = {"device": settings.ML_DEVICE}
    if base_policy == TINY_BASE:
        data.update(_tiny_preset("tiny_rl", RLConfig))
    data.update(overrides)
    data.update(base_policy=resolve_base_policy(base_policy), algorithm=algorithm, reward_model=reward_model_path,
                conditions_dir=conditions_dir, output_dir=output_dir)
    try:
        return RLConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise _config_error(exc) from exc


def _init_overrides(checkpoint: PolicyCheckpoint, base: str, overrides: dict | None) -> dict:
    """Overrides that start RL from ``checkpoint``'s LoRA weights: ``init_weights`` and its LoRA
    shape (the run must train the same adapter). Refuses a checkpoint that cannot be continued."""
    def refuse(message: str) -> ApplicationError:
        return ApplicationError("RL cannot start from this checkpoint.", fields={"init_checkpoint": [message]})

    if not checkpoint.weights_dir:
        raise refuse("It is a bare base policy; leave the field empty to start from its base.")
    if checkpoint.base_policy != base:
        raise refuse(f"It was trained on base policy {checkpoint.base_policy!r}, not {base!r}.")
    try:
        meta = read_policy_meta(checkpoint.weights_dir)
    except ValueError as exc:
        raise refuse(str(exc)) from exc
    if meta.get("kind") != "lora":
        raise refuse("It is a full fine-tune; RL continues LoRA checkpoints only.")
    shape = {"lora_rank": meta["lora"]["rank"], "lora_alpha": meta["lora"]["alpha"],
             "lora_targets": tuple(meta["lora"]["targets"])}

    def norm(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    clash = [k for k, v in shape.items() if k in (overrides or {}) and norm(overrides[k]) != v]
    if clash:
        raise refuse(f"Its LoRA has {', '.join(f'{k} {shape[k]}' for k in clash)}; drop those overrides.")
    return {**shape, "init_weights": checkpoint.weights_dir}


def resolve_rl_config(*, reward_model, base_policy: str | None, algorithm: int, overrides: dict | None,
                      init_checkpoint: PolicyCheckpoint | None = None) -> tuple[str, RLConfig]:
    """The base policy and validated ``RLConfig`` a run would train with (nothing is written): the
    platform's presets and the user's overrides, the checkpoint RL starts from, and the reward
    model's coverage of the active tasks. The run form's live preview shows exactly this."""
    base = validate_base_policy(base_policy)
    config = build_rl_config(base_policy=base, algorithm=int(algorithm), overrides=overrides,
                             reward_model_path=str(reward_model.path))
    if init_checkpoint is not None:
        config = config.replace(**_init_overrides(init_checkpoint, base, overrides))
    check_reward_coverage(reward_model, config)
    return base, config


def policy_run_start(*, reward_model, base_policy: str | None = None, algorithm: int = 1,
                     overrides: dict | None = None, samples=None, sample_filter: dict | None = None,
                     user: User | None = None, name: str = "", enqueue: bool = True,
                     processes: int = 1, init_checkpoint: PolicyCheckpoint | None = None) -> PolicyRun:
    """Validate, export the condition samples, create Job + PolicyRun, and enqueue the training task.

    ``enqueue=False`` leaves the job queued without a message (``train_policy --sync`` runs it in-process).
    ``processes`` > 1 trains under torchrun (DDP, gradients averaged across ranks) on the worker's machine.
    ``init_checkpoint`` (e.g. production) starts the LoRA weights from that checkpoint's instead of fresh.
    """
    if not 1 <= int(processes) <= 64:
        raise ApplicationError("Invalid process count.", fields={"processes": ["Use 1 to 64."]})
    if algorithm not in (1, 2):
        raise ApplicationError("Unknown algorithm.", fields={"algorithm": ["Must be 1 (fixed) or 2 (EMA reference)."]})
    base, config = resolve_rl_config(reward_model=reward_model, base_policy=base_policy, algorithm=algorithm,
                                     overrides=overrides, init_checkpoint=init_checkpoint)

    active = config.active_tasks
    sample_filter = dict(sample_filter or {})
    if samples is None and not sample_filter.get("sample_ids"):
        sample_filter.setdefault("tasks", active)
        if config.conditions_split:
            sample_filter.setdefault("split", config.conditions_split)
    qs, sample_filter = resolve_samples(samples, sample_filter)
    in_split = qs.filter(split=config.conditions_split) if config.conditions_split else qs
    present = set(in_split.values_list("task_type__slug", flat=True))
    empty = [t for t in active if t not in present]
    if empty:
        split = f" in split '{config.conditions_split}'" if config.conditions_split else ""
        raise ApplicationError(
            "Not every sampled task has condition samples.",
            fields={"samples": [f"No samples{split} for task(s) {', '.join(empty)}; add samples or set their "
                                "task_probs to 0."]},
        )
    conditions_dir = export_conditions(qs.filter(task_type__slug__in=active))

    with transaction.atomic():
        job = job_start(kind=JobKind.POLICY, name=name or f"Policy RL (alg {algorithm}) on {reward_model.name}",
                        config={}, user=user, enqueue=enqueue)
        output_dir = Path(settings.ARTIFACTS_ROOT) / "policy-runs" / f"job-{job.pk}"
        config = config.replace(conditions_dir=str(conditions_dir), output_dir=str(output_dir))
        job.config = config.to_dict()
        job.run_dir = str(output_dir)
        job.save(update_fields=["config", "run_dir"])
        run = PolicyRun.objects.create(
            job=job, reward_model=reward_model, base_policy=base, algorithm=algorithm, config=config.to_dict(),
            output_dir=str(output_dir), conditions_dir=str(conditions_dir), sample_filter=sample_filter,
            started_by=user, processes=processes, init_checkpoint=init_checkpoint,
        )
    return run


def policy_run_processes(job: Job) -> int:
    """How many ranks the policy kind's job trains on (jobs.registry: one CUDA device each)."""
    return PolicyRun.objects.values_list("processes", flat=True).get(job=job)


def policy_run_execute(job: Job, reporter: JobReporter) -> dict:
    """The Celery body: train, then register a checkpoint (only on success)."""
    run = PolicyRun.objects.select_related("reward_model").get(job=job)
    _set_torch_threads()
    from policytrain.engine.checkpoints import CHECKPOINT_MARKER
    from policytrain.engine.rl import RunCancelled, train

    data = dict(run.config)
    data["base_policy"] = ensure_base_policy(run.base_policy)
    # Resume is the platform's action (job_requeue_for_resume sets it), never a stored override.
    data["resume"] = job.config.get("resume") is True
    data.update(_localized_run_paths(data))
    config = RLConfig.from_dict(data)
    pages = _RunPages(run, config.output_dir, reporter, config.max_steps)
    published: set[str] = set()

    def progress(event: dict) -> None:
        # The RL engine reports no checkpoint event: publish what each step finished.
        artifact_publish_checkpoints(config.output_dir, CHECKPOINT_MARKER, published)
        reporter.progress(event)
        pages.sync()

    try:
        if run.processes > 1:
            from jobs.launcher import run_distributed

            result = run_distributed(module="policytrain.engine", config=config.to_dict(),
                                     run_dir=Path(config.output_dir), processes=run.processes, reporter=reporter,
                                     total_steps=config.max_steps, progress=progress)
        else:
            try:
                result = train(config, progress=progress, should_stop=reporter.should_stop)
            except RunCancelled as exc:
                raise JobCancelled(str(exc)) from exc
    except BaseException:
        pages.sync_after_failure()
        raise
    pages.sync()  # the last window and grid are written after the engine's last progress event
    final = Path(config.output_dir) / result.get("final_dir", "final")
    if not final.is_dir():
        raise RuntimeError(f"the engine reported success but wrote no {final}")
    artifact_publish(final)  # before the checkpoint is registered: every host can fetch what it names
    with transaction.atomic():
        checkpoint = PolicyCheckpoint.objects.create(
            name=f"run{run.pk}-alg{run.algorithm}-step{result.get('steps', 0)}", base_policy=run.base_policy,
            weights_dir=str(final), run=run, reward_model=run.reward_model, algorithm=run.algorithm,
        )
    return {**{k: v for k, v in result.items() if k != "last_metrics"}, "metrics": result.get("last_metrics", {}),
            "checkpoint_id": checkpoint.pk}


#: How a complete PNG ends (its IEND chunk): a grid the engine is still writing is copied later.
_PNG_END = b"IEND\xaeB`\x82"


class _RunPages:
    """Records, as a policy run goes, what the run pages show that only the worker's disk holds,
    so that every web host shows the same pages (the engine never imports Django: the worker reads
    what it wrote):

    - the engine's logged windows (``metrics.jsonl`` train rows: window means of the loss and of
      ``reward/<task>/<criterion>``) become metric points of kind ``RL_WINDOW_KIND``. A window is
      recorded once per step: a resumed run replays the steps after its checkpoint, and those
      the earlier attempt logged keep its rows;
    - each new sample grid (``samples/step-*.png``) is copied into media storage, under
      ``sample_grid_folder(run)`` with its own name.
    """

    def __init__(self, run: PolicyRun, output_dir: str | Path, reporter: JobReporter, total_steps: int) -> None:
        self.metrics = Path(output_dir) / "metrics.jsonl"
        self.samples = Path(output_dir) / "samples"
        self.reporter, self.total_steps = reporter, total_steps
        self.offset = 0
        recorded = MetricPoint.objects.filter(job_id=run.job_id, kind=RL_WINDOW_KIND).aggregate(last=Max("step"))
        self.last_step = -1 if recorded["last"] is None else recorded["last"]
        self.folder = sample_grid_folder(run)
        try:
            self.copied = set(default_storage.listdir(self.folder)[1])  # an earlier attempt's, on any host
        except FileNotFoundError:
            self.copied = set()

    def sync(self) -> None:
        """Record the windows and copy the grids written since the last call."""
        self._windows()
        self._grids()

    def sync_after_failure(self) -> None:
        """``sync`` for a run that failed or was cancelled: what it wrote still shows, and a sync
        that fails too is logged on the job instead of hiding the run's own error."""
        try:
            self.sync()
        except Exception as exc:  # storage or database errors alike; the run's error is raised next
            logger.warning("policy run pages not updated after the run stopped: %s", exc)
            self.reporter.log(f"sample grids and logged windows not recorded: {type(exc).__name__}: {exc}")

    def _windows(self) -> None:
        lines, self.offset = read_new_lines(self.metrics, self.offset)
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line the file was cut in the middle of
                continue
            step = int(row.get("step", 0))
            if row.get("kind", "train") == "train" and step > self.last_step:
                self.reporter.progress({**row, "kind": RL_WINDOW_KIND, "total_steps": self.total_steps})
                self.last_step = step

    def _grids(self) -> None:
        if not self.samples.is_dir():
            return
        for path in sorted(self.samples.glob("step-*.png")):
            if path.name in self.copied:
                continue
            data = path.read_bytes()
            if not data.endswith(_PNG_END):  # still being written (by rank 0 of a torchrun run)
                continue
            name = f"{self.folder}/{path.name}"
            if not default_storage.exists(name):
                default_storage.save(name, File(io.BytesIO(data), name=path.name))
            self.copied.add(path.name)


def _localized_run_paths(data: dict) -> dict:
    """A policy run's folders on this host: with an object store (hosts share no disk) the reward
    model, the conditions and any initial weights are fetched, and the newest checkpoint an earlier
    attempt published (on any host) is fetched into the run folder so that the run resumes from it."""
    if not artifact_store().enabled:
        return {}
    out = {"reward_model": str(artifact_fetch_if_published(data["reward_model"])),
           "conditions_dir": str(artifact_fetch(data["conditions_dir"])),
           "output_dir": str(artifact_local(data["output_dir"]))}
    if data.get("init_weights"):
        out["init_weights"] = str(artifact_fetch_if_published(data["init_weights"]))
    artifact_fetch_latest_child(Path(out["output_dir"]) / CHECKPOINTS)
    return out


def policy_run_cancel(*, run: PolicyRun) -> PolicyRun:
    job_cancel(job=run.job)
    run.job.refresh_from_db()
    return run


def policy_run_resume(*, run: PolicyRun) -> PolicyRun:
    """failed/cancelled → queued; the engine resumes from the run folder's last checkpoint."""
    job_resume(job=run.job)
    run.job.refresh_from_db()
    return run


# ----------------------------------------------------------------------------------------------
# Generation jobs: checkpoint vs opponent → candidates → a started pairwise campaign
# ----------------------------------------------------------------------------------------------
def _generate_params(base_policy: str, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(GENERATE_PARAMS))
    if unknown:
        raise ApplicationError("Unknown generation settings.",
                               fields={"params": [f"Unknown: {', '.join(unknown)}; use {', '.join(GENERATE_PARAMS)}."]})
    merged = {**(_tiny_preset("tiny_generate", GenerateConfig) if base_policy == TINY_BASE else {}), **params}
    try:
        GenerateConfig.from_dict({"conditions_dir": "-", "out_dir": "-", "base_policy": "-", **merged})
    except (ValueError, TypeError) as exc:
        raise ApplicationError(f"Invalid generation settings: {exc}", fields={"params": [str(exc)]}) from exc
    return merged


def generation_job_start(*, checkpoint: PolicyCheckpoint, opponent: PolicyCheckpoint | None = None,
                         samples=None, sample_filter: dict | None = None, seeds: Sequence[int] = (0,),
                         campaign_name: str, criteria: Sequence[str | Criterion] | None = None, overlap: int = 3,
                         params: dict | None = None, user: User | None = None, enqueue: bool = True,
                         ) -> GenerationJob:
    """Validate, create Job + GenerationJob and send the job after commit (unless ``enqueue=False``)."""
    errors: dict[str, list[str]] = {}
    campaign_name = (campaign_name or "").strip()
    if not campaign_name:
        errors["campaign_name"] = ["Required."]
    elif (Campaign.objects.filter(name=campaign_name).exists()
          or GenerationJob.objects.filter(campaign_name=campaign_name, job__status__in=["queued", "running"]).exists()):
        errors["campaign_name"] = ["A campaign (or a pending generation job) already uses this name."]
    if opponent is not None and opponent.pk == checkpoint.pk:
        errors["opponent"] = ["The opponent must be a different checkpoint."]
    if opponent is None and not checkpoint.weights_dir:
        errors["opponent"] = ["This checkpoint is a bare base policy; pick another checkpoint as the opponent."]
    try:
        seeds = [int(s) for s in seeds]
    except (TypeError, ValueError):
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        errors["seeds"] = ["Give at least one seed, without repeats."]
    if overlap < 1:
        errors["overlap"] = ["Must be at least 1."]
    if errors:
        raise ApplicationError("The generation job is not valid.", fields=errors)

    qs, sample_filter = resolve_samples(samples, sample_filter)
    chosen = list(qs)
    if not chosen:
        raise ApplicationError("No samples selected.", fields={"samples": ["The selection matches no sample."]})
    tasks = {s.task_type.slug for s in chosen}
    if len(tasks) > 1:
        raise ApplicationError("One generation job makes one campaign, and a campaign has one task type.",
                               fields={"samples": [f"The samples mix task types {sorted(tasks)}; start one job per task."]})
    task_type = chosen[0].task_type
    bad = [s.external_id for s in chosen if s.width % 16 or s.height % 16]
    if bad:
        raise ApplicationError("Some samples cannot be filled at their size.",
                               fields={"samples": [f"Width and height must be multiples of 16: {bad[:10]}."]})
    slugs = [c.slug if isinstance(c, Criterion) else str(c) for c in (criteria or [])]
    allowed = set(task_type.criteria.values_list("slug", flat=True))
    if any(s not in allowed for s in slugs):
        raise ApplicationError("Unknown criteria for this task.",
                               fields={"criteria": [f"Use criteria of '{task_type.slug}': {sorted(allowed)}."]})
    merged = _generate_params(checkpoint.base_policy, params)

    with transaction.atomic():
        opp = opponent.name if opponent else policy_source_name(None, checkpoint.base_policy)
        job = job_start(kind=JobKind.GENERATION, name=f"Generate {checkpoint.name} vs {opp}"[:200],
                        config={"seeds": seeds, "params": merged, "sample_count": len(chosen)}, user=user,
                        enqueue=enqueue)
        job.run_dir = str(Path(settings.ARTIFACTS_ROOT) / "generation" / f"job-{job.pk}")
        job.save(update_fields=["run_dir"])
        gen = GenerationJob.objects.create(
            job=job, checkpoint=checkpoint, opponent=opponent, sample_ids=[s.pk for s in chosen],
            sample_filter=sample_filter, seeds=seeds, campaign_name=campaign_name, criteria=slugs, overlap=overlap,
            params=merged, started_by=user,
        )
    return gen


def _run_generation(*, side: str, checkpoint: PolicyCheckpoint | None, base_policy: str, conditions_dir: Path,
                    out_dir: Path, seeds: list[int], params: dict, progress) -> list[dict]:
    from policytrain.engine.generate import generate_candidates

    config = GenerateConfig(
        conditions_dir=str(conditions_dir), out_dir=str(out_dir / side), base_policy=ensure_base_policy(base_policy),
        weights=str(artifact_fetch_if_published(checkpoint.weights_dir)) if checkpoint and checkpoint.weights_dir
        else None, seeds=tuple(seeds),
        device=settings.ML_DEVICE, **params,
    )
    generate_candidates(config, progress=progress)
    rows = [json.loads(line) for line in (out_dir / side / "outputs.jsonl").read_text().splitlines() if line.strip()]
    return rows


def generation_execute(job: Job, reporter: JobReporter) -> dict:
    """The Celery body: fill the samples with both policies, then (one transaction) candidates + campaign."""
    gen = GenerationJob.objects.select_related("checkpoint", "opponent").get(job=job)
    samples = {s.pk: s for s in Sample.objects.filter(pk__in=gen.sample_ids).select_related("task_type")}
    if len(samples) != len(gen.sample_ids):
        raise ValueError("some samples of this generation job were deleted")
    _set_torch_threads()
    out_dir = Path(job.run_dir or Path(settings.ARTIFACTS_ROOT) / "generation" / f"job-{job.pk}")
    shutil.rmtree(out_dir, ignore_errors=True)
    written: list[str] = []
    try:
        conditions_dir = export_conditions([samples[i] for i in gen.sample_ids])
        per_side = len(samples) * len(gen.seeds)
        total = 2 * per_side

        def progress_for(offset: int):
            def progress(event: dict) -> None:
                if reporter.should_stop():
                    raise JobCancelled("cancelled during generation")
                reporter.progress({**event, "step": offset + int(event.get("step", 0)), "total_steps": total})
            return progress

        opponent_base = gen.opponent.base_policy if gen.opponent else gen.checkpoint.base_policy
        sides = [
            ("a", gen.checkpoint, gen.checkpoint.base_policy, policy_source_name(gen.checkpoint)),
            ("b", gen.opponent, opponent_base, policy_source_name(gen.opponent, opponent_base)),
        ]
        outputs = {}
        for i, (side, ckpt, base, _name) in enumerate(sides):
            outputs[side] = _run_generation(side=side, checkpoint=ckpt, base_policy=base, conditions_dir=conditions_dir,
                                            out_dir=out_dir, seeds=list(gen.seeds), params=dict(gen.params),
                                            progress=progress_for(i * per_side))

        def save(prefix: str, data: bytes) -> str:
            name = default_storage.save(f"{prefix}/{sha256_of(data)[:32]}.png", ContentFile(data))
            written.append(name)
            return name

        with transaction.atomic():
            made: dict[tuple[str, int, int], Candidate] = {}
            created = 0
            # Created in a shuffled order of sides: candidate ids reach annotators, and ids that
            # always put the checkpoint first would unblind the side-by-side.
            rows = [(side, ckpt, source_name, row) for side, ckpt, _base, source_name in sides for row in outputs[side]]
            random.Random(gen.pk).shuffle(rows)
            for side, ckpt, source_name, row in rows:
                sample = samples[int(row["condition_id"])]
                png = (out_dir / side / row["image"]).read_bytes()
                is_new = not Candidate.objects.filter(sample=sample, sha256=sha256_of(png)).exists()
                cand = candidate_create_from_png(
                    sample=sample, png=png, provenance=Provenance.POLICY, source_name=source_name,
                    seed=int(row["seed"]), source_ref=str(ckpt.pk) if ckpt else "",
                    params={**row.get("params", {}), "generation_job": gen.pk,
                            "checkpoint_id": ckpt.pk if ckpt else None}, _save=save,
                )
                created += int(is_new)
                made[(side, sample.pk, int(row["seed"]))] = cand
            groups, identical = [], 0
            for sample_id in gen.sample_ids:
                for seed in gen.seeds:
                    a, b = made[("a", sample_id, seed)], made[("b", sample_id, seed)]
                    if a.pk == b.pk:  # byte-identical outputs: nothing to judge
                        identical += 1
                        continue
                    groups.append((samples[sample_id], [a, b]))
            if not groups:
                raise ValueError("both policies produced identical images for every sample and seed; no pairs to judge")
            task_type = samples[gen.sample_ids[0]].task_type
            criteria = list(Criterion.objects.filter(slug__in=gen.criteria)) if gen.criteria else None
            campaign = campaign_create(
                name=gen.campaign_name, task_type=task_type, criteria=criteria, overlap=gen.overlap,
                selection={"sample_ids": list(gen.sample_ids), "opponents": [sides[0][3], sides[1][3]]},
                # Annotators read the description: it must not say which system made what.
                description="Side-by-side comparison of two edits of each image.",
                created_by=gen.started_by, source_ref=f"generation-job:{gen.pk}",
            )
            items = campaign_add_items(campaign=campaign, groups=groups)
            campaign = campaign_start(campaign=campaign)
            GenerationJob.objects.filter(pk=gen.pk).update(campaign=campaign, candidates_created=created)
    except BaseException:
        for name in written:  # all-or-nothing: no orphaned media either
            default_storage.delete(name)
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {"campaign_id": campaign.pk, "campaign": campaign.name, "candidates_created": created, "items": items,
            "identical_pairs": identical, "conditions_dir": str(conditions_dir)}


# ----------------------------------------------------------------------------------------------
# Production
# ----------------------------------------------------------------------------------------------
def _production_changed() -> Conflict:
    return Conflict("Production changed while promoting; reload and try again.",
                    fields={"checkpoint": ["Another promotion landed first."]}, code="production_changed")


def checkpoint_promote(*, checkpoint: PolicyCheckpoint, user: User | None = None, reason: str = "",
                       force: bool = False, rule: PromotionRule | None = None) -> tuple[Promotion, bool]:
    """Make ``checkpoint`` the production policy if the promotion gate lets it (``force`` with a
    written reason overrides the gate: a rollback, a deliberate exception). Returns the promotion
    and whether it is new: promoting production again returns its promotion, so a retried request
    changes nothing. The gate's assessment is stored with the promotion as its evidence.
    """
    reason = (reason or "").strip()
    current = production_checkpoint()
    if current is not None and current.pk == checkpoint.pk:
        return Promotion.objects.filter(checkpoint=checkpoint).order_by("-number").first(), False
    if force and not reason:
        raise ApplicationError("Say why the gate is overridden.",
                               fields={"reason": ["Required when forcing a promotion past the gate."]})
    if checkpoint.weights_dir and not artifact_available(checkpoint.weights_dir):
        raise ApplicationError("This checkpoint cannot be served.",
                               fields={"checkpoint": [f"Its weights folder {checkpoint.weights_dir} is missing."]})
    gate = promotion_gate(checkpoint, rule)
    if not gate["eligible"] and not force:
        raise Conflict("The promotion gate refuses this checkpoint.", fields={"checkpoint": gate["reasons"]},
                       code="promotion_refused")
    previous = Promotion.objects.order_by("-number").first()
    if (previous.checkpoint_id if previous else None) != (gate["production"] or {}).get("id"):
        raise _production_changed()
    try:
        with transaction.atomic():
            promotion = Promotion.objects.create(
                number=(previous.number + 1) if previous else 1, checkpoint=checkpoint,
                previous=previous.checkpoint if previous else None, evidence=gate,
                forced=not gate["eligible"], reason=reason, promoted_by=user,
            )
    except IntegrityError as exc:  # another promotion landed between our read and this insert
        raise _production_changed() from exc
    return promotion, True
