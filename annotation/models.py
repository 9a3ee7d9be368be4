"""Annotation domain: what is judged (samples, candidates), how (campaigns, criteria,
guidelines), the work queue (items, leases) and the judgments themselves.

Invariants live in database constraints, not only in Python, so that concurrent workers and
raw SQL cannot break them. Writes go through ``annotation.services``.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from .guidelines import render_guideline


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TaskType(models.Model):
    """An edit task: the paper's fill, extend and removal are seeded, curators add others.

    Text rendering is fill with quoted text. The slug is the task's name in snapshots and reward
    models, so it cannot change once judgments exist (services.taxonomy).
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=80)
    fixed_prompt = models.CharField(
        max_length=200, blank=True, help_text="Used when a sample has no prompt (removal, prompt-free extend)."
    )
    description = models.TextField(blank=True)
    criteria = models.ManyToManyField("Criterion", related_name="task_types")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Criterion(models.Model):
    """An evaluation dimension. Its guideline is versioned (see GuidelineVersion).

    ``name`` and ``description`` are what annotators and the reward model read: the reward query
    says "Evaluation criterion: <name> (<description>)." (contracts.vocabulary).
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=80)
    description = models.TextField(
        default="", help_text="One line on what is judged; annotators see it and the reward model's query states it."
    )
    uses_prompt = models.BooleanField(
        default=False, help_text="Show the prompt to annotators and the reward model (text alignment in the paper)."
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "criteria"

    def __str__(self) -> str:
        return self.name

    @property
    def current_guideline(self) -> GuidelineVersion | None:
        return self.guidelines.order_by("-version").first()


class GuidelineVersion(models.Model):
    """An immutable guideline text; every judgment records the version it was made under."""

    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE, related_name="guidelines")
    version = models.PositiveIntegerField()
    body_markdown = models.TextField()
    body_html = models.TextField(
        blank=True, editable=False, help_text="Rendered once when the version is saved (versions never change)."
    )
    examples = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["criterion_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["criterion", "version"], name="guideline_unique_version"),
            models.CheckConstraint(condition=Q(version__gte=1), name="guideline_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.criterion.slug} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        # Rendered here, not per hand-out: the workspace asks for it with every item.
        if not self.body_html:
            self.body_html = render_guideline(self.body_markdown)
        super().save(*args, **kwargs)


class Split(models.TextChoices):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class Sample(TimeStamped):
    """A condition (source image, binary mask, prompt) for one task type."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_id = models.CharField(max_length=200, unique=True)
    task_type = models.ForeignKey(TaskType, on_delete=models.PROTECT, related_name="samples")
    source_image = models.ImageField(upload_to="samples/")
    mask = models.ImageField(upload_to="masks/")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    prompt = models.TextField(blank=True)
    split_key = models.CharField(max_length=200, help_text="Samples sharing a key share a split.")
    split = models.CharField(max_length=5, choices=Split.choices)
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task_type", "split"])]
        constraints = [
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="sample_positive_size"),
            models.CheckConstraint(condition=Q(split__in=Split.values), name="sample_split_valid"),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def effective_prompt(self) -> str:
        return self.prompt or self.task_type.fixed_prompt


class Provenance(models.TextChoices):
    POLICY = "policy", "Policy checkpoint"
    EXTERNAL = "external", "External system"
    UPLOAD = "upload", "Upload"
    SYNTHETIC = "synthetic", "Synthetic world"


class Candidate(TimeStamped):
    """One output image for a sample, with where it came from."""

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="candidates")
    image = models.ImageField(upload_to="candidates/")
    sha256 = models.CharField(max_length=64, db_index=True)
    provenance = models.CharField(max_length=16, choices=Provenance.choices)
    source_name = models.CharField(max_length=200, help_text="System, checkpoint or uploader name.")
    source_ref = models.CharField(max_length=200, blank=True, help_text="e.g. policy checkpoint id.")
    seed = models.BigIntegerField(null=True, blank=True)
    generation_params = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "sha256"], name="candidate_unique_image_per_sample")
        ]

    def __str__(self) -> str:
        return f"{self.sample.external_id}/{self.source_name}#{self.pk}"


class CampaignMode(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise (A / B / tie / both bad)"
    BEST_WORST = "best_worst", "Best–worst of N"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


def default_skip_reasons() -> list[str]:
    """The presets a new campaign's skip dialog offers (a callable: each campaign gets its own list)."""
    return ["Image does not load or is broken", "Mask or prompt is unclear", "Candidates look identical",
            "Not sure how the guideline applies"]


class Campaign(TimeStamped):
    """What to judge, on which criteria, how often, and in which mode."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    mode = models.CharField(max_length=16, choices=CampaignMode.choices, default=CampaignMode.PAIRWISE)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    task_type = models.ForeignKey(TaskType, on_delete=models.PROTECT, related_name="campaigns")
    criteria = models.ManyToManyField(Criterion, related_name="campaigns")
    candidates_per_item = models.PositiveSmallIntegerField(default=2, help_text="2 for pairwise, N for best–worst.")
    overlap = models.PositiveSmallIntegerField(default=3, help_text="Judgments wanted per item (k).")
    gold_fraction = models.FloatField(default=0.0, help_text="Share of hand-outs that are gold items.")
    lease_seconds = models.PositiveIntegerField(default=600)
    priority = models.SmallIntegerField(default=0)
    skip_reasons = models.JSONField(
        default=default_skip_reasons, blank=True,
        help_text="Preset reasons the skip dialog offers as buttons (annotators can still type another).",
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="campaigns",
        help_text="Leave empty to open the campaign to every annotator.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    source_ref = models.CharField(max_length=200, blank=True, help_text="e.g. the generation job that made it.")
    selection = models.JSONField(
        default=dict, blank=True,
        help_text='Which items start() materialises: {"sample_ids": [...], "sources": [...], '
        '"opponents": [source_a, source_b], "max_items_per_sample": n}.',
    )

    class Meta:
        ordering = ["-priority", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="campaign_overlap_positive"),
            models.CheckConstraint(
                condition=Q(gold_fraction__gte=0) & Q(gold_fraction__lte=1), name="campaign_gold_fraction_range"
            ),
            models.CheckConstraint(condition=Q(candidates_per_item__gte=2), name="campaign_at_least_two_candidates"),
            models.CheckConstraint(
                condition=~Q(mode=CampaignMode.PAIRWISE) | Q(candidates_per_item=2), name="campaign_pairwise_is_two"
            ),
            models.CheckConstraint(condition=Q(lease_seconds__gte=10), name="campaign_lease_min"),
        ]

    def __str__(self) -> str:
        return self.name


class ItemStatus(models.TextChoices):
    OPEN = "open"  # can still be handed out
    FULL = "full"  # every slot is leased or done; reopens if a lease expires or is skipped
    DONE = "done"  # overlap judgments received


class Item(models.Model):
    """One unit of work: a sample and the candidates to compare, in canonical order."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="items")
    candidates = models.ManyToManyField(Candidate, through="ItemCandidate", related_name="items")
    status = models.CharField(max_length=8, choices=ItemStatus.choices, default=ItemStatus.OPEN)
    priority = models.SmallIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(
        null=True, blank=True, help_text="{criterion slug: expected choice} for gold items."
    )
    leased_count = models.PositiveIntegerField(default=0, help_text="Active leases + submitted judgments.")
    completed_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The queue's hot path: open items of a campaign in priority order.
            models.Index(
                fields=["campaign", "is_gold", "-priority", "id"],
                condition=Q(status="open"),
                name="item_queue_open",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(completed_count__lte=F("leased_count")), name="item_completed_le_leased"),
            models.CheckConstraint(condition=Q(is_gold=False) | Q(gold_answer__isnull=False), name="item_gold_has_answer"),
        ]

    def __str__(self) -> str:
        return f"item {self.pk} ({self.campaign_id})"


class ItemCandidate(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="slots")
    candidate = models.ForeignKey(Candidate, on_delete=models.PROTECT)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["item_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="itemcandidate_unique_position"),
            models.UniqueConstraint(fields=["item", "candidate"], name="itemcandidate_unique_candidate"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} slot {self.position}"


class LeaseState(models.TextChoices):
    ACTIVE = "active"
    SUBMITTED = "submitted"
    EXPIRED = "expired"
    SKIPPED = "skipped"


class Lease(models.Model):
    """An item handed to one annotator until ``expires_at``; never twice to the same person."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases")
    state = models.CharField(max_length=10, choices=LeaseState.choices, default=LeaseState.ACTIVE)
    displayed_order = models.JSONField(help_text="Candidate ids left to right as shown.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["state", "expires_at"], condition=Q(state="active"), name="lease_active_expiry"),
            models.Index(fields=["annotator", "state"], name="lease_annotator_state"),
        ]
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="lease_once_per_annotator")]

    def __str__(self) -> str:
        return f"lease {self.pk} {self.state}"


class Choice(models.TextChoices):
    """Pairwise choices refer to canonical positions (A = position 0), never to screen sides."""

    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"
    BEST_WORST = "best_worst", "Best and worst picked"
    NO_DIFFERENCE = "no_difference", "No clear difference"


class Judgment(TimeStamped):
    """One annotator's answer for one item on one criterion."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="judgments")
    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="judgments")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="judgments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments")
    choice = models.CharField(max_length=16, choices=Choice.choices)
    best = models.ForeignKey(Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    worst = models.ForeignKey(Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    displayed_order = models.JSONField()
    guideline_version = models.ForeignKey(GuidelineVersion, on_delete=models.PROTECT, related_name="judgments")
    active_ms = models.PositiveIntegerField(default=0, help_text="Time the page was visible and focused.")
    idempotency_key = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["criterion", "created_at"]), models.Index(fields=["annotator", "-id"])]
        constraints = [
            models.UniqueConstraint(fields=["item", "criterion", "annotator"], name="judgment_once_per_criterion"),
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key", "criterion"], name="judgment_idempotency_key"
            ),
            models.CheckConstraint(
                condition=(
                    Q(choice="best_worst", best__isnull=False, worst__isnull=False)
                    & ~Q(best=F("worst"))
                )
                | (~Q(choice="best_worst") & Q(best__isnull=True, worst__isnull=True)),
                name="judgment_best_worst_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk} {self.criterion_id}={self.choice}"


class JudgmentRevision(models.Model):
    """The previous state of an edited judgment (history is never overwritten)."""

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="revisions")
    choice = models.CharField(max_length=16, choices=Choice.choices)
    best = models.ForeignKey(Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    worst = models.ForeignKey(Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"revision of judgment {self.judgment_id}"


class ImportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ImportBatch(models.Model):
    """The record of one import: all-or-nothing, with a per-row error report when it fails.

    Every import runs as a job (``job``: status, progress), an upload on a worker and ``manage.py
    import_samples`` in its own process; the batch keeps the outcome (counts, row errors)."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    source_name = models.CharField(max_length=300)
    samples_created = models.PositiveIntegerField(default=0)
    candidates_created = models.PositiveIntegerField(default=0)
    split_counts = models.JSONField(default=dict, blank=True, help_text="New samples per split, e.g. {\"train\": 3}.")
    errors = models.JSONField(default=list, blank=True)
    job = models.OneToOneField(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="import_batch",
        help_text="The import job (status, progress, error).",
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"import {self.pk} {self.status}"

    # The import's status is its job's (ADR 0002, ADR 0014: the Job row is the only source of
    # status); the batch keeps no copy that could disagree with it. Lists select_related("job").
    @property
    def status(self) -> str:
        """queued / running / succeeded / failed, as its job. A cancelled job is a failed import
        (nothing was imported; the reason is in ``errors``), so the import keeps its four states.
        Without a job (its row was deleted) the outcome the batch recorded decides."""
        if self.job_id is None:
            return ImportStatus.FAILED if self.errors else ImportStatus.SUCCEEDED
        status = self.job.status
        return ImportStatus.FAILED if status == "cancelled" else status


class DatasetSnapshot(models.Model):
    """An immutable, content-hashed export of aggregated judgments for training."""

    name = models.CharField(max_length=200)
    filter = models.JSONField(default=dict, blank=True)
    aggregation = models.CharField(max_length=40, default="tie-aware-v1")  # services.snapshots.AGGREGATIONS
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    path = models.CharField(max_length=500, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    human_ceiling = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    campaigns = models.ManyToManyField(Campaign, blank=True, related_name="snapshots")
    job = models.OneToOneField(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshot",
        help_text="The build job (status, progress, error).",
    )
    reused_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="An earlier snapshot with the same content hash whose folder this one shares.",
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_hash[:10] or self.status})"

    # The build's status and error are its job's (ADR 0002: the Job row is the only source of
    # status); a snapshot keeps no copy that could disagree with it. Lists select_related("job").
    @property
    def status(self) -> str:
        """queued / running / succeeded / failed / cancelled, as its build job. Without a job (its
        row was deleted) a snapshot is succeeded when it was built: only a finished build writes
        its folder and content hash."""
        if self.job_id is None:
            return "succeeded" if self.path or self.content_hash else "failed"
        return self.job.status

    @property
    def error(self) -> str:
        """Why the build failed (its job's error), blank otherwise."""
        return self.job.error if self.job_id is not None else ""


class Adjudication(models.Model):
    """A curator's final answer for one item on one criterion, with the reason.

    Versioned: a new answer is a new row and the latest one (highest id) per (item, criterion)
    wins; in snapshots it replaces that item's votes on the criterion. The answer takes the
    shape of a judgment's (canonical positions, never screen sides).
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="adjudications")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="adjudications")
    choice = models.CharField(max_length=16, choices=Choice.choices)
    best = models.ForeignKey(Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    worst = models.ForeignKey(Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="adjudications"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["item", "criterion", "-id"], name="adjudication_latest")]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(choice="best_worst", best__isnull=False, worst__isnull=False)
                    & ~Q(best=F("worst"))
                )
                | (~Q(choice="best_worst") & Q(best__isnull=True, worst__isnull=True)),
                name="adjudication_best_worst_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"adjudication {self.pk} item {self.item_id} {self.criterion_id}={self.choice}"
