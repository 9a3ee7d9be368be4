"""REST API for dataset snapshots, under /api/snapshots/: list, build, live preview, detail.

Annotation owns snapshots (model, services, selectors, this API and the ``build_snapshot``
command's service): they are frozen sets of people's judgments, which reward training, the
evaluations and the research loop read. Curators and scientists only. Thin views: validate →
``annotation.services.snapshots`` / ``annotation.selectors`` → serialize.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsStaffRole
from jobs.models import JobStatus
from jobs.serializers import JobPayloadOut, job_payload

from ..models import DatasetSnapshot
from ..selectors import snapshot_list
from ..services.snapshots import AGGREGATIONS, DEFAULT_AGGREGATION, snapshot_create, snapshot_preview


class SnapshotOut(serializers.ModelSerializer):
    # The build job's status and error (ADR 0002): a snapshot keeps no status of its own.
    status = serializers.ChoiceField(choices=JobStatus.choices, read_only=True)
    error = serializers.CharField(read_only=True)
    job = serializers.SerializerMethodField()
    campaigns = serializers.SerializerMethodField()

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "name", "status", "filter", "aggregation", "content_hash", "path", "counts", "human_ceiling",
                  "error", "reused_from", "campaigns", "job", "created_at", "finished_at"]

    @extend_schema_field(JobPayloadOut(allow_null=True))
    def get_job(self, obj) -> dict | None:
        return job_payload(obj.job)

    def get_campaigns(self, obj) -> list[dict]:
        return [{"id": c.pk, "name": c.name} for c in obj.campaigns.all()]


class SnapshotFilterIn(serializers.Serializer):
    campaign_ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    criteria = serializers.ListField(child=serializers.SlugField(), required=False, default=list)
    task_types = serializers.ListField(child=serializers.SlugField(), required=False, default=list)
    date_from = serializers.DateField(required=False, allow_null=True, default=None)
    date_to = serializers.DateField(required=False, allow_null=True, default=None)
    min_peer_agreement_ratio = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=2,
        help_text="Leave out annotators who agree with peers on the same items less often than this many times "
                  "the rate at which the others agree with each other (1 = as often; careless ≈ 0.5–0.85).")
    min_gold_accuracy = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=1,
        help_text="Leave out annotators whose gold accuracy is below this.")
    quality_min_evidence = serializers.IntegerField(
        required=False, allow_null=True, min_value=1,
        help_text="Peer comparisons / gold items an annotator needs before the two rates apply (default 10).")
    exclude_annotators = serializers.ListField(child=serializers.CharField(max_length=150), required=False,
                                               help_text="Usernames whose judgments are left out.")


class SnapshotIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    filter = SnapshotFilterIn(required=False, default=dict)
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS, default=DEFAULT_AGGREGATION)


class SnapshotPreviewOut(serializers.Serializer):
    """Live counts of a snapshot filter (``snapshot_preview``); the aggregation's own counters
    (``tie_votes``, ``adjudicated``, …) sit beside these keys."""

    filter = serializers.DictField(help_text="The normalised filter.")
    pairs = serializers.IntegerField()
    per_split = serializers.DictField(child=serializers.IntegerField())
    per_task = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()),
                                     help_text="Pairs per task and criterion.")
    judgments = serializers.IntegerField()
    excluded_annotators = serializers.ListField(child=serializers.DictField(),
                                                help_text="Annotators the quality filter leaves out, and why.")


class _Staff(APIView):
    permission_classes = [IsStaffRole]


class SnapshotListCreateApi(_Staff):
    @extend_schema(responses=SnapshotOut(many=True))
    def get(self, request):
        return Response(SnapshotOut(snapshot_list(), many=True).data)

    @extend_schema(request=SnapshotIn, responses={201: SnapshotOut})
    def post(self, request):
        data = SnapshotIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        flt = {k: (val.isoformat() if hasattr(val, "isoformat") else val) for k, val in v["filter"].items()}
        snapshot = snapshot_create(name=v["name"], filter=flt, aggregation=v["aggregation"], user=request.user)
        return Response(SnapshotOut(snapshot).data, status=status.HTTP_201_CREATED)


class SnapshotPreviewApi(_Staff):
    """GET ?campaign=1&campaign=2&criterion=structure&task=fill&date_from=…&date_to=…&aggregation=…
    [&min_peer_agreement_ratio=…&min_gold_accuracy=…&quality_min_evidence=…&exclude_annotator=…] → live counts,
    with the annotators the filter would leave out."""

    @extend_schema(responses=SnapshotPreviewOut)
    def get(self, request):
        q = request.query_params
        try:
            campaign_ids = [int(x) for x in q.getlist("campaign")]
        except ValueError:
            campaign_ids = q.getlist("campaign")  # the service reports the field error
        flt = {"campaign_ids": campaign_ids, "criteria": q.getlist("criterion"), "task_types": q.getlist("task"),
               "date_from": q.get("date_from"), "date_to": q.get("date_to"),
               "min_peer_agreement_ratio": q.get("min_peer_agreement_ratio"),
               "min_gold_accuracy": q.get("min_gold_accuracy"),
               "quality_min_evidence": q.get("quality_min_evidence"),
               "exclude_annotators": q.getlist("exclude_annotator")}
        return Response(snapshot_preview(filter=flt, aggregation=q.get("aggregation", DEFAULT_AGGREGATION)))


class SnapshotDetailApi(_Staff):
    @extend_schema(responses=SnapshotOut)
    def get(self, request, pk: int):
        return Response(SnapshotOut(get_object_or_404(snapshot_list(), pk=pk)).data)
