"""The reward-model page starts a baseline learner on the model's snapshot and, once it finished,
shows its held-out accuracy beside the reward model's, each with n and a 95 % interval."""
from __future__ import annotations

import pytest

from jobs import services as job_services
from rewardtrain.models import BaselineRun, RewardModel
from rewardtrain.services import baseline_execute_job, reward_run_start
from tests.factories import make_user
from tests.frontend.conftest import login
from tests.rewardtrain.test_baselines import TINY
from tests.rewardtrain.test_runs import reward_snapshot


@pytest.mark.django_db(transaction=True)
def test_a_scientist_trains_a_baseline_from_the_reward_model_page(browser_page, monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: queued.append(job.pk))
    snapshot = reward_snapshot()
    model = RewardModel.objects.create(
        run=reward_run_start(snapshot=snapshot, enqueue=False), name="vlm", path="/nonexistent", base_model="tiny",
        template_version="v", snapshot=snapshot, eval_split="test",
        eval_report={"accuracy": {"fill": {"structure": 0.75}}, "counts": {"fill": {"structure": 40}}})
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")

    page.goto(f"/dashboard/reward-models/{model.pk}/")
    assert page.is_visible("[data-testid=no-baseline]")
    page.click("#btn-baseline")
    page.wait_for_selector("#rm-baseline .badge.status-queued")
    run = BaselineRun.objects.get()
    assert queued == [run.job_id] and run.snapshot_id == snapshot.pk
    assert page.is_disabled("#btn-baseline")  # one at a time per snapshot from here

    run.config = {**run.config, **TINY}  # seconds, not minutes, for the test
    run.save(update_fields=["config"])
    assert baseline_execute_job(run.job_id).status == "succeeded"
    page.goto(f"/dashboard/reward-models/{model.pk}/")
    cells = page.locator("[data-testid=baseline-table] [data-testid=accuracy-cell]")
    assert cells.count() == 2
    assert cells.nth(0).text_content().startswith("75.0") and "n=40" in cells.nth(0).text_content()
    assert "n=1" in cells.nth(1).text_content()
