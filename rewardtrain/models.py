"""Reward-model training runs and the registry of trained reward models.

Lineage: RewardModel → RewardRun → DatasetSnapshot → Campaigns. A run's state (status, progress,
error, metrics) lives on its ``jobs.Job``; a ``RewardModel`` row exists only for a run whose
training AND evaluation both succeeded (see ``rewardtrain.services.reward_run_execute``).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class RewardRun(models.Model):
    """One reward-model training run (its life cycle is its Job's)."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="reward_run")
    snapshot = models.ForeignKey("annotation.DatasetSnapshot", on_delete=models.PROTECT, related_name="reward_runs")
    base_model = models.CharField(max_length=500, help_text="Local folder or hub id of the Qwen2.5-VL backbone.")
    preset = models.CharField(max_length=40, default="tiny")
    config = models.JSONField(default=dict, help_text="The final resolved RewardTrainConfig.to_dict().")
    output_dir = models.CharField(max_length=500)
    processes = models.PositiveSmallIntegerField(
        default=1, help_text="Ranks on the worker's machine; >1 launches the engine under torchrun (DDP)."
    )
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    tags = models.JSONField(default=list, blank=True, help_text="Free labels from the dashboard's runs list.")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"reward run {self.pk} ({self.job.status})"


class RewardModel(models.Model):
    """A trained, evaluated reward model ready for scoring and RL."""

    run = models.OneToOneField(RewardRun, on_delete=models.PROTECT, related_name="reward_model")
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=500, help_text="The run's final/ folder (weights + processor + card).")
    base_model = models.CharField(max_length=500)
    template_version = models.CharField(max_length=60)
    snapshot = models.ForeignKey("annotation.DatasetSnapshot", on_delete=models.PROTECT, related_name="reward_models")
    eval_split = models.CharField(max_length=5, help_text="test, or val when the snapshot has no test pairs.")
    eval_report = models.JSONField(default=dict, help_text="Accuracy table, position consistency, ECE, ceiling.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class RewardEvaluation(models.Model):
    """A registered reward model scored against the majority labels of any built snapshot.

    Why: a reward model's own eval split comes from the campaigns it was trained on; what RL needs
    is its agreement with people on the images RL makes, which can be far lower (near chance). A
    snapshot of a generation campaign's judgments (checkpoint vs base) gives exactly that.
    """

    reward_model = models.ForeignKey(RewardModel, on_delete=models.CASCADE, related_name="evaluations")
    snapshot = models.ForeignKey("annotation.DatasetSnapshot", on_delete=models.PROTECT,
                                 related_name="reward_evaluations")
    split = models.CharField(max_length=5, help_text="train, val, test, or all of the snapshot's pairs.")
    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="reward_evaluation")
    report = models.JSONField(default=dict, help_text="The engine's evaluation report (accuracy table, ECE, …).")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of reward model {self.reward_model_id} on snapshot {self.snapshot_id}"


class BaselineRun(models.Model):
    """The baseline learner (a small siamese CNN, ``rewardtrain.engine.baseline``) trained on a snapshot.

    Why: its held-out accuracy per task x criterion says whether the snapshot's labels are
    learnable from the two images at all, before GPU hours go into the VLM, and stands beside the
    VLM's accuracy on reward models of the same snapshot. Its state lives on its ``jobs.Job``.
    """

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="baseline_run")
    snapshot = models.ForeignKey("annotation.DatasetSnapshot", on_delete=models.PROTECT, related_name="baseline_runs")
    config = models.JSONField(default=dict, help_text="The resolved BaselineConfig.to_dict().")
    output_dir = models.CharField(max_length=500, help_text="The model folder (weights + baseline.json card).")
    report = models.JSONField(default=dict, blank=True,
                              help_text="Held-out accuracy, counts and 95 % intervals per task x criterion.")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"baseline {self.pk} on snapshot {self.snapshot_id}"
