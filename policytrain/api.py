"""REST API under /api/policy/: RL runs, checkpoints (with lineage), generation jobs, run artifacts,
production (the promotion gate, promotions and their history).

Scientists and curators only (annotators get 403); promoting a checkpoint is for scientists. Thin views: validate → service/selector → serialize.
"""
from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.utils._os import safe_join
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.serializers import OPTIONAL_SPLIT_CHOICES
from annotation.models import Split
from core.errors import ApplicationError
from core.params import int_query_param
from core.permissions import IsScientist, IsStaffRole
from jobs.selectors import job_metric_series
from jobs.serializers import JobOut, MetricPointOut, ResolvedConfigOut

from . import selectors, services
from .models import Algorithm, GenerationJob, PolicyCheckpoint, PolicyRun, Promotion

ARTIFACT_SUFFIXES = {".png", ".json", ".jsonl"}


# ----------------------------------------------------------------------------------------------
# Serializers
# ----------------------------------------------------------------------------------------------
class PolicyRunOut(serializers.ModelSerializer):
    job = JobOut()
    reward_model = serializers.SerializerMethodField()
    checkpoint = serializers.SerializerMethodField()
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = PolicyRun
        fields = ["id", "job", "reward_model", "base_policy", "algorithm", "processes", "config", "output_dir", "conditions_dir",
                  "sample_filter", "checkpoint", "init_checkpoint", "started_by", "created_at"]

    def get_reward_model(self, obj: PolicyRun) -> dict:
        rm = obj.reward_model
        return {"id": rm.pk, "name": getattr(rm, "name", str(rm))}

    def get_checkpoint(self, obj: PolicyRun) -> int | None:
        ckpt = getattr(obj, "checkpoint", None)
        return ckpt.pk if ckpt else None


class CheckpointOut(serializers.ModelSerializer):
    class Meta:
        model = PolicyCheckpoint
        fields = ["id", "name", "base_policy", "weights_dir", "run", "reward_model", "algorithm", "created_at"]


class PromotionOut(serializers.ModelSerializer):
    checkpoint = CheckpointOut()
    previous = CheckpointOut(allow_null=True)
    promoted_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Promotion
        fields = ["id", "number", "checkpoint", "previous", "forced", "reason", "evidence", "promoted_by", "created_at"]


class GenerationOut(serializers.ModelSerializer):
    job = JobOut()
    checkpoint = CheckpointOut()
    opponent = CheckpointOut(allow_null=True)
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = GenerationJob
        fields = ["id", "job", "checkpoint", "opponent", "sample_ids", "sample_filter", "seeds", "campaign_name",
                  "criteria", "overlap", "params", "campaign", "candidates_created", "started_by", "created_at"]


class PolicyRunDetailOut(PolicyRunOut):
    metrics = MetricPointOut(many=True)
    sample_grids = serializers.ListField(child=serializers.URLField(), help_text="URLs of the sample grids (media).")

    class Meta(PolicyRunOut.Meta):
        fields = [*PolicyRunOut.Meta.fields, "metrics", "sample_grids"]


class CheckpointDetailOut(CheckpointOut):
    lineage = serializers.JSONField(help_text="checkpoint → run → reward model → snapshot → campaigns; "
                                              "each level may be null.")

    class Meta(CheckpointOut.Meta):
        fields = [*CheckpointOut.Meta.fields, "lineage"]


class NamedRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class PromotionGateOut(serializers.Serializer):
    """``policytrain.selectors.promotion_gate``: may the checkpoint replace production, and why (not)."""

    checkpoint = NamedRefOut()
    production = NamedRefOut(allow_null=True)
    opponent = serializers.CharField(help_text="The system the side-by-side compares against.")
    rule = serializers.DictField(help_text="The promotion rule's settings.")
    tasks = serializers.ListField(child=serializers.DictField(),
                                  help_text="Per task: judgments, win rate, 95 % interval, verdict, criteria.")
    eligible = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())


class ProductionOut(serializers.Serializer):
    checkpoint = CheckpointOut(allow_null=True, help_text="null: production is the base policy.")
    promotions = PromotionOut(many=True)


class _SampleSelection(serializers.Serializer):
    sample_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    tasks = serializers.ListField(child=serializers.CharField(), required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)

    def sample_filter(self) -> dict:
        return {k: self.validated_data[k] for k in ("sample_ids", "tasks", "split") if self.validated_data.get(k)}


class PolicyRunIn(_SampleSelection):
    """An RL run to start (POST runs/) or to resolve without writing (POST runs/preview/): the one
    input check both share; ``policytrain.services`` applies the domain rules (presets, the reward
    model's coverage of the active tasks, platform-only settings)."""

    reward_model = serializers.IntegerField(error_messages={"required": "Pick a reward model.",
                                                            "invalid": "Pick a reward model.",
                                                            "null": "Pick a reward model."})
    base_policy = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    algorithm = serializers.ChoiceField(choices=Algorithm.choices, default=Algorithm.FIXED)
    overrides = serializers.DictField(required=False, default=dict)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    processes = serializers.IntegerField(required=False, default=1, min_value=1, max_value=64)
    init_checkpoint = serializers.IntegerField(required=False, allow_null=True, default=None,
                                               help_text="Start the LoRA weights from this checkpoint's (e.g. production).")
    # The run form's shortcuts for the most-changed settings; they win over the same keys in overrides.
    task_fill = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    task_extend = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    task_removal = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    hinge_lambda = serializers.FloatField(required=False, allow_null=True)
    ema_decay = serializers.FloatField(required=False, allow_null=True)
    max_steps = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    batch_size = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=4096)
    learning_rate = serializers.FloatField(required=False, allow_null=True)
    conditions_split = serializers.ChoiceField(choices=OPTIONAL_SPLIT_CHOICES, required=False, default="")

    def validate_reward_model(self, value: int):
        model = apps.get_model("rewardtrain", "RewardModel").objects.filter(pk=value).first()
        if model is None:
            raise serializers.ValidationError(f"No reward model with id {value}.")
        return model

    def validate_init_checkpoint(self, value: int | None) -> PolicyCheckpoint | None:
        if value is None:
            return None
        checkpoint = PolicyCheckpoint.objects.filter(pk=value).first()
        if checkpoint is None:
            raise serializers.ValidationError(f"No checkpoint with id {value}.")
        return checkpoint

    def validate_hinge_lambda(self, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise serializers.ValidationError("λ is a probability ceiling: strictly between 0 and 1.")
        return value

    def validate_ema_decay(self, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise serializers.ValidationError("τ must be strictly between 0 and 1.")
        return value

    def validate_learning_rate(self, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate(self, attrs):
        probs = [attrs.get(k) for k in ("task_fill", "task_extend", "task_removal")]
        if any(p is not None for p in probs) and not sum(p or 0 for p in probs) > 0:
            raise serializers.ValidationError({"task_fill": ["The task mixture needs at least one task above 0."]})
        return attrs

    def resolved_overrides(self) -> dict:
        """``overrides`` with the shortcut fields applied (the task mixture as ``task_probs``)."""
        v = self.validated_data
        out = dict(v["overrides"])
        probs = {t: v.get(f"task_{t}") for t in ("fill", "extend", "removal")}
        if any(p is not None for p in probs.values()):
            out["task_probs"] = {t: float(p or 0) for t, p in probs.items()}
        for key in ("hinge_lambda", "ema_decay", "max_steps", "batch_size", "learning_rate"):
            if v.get(key) is not None:
                out[key] = v[key]
        if v.get("conditions_split"):
            out["conditions_split"] = v["conditions_split"]
        return out

    def config_kwargs(self) -> dict:
        """What ``resolve_rl_config`` needs (and ``policy_run_start`` too)."""
        v = self.validated_data
        return {"reward_model": v["reward_model"], "base_policy": v["base_policy"] or None,
                "algorithm": int(v["algorithm"]), "overrides": self.resolved_overrides(),
                "init_checkpoint": v["init_checkpoint"]}


class GenerationIn(_SampleSelection):
    checkpoint = serializers.IntegerField()
    opponent = serializers.IntegerField(required=False, allow_null=True)
    seeds = serializers.ListField(child=serializers.IntegerField(), default=[0])
    campaign_name = serializers.CharField(max_length=200)
    criteria = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    overlap = serializers.IntegerField(min_value=1, default=3)
    params = serializers.DictField(required=False, default=dict)


class PromoteIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    force = serializers.BooleanField(required=False, default=False)


def _checkpoint(pk: int | None, field: str) -> PolicyCheckpoint | None:
    if pk is None:
        return None
    obj = PolicyCheckpoint.objects.filter(pk=pk).first()
    if obj is None:
        raise ApplicationError("Unknown checkpoint.", fields={field: [f"No checkpoint with id {pk}."]})
    return obj


def _run_detail(request, run: PolicyRun) -> dict:
    data = PolicyRunOut(run).data
    after = int_query_param(request, "metrics_after")
    data["metrics"] = job_metric_series(run.job, after_id=after)
    data["sample_grids"] = [request.build_absolute_uri(grid["url"]) for grid in selectors.run_sample_grids(run)]
    return data


# ----------------------------------------------------------------------------------------------
# Views
# ----------------------------------------------------------------------------------------------
class PolicyRunListCreateApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=PolicyRunOut(many=True))
    def get(self, request):
        qs = selectors.policy_run_list()
        if request.query_params.get("status"):
            qs = qs.filter(job__status=request.query_params["status"])
        return Response(PolicyRunOut(qs[:200], many=True).data)

    @extend_schema(request=PolicyRunIn, responses={201: PolicyRunOut})
    def post(self, request):
        data = PolicyRunIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = services.policy_run_start(**data.config_kwargs(), sample_filter=data.sample_filter(),
                                        user=request.user, name=v["name"], processes=v["processes"])
        return Response(PolicyRunOut(run).data, status=status.HTTP_201_CREATED)


class PolicyRunPreviewApi(APIView):
    """POST a run's input → the final RLConfig (validated, coverage checked); nothing is written."""

    permission_classes = [IsStaffRole]

    @extend_schema(request=PolicyRunIn, responses=ResolvedConfigOut)
    def post(self, request):
        data = PolicyRunIn(data=request.data)
        data.is_valid(raise_exception=True)
        _, config = services.resolve_rl_config(**data.config_kwargs())
        out = config.to_dict()
        out.update(conditions_dir="(exported when the run starts)", output_dir="(assigned when the run starts)")
        return Response({"config": out})


class PolicyRunDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=PolicyRunDetailOut)
    def get(self, request, pk: int):
        return Response(_run_detail(request, get_object_or_404(selectors.policy_run_list(), pk=pk)))


class PolicyRunActionApi(APIView):
    """POST /runs/{id}/cancel/ or /runs/{id}/resume/."""

    permission_classes = [IsStaffRole]

    @extend_schema(request=None, responses=PolicyRunOut, operation_id="policy_runs_action")
    def post(self, request, pk: int, action: str):
        run = get_object_or_404(selectors.policy_run_list(), pk=pk)
        if action == "cancel":
            run = services.policy_run_cancel(run=run)
        elif action == "resume":
            run = services.policy_run_resume(run=run)
        else:
            raise ApplicationError(f"Unknown action '{action}'.", fields={"action": ["Use cancel or resume."]})
        return Response(PolicyRunOut(run).data)


class PolicyRunArtifactApi(APIView):
    """A run's PNG grids and JSON files; refuses anything outside the run folder, symlinks that
    lead out of it included (anyone who can write into the run folder could plant one)."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, pk: int, path: str):
        run = get_object_or_404(PolicyRun, pk=pk)
        if not run.output_dir:
            raise Http404("Not found")
        try:
            full = Path(safe_join(run.output_dir, path)).resolve()  # safe_join refuses ../ and absolute paths
        except Exception as exc:  # SuspiciousFileOperation, ValueError
            raise Http404("Not found") from exc
        root = Path(run.output_dir).resolve()
        if not full.is_relative_to(root) or full.suffix.lower() not in ARTIFACT_SUFFIXES or not full.is_file():
            raise Http404("Not found")
        response = FileResponse(full.open("rb"))
        response["X-Content-Type-Options"] = "nosniff"
        return response


class CheckpointListApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=CheckpointOut(many=True))
    def get(self, request):
        return Response(CheckpointOut(selectors.checkpoint_list()[:500], many=True).data)


class CheckpointDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=CheckpointDetailOut)
    def get(self, request, pk: int):
        checkpoint = get_object_or_404(selectors.checkpoint_list(), pk=pk)
        return Response({**CheckpointOut(checkpoint).data, "lineage": selectors.checkpoint_lineage(checkpoint)})


class CheckpointPromotionGateApi(APIView):
    """GET /checkpoints/{id}/promotion/: may this checkpoint replace production, and why (not)."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses=PromotionGateOut)
    def get(self, request, pk: int):
        return Response(selectors.promotion_gate(get_object_or_404(selectors.checkpoint_list(), pk=pk)))


class CheckpointPromoteApi(APIView):
    """POST /checkpoints/{id}/promote/ {reason, force}: 201 promoted; 200 it already is production
    (a retry changes nothing); 409 with the gate's reasons when it refuses."""

    permission_classes = [IsScientist]

    @extend_schema(request=PromoteIn, responses={200: PromotionOut, 201: PromotionOut})
    def post(self, request, pk: int):
        checkpoint = get_object_or_404(selectors.checkpoint_list(), pk=pk)
        data = PromoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        promotion, created = services.checkpoint_promote(checkpoint=checkpoint, user=request.user,
                                                         reason=data.validated_data["reason"],
                                                         force=data.validated_data["force"])
        return Response(PromotionOut(promotion).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ProductionApi(APIView):
    """GET /production/: the production checkpoint (null = the base policy) and every promotion, newest first."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses=ProductionOut)
    def get(self, request):
        history = list(selectors.promotion_history()[:200])
        current = history[0].checkpoint if history else None
        return Response({"checkpoint": CheckpointOut(current).data if current else None,
                         "promotions": PromotionOut(history, many=True).data})


class GenerationListCreateApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=GenerationOut(many=True))
    def get(self, request):
        return Response(GenerationOut(selectors.generation_job_list()[:200], many=True).data)

    @extend_schema(request=GenerationIn, responses={201: GenerationOut})
    def post(self, request):
        data = GenerationIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        sample_filter = data.sample_filter()
        if not sample_filter:
            raise ApplicationError("Choose samples.", fields={"sample_ids": ["Give sample_ids, tasks or split."]})
        gen = services.generation_job_start(
            checkpoint=_checkpoint(v["checkpoint"], "checkpoint"), opponent=_checkpoint(v.get("opponent"), "opponent"),
            sample_filter=sample_filter, seeds=v["seeds"], campaign_name=v["campaign_name"], criteria=v["criteria"],
            overlap=v["overlap"], params=v["params"], user=request.user,
        )
        return Response(GenerationOut(gen).data, status=status.HTTP_201_CREATED)


class GenerationDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=GenerationOut)
    def get(self, request, pk: int):
        return Response(GenerationOut(get_object_or_404(selectors.generation_job_list(), pk=pk)).data)


