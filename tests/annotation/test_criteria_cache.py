"""The campaign criteria the hot path reads (``selectors.campaign_criteria``): each process keeps
its own copy for CRITERIA_LOCAL_CACHE_SECONDS, so a hand-out or submit costs no cache round trip;
a change made in this process shows up on the very next call, one made elsewhere within that
bound, and 0 turns the copy off."""
from __future__ import annotations

from unittest import mock

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import selectors
from annotation.models import Criterion
from annotation.selectors import campaign_criteria
from annotation.services.taxonomy import guideline_publish
from tests.core.test_throttling import redis_round_trips
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The copy's clock, moved by hand."""

    class Clock:
        now = 1000.0

    monkeypatch.setattr(selectors, "_clock", lambda: Clock.now)
    return Clock


def versions(campaign) -> list[int]:
    return [c.guideline_version for c in campaign_criteria(campaign)]


def publish_elsewhere(criterion: Criterion, text: str, capture) -> None:
    """Publish as another web process would: its commit clears the shared entry and *its* copy,
    never this process's (stood in for here by a throwaway dict)."""
    with mock.patch.object(selectors, "_local_criteria", {}), capture(execute=True):
        guideline_publish(criterion=criterion, body_markdown=text)


def test_within_the_bound_no_cache_round_trip_is_made(settings, clock):
    settings.CRITERIA_LOCAL_CACHE_SECONDS = 2
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure", "aesthetics"])
    first = campaign_criteria(campaign)
    with redis_round_trips() as sent:
        again = campaign_criteria(campaign)
    assert sent == []
    assert [(c.pk, c.slug, c.guideline_version) for c in again] == [(c.pk, c.slug, c.guideline_version) for c in first]
    assert again[0] is not first[0]  # fresh instances per call: callers never share one


def test_a_change_made_elsewhere_shows_within_the_bound(settings, clock, django_capture_on_commit_callbacks):
    settings.CRITERIA_LOCAL_CACHE_SECONDS = 2
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    (before,) = versions(campaign)
    publish_elsewhere(Criterion.objects.get(slug="structure"), "Look at the seams.", django_capture_on_commit_callbacks)
    clock.now += 1.9
    assert versions(campaign) == [before]  # this process's copy, still inside the bound
    clock.now += 0.2
    assert versions(campaign) == [before + 1]


def test_a_change_made_here_shows_on_the_next_hand_out(settings, clock, django_capture_on_commit_callbacks):
    settings.CRITERIA_LOCAL_CACHE_SECONDS = 60
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('me', 'annotator')).key}")
    first = client.post(f"/api/campaigns/{campaign.pk}/next/", {"exclude": []}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        guideline_publish(criterion=Criterion.objects.get(slug="structure"), body_markdown="Look at the **seams**.")
    second = client.post(f"/api/campaigns/{campaign.pk}/next/", {"exclude": [first["lease"]]}, format="json").json()
    assert second["criteria"][0]["guideline_version"] == first["criteria"][0]["guideline_version"] + 1
    assert "<strong>seams</strong>" in second["criteria"][0]["guideline_html"]


def test_zero_seconds_turns_the_copy_off(settings, clock, django_capture_on_commit_callbacks):
    settings.CRITERIA_LOCAL_CACHE_SECONDS = 0
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    (before,) = versions(campaign)
    publish_elsewhere(Criterion.objects.get(slug="structure"), "Look at the seams.", django_capture_on_commit_callbacks)
    assert versions(campaign) == [before + 1]
