"""The Runs page's queues panel in a browser: one row per queue with its jobs waiting, a queue no
worker consumes says so, and an unreachable broker shows a warning and "unknown" workers instead
of zeros (the selector's own cases, a real worker included, are in tests/jobs/test_queue_overview.py)."""
from __future__ import annotations

import functools
import uuid

import pytest
from django.core.cache import cache
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.selectors import workers_cache_key
from tests.factories import make_user

from .conftest import login


def _queued(kind: str, n: int) -> None:
    Job.objects.bulk_create(Job(kind=kind, name=f"{kind} {i}", status=JobStatus.QUEUED) for i in range(n))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_panel_shows_each_queue_and_warns_when_the_broker_is_unreachable(browser_page, settings, monkeypatch):
    from celery import current_app

    lonely = f"lonely-{uuid.uuid4().hex[:8]}"
    settings.JOB_QUEUES = {"export": lonely}
    _queued("export", 2)
    Job.objects.create(kind="reward", name="training", status=JobStatus.RUNNING, started_at=timezone.now())
    make_user("panel-sci", "scientist")
    page = browser_page
    login(page, "panel-sci")
    cache.delete(workers_cache_key())
    page.goto("/dashboard/")
    row = page.locator(f'#queue-body tr[data-queue="{lonely}"]')
    row.wait_for()
    cells = row.locator("th, td").all_inner_texts()
    assert cells == [lonely, "export", "0 — no worker takes these jobs", "2", "0"]
    gpu = page.locator(f'#queue-body tr[data-queue="{settings.JOB_GPU_QUEUE}"] td').all_inner_texts()
    assert gpu[-1] == "1"  # the running reward run
    assert page.locator("#queue-alert").is_hidden()

    monkeypatch.setattr(current_app, "connection_for_read",
                        functools.partial(current_app.connection_for_read, url="redis://127.0.0.1:1/0"))
    cache.delete(workers_cache_key())
    page.reload()
    page.locator("#queue-alert").wait_for(state="visible")
    cells = page.locator(f'#queue-body tr[data-queue="{lonely}"]').locator("th, td").all_inner_texts()
    assert cells == [lonely, "export", "unknown", "2", "0"]
    cache.delete(workers_cache_key())
