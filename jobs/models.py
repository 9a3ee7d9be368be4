"""Long-running jobs (snapshot builds, reward training, RL, generation) share one record type,
so the dashboard lists them together and every job follows the same state machine:

    queued → running → succeeded | failed | cancelled      (failed/cancelled → queued on resume)
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobKind(models.TextChoices):
    SNAPSHOT = "snapshot", "Dataset snapshot"
    REWARD = "reward", "Reward-model training"
    POLICY = "policy", "Policy RL"
    GENERATION = "generation", "Candidate generation"
    EVALUATION = "evaluation", "Evaluation"
    # Scoring pairs with a reward model: its own kind since jobs.registry runs each kind one way
    # (it shared "evaluation" before, told apart by its config).
    SCORE = "score", "Reward scoring"
    EXPORT = "export", "Judgment export"
    IMPORT = "import", "Sample import"
    BASELINE = "baseline", "Baseline learner"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    config = models.JSONField(default=dict, blank=True, help_text="The final, resolved configuration.")
    result = models.JSONField(default=dict, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    last_metrics = models.JSONField(default=dict, blank=True)
    run_dir = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times it has started (resumes count).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Who runs it: "host:pid" of the worker process that claimed it (jobs.services.worker_identity),
    # so a redelivered message can tell a dead owner on its own host from a live one.
    owner = models.CharField(max_length=255, blank=True, help_text="host:pid of the process running it.")
    # The last send to the broker: the task's name, and when the send went through. A queued job with
    # a task name but no enqueued_at was never sent (broker down) and is sent by job_send_unsent.
    task_name = models.CharField(max_length=200, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "status"]), models.Index(fields=["-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_range"),
            models.CheckConstraint(
                condition=~Q(status="running") | Q(started_at__isnull=False), name="job_running_has_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class MetricPoint(models.Model):
    """One logged step of a job (loss, accuracy, reward …) for live curves."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, default="train")
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "id"]
        indexes = [models.Index(fields=["job", "kind", "step"])]

    def __str__(self) -> str:
        return f"{self.job_id}@{self.step}"
