"""Keep cached reads true: whatever path writes criteria, guidelines or a campaign's criteria
(services, the admin, a migration's data step), the cached copy is dropped once it commits."""
from __future__ import annotations

from django.db import transaction
from django.db.models.signals import m2m_changed, post_save

from .models import Campaign, Criterion, GuidelineVersion
from .selectors import forget_campaign_criteria


def _criterion_changed(sender, instance, **kwargs) -> None:
    criterion = instance if isinstance(instance, Criterion) else instance.criterion
    transaction.on_commit(lambda: forget_campaign_criteria(criterion=criterion))


def _campaign_criteria_changed(sender, instance, action: str, pk_set=None, **kwargs) -> None:
    if not action.startswith("post_"):
        return
    if isinstance(instance, Campaign):
        ids = [instance.pk]
    else:  # criterion.campaigns.add(...): pk_set names the campaigns
        ids = list(pk_set or Campaign.objects.filter(criteria=instance).values_list("id", flat=True))
    transaction.on_commit(lambda: forget_campaign_criteria(campaign_ids=ids))


def connect() -> None:
    post_save.connect(_criterion_changed, sender=Criterion, dispatch_uid="criteria-cache-criterion")
    post_save.connect(_criterion_changed, sender=GuidelineVersion, dispatch_uid="criteria-cache-guideline")
    m2m_changed.connect(_campaign_criteria_changed, sender=Campaign.criteria.through,
                        dispatch_uid="criteria-cache-campaign")
