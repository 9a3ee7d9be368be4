"""The run list's Cancel and Resume in a real Chromium: the buttons call the jobs domain's
``/api/jobs/{id}/cancel|resume/`` and the row follows the job (no worker: nothing is sent)."""
from __future__ import annotations

import pytest

from jobs.models import Job, JobStatus
from rewardtrain.services import reward_run_start
from tests.factories import make_user
from tests.rewardtrain.test_runs import reward_snapshot

from .conftest import login


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_scientist_cancels_then_resumes_a_queued_run_from_the_run_list(browser_page, monkeypatch):
    sent: list[int] = []
    # Resume sends the job again after commit; record the send instead of reaching the broker.
    monkeypatch.setattr("jobs.services.job_enqueue", lambda job: sent.append(getattr(job, "pk", job)) or True)
    run = reward_run_start(snapshot=reward_snapshot(), overrides={"max_steps": 2}, enqueue=False, name="to cancel")
    make_user("sci", "scientist")
    page = browser_page
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if r.method == "POST" else None)
    login(page, "sci")
    page.goto("/dashboard/")
    row = f"tr[data-job='{run.job_id}']"
    page.click(f"{row}[data-status='queued'] [data-action=cancel]")
    page.click("#confirm-yes")
    page.wait_for_selector(f"{row}[data-status='cancelled'] [data-action=resume]")
    assert Job.objects.get(pk=run.job_id).status == JobStatus.CANCELLED
    page.click(f"{row} [data-action=resume]")
    page.click("#confirm-yes")
    page.wait_for_selector(f"{row}[data-status='queued']")
    job = Job.objects.get(pk=run.job_id)
    assert (job.status, job.config["resume"], sent) == (JobStatus.QUEUED, True, [run.job_id])
    assert [u.split("/api/", 1)[1] for u in calls if "/api/" in u] == [f"jobs/{run.job_id}/cancel/",
                                                                      f"jobs/{run.job_id}/resume/"]
