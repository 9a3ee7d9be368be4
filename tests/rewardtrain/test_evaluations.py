"""Evaluating a registered reward model on another snapshot: service, API, worker, dashboard."""
from __future__ import annotations

import shutil

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation.models import DatasetSnapshot
from jobs.models import Job, JobKind, JobStatus
from rewardtrain.models import RewardEvaluation, RewardModel
from rewardtrain.services import reward_evaluation_execute_job
from tests.conftest import wait_for
from tests.factories import make_user
from tests.rewardtrain.test_runs import reward_snapshot


def trained_model() -> RewardModel:
    """A real tiny reward model (2 steps) trained and registered in process."""
    snapshot = reward_snapshot()
    call_command("train_reward", "--snapshot", str(snapshot.pk), "--sync", "--set", "max_steps=2",
                 "--set", "batch_size=4", "--set", "max_pixels=3136", "--set", "save_every=0", "--set", "eval_every=0")
    return RewardModel.objects.get()


def client_for(username: str, role: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user(username, role))
    return client


@pytest.mark.django_db
def test_a_model_is_scored_on_another_snapshot_and_the_page_shows_its_table():
    model = trained_model()
    other = reward_snapshot()  # another campaign: 8 pairs over train / val / test
    sci = client_for("sci", "scientist")
    resp = sci.post(f"/api/reward/models/{model.pk}/evaluations/", {"snapshot": other.pk}, format="json")
    assert resp.status_code == 202, resp.content
    assert resp.json()["split"] == "all" and resp.json()["job"]["status"] == "queued"
    evaluation = RewardEvaluation.objects.get()
    assert evaluation.job.kind == JobKind.EVALUATION and evaluation.report == {}

    job = reward_evaluation_execute_job(evaluation.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    evaluation.refresh_from_db()
    report = evaluation.report
    assert report["split"] == "all" and report["pairs"] == other.counts["pairs"] == 8
    assert set(report["accuracy"]) == {"fill"} and 0.0 <= report["accuracy"]["fill"]["structure"] <= 1.0
    assert report["counts"]["fill"]["structure"] == 8 and "Accuracy (%)" in report["table"]
    assert job.result["evaluation_id"] == evaluation.pk and job.result["pairs"] == 8
    listed = sci.get(f"/api/reward/models/{model.pk}/evaluations/").json()
    assert [e["id"] for e in listed] == [evaluation.pk] and listed[0]["report"]["pairs"] == 8
    # A scoring-job lookup does not mistake the evaluation job for a scoring job.
    assert sci.get(f"/api/reward/scores/{evaluation.job_id}/").status_code == 404

    sci.force_authenticate(None)
    web = APIClient()
    web.login(username="sci", password="pw-test-1234")
    page = web.get(f"/dashboard/reward-models/{model.pk}/").content.decode()
    assert page.count('data-testid="accuracy-table"') == 2  # its own table and the evaluation's
    assert f'data-evaluation="{evaluation.pk}"' in page and "on 8 all pairs" in page


@pytest.mark.django_db
def test_bad_evaluation_requests_get_field_errors_and_write_nothing():
    model = trained_model()
    sci = client_for("sci", "scientist")
    url = f"/api/reward/models/{model.pk}/evaluations/"
    unbuilt = reward_snapshot(build=False)
    no_test = DatasetSnapshot.objects.create(name="train only", path="/nonexistent",
                                             counts={"pairs": 3, "per_split": {"train": 3, "val": 0, "test": 0}})
    cases = [({"snapshot": unbuilt.pk}, "snapshot", "is not built"),
             ({"snapshot": no_test.pk, "split": "test"}, "split", "has no test pairs"),
             ({"snapshot": model.snapshot_id, "split": "everything"}, "split", ""),
             ({"snapshot": 999999}, "snapshot", "No such snapshot")]
    jobs_before = Job.objects.count()
    for body, field, text in cases:
        resp = sci.post(url, body, format="json")
        assert resp.status_code == 400, (body, resp.content)
        assert text in " ".join(resp.json()["fields"][field]), resp.json()
    assert not RewardEvaluation.objects.exists() and Job.objects.count() == jobs_before
    assert client_for("ann", "annotator").post(url, {"snapshot": model.snapshot_id}, format="json").status_code == 403
    assert sci.post("/api/reward/models/999999/evaluations/", {"snapshot": 1}, format="json").status_code == 404


@pytest.mark.django_db
def test_an_evaluation_whose_snapshot_folder_vanished_fails_with_its_reason():
    model = trained_model()
    other = reward_snapshot()
    sci = client_for("sci", "scientist")
    evaluation_id = sci.post(f"/api/reward/models/{model.pk}/evaluations/", {"snapshot": other.pk,
                                                                            "split": "test"}, format="json").json()["id"]
    shutil.rmtree(other.path)
    job = reward_evaluation_execute_job(RewardEvaluation.objects.get(pk=evaluation_id).job_id)
    assert job.status == JobStatus.FAILED and "snapshot folder not found" in job.error
    assert RewardEvaluation.objects.get(pk=evaluation_id).report == {}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_an_evaluation_started_over_the_api(celery_worker_process):
    model = trained_model()
    other = reward_snapshot()
    sci = client_for("sci", "scientist")
    resp = sci.post(f"/api/reward/models/{model.pk}/evaluations/", {"snapshot": other.pk, "split": "test"},
                    format="json")
    evaluation = RewardEvaluation.objects.get(pk=resp.json()["id"])
    wait_for(lambda: Job.objects.get(pk=evaluation.job_id).is_finished, timeout=120, message="evaluation job")
    evaluation.refresh_from_db()
    assert evaluation.job.status == JobStatus.SUCCEEDED, evaluation.job.error
    assert evaluation.report["split"] == "test" and evaluation.report["pairs"] == 1
