"""Item browser pages of the dashboard: a campaign's items (filtered and paginated by
``items.js`` through ``GET /api/campaigns/<id>/items/``) and one item in full, where curators
adjudicate and mark gold through ``/api/items/<id>/adjudicate/`` and ``/api/items/<id>/gold/``."""
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from annotation.api.items import item_payload
from annotation.item_selectors import DEFAULT_DISPUTE_BELOW, ITEM_STATUSES
from annotation.models import Campaign, CampaignMode, Item
from core.roles import ANNOTATOR, CURATOR, has_role

from .views import _dash, campaign_page


def annotator_choices():
    """Active users in the annotator group, by name (the pickers on the campaign pages)."""
    return User.objects.filter(groups__name=ANNOTATOR, is_active=True).order_by("username")


@campaign_page
def campaign_items(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign.objects.select_related("task_type"), pk=pk)
    return _dash(request, "items.html", "campaigns", campaign=campaign, statuses=ITEM_STATUSES,
                 criteria=list(campaign.criteria.order_by("id").values_list("slug", "name")),
                 annotators=annotator_choices().values_list("username", flat=True),
                 threshold_pct=round(DEFAULT_DISPUTE_BELOW * 100))


@campaign_page
def item_page(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Item.objects.select_related("campaign"), pk=pk)
    data = item_payload(item)
    gold = data["gold_answer"] or {}
    labels = {c["id"]: c["label"] for c in data["candidates"]}
    for crit in data["criteria"]:  # the template shows each criterion with its agreement and gold answer
        crit["agreement"] = data["agreement"][crit["slug"]]
        expected = gold.get(crit["slug"])
        crit["gold"] = (f"best {labels.get(expected['best'])}, worst {labels.get(expected['worst'])}"
                        if isinstance(expected, dict) else (expected or "").replace("_", " ").upper()
                        if expected in ("a", "b") else (expected or "").replace("_", " "))
    return _dash(request, "item.html", "campaigns", item=data, campaign=item.campaign,
                 best_worst=item.campaign.mode == CampaignMode.BEST_WORST,
                 can_curate=has_role(request.user, CURATOR))
