"""Baseline learner as a product feature: the API starts a job, the job trains it in process, and its
held-out accuracy stands beside the VLM's in a reward model's evaluation table (rewardtrain.services)."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from annotation.models import DatasetSnapshot
from jobs import services as job_services
from jobs.models import Job, JobKind, JobStatus
from rewardtrain import services
from rewardtrain.models import BaselineRun, RewardModel
from rewardtrain.services import baseline_execute_job, reward_run_start
from tests.rewardtrain.test_evaluations import client_for
from tests.rewardtrain.test_runs import reward_snapshot

# A few seconds on one thread: 16 px thumbnails, a narrow network, 12 steps.
TINY = {"image_size": 16, "channels": 4, "embed_dim": 4, "max_steps": 12, "batch_size": 4, "eval_every": 4}


@pytest.mark.django_db
def test_a_baseline_job_reports_per_cell_accuracy_beside_the_vlm(monkeypatch, django_capture_on_commit_callbacks):
    queued: list[int] = []
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: queued.append(job.pk))
    snapshot = reward_snapshot()  # fill / structure: 6 train, 1 val, 1 test pair
    sci = client_for("sci", "scientist")
    with django_capture_on_commit_callbacks(execute=True):
        resp = sci.post("/api/reward/baselines/", {"snapshot": snapshot.pk, "overrides": TINY}, format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    run = BaselineRun.objects.get()
    assert body["id"] == run.pk and body["job"]["status"] == "queued" and queued == [run.job_id]
    assert run.job.kind == JobKind.BASELINE and run.config["max_steps"] == 12 and run.config["lr"] == 2e-3

    job = baseline_execute_job(run.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    run.refresh_from_db()
    report = run.report
    assert report["split"] == "test" and report["counts"] == {"fill": {"structure": 1}}
    assert report["accuracy"]["fill"]["structure"] in (0.0, 0.5, 1.0)
    lo, hi = report["interval"]["fill"]["structure"]
    assert lo < 0.5 < hi  # one pair proves nothing, and the interval says so
    assert job.result["baseline_id"] == run.pk and 1 <= job.result["steps"] <= 12
    detail = sci.get(f"/api/reward/baselines/{run.pk}/").json()
    assert detail["report"]["pairs"] == 1 and detail["metrics"], detail
    assert [b["id"] for b in sci.get(f"/api/reward/baselines/?snapshot={snapshot.pk}").json()] == [run.pk]

    # A reward model of the same snapshot shows both columns, each with n and a 95 % interval.
    vlm_run = reward_run_start(snapshot=snapshot, enqueue=False)
    model = RewardModel.objects.create(
        run=vlm_run, name="vlm", path="/nonexistent", base_model="tiny", template_version="v", snapshot=snapshot,
        eval_split="test", eval_report={"accuracy": {"fill": {"structure": 0.75}}, "counts": {"fill": {"structure": 40}}})
    payload = sci.get(f"/api/reward/models/{model.pk}/").json()
    assert payload["baseline"]["id"] == run.pk and payload["baseline"]["split"] == "test"
    (row,) = payload["accuracy_table"]
    assert (row["task"], row["criterion"]) == ("fill", "structure")
    assert row["vlm"]["accuracy"] == 0.75 and row["vlm"]["n"] == 40
    assert row["vlm"]["interval"][0] < 0.75 < row["vlm"]["interval"][1] and row["vlm"]["interval"][0] > 0.55
    assert row["baseline"]["n"] == 1 and row["baseline"]["accuracy"] == report["accuracy"]["fill"]["structure"]


@pytest.mark.django_db
def test_a_model_without_a_baseline_has_an_empty_baseline_column(monkeypatch):
    snapshot = reward_snapshot()
    model = RewardModel.objects.create(
        run=reward_run_start(snapshot=snapshot, enqueue=False), name="vlm", path="/nonexistent", base_model="tiny",
        template_version="v", snapshot=snapshot, eval_split="test",
        eval_report={"accuracy": {"fill": {"structure": 1.0}}, "counts": {"fill": {"structure": 4}}})
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: None)
    services.baseline_start(snapshot=snapshot)  # queued, not finished: not shown
    payload = client_for("sci", "scientist").get(f"/api/reward/models/{model.pk}/").json()
    assert payload["baseline"] is None
    assert payload["accuracy_table"][0]["baseline"] is None and payload["accuracy_table"][0]["vlm"]["n"] == 4


@pytest.mark.django_db
def test_bad_baseline_requests_get_field_errors_and_write_nothing(monkeypatch):
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: pytest.fail("nothing may be queued"))
    unbuilt = reward_snapshot(build=False)
    no_eval = DatasetSnapshot.objects.create(name="train only", path="/nonexistent",
                                             counts={"pairs": 3, "per_split": {"train": 3, "val": 0, "test": 0}})
    built = reward_snapshot()
    sci = client_for("sci", "scientist")
    cases = [({"snapshot": unbuilt.pk}, "snapshot", "is not built"),
             ({"snapshot": no_eval.pk}, "snapshot", "no test or val pairs"),
             ({"snapshot": built.pk, "overrides": {"stepz": 3}}, "overrides", "stepz"),
             ({"snapshot": built.pk, "overrides": {"lr": 0}}, "overrides", "lr must be positive"),
             ({"snapshot": 999999}, "snapshot", "No such snapshot")]
    jobs_before = Job.objects.count()
    for body, field, text in cases:
        resp = sci.post("/api/reward/baselines/", body, format="json")
        assert resp.status_code == 400, (body, resp.content)
        assert text in " ".join(resp.json()["fields"][field]), resp.json()
    assert Job.objects.count() == jobs_before and not BaselineRun.objects.exists()
    annotator = client_for("ann", "annotator")
    assert annotator.post("/api/reward/baselines/", {"snapshot": built.pk}, format="json").status_code == 403


@pytest.mark.django_db
def test_train_baseline_command_queues_or_trains_and_a_queued_one_cancels(monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    queued: list[int] = []
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: queued.append(job.pk))
    snapshot = reward_snapshot()
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("train_baseline", "--snapshot", str(snapshot.pk), stdout=out)
    first = BaselineRun.objects.get()
    assert queued == [first.job_id] and f"baseline {first.pk} queued" in out.getvalue()
    resp = client_for("sci", "scientist").post(f"/api/reward/baselines/{first.pk}/cancel/")
    assert resp.status_code == 200 and resp.json()["job"]["status"] == "cancelled"

    out = io.StringIO()
    args = [f"--set={k}={v}" for k, v in TINY.items()]
    with django_capture_on_commit_callbacks(execute=True):
        call_command("train_baseline", "--snapshot", str(snapshot.pk), "--sync", *args, stdout=out)
    second = BaselineRun.objects.exclude(pk=first.pk).get()
    assert second.job.status == JobStatus.SUCCEEDED and queued == [first.job_id]
    assert "fill/structure" in out.getvalue() and f"baseline {second.pk} finished" in out.getvalue()


def test_the_baseline_trains_on_the_cpu_queue_and_reward_runs_on_the_gpu_queue():
    from jobs.registry import job_type

    assert job_type("baseline").queue == "default"
    assert job_type("reward").queue == "gpu"
