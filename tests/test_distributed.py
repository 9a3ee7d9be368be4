"""Workers on hosts that share no disk, with an S3-compatible object store between them.

A real S3 server (moto, 127.0.0.1), the test process as the web host, and Celery workers that
each have their own MEDIA_ROOT and ARTIFACTS_ROOT: a CPU worker on ``default`` builds the
snapshot, imports a zip uploaded to the web host and writes an export the web host serves; GPU
workers on ``gpu`` train the reward model. The GPU worker is killed mid-run and the run resumes on
a fresh one whose cache is empty, from the checkpoint the first one published. An unreachable
store fails the run with the reason and registers nothing. The fresh worker then trains a policy
on the new reward model and generates candidates into a new campaign.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Candidate, ImportBatch, Provenance, Sample
from annotation.services.exports import export_start
from annotation.services.snapshots import snapshot_create
from core.artifacts import artifact_fetch, artifact_store
from enginekit.objectstore import MARKER
from jobs.models import Job, JobStatus
from rewardtrain.models import RewardModel, RewardRun
from rewardtrain.services import reward_run_resume, reward_run_start, reward_score_start
from tests.annotation.test_imports import row, zip_upload
from tests.annotation.test_snapshots import annotate
from tests.conftest import WorkerHandle, _print_worker_state, wait_for
from tests.factories import make_campaign, make_user
from tests.s3_server import CREDENTIALS, free_port, s3_server

pytestmark = [pytest.mark.distributed, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST = {"max_steps": 60, "batch_size": 2, "save_every": 2, "eval_every": 0, "log_every": 1,
        "max_pixels": 56 * 56, "device": "cpu"}


@pytest.fixture
def s3(settings, tmp_path):
    """The object store, used by this process (the web host) for media and artifacts."""
    with s3_server() as server:
        for name, value in {**CREDENTIALS, "AWS_S3_ENDPOINT_URL": server.endpoint,
                            "AWS_STORAGE_BUCKET_NAME": server.bucket, "AWS_LOCATION": "media",
                            "AWS_DEFAULT_ACL": None}.items():
            setattr(settings, name, value)
        settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
        settings.ARTIFACTS_STORE_URL = f"s3://{server.bucket}/artifacts"
        settings.MEDIA_ROOT = tmp_path / "web" / "media"
        settings.ARTIFACTS_ROOT = tmp_path / "web" / "artifacts"
        yield server


class Hosts:
    """Worker processes, each a 'host' with its own local roots under tmp_path/<name>."""

    def __init__(self, s3, tmp_path: Path, broker: str) -> None:
        from django.db import connection

        db = connection.settings_dict
        self.tmp_path, self.workers = tmp_path, {}
        self.base_env = {
            **os.environ, **s3.env(),
            "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_BROKER_URL": broker, "DJANGO_READ_DOT_ENV_FILE": "false", "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", "JOB_STALE_AFTER_SECONDS": "3", "MEDIA_STORE_PREFIX": "media",
        }

    def start(self, name: str, queue: str, **env: str) -> WorkerHandle:
        root = self.tmp_path / name
        worker = WorkerHandle({**self.base_env, "MEDIA_ROOT": str(root / "media"),
                               "ARTIFACTS_ROOT": str(root / "artifacts"), **env},
                              self.tmp_path / f"{name}.log", ("--pool", "solo", "-Q", queue, "-n", f"{name}@%h"))
        worker.start()
        self.workers[name] = worker
        return worker

    def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.stop()


@pytest.fixture
def hosts(request, s3, tmp_path):
    import redis

    from config.celery_app import app

    broker = app.conf.broker_url
    if not broker.startswith("redis://"):
        pytest.fail("the distributed test needs CELERY_BROKER_URL=redis://… (make test sets it)")
    redis.Redis.from_url(broker).delete("default", "gpu")
    group = Hosts(s3, tmp_path, broker)
    yield group
    group.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name, worker in group.workers.items():
            print(f"--- {name} log:\n{worker.log_path.read_text()[-4000:]}")
        _print_worker_state(next(iter(group.workers.values())))


def _published(s3, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"artifacts/{prefix}")
    return sorted(o["Key"][len("artifacts/"):] for o in listing.get("Contents", []))


def _finished(run: RewardRun) -> Job | None:
    job = Job.objects.get(pk=run.job_id)
    return job if job.is_finished else None


def _judged_campaign():
    """A pairwise campaign judged by one annotator (A always wins), splits fixed to 6/1/1."""
    campaign = make_campaign(n_samples=8, overlap=1, criteria=["structure"])
    annotate(campaign, [make_user("dist-ann", "annotator")], lambda k, i, slots: {"structure": slots[0]})
    ids = list(Sample.objects.filter(items__campaign=campaign).order_by("id").values_list("id", flat=True))
    Sample.objects.filter(pk__in=ids[:-2]).update(split="train")
    Sample.objects.filter(pk=ids[-2]).update(split="val")
    Sample.objects.filter(pk=ids[-1]).update(split="test")
    return campaign


def test_snapshot_and_reward_run_across_hosts_without_a_shared_disk(s3, hosts, tmp_path):
    # --- the web host: media go to the object store, not to its disk
    campaign = _judged_campaign()
    assert s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="media/")["KeyCount"] >= 16  # 8 samples x 2
    assert not any((tmp_path / "web" / "media").rglob("*.png"))
    candidate = Candidate.objects.filter(sample__items__campaign=campaign).first()
    client = Client()
    client.force_login(make_user("dist-viewer", "annotator"))
    served = client.get(reverse("media", kwargs={"path": candidate.image.name}))
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == s3.client().get_object(
        Bucket=s3.bucket, Key=f"media/{candidate.image.name}")["Body"].read()
    assert client.get(reverse("media", kwargs={"path": "candidates/none.png"})).status_code == 404

    # --- the CPU host builds the snapshot from the media in the store and publishes it
    hosts.start("cpu", "default")
    snapshot = snapshot_create(name="dist", filter={"campaign_ids": [campaign.pk]})
    wait_for(lambda: Job.objects.get(pk=snapshot.job_id).is_finished, timeout=120, message="the snapshot job")
    snapshot.refresh_from_db()
    assert snapshot.status == JobStatus.SUCCEEDED, snapshot.error
    assert Path(snapshot.path).is_relative_to(tmp_path / "cpu" / "artifacts")
    key = artifact_store().key_for(snapshot.path)
    assert f"{key}/{MARKER}" in _published(s3, key) and f"{key}/pairs.jsonl" in _published(s3, key)

    # --- an import uploaded to the web host and an export downloaded from it, both run on the CPU host
    curator = Client()
    curator.force_login(make_user("dist-cur", "curator"))
    upload = curator.post("/api/imports/", {"file": zip_upload([row("dist-imported")], "dist.zip")})
    assert upload.status_code == 202, upload.content
    batch = wait_for(lambda: (b := ImportBatch.objects.get(pk=upload.json()["id"])).status in ("succeeded", "failed")
                     and b, timeout=60, message="the import on the CPU host")
    assert (batch.status, batch.samples_created) == ("succeeded", 1), batch.errors
    # The upload went through the store and leaves it once the job has finished (just after the batch).
    wait_for(lambda: _published(s3, "imports/") == [], timeout=30, message="the upload to leave the store")
    assert not any((tmp_path / "web" / "artifacts" / "imports").iterdir())
    export = export_start(fmt="jsonl", campaign_ids=[campaign.pk])
    export = wait_for(lambda: (j := Job.objects.get(pk=export.pk)).is_finished and j, timeout=60,
                      message="the export on the CPU host")
    assert export.status == JobStatus.SUCCEEDED, export.error
    download = curator.get(f"/api/exports/jobs/{export.pk}/download/")
    assert download.status_code == 200
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == export.result["sha256"]
    assert (tmp_path / "cpu" / "artifacts" / "exports" / str(export.pk)).is_dir()  # written there, fetched here

    # --- a GPU host that cannot reach the store: the run fails with the reason, nothing registered
    dead_end = f"http://127.0.0.1:{free_port()}"
    hosts.start("gpu-cut-off", "gpu", AWS_S3_ENDPOINT_URL=dead_end)
    run = reward_run_start(snapshot=snapshot, overrides=FAST, user=make_user("dist-sci", "scientist"))
    job = wait_for(lambda: _finished(run), timeout=120, message="the cut-off run to fail")
    assert job.status == JobStatus.FAILED
    assert "unreachable" in job.error and dead_end in job.error and key in job.error, job.error
    assert not RewardModel.objects.exists() and _published(s3, "reward-runs/") == []
    hosts.workers["gpu-cut-off"].stop()

    # --- GPU host A trains, publishing each checkpoint; it dies after the first one is published
    reward_run_resume(run=run)
    worker_a = hosts.start("gpu-a", "gpu")
    run_key = f"reward-runs/run-{run.job_id}"
    wait_for(lambda: any(k.endswith(MARKER) for k in _published(s3, f"{run_key}/checkpoints/")), timeout=180,
             interval=0.05, message="host A's first published checkpoint")
    worker_a.kill()
    assert Job.objects.get(pk=run.job_id).status == JobStatus.RUNNING  # nobody knows yet
    local_a = tmp_path / "gpu-a" / "artifacts"
    assert (local_a / key / "pairs.jsonl").is_file()  # host A fetched the snapshot for itself

    # --- host B starts with an empty cache, takes the lost run over and finishes it
    time.sleep(4)  # past JOB_STALE_AFTER_SECONDS=3
    hosts.start("gpu-b", "gpu")
    job = wait_for(lambda: _finished(run), timeout=90, message="the lost run to be marked failed")
    assert job.status == JobStatus.FAILED and job.error.startswith("Worker lost"), job.error
    reward_run_resume(run=run)
    job = wait_for(lambda: _finished(run), timeout=300, message="the run resumed on host B")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["train"]["resumed_from_step"] >= 2

    # --- what was registered is on host B, published, and readable from any other host
    model = RewardModel.objects.get(run=run)
    local_b = tmp_path / "gpu-b" / "artifacts"
    assert Path(model.path).is_relative_to(local_b) and model.snapshot_id == snapshot.pk
    assert (local_b / key / "pairs.jsonl").is_file()
    final_key = artifact_store().key_for(model.path)
    assert final_key == f"{run_key}/final" and f"{final_key}/{MARKER}" in _published(s3, final_key)
    on_web = artifact_fetch(model.path)
    assert on_web == tmp_path / "web" / "artifacts" / final_key
    assert (on_web / "onereward.json").is_file()
    assert not (tmp_path / "web" / "artifacts" / "snapshots").exists()  # the web host fetched only what it asked

    # --- policy RL: started on the web host (the reward model's card read from the store, the
    # conditions published), trained on host B, its checkpoint published before it is registered
    from policytrain.models import PolicyCheckpoint
    from policytrain.services import generation_job_start, policy_run_start
    from tests.policytrain.test_generation_api import GEN
    from tests.policytrain.test_policy_runs import FAST as RL_FAST
    from tests.policytrain.test_policy_runs import make_samples

    samples = make_samples("fill", n=2, prefix="dist")
    # The web host and host B share this machine's disk: move both copies away, so that the web host
    # reads the model's card from the store and host B fetches the model again.
    on_web.rename(on_web.with_name("moved"))
    Path(model.path).rename(Path(model.path).with_name("final-moved"))

    # --- scoring: checked on the web host against the card in the store, scored on host B
    first, second = candidate.sample.candidates.order_by("id").values_list("id", flat=True)[:2]
    scoring = reward_score_start(model=model, pairs=[{"first": first, "second": second, "criterion": "structure"}])
    scoring = wait_for(lambda: (j := Job.objects.get(pk=scoring.pk)).is_finished and j, timeout=120,
                       message="the scoring job on host B")
    assert scoring.status == JobStatus.SUCCEEDED, scoring.error
    assert 0.0 <= scoring.result["scores"][0]["p_yes"] <= 1.0
    assert (tmp_path / "web" / "artifacts" / ".files" / final_key / "onereward.json").is_file()
    assert (Path(model.path) / "onereward.json").is_file()  # fetched again by host B
    # The raw policy weights at a larger rate, as test_generation_api's checkpoint: three EMA steps at
    # 1e-2 can leave every 8-bit pixel as the base's, and the generation job below then has nothing to
    # pair (it failed once that way in a full run).
    policy = policy_run_start(reward_model=model, overrides={**RL_FAST, "deploy_weights": "policy", "learning_rate": 0.05})
    conditions_key = artifact_store().key_for(policy.conditions_dir)
    assert f"{conditions_key}/{MARKER}" in _published(s3, conditions_key)
    policy_job = wait_for(lambda: (j := Job.objects.get(pk=policy.job_id)).is_finished and j, timeout=300,
                          message="the policy run on host B")
    assert policy_job.status == JobStatus.SUCCEEDED, policy_job.error
    checkpoint = PolicyCheckpoint.objects.get(run=policy)
    assert Path(checkpoint.weights_dir).is_relative_to(local_b)
    weights_key = artifact_store().key_for(checkpoint.weights_dir)
    assert f"{weights_key}/{MARKER}" in _published(s3, weights_key)
    policy_key = f"policy-runs/job-{policy.job_id}/checkpoints/"
    assert any(k.endswith(MARKER) for k in _published(s3, policy_key))  # published as they were written

    # --- the run page on the web host, which never had the run folder: the reward table from the
    # database, the grids from the media bucket, the published weights from the store
    scientist = Client()
    scientist.force_login(run.started_by)
    page = scientist.get(f"/api/dashboard/jobs/{policy.job_id}/").json()
    assert any(c.get("latest") is not None for r in page["policy"]["rl_table"]["rows"] for c in r["cells"])
    assert len(page["policy"]["sample_grids"]) == RL_FAST["max_steps"]
    assert scientist.get(page["policy"]["sample_grids"][-1]).status_code == 200
    final_file = next(a for a in page["artifacts"] if a["path"] == "final/policy.json")
    assert scientist.get(final_file["url"]).status_code == 200

    # --- generation on host B: the candidates land in the media bucket and a new campaign starts
    gen = generation_job_start(checkpoint=checkpoint, samples=[x.pk for x in samples], seeds=[0],
                               campaign_name="dist-gen", criteria=["structure"], overlap=1, params=GEN)
    gen_job = wait_for(lambda: (j := Job.objects.get(pk=gen.job_id)).is_finished and j, timeout=300,
                       message="the generation job on host B")
    assert gen_job.status == JobStatus.SUCCEEDED, gen_job.error
    gen.refresh_from_db()
    assert gen.campaign is not None and gen.campaign.items.count() == 2 and gen.candidates_created == 4
    generated = Candidate.objects.filter(provenance=Provenance.POLICY).first()
    assert s3.client().head_object(Bucket=s3.bucket, Key=f"media/{generated.image.name}")["ContentLength"] > 0
