"""Policy RL runs, the checkpoints they produce, and candidate-generation jobs.

Lineage: PolicyCheckpoint → PolicyRun → RewardModel → DatasetSnapshot → Campaigns. A run's state
(status, progress, error, metrics) lives on its ``jobs.Job``; these rows hold what is specific to RL.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

TINY_BASE = "tiny"


def policy_source_name(checkpoint: PolicyCheckpoint | None, base_policy: str = TINY_BASE) -> str:
    """The Candidate.source_name of a policy's outputs (None = a bare base policy)."""
    if checkpoint is not None:
        return f"policy:{checkpoint.name}"[:200]
    return f"base:{base_policy}"[:200]


class Algorithm(models.IntegerChoices):
    FIXED = 1, "Algorithm 1 (fixed reference)"
    DYNAMIC = 2, "Algorithm 2 (EMA reference)"


class PolicyRun(models.Model):
    """One OneReward RL run (engine ``policytrain.engine.rl.train``) against one reward model."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="policy_run")
    reward_model = models.ForeignKey("rewardtrain.RewardModel", on_delete=models.PROTECT, related_name="policy_runs")
    base_policy = models.CharField(
        max_length=500, default=TINY_BASE,
        help_text='FLUX.1-Fill folder or hub id; "tiny" = the locally built tiny Fill pipeline.',
    )
    algorithm = models.PositiveSmallIntegerField(choices=Algorithm.choices, default=Algorithm.FIXED)
    config = models.JSONField(default=dict, help_text="RLConfig.to_dict() as run.")
    output_dir = models.CharField(max_length=500)
    conditions_dir = models.CharField(max_length=500, blank=True)
    sample_filter = models.JSONField(default=dict, blank=True, help_text="Which samples were exported as conditions.")
    processes = models.PositiveSmallIntegerField(
        default=1, help_text="Ranks on the worker's machine; >1 launches the engine under torchrun (DDP)."
    )
    init_checkpoint = models.ForeignKey(
        "PolicyCheckpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="continued_by",
        help_text="The checkpoint whose LoRA weights RL started from (null = a fresh adapter on the base).",
    )
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    tags = models.JSONField(default=list, blank=True, help_text="Free labels from the dashboard's runs list.")

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(algorithm__in=[1, 2]), name="policyrun_algorithm_valid")]

    def __str__(self) -> str:
        return f"policy run {self.pk} (alg {self.algorithm})"


class PolicyCheckpoint(models.Model):
    """A deployable policy: a base Fill pipeline plus (optionally) RL weights from a run's ``final/``."""

    name = models.CharField(max_length=200, unique=True)
    base_policy = models.CharField(max_length=500, help_text='FLUX.1-Fill folder, hub id, or "tiny".')
    weights_dir = models.CharField(max_length=500, blank=True, help_text="Engine final/ folder; blank = the base itself.")
    run = models.OneToOneField(PolicyRun, null=True, blank=True, on_delete=models.PROTECT, related_name="checkpoint")
    reward_model = models.ForeignKey("rewardtrain.RewardModel", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="policy_checkpoints")
    algorithm = models.PositiveSmallIntegerField(choices=Algorithm.choices, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name


class GenerationJob(models.Model):
    """A checkpoint and an opponent fill the same samples with the same seeds → a pairwise campaign."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="generation_job")
    checkpoint = models.ForeignKey(PolicyCheckpoint, on_delete=models.PROTECT, related_name="generation_jobs")
    opponent = models.ForeignKey(PolicyCheckpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                 help_text="Null = the base policy of the checkpoint.")
    sample_ids = models.JSONField(default=list, help_text="The samples filled (resolved at start).")
    sample_filter = models.JSONField(default=dict, blank=True, help_text="The filter that chose them, if any.")
    seeds = models.JSONField(default=list)
    campaign_name = models.CharField(max_length=200)
    criteria = models.JSONField(default=list, blank=True, help_text="Criterion slugs; empty = all of the task's.")
    overlap = models.PositiveSmallIntegerField(default=3)
    params = models.JSONField(default=dict, blank=True, help_text="Sampler settings (steps, guidance, ...).")
    campaign = models.ForeignKey("annotation.Campaign", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    candidates_created = models.PositiveIntegerField(default=0)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"generation {self.pk} ({self.checkpoint})"


class Promotion(models.Model):
    """One change of the production policy. Append-only: the row with the highest ``number`` is
    production; none at all means the base policy.

    ``number`` is unique and one more than the production it replaced, so two promotions started
    at once cannot both land: the second insert fails and is refused (services.checkpoint_promote).
    """

    number = models.PositiveIntegerField(unique=True)
    checkpoint = models.ForeignKey(PolicyCheckpoint, on_delete=models.PROTECT, related_name="promotions")
    previous = models.ForeignKey(PolicyCheckpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                 help_text="Production before this promotion; null = the base policy.")
    evidence = models.JSONField(default=dict, help_text="The promotion gate's assessment at the time (selectors.promotion_gate).")
    forced = models.BooleanField(default=False, help_text="Promoted although the gate refused (a rollback, an override).")
    reason = models.TextField(blank=True)
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.CheckConstraint(condition=Q(forced=False) | ~Q(reason=""),
                                              name="promotion_forced_has_reason")]

    def __str__(self) -> str:
        return f"promotion {self.number}: {self.checkpoint}"
