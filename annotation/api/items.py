"""Item browser endpoints (thin): list a campaign's items, open one, adjudicate it, mark it gold.

    GET    /api/campaigns/<id>/items/?status=&gold=&annotator=&disputed=&threshold=&page=&page_size=
    GET    /api/items/<id>/                      the item in full (sample, candidates, judgments)
    POST   /api/items/<id>/adjudicate/           {"criterion", "answer", "note"}  201 + the item
    POST   /api/items/<id>/gold/                 {"answer": {criterion: answer}}  200 + the item
    DELETE /api/items/<id>/gold/                 unmark                            200 + the item
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.params import int_query_param
from core.permissions import IsCurator, IsStaffRole

from ..item_selectors import PAGE_SIZE, campaign_items_page, item_detail, item_filter_from_query
from ..models import Campaign, Item
from ..services.adjudication import NOTE_MAX_CHARS, item_adjudicate
from ..services.campaigns import item_mark_gold, item_unmark_gold
from .serializers import _answer_shape, _media
from .serializers_out import ItemOut, ItemPageOut


class CampaignAnnotatorsIn(serializers.Serializer):
    annotators = serializers.ListField(child=serializers.CharField(max_length=150), max_length=10_000)


class AdjudicateIn(serializers.Serializer):
    criterion = serializers.SlugField()
    answer = serializers.JSONField(validators=[_answer_shape])
    note = serializers.CharField(max_length=NOTE_MAX_CHARS, allow_blank=True, default="")


class GoldIn(serializers.Serializer):
    answer = serializers.DictField(child=serializers.JSONField(validators=[_answer_shape]), allow_empty=False)


def item_payload(item: Item) -> dict:
    """``item_detail`` with media URLs in place of its image fields."""
    out = item_detail(item=item)
    sample = out["sample"]
    sample["source_url"] = _media(sample.pop("source_image"))
    sample["mask_url"] = _media(sample.pop("mask"))
    for cand in out["candidates"]:
        cand["url"] = _media(cand.pop("image"))
    return out


_FILTERS = [OpenApiParameter(n, str, description=d) for n, d in (
    ("status", "open, in_progress, done or skipped"), ("gold", "yes or no"), ("annotator", "a username"),
    ("disputed", "yes: some criterion split or below the threshold, not adjudicated; no: none"),
    ("threshold", "majority share under which an item is disputed (default 2/3)"),
    ("page", "1-based"), ("page_size", f"default {PAGE_SIZE}"))]


class CampaignItemsApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(parameters=_FILTERS, responses=ItemPageOut)
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        flt = item_filter_from_query(request.query_params)
        return Response(campaign_items_page(campaign=campaign, flt=flt, page=int_query_param(request, "page", 1),
                                            page_size=int_query_param(request, "page_size", PAGE_SIZE)))


class ItemDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=ItemOut)
    def get(self, request, pk: int):
        return Response(item_payload(get_object_or_404(Item, pk=pk)))


class ItemAdjudicateApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=AdjudicateIn, responses={201: ItemOut})
    def post(self, request, pk: int):
        item = get_object_or_404(Item, pk=pk)
        data = AdjudicateIn(data=request.data)
        data.is_valid(raise_exception=True)
        item_adjudicate(item=item, user=request.user, **data.validated_data)
        return Response(item_payload(item), status=status.HTTP_201_CREATED)


class ItemGoldApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=GoldIn, responses=ItemOut)
    def post(self, request, pk: int):
        item = get_object_or_404(Item, pk=pk)
        data = GoldIn(data=request.data)
        data.is_valid(raise_exception=True)
        item_mark_gold(item=item, answer=data.validated_data["answer"])
        return Response(item_payload(item))

    @extend_schema(request=None, responses=ItemOut)
    def delete(self, request, pk: int):
        item = item_unmark_gold(item=get_object_or_404(Item, pk=pk))
        return Response(item_payload(item))
