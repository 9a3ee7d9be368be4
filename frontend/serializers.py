"""Output serializers of the dashboard API (/api/dashboard/): the OpenAPI contract of what
``frontend.api`` returns.

The payloads are built by ``frontend.selectors`` (the pages render the same dicts); these
serializers describe them field by field for /api/schema/, and the views return the selectors'
dicts unchanged. Deeply nested report tables (accuracy tables, lineage graphs, configs) are typed
as JSON values: their shape follows the run's report, not a fixed schema.
"""
from __future__ import annotations

from rest_framework import serializers

from jobs.models import JobKind, JobStatus
from jobs.serializers import MetricPointOut


class LinkOut(serializers.Serializer):
    label = serializers.CharField()
    url = serializers.CharField(allow_null=True)
    role = serializers.CharField(help_text="input or output")


class JobSummaryOut(serializers.Serializer):
    """A job as the runs list shows it (``frontend.selectors.job_summary``)."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=JobKind.choices)
    kind_label = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    progress = serializers.FloatField()
    eta_seconds = serializers.FloatField(allow_null=True)
    last_metrics = serializers.JSONField()
    error = serializers.CharField(help_text="The first line of the error (300 characters at most).")
    cancel_requested = serializers.BooleanField()
    attempts = serializers.IntegerField()
    started_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    can_cancel = serializers.BooleanField()
    can_resume = serializers.BooleanField()
    url = serializers.CharField(allow_null=True)
    links = LinkOut(many=True)
    tags = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                 help_text="A reward or RL run's tags; null for other jobs.")
    params = serializers.DictField(help_text="The run's key config values (preset, lr, batch_size, …).")


class JobListOut(serializers.Serializer):
    jobs = JobSummaryOut(many=True)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Jobs per status.")


class QueueOut(serializers.Serializer):
    """One Celery queue (``jobs.selectors.queue_overview``)."""

    name = serializers.CharField()
    # The registry's kinds (what routes jobs), which JobKind's choices need not all list.
    kinds = serializers.ListField(child=serializers.CharField(),
                                  help_text="The job kinds sent to this queue (none: only a worker consumes it).")
    workers = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                    help_text="The workers consuming it; null when the broker is unreachable.")
    waiting = serializers.IntegerField(help_text="Its jobs queued and not yet claimed by a worker.")
    running = serializers.IntegerField()


class QueueOverviewOut(serializers.Serializer):
    broker_reachable = serializers.BooleanField()
    queues = QueueOut(many=True)


class ArtifactOut(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    url = serializers.CharField()


class JobDetailOut(JobSummaryOut):
    """The run page's payload (``frontend.selectors.job_detail``); one of ``reward``, ``policy``,
    ``generation``, ``snapshot`` or ``scores`` is present, by the job's kind."""

    config = serializers.JSONField()
    result = serializers.JSONField()
    error_full = serializers.CharField()
    traceback = serializers.CharField()
    metrics = MetricPointOut(many=True)
    log_tail = serializers.CharField()
    run_dir = serializers.CharField()
    artifacts = ArtifactOut(many=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    reward = serializers.JSONField(required=False, help_text="Reward runs: run, snapshot, preset, model, table.")
    policy = serializers.JSONField(required=False, help_text="RL runs: run, algorithm, reward model, checkpoint.")
    generation = serializers.JSONField(required=False, help_text="Generation jobs: checkpoints, campaign, pairs.")
    snapshot = serializers.JSONField(required=False, help_text="Snapshot jobs: the snapshot's counts.")
    scores = serializers.ListField(child=serializers.JSONField(), required=False,
                                   help_text="Evaluation jobs: the first 50 scores.")


class OverlayRunOut(JobSummaryOut):
    curves = serializers.DictField(
        child=serializers.ListField(child=serializers.ListField(child=serializers.FloatField())),
        help_text='{"<metric> · <train|eval (split)>": [[step, value], …]}')


class OverlayOut(serializers.Serializer):
    runs = OverlayRunOut(many=True)


class LineageOut(serializers.Serializer):
    """Upstream and downstream nodes; ``chain`` is the path from campaigns to this node (reward
    models and checkpoints), ``generation_job`` the job that made a campaign."""

    chain = serializers.ListField(child=serializers.JSONField(), required=False)
    upstream = serializers.JSONField()
    downstream = serializers.JSONField()
    generation_job = serializers.JSONField(required=False, allow_null=True)


class RewardModelSideOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    table = serializers.JSONField(help_text="The eval report as tasks × criteria (percent).")


class CompareRewardModelsOut(serializers.Serializer):
    a = RewardModelSideOut()
    b = RewardModelSideOut()


class GridOut(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()


class CheckpointSideOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    algorithm = serializers.IntegerField(allow_null=True)
    grids = GridOut(many=True)
    rl_table = serializers.JSONField(allow_null=True)


class CompareCheckpointsOut(serializers.Serializer):
    a = CheckpointSideOut()
    b = CheckpointSideOut()
    pairs = serializers.ListField(child=serializers.JSONField(),
                                  help_text="Samples both filled with the same seed: sample, seed, prompt, a, b.")


class CampaignHeadOut(serializers.Serializer):
    """What every campaign payload of the dashboard starts with."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    task = serializers.CharField()
    mode = serializers.CharField()
    overlap = serializers.IntegerField()


class CampaignOverviewOut(CampaignHeadOut):
    items_total = serializers.IntegerField()
    items_done = serializers.IntegerField()
    items_full = serializers.IntegerField()
    items_open = serializers.IntegerField()
    leases_active = serializers.IntegerField()
    judgments = serializers.IntegerField()
    tie_rate = serializers.FloatField(allow_null=True)
    last_judgment = serializers.DateTimeField(allow_null=True)
    fraction_done = serializers.FloatField()
    url = serializers.CharField(allow_null=True)


class CampaignDashboardOut(CampaignHeadOut):
    selection = serializers.JSONField()
    progress = serializers.JSONField(help_text="As GET /api/campaigns/{id}/progress/.")
    criteria = serializers.ListField(child=serializers.JSONField(), help_text="Progress per criterion.")
    annotators = serializers.ListField(child=serializers.JSONField(), help_text="Activity and speed per annotator.")
    lineage = LineageOut()
    gsb = serializers.JSONField(help_text="Good/same/bad counts for generation campaigns.")


class LeaderboardGroupOut(serializers.Serializer):
    component = serializers.IntegerField()
    rows = serializers.ListField(child=serializers.JSONField())


class LeaderboardOut(serializers.Serializer):
    task = serializers.CharField(allow_null=True)
    criterion = serializers.CharField(allow_null=True)
    rows = serializers.ListField(child=serializers.JSONField(),
                                 help_text="Systems ranked by Bradley–Terry rating, with url and production.")
    groups = LeaderboardGroupOut(many=True)
    components = serializers.IntegerField()
