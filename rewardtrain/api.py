"""REST API under /api/reward/: snapshots, training runs, the reward-model registry, scoring.

Thin views: validate input → call a service or selector → serialize. Scientists and curators
only (annotators and anonymous users get 403). Nothing here imports torch: training and scoring
run as jobs on a worker (``rewardtrain/jobs.py`` declares their kinds).
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import DatasetSnapshot
from core.errors import ApplicationError
from core.params import int_query_param
from core.permissions import IsStaffRole
from jobs.selectors import job_metric_series
from jobs.serializers import JobPayloadOut, MetricPointOut, ResolvedConfigOut, job_payload

from . import selectors as sel
from .models import BaselineRun, RewardEvaluation, RewardModel, RewardRun
from .presets import load_preset, preset_names
from .services import (
    EVALUATION_SPLITS,
    MAX_SCORE_PAIRS,
    baseline_cancel,
    baseline_start,
    reward_evaluation_start,
    reward_run_cancel,
    reward_run_config,
    reward_run_resume,
    reward_run_start,
    reward_score_start,
)

# --- serializers ------------------------------------------------------------------------------------


class RunIn(serializers.Serializer):
    """A reward run to start (POST runs/) or to resolve without writing (POST runs/preview/): the
    one input check both share, then ``reward_run_start`` applies the domain rules (a built
    snapshot, overrides the platform does not set, a base model it may load)."""

    snapshot = serializers.IntegerField(error_messages={"required": "Pick a snapshot.", "invalid": "Pick a snapshot.",
                                                        "null": "Pick a snapshot."})
    base_model = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    preset = serializers.CharField(required=False, default="tiny", max_length=40)
    overrides = serializers.DictField(required=False, default=dict)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    processes = serializers.IntegerField(required=False, default=1, min_value=1, max_value=64)
    # The run form's shortcuts for the most-changed settings; they win over the same keys in overrides.
    max_steps = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    batch_size = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=4096)
    lr = serializers.FloatField(required=False, allow_null=True, max_value=1.0)

    def validate_snapshot(self, value: int) -> DatasetSnapshot:
        snapshot = DatasetSnapshot.objects.filter(pk=value).first()
        if snapshot is None:
            raise serializers.ValidationError(f"No snapshot with id {value}.")
        return snapshot

    def validate_preset(self, value: str) -> str:
        # Checked here too (the service refuses it as well) so that one answer lists every bad field.
        if value not in preset_names():
            raise serializers.ValidationError(f"Use one of: {', '.join(preset_names())}.")
        return value

    def validate_lr(self, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def config_kwargs(self) -> dict:
        """The validated input as ``reward_run_config``'s keyword arguments."""
        v = self.validated_data
        overrides = dict(v["overrides"])
        overrides.update({k: v[k] for k in ("max_steps", "batch_size", "lr") if v.get(k) is not None})
        return {"snapshot": v["snapshot"], "base_model": v["base_model"] or None, "preset": v["preset"],
                "overrides": overrides}

    def start_kwargs(self) -> dict:
        """The validated input as ``reward_run_start``'s keyword arguments."""
        return {**self.config_kwargs(), "name": self.validated_data["name"],
                "processes": self.validated_data["processes"]}


class RunOut(serializers.ModelSerializer):
    job = serializers.SerializerMethodField()
    snapshot = serializers.SerializerMethodField()
    reward_model = serializers.SerializerMethodField()
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = RewardRun
        fields = ["id", "job", "snapshot", "base_model", "preset", "processes", "config", "output_dir", "started_by",
                  "reward_model", "created_at"]

    @extend_schema_field(JobPayloadOut)
    def get_job(self, obj) -> dict:
        return job_payload(obj.job)

    def get_snapshot(self, obj) -> dict:
        return {"id": obj.snapshot_id, "name": obj.snapshot.name, "content_hash": obj.snapshot.content_hash}

    def get_reward_model(self, obj) -> int | None:
        model = getattr(obj, "reward_model", None)
        return model.pk if model else None


class PresetOut(serializers.Serializer):
    name = serializers.CharField()
    config = serializers.DictField(help_text="The preset's RewardTrainConfig fields.")


class RunDetailOut(RunOut):
    metrics = MetricPointOut(many=True)

    class Meta(RunOut.Meta):
        fields = [*RunOut.Meta.fields, "metrics"]


class ScoreJobOut(serializers.Serializer):
    job = JobPayloadOut()


class ScoreResultOut(ScoreJobOut):
    scores = serializers.ListField(child=serializers.JSONField(), help_text="P(Yes) per pair, once the job is done.")


class BaselineIn(serializers.Serializer):
    snapshot = serializers.IntegerField(help_text="A built snapshot with train pairs and test or val pairs.")
    overrides = serializers.DictField(required=False, default=dict,
                                      help_text="BaselineConfig settings: image_size, channels, embed_dim, max_steps, "
                                                "batch_size, lr, weight_decay, eval_every, patience, seed.")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class BaselineOut(serializers.ModelSerializer):
    job = serializers.SerializerMethodField()
    snapshot = serializers.SerializerMethodField()
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = BaselineRun
        fields = ["id", "job", "snapshot", "config", "output_dir", "report", "started_by", "created_at"]

    @extend_schema_field(JobPayloadOut(allow_null=True))
    def get_job(self, obj) -> dict | None:
        return job_payload(obj.job)

    def get_snapshot(self, obj) -> dict:
        return sel.snapshot_ref(obj.snapshot)


class BaselineDetailOut(BaselineOut):
    metrics = MetricPointOut(many=True)

    class Meta(BaselineOut.Meta):
        fields = [*BaselineOut.Meta.fields, "metrics"]


class ModelOut(serializers.ModelSerializer):
    lineage = serializers.SerializerMethodField()
    baseline = serializers.SerializerMethodField(
        help_text="The newest finished baseline learner on the model's snapshot (id, split, overall accuracy), or null.")
    accuracy_table = serializers.SerializerMethodField(
        help_text="Per task x criterion: the model's held-out accuracy and the baseline's, each {accuracy, n, "
                  "interval} (95 % Wilson) or null.")

    class Meta:
        model = RewardModel
        fields = ["id", "name", "path", "base_model", "template_version", "eval_split", "eval_report", "lineage",
                  "baseline", "accuracy_table", "created_at"]

    def get_lineage(self, obj) -> dict:
        return sel.model_lineage(obj)

    def _baseline(self, obj) -> BaselineRun | None:
        # One lookup per snapshot, not per model, when a list shares the serializer context.
        cache = self.context.setdefault("baselines", {})
        if obj.snapshot_id not in cache:
            cache[obj.snapshot_id] = sel.latest_baseline(obj.snapshot_id)
        return cache[obj.snapshot_id]

    def get_baseline(self, obj) -> dict | None:
        run = self._baseline(obj)
        if run is None:
            return None
        return {"id": run.pk, "job": run.job_id, "split": run.report.get("split"),
                "pairs": run.report.get("pairs"), "overall_accuracy": run.report.get("overall_accuracy"),
                "overall_interval": run.report.get("overall_interval")}

    def get_accuracy_table(self, obj) -> list[dict]:
        run = self._baseline(obj)
        return sel.accuracy_comparison(obj.eval_report or {}, run.report if run else None)


class ScorePairIn(serializers.Serializer):
    first = serializers.IntegerField(help_text="Candidate id of the image being judged.")
    second = serializers.IntegerField(help_text="Candidate id of the comparison image.")
    criterion = serializers.SlugField()
    task = serializers.SlugField(required=False)
    prompt = serializers.CharField(required=False, allow_blank=True)


class ScoreIn(serializers.Serializer):
    pairs = ScorePairIn(many=True, allow_empty=False, max_length=MAX_SCORE_PAIRS)


class EvaluationIn(serializers.Serializer):
    snapshot = serializers.IntegerField(help_text="A built snapshot, e.g. of a generation campaign's judgments.")
    split = serializers.ChoiceField(choices=EVALUATION_SPLITS, default="all")


class EvaluationOut(serializers.ModelSerializer):
    job = serializers.SerializerMethodField()
    snapshot_name = serializers.CharField(source="snapshot.name", read_only=True)

    class Meta:
        model = RewardEvaluation
        fields = ["id", "reward_model", "snapshot", "snapshot_name", "split", "job", "report", "created_at"]

    @extend_schema_field(JobPayloadOut(allow_null=True))
    def get_job(self, obj) -> dict | None:
        return job_payload(obj.job)


# --- views ------------------------------------------------------------------------------------------


class _Staff(APIView):
    permission_classes = [IsStaffRole]


def _snapshot(pk: int) -> DatasetSnapshot:
    """The snapshot a request names; a missing one is a field error (400), like any other bad input."""
    snapshot = DatasetSnapshot.objects.filter(pk=pk).first()
    if snapshot is None:
        raise ApplicationError("Invalid input.", fields={"snapshot": ["No such snapshot."]})
    return snapshot


class PresetListApi(_Staff):
    @extend_schema(responses=PresetOut(many=True))
    def get(self, request):
        return Response([{"name": n, "config": load_preset(n)} for n in preset_names()])


class RunListCreateApi(_Staff):
    @extend_schema(responses=RunOut(many=True))
    def get(self, request):
        return Response(RunOut(sel.run_list(status=request.query_params.get("status")), many=True).data)

    @extend_schema(request=RunIn, responses={201: RunOut})
    def post(self, request):
        data = RunIn(data=request.data)
        data.is_valid(raise_exception=True)
        run = reward_run_start(**data.start_kwargs(), user=request.user)
        return Response(RunOut(run).data, status=status.HTTP_201_CREATED)


class RunPreviewApi(_Staff):
    """POST a run's input → the final resolved config the run would get; nothing is kept or queued."""

    @extend_schema(request=RunIn, responses=ResolvedConfigOut)
    def post(self, request):
        data = RunIn(data=request.data)
        data.is_valid(raise_exception=True)
        _, config = reward_run_config(**data.config_kwargs())  # the start's own resolution, nothing written
        return Response({"config": config.to_dict()})


class RunDetailApi(_Staff):
    """The run, its job status/progress and metric points after ?after=<metric id>."""

    @extend_schema(responses=RunDetailOut)
    def get(self, request, pk: int):
        run = get_object_or_404(sel.run_list(), pk=pk)
        after = int_query_param(request, "after")
        return Response({**RunOut(run).data, "metrics": sel.run_metrics(run, after_id=after)})


class RunActionApi(_Staff):
    """POST /runs/{id}/cancel/ or /runs/{id}/resume/."""

    @extend_schema(request=None, responses=RunOut, operation_id="reward_runs_action")
    def post(self, request, pk: int, action: str):
        run = get_object_or_404(RewardRun, pk=pk)
        if action == "cancel":
            run = reward_run_cancel(run=run)
        elif action == "resume":
            run = reward_run_resume(run=run)
        else:
            return Response({"message": f"Unknown action '{action}'.", "code": "invalid",
                             "fields": {"action": ["Use cancel or resume."]}}, status=status.HTTP_400_BAD_REQUEST)
        return Response(RunOut(sel.run_list().get(pk=run.pk)).data)


class ModelListApi(_Staff):
    @extend_schema(responses=ModelOut(many=True))
    def get(self, request):
        return Response(ModelOut(sel.model_list(), many=True).data)


class ModelDetailApi(_Staff):
    @extend_schema(responses=ModelOut)
    def get(self, request, pk: int):
        return Response(ModelOut(get_object_or_404(sel.model_list(), pk=pk)).data)


class ModelScoreApi(_Staff):
    """Queue a scoring job (202); poll GET /api/reward/scores/{job id}/ for the P(Yes) values."""

    @extend_schema(request=ScoreIn, responses={202: ScoreJobOut})
    def post(self, request, pk: int):
        model = get_object_or_404(RewardModel, pk=pk)
        data = ScoreIn(data=request.data)
        data.is_valid(raise_exception=True)
        job = reward_score_start(model=model, pairs=[dict(p) for p in data.validated_data["pairs"]],
                                 user=request.user)
        return Response({"job": job_payload(job)}, status=status.HTTP_202_ACCEPTED)


class ModelEvaluationsApi(_Staff):
    """GET: the model's evaluations on snapshots. POST {snapshot, split}: queue one (202)."""

    @extend_schema(responses=EvaluationOut(many=True))
    def get(self, request, pk: int):
        return Response(EvaluationOut(sel.evaluation_list(get_object_or_404(RewardModel, pk=pk)), many=True).data)

    @extend_schema(request=EvaluationIn, responses={202: EvaluationOut})
    def post(self, request, pk: int):
        model = get_object_or_404(RewardModel, pk=pk)
        data = EvaluationIn(data=request.data)
        data.is_valid(raise_exception=True)
        snapshot = _snapshot(data.validated_data["snapshot"])
        evaluation = reward_evaluation_start(model=model, snapshot=snapshot, split=data.validated_data["split"],
                                             user=request.user)
        return Response(EvaluationOut(evaluation).data, status=status.HTTP_202_ACCEPTED)


class ScoreResultApi(_Staff):
    @extend_schema(responses=ScoreResultOut)
    def get(self, request, job_id: int):
        job = sel.score_job(job_id)
        if job is None:
            return Response({"message": "No such scoring job.", "code": "not_found", "fields": {}},
                            status=status.HTTP_404_NOT_FOUND)
        return Response({"job": job_payload(job), "scores": job.result.get("scores", [])})


class BaselineListCreateApi(_Staff):
    """GET [?snapshot=<id>]: baseline runs, newest first. POST {snapshot, overrides?, name?}: queue one (201)."""

    @extend_schema(responses=BaselineOut(many=True))
    def get(self, request):
        snapshot = int_query_param(request, "snapshot") or None
        return Response(BaselineOut(sel.baseline_list(snapshot=snapshot), many=True).data)

    @extend_schema(request=BaselineIn, responses={201: BaselineOut})
    def post(self, request):
        data = BaselineIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        snapshot = _snapshot(v["snapshot"])
        run = baseline_start(snapshot=snapshot, overrides=v["overrides"], user=request.user, name=v["name"])
        return Response(BaselineOut(run).data, status=status.HTTP_201_CREATED)


class BaselineDetailApi(_Staff):
    """The baseline run, its job and its held-out report, with metric points after ?after=<metric id>."""

    @extend_schema(responses=BaselineDetailOut)
    def get(self, request, pk: int):
        run = get_object_or_404(sel.baseline_list(), pk=pk)
        after = int_query_param(request, "after")
        return Response({**BaselineOut(run).data, "metrics": job_metric_series(run.job, after_id=after)})


class BaselineCancelApi(_Staff):
    @extend_schema(request=None, responses=BaselineOut)
    def post(self, request, pk: int):
        run = baseline_cancel(run=get_object_or_404(BaselineRun, pk=pk))
        return Response(BaselineOut(sel.baseline_list().get(pk=run.pk)).data)
