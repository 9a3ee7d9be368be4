"""The run pages on a host that never had the run folder (hosts share no disk, docs/operations.md,
"Several hosts"): an RL run's reward-vs-reference table and curves come from metric points, its
sample grids from media storage, its artifacts from the object store; and the same pages with
the embedded default (no object store)."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.test import Client
from PIL import Image

from core.artifacts import artifact_publish
from enginekit.objectstore import DirectoryBackend
from frontend import selectors as dsel
from jobs.models import Job, JobKind, JobStatus, MetricPoint
from jobs.selectors import job_resumable
from jobs.services import JobReporter, job_create
from policytrain.models import PolicyCheckpoint, PolicyRun
from policytrain.selectors import RL_WINDOW_KIND, run_sample_grids
from policytrain.services import _RunPages
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_start
from tests.factories import make_user
from tests.rewardtrain.test_runs import reward_snapshot

pytestmark = pytest.mark.django_db


def png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 4), (shade, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def staff_client() -> Client:
    make_user("sci", "scientist")
    c = Client()
    assert c.login(username="sci", password="pw-test-1234")
    return c


def policy_run(artifacts_root: Path) -> PolicyRun:
    """A policy run whose folder was recorded under ``artifacts_root`` (the worker's)."""
    snapshot = reward_snapshot()
    rrun = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False)
    model = RewardModel.objects.create(run=rrun, name="rm", path="/nope", base_model="tiny", template_version="v1",
                                       snapshot=snapshot, eval_split="test", eval_report={})
    job = job_create(kind="policy", name="rl", config={})
    out = artifacts_root / "policy-runs" / f"job-{job.pk}"
    job.run_dir = str(out)
    job.save(update_fields=["run_dir"])
    return PolicyRun.objects.create(job=job, reward_model=model, algorithm=1, output_dir=str(out))


def worker_writes(run: PolicyRun, steps: range, reporter: JobReporter, pages: _RunPages) -> None:
    """What the RL engine writes each step (a window row, a grid every 5 steps), each followed
    by the progress callback's sync, as policy_run_execute calls it."""
    out = Path(run.output_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    with (out / "metrics.jsonl").open("a") as fh:
        for s in steps:
            fh.write(json.dumps({"step": s, "kind": "train", "loss": 1 / s, "reward/fill/structure": 0.4 + s / 100})
                     + "\n")
            fh.flush()
            if s % 5 == 0:
                (out / "samples" / f"step-{s:06d}.png").write_bytes(png(s))
            pages.sync()
    reporter.progress({"step": steps[-1], "total_steps": 10, "kind": "train", "loss": 0.1})


def test_a_web_host_without_the_run_folder_shows_the_rl_pages(settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = f"file://{tmp_path / 'store'}"
    settings.ARTIFACTS_ROOT = gpu = tmp_path / "gpu"
    run = policy_run(gpu)
    out = Path(run.output_dir)
    reporter = JobReporter(run.job)
    worker_writes(run, range(1, 11), reporter, _RunPages(run, out, reporter, total_steps=10))
    (out / "config.json").write_text("{}")  # only ever on the worker's disk
    for folder, content in ((out / "checkpoints" / "step-10", b"ckpt"), (out / "final", b"weights")):
        folder.mkdir(parents=True)
        (folder / "policy.bin").write_bytes(content)
        artifact_publish(folder)
    ckpt = PolicyCheckpoint.objects.create(name="ckpt", base_policy="tiny", weights_dir=str(out / "final"), run=run,
                                           reward_model=run.reward_model, algorithm=1)

    settings.ARTIFACTS_ROOT = tmp_path / "web"  # another host: its own root, the worker's disk out of reach
    shutil.rmtree(gpu)
    c = staff_client()
    detail = c.get(f"/api/dashboard/jobs/{run.job_id}/").json()
    pol = detail["policy"]
    cell = next(x for r in pol["rl_table"]["rows"] if r["task"] == "fill" for x in r["cells"]
                if x["criterion"] == "structure")
    assert cell["latest"] == pytest.approx(0.48) and cell["first"] == pytest.approx(0.43) and cell["points"] == 10
    assert len(pol["sample_grids"]) == 2 and all(u.startswith("/media/policy-runs/") for u in pol["sample_grids"])
    grid = c.get(pol["sample_grids"][-1])
    assert grid.status_code == 200 and b"".join(grid.streaming_content) == png(10)
    assert "window step 10/10" in detail["log_tail"]  # the job's own log tail, from the database

    artifacts = {a["path"]: a for a in detail["artifacts"]}
    assert {p: a["size"] for p, a in artifacts.items()} == {"checkpoints/step-10/policy.bin": 4,
                                                             "final/policy.bin": 7}
    download = c.get(artifacts["final/policy.bin"]["url"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"weights"
    assert not (tmp_path / "web" / "policy-runs").exists()  # one file kept aside, not the run folder
    for missing in ("config.json", "final", "../../../etc/passwd", "final/../../job-1/final/policy.bin"):
        assert c.get(f"/api/dashboard/jobs/{run.job_id}/artifacts/{missing}").status_code == 404, missing

    page = c.get(f"/dashboard/checkpoints/{ckpt.pk}/").content.decode()
    assert pol["sample_grids"][0] in page and "0.480" in page
    compare = c.get(f"/api/dashboard/compare/checkpoints/?a={ckpt.pk}&b={ckpt.pk}").json()["a"]
    assert [g["name"] for g in compare["grids"]] == ["step-000005", "step-000010"]
    assert compare["rl_table"] == pol["rl_table"]
    curves = c.get(f"/api/dashboard/runs/overlay/?job={run.job_id}").json()["runs"][0]["curves"]
    assert curves["reward/fill/structure"][-1] == [10, pytest.approx(0.5)]
    assert "loss · train" in curves and not any(k.endswith(f"· {RL_WINDOW_KIND}") for k in curves)


def test_a_store_that_cannot_be_reached_is_a_503_and_leaves_the_list_local(settings, tmp_path, monkeypatch):
    settings.ARTIFACTS_STORE_URL = f"file://{tmp_path / 'store'}"
    settings.ARTIFACTS_ROOT = tmp_path / "gpu"
    run = policy_run(tmp_path / "gpu")
    final = Path(run.output_dir) / "final"
    final.mkdir(parents=True)
    (final / "policy.bin").write_bytes(b"weights")
    artifact_publish(final)
    settings.ARTIFACTS_ROOT = tmp_path / "web"
    c = staff_client()

    def refuse(*args):
        raise OSError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(DirectoryBackend, "list_keys", refuse)
        detail = c.get(f"/api/dashboard/jobs/{run.job_id}/")
    assert detail.status_code == 200 and detail.json()["artifacts"] == []
    monkeypatch.setattr(DirectoryBackend, "get_file", refuse)
    answer = c.get(f"/api/dashboard/jobs/{run.job_id}/artifacts/final/policy.bin")
    assert answer.status_code == 503 and "connection refused" in answer.json()["message"]


def test_a_resumed_run_records_each_window_once_and_waits_for_whole_grids(settings, tmp_path):
    run = policy_run(Path(settings.ARTIFACTS_ROOT))
    out = Path(run.output_dir)
    reporter = JobReporter(run.job)
    worker_writes(run, range(1, 8), reporter, _RunPages(run, out, reporter, total_steps=10))
    # Resumed from its step-5 checkpoint: the engine cuts the rows after it and replays 6, 7.
    kept = [ln for ln in (out / "metrics.jsonl").read_text().splitlines() if json.loads(ln)["step"] <= 5]
    (out / "metrics.jsonl").write_text("".join(ln + "\n" for ln in kept))
    pages = _RunPages(run, out, reporter, total_steps=10)
    (out / "samples" / "step-000010.png").write_bytes(png(10)[:-12])  # half written
    worker_writes(run, range(6, 10), reporter, pages)
    steps = list(MetricPoint.objects.filter(job=run.job, kind=RL_WINDOW_KIND).order_by("id").values_list("step",
                                                                                                          flat=True))
    assert steps == list(range(1, 10))
    assert [g["name"] for g in run_sample_grids(run)] == ["step-000005"]
    (out / "samples" / "step-000010.png").write_bytes(png(10))
    pages.sync()
    assert [g["name"] for g in run_sample_grids(run)] == ["step-000005", "step-000010"]


def test_the_embedded_default_reads_the_shared_disk(settings):
    """No object store: one disk, so the run folder's own files are listed and served, and the
    grids and windows go through media and the database all the same."""
    assert not settings.ARTIFACTS_STORE_URL
    run = policy_run(Path(settings.ARTIFACTS_ROOT))
    out = Path(run.output_dir)
    reporter = JobReporter(run.job)
    worker_writes(run, range(1, 6), reporter, _RunPages(run, out, reporter, total_steps=5))
    c = staff_client()
    detail = c.get(f"/api/dashboard/jobs/{run.job_id}/").json()
    assert {a["path"] for a in detail["artifacts"]} == {"metrics.jsonl", "samples/step-000005.png"}
    served = c.get(f"/api/dashboard/jobs/{run.job_id}/artifacts/samples/step-000005.png")
    assert served.status_code == 200 and b"".join(served.streaming_content) == png(5)
    assert detail["policy"]["sample_grids"][0].startswith("/media/")
    assert dsel.rl_reward_table(run)["rows"][0]["cells"]


def test_resume_is_offered_by_the_registrys_rule(settings):
    run = policy_run(Path(settings.ARTIFACTS_ROOT))
    Job.objects.filter(pk=run.job_id).update(status=JobStatus.FAILED)
    reward_job = run.reward_model.run.job
    Job.objects.filter(pk=reward_job.pk).update(status=JobStatus.FAILED)
    generation = job_create(kind=JobKind.GENERATION, name="gen", config={})
    Job.objects.filter(pk=generation.pk).update(status=JobStatus.FAILED)
    jobs = {j.pk: j for j in Job.objects.all()}
    assert job_resumable(jobs[run.job_id])
    assert not job_resumable(jobs[reward_job.pk])  # its model is registered: the reward kind's check refuses
    assert not job_resumable(jobs[generation.pk])  # generation is not a resumable kind
    untrained = reward_run_start(snapshot=run.reward_model.snapshot, overrides={"max_steps": 2}, enqueue=False)
    Job.objects.filter(pk=untrained.job_id).update(status=JobStatus.CANCELLED)
    assert dsel.job_summary(Job.objects.get(pk=untrained.job_id))["can_resume"]
    assert not dsel.job_summary(jobs[reward_job.pk])["can_resume"]
