"""Campaigns from candidate sources (curators): which systems made candidates for a task, what a
campaign over them would hold, and creating it.

    GET  /api/candidate-sources/?task=fill&split=&source=a&source=b&pairing=opponents&max_items_per_sample=
    POST /api/campaigns/from-candidates/   {"name", "task", "sources", "pairing", …}  201 + the campaign

Thin views: validate → ``annotation.selectors`` / ``annotation.services.campaigns`` → serialize.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.params import int_query_param
from core.permissions import IsCurator, IsStaffRole

from ..models import TaskType
from ..selectors import candidate_selection, candidate_sources, sample_split_counts
from ..services.campaigns import campaign_create_from_candidates
from .serializers import OPTIONAL_SPLIT_CHOICES, CampaignOut


class CampaignFromCandidatesIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    task = serializers.SlugRelatedField(slug_field="slug", queryset=TaskType.objects.all())
    # For "opponents", the first source is side A and the second side B.
    sources = serializers.ListField(child=serializers.CharField(max_length=200), min_length=1, max_length=20)
    pairing = serializers.ChoiceField(choices=["opponents", "all_pairs"], default="opponents")
    split = serializers.ChoiceField(choices=OPTIONAL_SPLIT_CHOICES, required=False, default="")
    criteria = serializers.ListField(child=serializers.SlugField(), required=False, default=list)
    overlap = serializers.IntegerField(default=3, min_value=1, max_value=50)
    max_items_per_sample = serializers.IntegerField(default=0, min_value=0, max_value=1000)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    # Usernames of annotators; empty = open to every annotator (checked by campaign_set_annotators).
    annotators = serializers.ListField(child=serializers.CharField(max_length=150), required=False, default=list,
                                       max_length=500)
    start = serializers.BooleanField(default=True)  # false: leave it a draft to start later

    def validate(self, attrs):
        if attrs["pairing"] == "opponents" and len(attrs["sources"]) != 2:
            raise serializers.ValidationError({"sources": ["A versus campaign needs exactly two sources (A and B)."]})
        if len(set(attrs["sources"])) != len(attrs["sources"]):
            raise serializers.ValidationError({"sources": ["Each source once: A and B must differ."]})
        return attrs


class CandidateSourceOut(serializers.Serializer):
    source_name = serializers.CharField()
    provenance = serializers.CharField()
    candidates = serializers.IntegerField()
    samples = serializers.IntegerField()


class CandidatePreviewOut(serializers.Serializer):
    samples = serializers.IntegerField()
    items = serializers.IntegerField()


class CandidateSourcesOut(serializers.Serializer):
    sources = CandidateSourceOut(many=True)
    splits = serializers.DictField(child=serializers.IntegerField(), help_text="Samples per split.")
    preview = CandidatePreviewOut(required=False, help_text="With source=…: what the campaign would hold.")


class CandidateSourcesApi(APIView):
    """GET ?task=fill&split=&source=a&source=b&pairing=opponents → sources with counts + the item preview."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses=CandidateSourcesOut)
    def get(self, request):
        q = request.query_params
        task = q.get("task") or ""
        if not TaskType.objects.filter(slug=task).exists():
            raise ApplicationError("Unknown task.", fields={"task": ["Pick a task type."]})
        split = q.get("split") or None
        out = {"sources": candidate_sources(task=task, split=split), "splits": sample_split_counts(task)}
        if q.getlist("source"):
            preview = candidate_selection(task=task, sources=q.getlist("source"), split=split,
                                          pairing=q.get("pairing") or "opponents",
                                          max_items_per_sample=int_query_param(request, "max_items_per_sample"))
            out["preview"] = {"samples": preview["samples"], "items": preview["items"]}
        return Response(out)


class CampaignFromCandidatesApi(APIView):
    """POST: create a campaign from candidate sources, restricted to ``annotators`` if given, and
    start it unless ``start`` is false (curators)."""

    permission_classes = [IsCurator]

    @extend_schema(request=CampaignFromCandidatesIn, responses={201: CampaignOut})
    def post(self, request):
        data = CampaignFromCandidatesIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        campaign = campaign_create_from_candidates(
            name=v["name"], task_type=v["task"], sources=v["sources"], pairing=v["pairing"], split=v["split"] or None,
            criteria=v["criteria"], overlap=v["overlap"], max_items_per_sample=v["max_items_per_sample"],
            description=v["description"], annotators=v["annotators"], start=v["start"], created_by=request.user)
        return Response(CampaignOut(campaign).data, status=status.HTTP_201_CREATED)
