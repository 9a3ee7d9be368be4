"""Thin API views: validate input → call a service or selector → serialize output."""
from __future__ import annotations

from django.db.models import Prefetch, prefetch_related_objects
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.params import int_list_query_param
from core.permissions import IsAnnotator, IsAnyRole, IsCurator, IsStaffRole
from core.roles import roles_of

from ..models import (
    Campaign,
    CampaignStatus,
    Candidate,
    Criterion,
    ImportBatch,
    Judgment,
    Lease,
    LeaseState,
    Sample,
    TaskType,
)
from ..selectors import (
    annotator_stats,
    campaign_agreement,
    campaign_list_for,
    campaign_progress,
    criteria_with_guidelines,
    judgments_for,
)
from ..services.campaigns import campaign_create, campaign_set_annotators, campaign_set_status, campaign_start
from ..services.imports import import_upload
from ..services.judgments import judgment_edit, judgment_submit
from ..services.queue import SLOTS, lease_next_in, lease_release, lease_skip
from ..services.taxonomy import (
    criterion_create,
    criterion_update,
    guideline_publish,
    task_type_create,
    task_type_update,
)
from . import serializers as s
from . import serializers_out as o
from .items import CampaignAnnotatorsIn
from .pagination import PagePagination


class MeApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses=o.MeOut)
    def get(self, request):
        return Response({"id": request.user.id, "username": request.user.username,
                         "roles": sorted(roles_of(request.user))})


class _VocabularyApi(APIView):
    """Every role reads the task types and criteria; only curators change them."""

    def get_permissions(self):
        return [IsAnyRole()] if self.request.method == "GET" else [IsCurator()]


def _task_type_out(pk: int) -> dict:
    return s.TaskTypeOut(TaskType.objects.prefetch_related("criteria").get(pk=pk)).data


def _criterion_out(pk: int) -> dict:
    (criterion,) = criteria_with_guidelines(Criterion.objects.filter(pk=pk).prefetch_related("task_types"))
    return s.CriterionDetailOut(criterion).data


class TaskTypeListApi(_VocabularyApi):
    @extend_schema(responses=s.TaskTypeOut(many=True))
    def get(self, request):
        return Response(s.TaskTypeOut(TaskType.objects.prefetch_related("criteria"), many=True).data)

    @extend_schema(request=s.TaskTypeIn, responses={201: s.TaskTypeOut})
    def post(self, request):
        data = s.TaskTypeIn(data=request.data)
        data.is_valid(raise_exception=True)
        task = task_type_create(**data.validated_data)
        return Response(_task_type_out(task.pk), status=status.HTTP_201_CREATED)


class TaskTypeDetailApi(_VocabularyApi):
    @extend_schema(responses=s.TaskTypeOut)
    def get(self, request, slug: str):
        return Response(_task_type_out(get_object_or_404(TaskType, slug=slug).pk))

    @extend_schema(request=s.TaskTypeIn(partial=True), responses=s.TaskTypeOut)
    def patch(self, request, slug: str):
        task = get_object_or_404(TaskType, slug=slug)
        data = s.TaskTypeIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        task = task_type_update(task_type=task, **data.validated_data)
        return Response(_task_type_out(task.pk))


class CriterionListApi(_VocabularyApi):
    @extend_schema(responses=s.CriterionDetailOut(many=True))
    def get(self, request):
        criteria = criteria_with_guidelines(Criterion.objects.prefetch_related("task_types"))
        return Response(s.CriterionDetailOut(criteria, many=True).data)

    @extend_schema(request=s.CriterionIn, responses={201: s.CriterionDetailOut})
    def post(self, request):
        data = s.CriterionIn(data=request.data)
        data.is_valid(raise_exception=True)
        criterion = criterion_create(**data.validated_data)
        return Response(_criterion_out(criterion.pk), status=status.HTTP_201_CREATED)


class CriterionDetailApi(_VocabularyApi):
    @extend_schema(responses=s.CriterionDetailOut)
    def get(self, request, slug: str):
        return Response(_criterion_out(get_object_or_404(Criterion, slug=slug).pk))

    @extend_schema(request=s.CriterionIn(partial=True), responses=s.CriterionDetailOut)
    def patch(self, request, slug: str):
        criterion = get_object_or_404(Criterion, slug=slug)
        data = s.CriterionIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        criterion = criterion_update(criterion=criterion, **data.validated_data)
        return Response(_criterion_out(criterion.pk))


class GuidelinePublishApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=s.GuidelineIn, responses={201: s.CriterionOut})
    def post(self, request, slug: str):
        criterion = get_object_or_404(Criterion, slug=slug)
        data = s.GuidelineIn(data=request.data)
        data.is_valid(raise_exception=True)
        guideline_publish(criterion=criterion, body_markdown=data.validated_data["body_markdown"], user=request.user)
        (criterion,) = criteria_with_guidelines(Criterion.objects.filter(pk=criterion.pk))
        return Response(s.CriterionOut(criterion).data, status=status.HTTP_201_CREATED)


class CampaignListCreateApi(APIView):
    def get_permissions(self):
        return [IsCurator()] if self.request.method == "POST" else [IsAnyRole()]

    @extend_schema(responses=s.CampaignOut(many=True))
    def get(self, request):
        return Response(s.campaign_out(request.user, campaign_list_for(request.user), many=True))

    @extend_schema(request=s.CampaignIn, responses={201: s.CampaignOut})
    def post(self, request):
        data = s.CampaignIn(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = campaign_create(**data.validated_data, created_by=request.user)
        return Response(s.CampaignOut(campaign).data, status=status.HTTP_201_CREATED)


def _visible_campaign(request, pk: int) -> Campaign:
    return get_object_or_404(campaign_list_for(request.user), pk=pk)


class CampaignDetailApi(APIView):
    """GET the campaign; PATCH {"annotators": [usernames]} restricts it to those annotators
    (``[]`` opens it to all) and answers the campaign with its annotators."""

    def get_permissions(self):
        return [IsCurator()] if self.request.method == "PATCH" else [IsAnyRole()]

    @extend_schema(responses=s.CampaignOut)
    def get(self, request, pk: int):
        return Response(s.campaign_out(request.user, _visible_campaign(request, pk)))

    @extend_schema(request=CampaignAnnotatorsIn, responses=o.CampaignWithAnnotatorsOut)
    def patch(self, request, pk: int):
        data = CampaignAnnotatorsIn(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = campaign_set_annotators(campaign=get_object_or_404(Campaign, pk=pk),
                                           usernames=data.validated_data["annotators"])
        return Response({**s.CampaignOut(campaign).data,
                         "annotators": sorted(campaign.annotators.values_list("username", flat=True))})


class CampaignActionApi(APIView):
    """POST /campaigns/{id}/{start|pause|resume|complete}/"""

    permission_classes = [IsCurator]
    actions = {"pause": CampaignStatus.PAUSED, "resume": CampaignStatus.ACTIVE, "complete": CampaignStatus.COMPLETED}

    @extend_schema(request=None, responses=s.CampaignOut, operation_id="campaigns_action")
    def post(self, request, pk: int, action: str):
        campaign = get_object_or_404(Campaign, pk=pk)
        if action == "start":
            campaign = campaign_start(campaign=campaign)
        elif action in self.actions:
            campaign = campaign_set_status(campaign=campaign, status=self.actions[action])
        else:
            raise ApplicationError(f"Unknown action '{action}'.", fields={"action": ["Use start, pause, resume or complete."]})
        return Response(s.CampaignOut(campaign).data)


class CampaignProgressApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses=o.CampaignProgressOut)
    def get(self, request, pk: int):
        return Response(campaign_progress(_visible_campaign(request, pk), request.user))


class CampaignQualityApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=o.CampaignQualityOut)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        return Response({"agreement": campaign_agreement(campaign), "annotators": annotator_stats(campaign)})


# What the workspace (Accept: application/json) and scripts (*/* or no header) ask for.
_JSON_ACCEPTS = frozenset({"*/*", "application/json"})


class _AnnotatorCallApi(APIView):
    """``next`` and submit, most of the API's requests. For a client that asks for JSON, DRF's
    content negotiation parses the Accept header only to pick the first renderer (JSON), about a
    tenth of a small request's Python; that answer is given here directly. Any other Accept header,
    a ``?format=`` or a format suffix is negotiated as before."""

    permission_classes = [IsAnnotator]

    def perform_content_negotiation(self, request, force=False):
        if (request.META.get("HTTP_ACCEPT", "*/*") in _JSON_ACCEPTS and not self.format_kwarg
                and not request.META.get("QUERY_STRING")):
            renderer = self.get_renderers()[0]
            if renderer.media_type == "application/json":
                return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)


class NextItemApi(_AnnotatorCallApi):
    """Lease the next item (or return the one already held). 204 when nothing is left.

    The hot path: a fixed handful of statements whatever the campaign's size (see
    ``services.queue``); the campaign is read and access checked inside ``lease_next_in``.
    """

    @extend_schema(request=s.NextIn, responses={200: o.AssignmentOut, 204: None})
    def post(self, request, pk: int):
        exclude = s.next_input(request.data)["exclude"]
        lease = lease_next_in(campaign_id=pk, annotator=request.user, exclude=[str(u) for u in exclude])
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.assignment_payload(lease))


def _own_lease(request, uid) -> Lease:
    return get_object_or_404(Lease.objects.select_related("item__campaign"), uid=uid, annotator=request.user)


class SubmitApi(_AnnotatorCallApi):
    """Submit the answers for a leased item: 201 when stored, 200 for a replay of the same key."""

    @extend_schema(request=s.SubmitIn, responses={200: s.JudgmentOut(many=True), 201: s.JudgmentOut(many=True)})
    def post(self, request, uid):
        judgments, created = judgment_submit(lease_uid=uid, annotator=request.user, **s.submit_input(request.data))
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.judgments_out(judgments), status=code)


class SkipApi(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(request=s.SkipIn, responses=o.SkipOut)
    def post(self, request, uid):
        data = s.SkipIn(data=request.data)
        data.is_valid(raise_exception=True)
        lease = lease_skip(lease=_own_lease(request, uid), annotator=request.user, reason=data.validated_data["reason"])
        return Response({"lease": str(lease.uid), "state": lease.state})


class ReleaseApi(APIView):
    """Give back an item the annotator never worked on: 204, or 404 when it is already gone.

    The workspace calls it with ``navigator.sendBeacon`` as the page closes, which can send
    neither the token header nor the X-CSRFToken header, so the browser posts a form with the
    session cookie and ``csrfmiddlewaretoken`` in the body: DRF's session authentication checks
    that token like any form post, so another site cannot release an annotator's items.
    """

    permission_classes = [IsAnnotator]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(request=None, responses={204: None})
    def post(self, request, uid):
        lease_release(lease=_own_lease(request, uid), annotator=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LastSubmittedApi(APIView):
    """The annotator's last submitted item in a campaign, with its answers (for undo-last)."""

    permission_classes = [IsAnnotator]

    @extend_schema(responses={200: o.LastSubmittedOut, 204: None})
    def get(self, request, pk: int):
        campaign = _visible_campaign(request, pk)
        lease = (Lease.objects.filter(annotator=request.user, item__campaign=campaign, state=LeaseState.SUBMITTED)
                 .select_related("item__campaign", "item__sample__task_type").order_by("-finished_at").first())
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        prefetch_related_objects([lease.item], SLOTS)
        payload = s.assignment_payload(lease)
        payload["judgments"] = s.JudgmentOut(lease.judgments.select_related("criterion", "guideline_version"),
                                             many=True).data
        return Response(payload)


class JudgmentListApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses=s.JudgmentOut(many=True))
    def get(self, request):
        qs = judgments_for(request.user).select_related("lease", "guideline_version").order_by("-id")
        if campaigns := int_list_query_param(request, "campaign"):
            qs = qs.filter(item__campaign_id__in=campaigns)
        return Response(s.JudgmentOut(qs[:200], many=True).data)


class JudgmentEditApi(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(request=s.JudgmentEditIn, responses=s.JudgmentOut)
    def patch(self, request, pk: int):
        judgment = get_object_or_404(Judgment, pk=pk, annotator=request.user)
        data = s.JudgmentEditIn(data=request.data)
        data.is_valid(raise_exception=True)
        judgment = judgment_edit(judgment=judgment, annotator=request.user, answer=data.validated_data["answer"])
        return Response(s.JudgmentOut(judgment).data)


class SampleListApi(APIView):
    """Samples, newest first, a page at a time (``?page=&page_size=``), each with its candidates."""

    permission_classes = [IsStaffRole]

    @extend_schema(parameters=[s.SampleListQuery], responses=s.SampleOut(many=True))
    def get(self, request):
        query = s.SampleListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = Sample.objects.select_related("task_type").order_by("-id")
        if task := query.validated_data.get("task"):
            qs = qs.filter(task_type__slug=task)
        if split := query.validated_data.get("split"):
            qs = qs.filter(split=split)
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        prefetch_related_objects(page, Prefetch("candidates", Candidate.objects.order_by("id")))
        return paginator.get_paginated_response(s.SampleOut(page, many=True).data)


class ImportApi(APIView):
    """Upload a zip with manifest.jsonl + images: 202 with the import, which a job validates and
    writes all-or-nothing; follow it at its ``url`` (``GET /api/imports/<id>/``)."""

    permission_classes = [IsCurator]
    parser_classes = [MultiPartParser]

    @extend_schema(request=s.ImportIn, responses={202: s.ImportBatchOut})
    def post(self, request):
        data = s.ImportIn(data=request.data)
        data.is_valid(raise_exception=True)
        batch = import_upload(upload=data.validated_data["file"], user=request.user)
        body = s.ImportBatchOut(batch, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class ImportDetailApi(APIView):
    """One import: status, progress, counts, new samples per split and every row error."""

    permission_classes = [IsCurator]

    @extend_schema(responses=s.ImportBatchOut)
    def get(self, request, pk: int):
        batch = get_object_or_404(ImportBatch.objects.select_related("job"), pk=pk)
        return Response(s.ImportBatchOut(batch, context={"request": request}).data)
