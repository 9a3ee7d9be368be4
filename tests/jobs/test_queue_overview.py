"""The queues' overview (jobs.selectors.queue_overview, GET /api/dashboard/jobs/queues/, the Runs
page's panel): a real worker shows under the queues it consumes, a queue no worker consumes shows
none and its jobs waiting, and an unreachable broker reads as such instead of an error."""
from __future__ import annotations

import functools
import uuid

import pytest
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.selectors import queue_overview, queue_workers
from tests.factories import make_user

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: the connection is refused at once


def _queue(overview: dict, name: str) -> dict:
    return next(q for q in overview["queues"] if q["name"] == name)


def _jobs(kind: str, **per_status: int) -> None:
    now = timezone.now()
    for status, n in per_status.items():
        Job.objects.bulk_create(Job(kind=kind, name=f"{kind} {i}", status=status,
                                    started_at=None if status == JobStatus.QUEUED else now) for i in range(n))


@pytest.mark.django_db
def test_a_queue_no_worker_consumes_shows_no_workers_and_its_jobs_waiting(settings):
    lonely = f"lonely-{uuid.uuid4().hex[:8]}"
    settings.JOB_QUEUES = {"export": lonely}
    _jobs("export", queued=2, running=1, succeeded=3)
    _jobs("snapshot", queued=1, failed=1)
    _jobs("reward", running=1)
    overview = queue_overview(max_age=0, timeout=0.5)
    assert overview["broker_reachable"] is True
    assert _queue(overview, lonely) == {"name": lonely, "kinds": ["export"], "workers": [], "waiting": 2,
                                        "running": 1}
    default = _queue(overview, "default")
    assert "export" not in default["kinds"] and "snapshot" in default["kinds"]
    assert (default["waiting"], default["running"]) == (1, 0)  # the failed snapshot is not waiting
    gpu = _queue(overview, settings.JOB_GPU_QUEUE)
    assert "reward" in gpu["kinds"] and (gpu["waiting"], gpu["running"]) == (0, 1)
    assert overview["queues"][0]["name"] == "default"


@pytest.mark.django_db
def test_an_unreachable_broker_reads_as_unknown_workers_and_still_counts_the_jobs(monkeypatch):
    from celery import current_app

    monkeypatch.setattr(current_app, "connection_for_read",
                        functools.partial(current_app.connection_for_read, url=UNREACHABLE))
    _jobs("snapshot", queued=3)
    overview = queue_overview(max_age=0, timeout=0.5)
    assert overview["broker_reachable"] is False
    assert all(q["workers"] is None for q in overview["queues"])
    assert _queue(overview, "default")["waiting"] == 3


@pytest.mark.django_db
def test_the_answer_is_cached_for_max_age_seconds(monkeypatch):
    from celery import current_app

    fresh = queue_workers(max_age=0, timeout=0.5)
    assert fresh is not None
    monkeypatch.setattr(current_app, "connection_for_read",
                        functools.partial(current_app.connection_for_read, url=UNREACHABLE))
    assert queue_workers(max_age=0, timeout=0.5) is None
    assert queue_workers(max_age=30, timeout=0.5) is None  # asked, and "unreachable" kept
    monkeypatch.undo()
    assert queue_workers(max_age=30, timeout=0.5) is None  # the broker is back, the cache still answers
    assert queue_workers(max_age=0, timeout=0.5) is not None


NAMED = f"queues-{uuid.uuid4().hex[:8]}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("celery_worker_process", [{"args": ("--pool", "solo", "-n", f"{NAMED}@%h")}],
                         indirect=True)
def test_a_real_worker_shows_under_each_queue_it_consumes(celery_worker_process, settings):
    _jobs("export", succeeded=1)
    overview = queue_overview(max_age=0, timeout=2)
    assert overview["broker_reachable"] is True
    for name in ("default", settings.JOB_GPU_QUEUE):  # the fixture's worker runs -Q default,gpu
        assert [w for w in _queue(overview, name)["workers"] if w.startswith(f"{NAMED}@")], overview
    celery_worker_process.stop()
    after = queue_overview(max_age=0, timeout=0.5)
    assert not [w for w in _queue(after, "default")["workers"] if w.startswith(f"{NAMED}@")]


@pytest.mark.django_db
def test_the_endpoint_answers_its_documented_shape_to_staff_only(client):
    from tests.test_openapi_typed import _response_validator, _schema

    _jobs("snapshot", queued=2)
    make_user("q-sci", "scientist")
    make_user("q-ann", "annotator")
    client.login(username="q-ann", password="pw-test-1234")
    assert client.get("/api/dashboard/jobs/queues/").status_code == 403
    client.login(username="q-sci", password="pw-test-1234")
    response = client.get("/api/dashboard/jobs/queues/")
    assert response.status_code == 200
    body = response.json()
    errors = [e.message for e in _response_validator(_schema(), "/api/dashboard/jobs/queues/", "get", "200")
              .iter_errors(body)]
    assert errors == []
    assert _queue(body, "default")["waiting"] == 2


@pytest.mark.django_db
def test_the_runs_page_has_the_queues_panel(client):
    make_user("q-sci2", "scientist")
    client.login(username="q-sci2", password="pw-test-1234")
    html = client.get("/dashboard/").content.decode()
    assert 'id="queue-panel"' in html and 'id="queue-body"' in html
    assert "<caption" in html.split('id="queue-panel"', 1)[1]
