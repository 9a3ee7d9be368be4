"""Versioned guidelines. (The fixed task types and criteria are created by migration 0002.)"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from core.errors import ApplicationError

from ..models import Criterion, GuidelineVersion


@transaction.atomic
def guideline_publish(*, criterion: Criterion, body_markdown: str, user: User | None = None,
                      examples: list | None = None) -> GuidelineVersion:
    """Publish a new guideline version; earlier judgments keep pointing at theirs."""
    if not body_markdown.strip():
        raise ApplicationError("A guideline needs text.", fields={"body_markdown": ["This field may not be blank."]})
    # Lock the criterion row so two curators publishing at once get consecutive versions.
    Criterion.objects.select_for_update().get(pk=criterion.pk)
    latest = criterion.guidelines.aggregate(v=Max("version"))["v"] or 0
    return GuidelineVersion.objects.create(
        criterion=criterion, version=latest + 1, body_markdown=body_markdown, examples=examples or [], created_by=user
    )
