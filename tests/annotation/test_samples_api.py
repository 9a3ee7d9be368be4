"""GET /api/samples/: paginated, each sample with its candidates' ids and source systems."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from annotation.models import Candidate, Sample
from tests.factories import make_sample, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    c = APIClient()
    c.force_authenticate(make_user("cur", "curator"))
    return c


def test_samples_come_a_page_at_a_time_with_candidate_ids_and_sources(client):
    samples = [make_sample(n_candidates=2 + i % 2) for i in range(5)]
    first = client.get("/api/samples/", {"page_size": 2}).json()
    assert first["count"] == 5 and first["previous"] is None and "page=2" in first["next"]
    assert [r["external_id"] for r in first["results"]] == [s.external_id for s in samples[::-1][:2]]
    newest = first["results"][0]
    expected = list(Candidate.objects.filter(sample=samples[-1]).order_by("id"))
    assert [c["id"] for c in newest["candidates"]] == [c.pk for c in expected]
    assert [(c["source_name"], c["provenance"]) for c in newest["candidates"]] == [
        (c.source_name, c.provenance) for c in expected]
    assert all(c["url"].startswith("/media/candidates/") for c in newest["candidates"])
    assert newest["source_url"].startswith("/media/samples/") and newest["split"] in {"train", "val", "test"}
    # Walking the pages reaches every sample once.
    seen, url = [], "/api/samples/?page_size=2"
    while url:
        page = client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(s.pk for s in samples)


def test_page_size_is_capped_and_statements_do_not_grow_with_the_page(client, monkeypatch):
    from annotation.api.pagination import PagePagination

    for _ in range(6):
        make_sample()
    client.get("/api/samples/")  # the user's roles are read once per client
    with CaptureQueriesContext(connection) as small:
        assert len(client.get("/api/samples/", {"page_size": 1}).json()["results"]) == 1
    with CaptureQueriesContext(connection) as large:
        body = client.get("/api/samples/", {"page_size": 100}).json()
    assert len(body["results"]) == 6 and body["next"] is None
    assert len(large.captured_queries) == len(small.captured_queries) == 3  # count, page, candidates
    monkeypatch.setattr(PagePagination, "max_page_size", 4)
    capped = client.get("/api/samples/", {"page_size": 10_000}).json()
    assert len(capped["results"]) == 4 and "page=2" in capped["next"]


def test_filters_are_validated(client):
    make_sample()
    Sample.objects.update(split="test")
    assert client.get("/api/samples/", {"split": "test"}).json()["count"] == 1
    assert client.get("/api/samples/", {"split": "train"}).json()["count"] == 0
    assert client.get("/api/samples/", {"task": "extend"}).json()["count"] == 0
    bad = client.get("/api/samples/", {"split": "holdout"})
    assert bad.status_code == 400 and "split" in bad.json()["fields"]
    assert client.get("/api/samples/", {"page": 99}).status_code == 404
