"""Exports and imports between hosts that share no disk: a folder object store (``file://``) and
two ARTIFACTS_ROOTs, the test switching between them as the web host and the CPU worker."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from annotation.models import ImportBatch, ImportStatus, Sample
from annotation.services.exports import export_execute, export_start
from annotation.services.imports import import_execute
from core.artifacts import artifact_store
from enginekit.objectstore import MARKER
from jobs.models import Job, JobKind, JobStatus
from tests.annotation.test_imports import row, zip_upload
from tests.annotation.test_snapshots import annotate
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

#: A "store" no host can write to or read from: every call fails like an unreachable server.
DEAD_STORE = "file:///dev/null/store"


@pytest.fixture
def hosts(settings, tmp_path):
    """``hosts("web")`` / ``hosts("worker")`` makes this process that host: its own ARTIFACTS_ROOT,
    one object store (a folder) between them."""
    settings.ARTIFACTS_STORE_URL = f"file://{tmp_path / 'store'}"

    def be(name: str) -> Path:
        settings.ARTIFACTS_ROOT = tmp_path / name / "artifacts"
        return settings.ARTIFACTS_ROOT

    be("web")
    return be


def _in_store(tmp_path: Path, kind: str) -> list[str]:
    root = tmp_path / "store"
    return sorted(p.relative_to(root).as_posix() for p in (root / kind).rglob("*") if p.is_file())


def _curator() -> APIClient:
    client = APIClient()
    user = User.objects.filter(username="store-cur").first() or make_user("store-cur", "curator")
    client.force_authenticate(user)
    return client


def _judged_campaign():
    campaign = make_campaign(n_samples=3, overlap=1, criteria=["structure"])
    annotate(campaign, [make_user("store-ann", "annotator")], lambda k, i, slots: {"structure": slots[0]})
    return campaign


# --- exports ------------------------------------------------------------------------------------

def test_an_export_written_on_the_worker_is_downloaded_from_the_web_host(hosts, tmp_path):
    campaign = _judged_campaign()
    job = export_start(fmt="jsonl", campaign_ids=[campaign.pk], enqueue=False)
    worker = hosts("worker")
    done = export_execute(job.pk)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert _in_store(tmp_path, "exports") == [f"exports/{job.pk}/{MARKER}", f"exports/{job.pk}/judgments.jsonl"]
    assert "published exports/" in done.log_tail

    web = hosts("web")
    assert not (web / "exports").exists()
    download = _curator().get(f"/api/exports/jobs/{job.pk}/download/")
    assert download.status_code == 200, download.content
    data = b"".join(download.streaming_content)
    assert hashlib.sha256(data).hexdigest() == done.result["sha256"] == download["X-Content-SHA256"]
    assert data == (worker / "exports" / str(job.pk) / "judgments.jsonl").read_bytes()
    assert (web / "exports" / str(job.pk) / "judgments.jsonl").read_bytes() == data  # fetched once, kept

    # Gone everywhere (cleaned up): the download says so, it does not fail.
    artifact_store().unpublish(f"exports/{job.pk}")
    (web / "exports" / str(job.pk) / "judgments.jsonl").unlink()
    gone = _curator().get(f"/api/exports/jobs/{job.pk}/download/")
    assert gone.status_code == 404 and "gone" in gone.json()["message"]


def test_an_export_that_cannot_be_published_fails_with_the_reason(hosts, settings):
    campaign = _judged_campaign()
    job = export_start(fmt="parquet", campaign_ids=[campaign.pk], enqueue=False)
    hosts("worker")
    settings.ARTIFACTS_STORE_URL = DEAD_STORE
    failed = export_execute(job.pk)
    assert failed.status == JobStatus.FAILED
    assert f"unreachable or refusing while uploading exports/{job.pk}/judgments.parquet" in failed.error, failed.error
    assert not failed.result  # nothing registered: no rows, size or file to download
    hosts("web")
    assert _curator().get(f"/api/exports/jobs/{job.pk}/download/").status_code == 404


def test_a_download_while_the_store_is_down_is_503_with_the_reason(hosts, settings):
    campaign = _judged_campaign()
    job = export_start(fmt="jsonl", campaign_ids=[campaign.pk], enqueue=False)
    hosts("worker")
    assert export_execute(job.pk).status == JobStatus.SUCCEEDED
    hosts("web")
    settings.ARTIFACTS_STORE_URL = DEAD_STORE
    response = _curator().get(f"/api/exports/jobs/{job.pk}/download/")
    assert response.status_code == 503
    assert response.json()["code"] == "store_unavailable" and f"exports/{job.pk}" in response.json()["message"]


def test_without_a_store_the_export_stays_where_it_was_written(settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = ""
    settings.ARTIFACTS_ROOT = tmp_path / "one-disk"
    job = export_start(fmt="jsonl", campaign_ids=[_judged_campaign().pk], enqueue=False)
    done = export_execute(job.pk)
    assert done.status == JobStatus.SUCCEEDED and "published" not in done.log_tail
    assert (tmp_path / "one-disk" / "exports" / str(job.pk) / "judgments.jsonl").is_file()
    assert _curator().get(f"/api/exports/jobs/{job.pk}/download/").status_code == 200


# --- imports ------------------------------------------------------------------------------------

def test_an_upload_stored_by_the_web_host_is_imported_by_the_worker(hosts, tmp_path):
    response = _curator().post("/api/imports/", {"file": zip_upload([row()], "batch.zip")}, format="multipart")
    assert response.status_code == 202, response.content
    batch = ImportBatch.objects.get(pk=response.json()["id"])
    folder = batch.job.config["upload"]
    # Published before the job was sent, and not kept on the web host.
    assert _in_store(tmp_path, "imports") == [f"imports/{folder}/{MARKER}", f"imports/{folder}/upload.zip"]
    assert list((tmp_path / "web" / "artifacts" / "imports").iterdir()) == []

    worker = hosts("worker")
    done = import_execute(batch.job_id)
    assert (done.status, done.samples_created, done.candidates_created) == (ImportStatus.SUCCEEDED, 1, 2)
    assert Sample.objects.filter(external_id="s1").exists()
    # Finished: the upload is gone from the worker and from the store.
    assert list((worker / "imports").iterdir()) == [] and _in_store(tmp_path, "imports") == []


def test_an_upload_the_store_refuses_is_a_503_and_nothing_is_recorded(hosts, settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = DEAD_STORE
    response = _curator().post("/api/imports/", {"file": zip_upload([row()], "batch.zip")}, format="multipart")
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "store_unavailable" and "unreachable or refusing" in response.json()["message"]
    assert not ImportBatch.objects.exists() and not Job.objects.filter(kind=JobKind.IMPORT).exists()
    assert list((tmp_path / "web" / "artifacts" / "imports").iterdir()) == []


def test_a_worker_that_cannot_reach_the_store_fails_the_import_with_the_reason(hosts, settings, tmp_path):
    response = _curator().post("/api/imports/", {"file": zip_upload([row()], "batch.zip")}, format="multipart")
    batch_id = response.json()["id"]
    hosts("worker")
    settings.ARTIFACTS_STORE_URL = DEAD_STORE
    failed = import_execute(ImportBatch.objects.get(pk=batch_id).job_id)
    job = Job.objects.get(pk=failed.job_id)
    assert job.status == JobStatus.FAILED and "unreachable or refusing while reading imports/" in job.error, job.error
    assert failed.status == ImportStatus.FAILED and "unreachable" in failed.errors[0]["error"]
    assert not Sample.objects.exists()
