"""Import validation: good folders and zips land whole; any bad row lands nothing."""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import Candidate, ImportBatch, ImportStatus, Sample
from annotation.services.imports import ImportFailed, import_execute, import_samples, import_start
from jobs.models import Job, JobKind, JobStatus, MetricPoint
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def good_mask(size=(32, 32)) -> Image.Image:
    m = Image.new("L", size, 0)
    m.paste(255, (8, 8, 24, 24))
    return m


def bomb_png(width: int, height: int) -> bytes:
    """A tiny file whose header claims a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def write_folder(root: Path, rows: list[dict], files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def base_files() -> dict[str, bytes]:
    return {
        "img/s1.png": png(Image.new("RGB", (32, 32), (10, 200, 30))),
        "mask/s1.png": png(good_mask()),
        "out/a.png": png(Image.new("RGB", (32, 32), (1, 2, 3))),
        "out/b.png": png(Image.new("RGB", (32, 32), (200, 2, 3))),
    }


def row(ext="s1", **over) -> dict:
    r = {"external_id": ext, "task": "fill", "prompt": "a red circle", "source": "img/s1.png", "mask": "mask/s1.png",
         "candidates": [{"image": "out/a.png", "source_name": "sysA"}, {"image": "out/b.png", "source_name": "sysB"}]}
    r.update(over)
    return r


def test_folder_import_creates_samples_and_candidates(tmp_path):
    batch = import_samples(path=write_folder(tmp_path / "imp", [row()], base_files()))
    assert (batch.status, batch.samples_created, batch.candidates_created) == (ImportStatus.SUCCEEDED, 1, 2)
    sample = Sample.objects.get(external_id="s1")
    assert (sample.width, sample.height, sample.split) == (32, 32, sample.split)
    assert Image.open(default_storage.open(sample.mask.name)).getextrema() == (0, 255)
    assert set(Candidate.objects.values_list("source_name", flat=True)) == {"sysA", "sysB"}


def zip_upload(rows: list[dict], name: str) -> io.BytesIO:
    """An in-memory zip of ``base_files`` and a manifest of ``rows``, named like an upload."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in base_files().items():
            zf.writestr(path, data)
        zf.writestr("manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buf.seek(0)
    buf.name = name
    return buf


def test_zip_import_through_the_api_as_curator(tmp_path):
    buf = zip_upload([row()], "batch.zip")
    client = APIClient()
    client.force_authenticate(make_user("cur", "curator"))
    response = client.post("/api/imports/", {"file": buf}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["samples_created"], body["job"]["status"]) == ("queued", 0, "queued")
    assert response["Location"] == body["url"] and body["url"].endswith(f"/api/imports/{body['id']}/")
    assert body["job"]["url"].endswith(f"/api/dashboard/jobs/{body['job']['id']}/")
    assert not Sample.objects.exists()  # the request only stored the upload and queued the job
    import_execute(body["job"]["id"])
    done = client.get(body["url"]).json()
    assert (done["status"], done["samples_created"], done["candidates_created"]) == ("succeeded", 1, 2)
    assert done["job"]["status"] == "succeeded" and done["job"]["progress"] == 1.0
    not_zip = io.BytesIO(b"hello")
    not_zip.name = "x.zip"
    bad = client.post("/api/imports/", {"file": not_zip}, format="multipart")
    assert bad.status_code == 400
    assert "file" in bad.json()["fields"]


BAD_CASES = {
    "grey mask": ({"mask/s1.png": png(Image.new("L", (32, 32), 128))}, {}, "not binary"),
    "empty mask": ({"mask/s1.png": png(Image.new("L", (32, 32), 0))}, {}, "mask is empty"),
    "mask size": ({"mask/s1.png": png(good_mask((16, 16)))}, {}, "mask is 16×16"),
    "candidate size": ({"out/a.png": png(Image.new("RGB", (8, 8)))}, {}, "candidate 0 is 8×8"),
    "not an image": ({"img/s1.png": b"GIF89a nonsense"}, {}, "not a readable image"),
    "too many pixels": ({"img/s1.png": bomb_png(7000, 7000)}, {}, "pixels; the limit"),
    "pixel bomb": ({"img/s1.png": bomb_png(20000, 20000)}, {}, "decompression bomb"),
    "traversal": ({}, {"source": "../../etc/passwd"}, "must be relative"),
    "missing file": ({}, {"source": "img/none.png"}, "does not exist"),
    "unknown task": ({}, {"task": "paint"}, "task must be one of"),
    "bad provenance": ({}, {"candidates": [{"image": "out/a.png", "provenance": "magic"}]}, "provenance"),
}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_one_bad_row_fails_the_whole_import_with_a_row_report(tmp_path, case):
    files_over, row_over, message = BAD_CASES[case]
    good = {f"good/{name}": data for name, data in base_files().items()}
    files = {**base_files(), **files_over, **good}
    good_row = row("good-first", source="good/img/s1.png", mask="good/mask/s1.png",
                   candidates=[{"image": "good/out/a.png"}, {"image": "good/out/b.png"}])
    rows = [good_row, row("bad-second", **row_over)]
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "imp", rows, files))
    errors = info.value.batch.errors
    assert [e["line"] for e in errors] == [2]
    assert message in errors[0]["error"]
    assert not Sample.objects.exists()  # all-or-nothing: the good row is not imported either
    assert ImportBatch.objects.get().status == ImportStatus.FAILED


def test_duplicate_external_ids_and_bad_json_are_reported(tmp_path):
    root = write_folder(tmp_path / "imp", [row("dup"), row("dup")], base_files())
    with (root / "manifest.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(ImportFailed) as info:
        import_samples(path=root)
    assert [e["line"] for e in info.value.batch.errors] == [2, 3]


def test_a_failed_write_leaves_no_orphan_files(tmp_path, monkeypatch, settings):
    from annotation.services import imports

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "candidate_create_from_png", boom)
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "imp", [row()], base_files()))
    assert info.value.batch.errors == [{"line": 0, "error": "RuntimeError: disk full"}]
    assert info.value.batch.job.status == JobStatus.FAILED
    assert not Sample.objects.exists()
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_management_command_imports_and_reports_bad_rows(tmp_path):
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    source = write_folder(tmp_path / "ok", [row()], base_files())
    call_command("import_samples", str(source), stdout=out)
    assert "Imported 1 samples and 2 candidates" in out.getvalue()
    # The command records an import job and runs it here, as a worker would; the status is the job's.
    batch = ImportBatch.objects.select_related("job").get()
    assert (batch.job.kind, batch.job.status, batch.status) == (JobKind.IMPORT, JobStatus.SUCCEEDED, "succeeded")
    assert batch.job.config == {"path": str(source.resolve()), "batch_id": batch.pk}
    assert f"job {batch.job_id}" in out.getvalue() and (source / "manifest.jsonl").is_file()  # left where it is
    bad = write_folder(tmp_path / "bad", [row("s9", task="paint")], base_files())
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_samples", str(bad), stderr=err)
    assert "line 1: task must be one of" in err.getvalue()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_samples", str(tmp_path / "missing"))


# --- splits, every error, candidate counts, adding to stored samples, the record's name ---------

def third_files() -> dict[str, bytes]:
    return {**base_files(), "out/c.png": png(Image.new("RGB", (32, 32), (3, 90, 250)))}


def test_an_explicit_split_is_kept_and_shared_by_its_key(tmp_path):
    from annotation.vocabulary import split_for_key

    # Keys whose hash split is train, so only the manifest can put them in test.
    key, other = [k for k in (f"scene-{i}" for i in range(200)) if split_for_key(k) == "train"][:2]
    rows = [row("s1", split_key=key, split="test"), row("s2", split_key=key),  # inherits "test" from s1
            row("s3", split_key=other), row("s4", split="val")]
    import_samples(path=write_folder(tmp_path / "imp", rows, base_files()))
    splits = dict(Sample.objects.values_list("external_id", "split"))
    assert splits == {"s1": "test", "s2": "test", "s3": "train", "s4": "val"}
    # A later import without a split joins the stored samples of its key.
    import_samples(path=write_folder(tmp_path / "imp2", [row("s5", split_key=key)], base_files()))
    assert Sample.objects.get(external_id="s5").split == "test"


def test_bad_and_conflicting_splits_are_row_errors(tmp_path):
    import_samples(path=write_folder(tmp_path / "first", [row("stored", split_key="k0", split="val")], base_files()))
    rows = [row("a", split_key="k1", split="train"), row("b", split_key="k1", split="test"),
            row("c", split="TEST"), row("d", split_key="k0", split="train")]
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "imp", rows, base_files()))
    errors = info.value.batch.errors
    assert [e["line"] for e in errors] == [2, 3, 4]
    assert "split 'test' conflicts with split 'train' of line 1" in errors[0]["error"]
    assert "split must be one of train, val, test" in errors[1]["error"]
    assert "conflicts with split 'val' of the stored samples" in errors[2]["error"]
    assert Sample.objects.count() == 1


def test_every_error_of_every_row_is_reported(tmp_path):
    bad = row("bad", task="paint", source="img/none.png", split="holdout",
              candidates=[{"image": "out/a.png", "provenance": "magic"}, {"image": "out/none.png"}])
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "imp", [bad, row("", prompt=["x"])], base_files()))
    by_line: dict[int, list[str]] = {}
    for e in info.value.batch.errors:
        by_line.setdefault(e["line"], []).append(e["error"])
    assert len(by_line[1]) == 5, by_line[1]
    for message in ("task must be one of", "split must be one of", "does not exist", "provenance", "candidate 1"):
        assert any(message in e for e in by_line[1]), (message, by_line[1])
    assert any("external_id is required" in e for e in by_line[2])
    assert any("prompt must be a string" in e for e in by_line[2])


@pytest.mark.parametrize("candidates", [
    [], [{"image": "out/a.png"}], [{"image": "out/a.png"}, {"image": "out/a.png", "source_name": "again"}],
], ids=["none", "one", "same image twice"])
def test_a_new_sample_needs_two_different_candidates(tmp_path, candidates):
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "imp", [row(candidates=candidates)], base_files()))
    assert [e["line"] for e in info.value.batch.errors] == [1]
    assert "at least 2 different candidate images" in info.value.batch.errors[0]["error"]


def test_an_import_adds_candidates_to_stored_samples_by_external_id(tmp_path):
    import_samples(path=write_folder(tmp_path / "first", [row("s1", split="test")], base_files()))
    sample = Sample.objects.get(external_id="s1")
    more = row("s1", split="test", source="img/absent.png",  # source is not read for a stored sample
               candidates=[{"image": "out/b.png"}, {"image": "out/c.png", "source_name": "sysC"}])
    batch = import_samples(path=write_folder(tmp_path / "more", [more, row("s2")], third_files()))
    assert (batch.samples_created, batch.candidates_created) == (1, 3)  # s1 gets only c (b is stored); s2 a, b
    assert sorted(sample.candidates.values_list("source_name", flat=True)) == ["sysA", "sysB", "sysC"]
    assert Sample.objects.get(external_id="s1").split == "test"
    # Re-sending only images it already has adds nothing and is no error.
    again = import_samples(path=write_folder(tmp_path / "again", [row("s1")], base_files()))
    assert (again.samples_created, again.candidates_created) == (0, 0)


def test_adding_to_a_stored_sample_never_changes_it(tmp_path):
    import_samples(path=write_folder(tmp_path / "first", [row("s1"), row("s9", split="train")], base_files()))
    rows = [row("s1", task="extend"), row("s1-b"), row("s9", prompt="another prompt", split="test"),
            row("s1-b")]
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "bad", rows, base_files()))
    errors = info.value.batch.errors
    assert [e["line"] for e in errors] == [1, 3, 3, 4], errors
    assert "stored with task 'fill', not 'extend'" in errors[0]["error"]
    assert "prompt 'another prompt' differs" in errors[1]["error"] and "split 'test' differs" in errors[2]["error"]
    assert "appears on an earlier line" in errors[3]["error"]
    assert Candidate.objects.count() == 4 and Sample.objects.count() == 2


def test_the_import_record_keeps_the_uploaded_file_name(tmp_path):
    buf = zip_upload([row(), row("s2", task="paint")], "spring-batch.zip")
    client = APIClient()
    client.force_authenticate(make_user("cur", "curator"))
    response = client.post("/api/imports/", {"file": buf}, format="multipart")
    assert response.status_code == 202
    import_execute(response.json()["job"]["id"])
    batch = ImportBatch.objects.get()
    assert (batch.source_name, batch.status) == ("spring-batch.zip", ImportStatus.FAILED)


def test_the_admin_import_page_keeps_the_uploaded_file_name(client, django_user_model):
    buf = zip_upload([row(split="val")], "autumn-set.zip")
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-test-1234"))
    response = client.post("/admin/annotation/sample/import/",
                           {"file": SimpleUploadedFile(buf.name, buf.getvalue())})
    assert response.status_code == 302, response.content[:500]
    batch = ImportBatch.objects.get()
    # The admin starts the same job as the API and the dashboard, then shows the batch's record.
    assert response.url == f"/admin/annotation/importbatch/{batch.pk}/change/"
    assert (batch.status, batch.job.kind) == (ImportStatus.QUEUED, "import")
    import_execute(batch.job_id)
    batch.refresh_from_db()
    assert (batch.source_name, batch.samples_created, batch.split_counts) == ("autumn-set.zip", 1, {"val": 1})
    assert Sample.objects.get().split == "val"
    assert "autumn-set.zip" in client.get(response.url).content.decode()
    not_zip = client.post("/admin/annotation/sample/import/", {"file": SimpleUploadedFile("n.zip", b"hello")})
    assert not_zip.status_code == 200 and "Not a zip archive." in not_zip.content.decode()
    assert ImportBatch.objects.count() == 1


# --- imports as jobs: progress, the report on the batch, nothing half-written, the upload removed -----

def uploads(settings) -> list[Path]:
    """The stored uploads still waiting for (or held by) an import job."""
    root = Path(settings.ARTIFACTS_ROOT) / "imports"
    return sorted(root.iterdir()) if root.exists() else []


def media_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def started(rows: list[dict], name: str = "batch.zip", user=None) -> ImportBatch:
    """An import started like the API starts it, its job not yet run."""
    buf = zip_upload(rows, name)
    upload = SimpleUploadedFile(name, buf.getvalue(), content_type="application/zip")
    return import_start(upload=upload, user=user, enqueue=False)


def test_an_import_job_reports_progress_and_per_split_counts_and_removes_the_upload(settings):
    rows = [row("s1", split="test"), row("s2", split="train"), row("s3", split_key="s2")]
    batch = started(rows, user=make_user("cur", "curator"))
    assert (batch.status, batch.samples_created) == (ImportStatus.QUEUED, 0) and len(uploads(settings)) == 1
    assert batch.job.config["batch_id"] == batch.pk and batch.job.kind == JobKind.IMPORT
    assert not Sample.objects.exists()
    done = import_execute(batch.job_id)
    job = Job.objects.get(pk=batch.job_id)
    assert (done.status, done.samples_created, done.candidates_created) == (ImportStatus.SUCCEEDED, 3, 6)
    assert done.split_counts == {"train": 2, "test": 1}  # s3 follows s2's key into train
    assert (job.status, job.progress, job.step, job.total_steps) == (JobStatus.SUCCEEDED, 1.0, 6, 6)
    assert job.result == {"batch_id": batch.pk, "samples_created": 3, "candidates_created": 6,
                          "split_counts": {"train": 2, "test": 1}}
    points = [p.values for p in MetricPoint.objects.filter(job=job)]
    assert points[0] == {"phase": "validate", "rows_done": 0, "rows_total": 3}
    assert points[-1] == {"phase": "write", "rows_done": 3, "rows_total": 3}
    assert uploads(settings) == []
    assert ImportBatch.objects.get().split_counts == {"train": 2, "test": 1}
    # A redelivered message after the outcome changes nothing (no second import of the same rows).
    assert import_execute(batch.job_id).samples_created == 3 and Sample.objects.count() == 3


def test_a_failed_import_job_keeps_every_row_error_writes_nothing_and_removes_the_upload(settings):
    rows = [row("s1"), row("s2", task="paint", split="holdout"), row("", candidates=[]), row("s1")]
    batch = started(rows, "broken.zip")
    done = import_execute(batch.job_id)
    job = Job.objects.get(pk=batch.job_id)
    assert done.status == ImportStatus.FAILED and job.status == JobStatus.FAILED
    lines = [(e["line"], e["error"].split(" ")[0]) for e in done.errors]
    assert lines == [(2, "task"), (2, "split"), (3, "external_id"), (3, "pairwise"), (4, "external_id")], done.errors
    assert f"{len(done.errors)} row error(s)" in job.error
    assert not Sample.objects.exists() and not Candidate.objects.exists() and media_files(settings) == []
    assert (done.samples_created, done.split_counts) == (0, {})
    assert uploads(settings) == []


def test_a_job_that_fails_while_writing_leaves_nothing_behind(settings, monkeypatch):
    from annotation.services import imports

    calls = []

    def fail_on_second_row(**kwargs):
        calls.append(kwargs["sample"].external_id)
        if kwargs["sample"].external_id == "s2":
            raise RuntimeError("disk full")
        return real(**kwargs)

    real = imports.candidate_create_from_png
    monkeypatch.setattr(imports, "candidate_create_from_png", fail_on_second_row)
    batch = started([row("s1"), row("s2"), row("s3")])
    done = import_execute(batch.job_id)
    assert "s1" in calls and "s2" in calls  # s1 had been written before s2 failed
    assert done.status == ImportStatus.FAILED
    assert done.errors == [{"line": 0, "error": "RuntimeError: disk full"}]
    assert not Sample.objects.exists() and not Candidate.objects.exists() and media_files(settings) == []
    assert uploads(settings) == []


def test_an_import_cancelled_while_queued_fails_its_batch_and_removes_the_upload(settings):
    from jobs.services import job_cancel

    batch = started([row()])
    job_cancel(job=batch.job)
    done = import_execute(batch.job_id)
    assert done.status == ImportStatus.FAILED and "cancelled" in done.errors[0]["error"]
    assert not Sample.objects.exists() and uploads(settings) == []


def test_the_request_refuses_what_it_can_check_at_once_and_stores_nothing(settings):
    client = APIClient()
    client.force_authenticate(make_user("cur", "curator"))
    settings.UPLOAD_MAX_ARCHIVE_BYTES = 100
    big = client.post("/api/imports/", {"file": zip_upload([row()], "big.zip")}, format="multipart")
    assert big.status_code == 400 and "larger than 100 bytes" in big.json()["fields"]["file"][0]
    settings.UPLOAD_MAX_ARCHIVE_BYTES = 10 * 1024 * 1024
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("img/s1.png", base_files()["img/s1.png"])
    buf.seek(0)
    buf.name = "no-manifest.zip"
    missing = client.post("/api/imports/", {"file": buf}, format="multipart")
    assert missing.status_code == 400 and "manifest.jsonl is missing." in missing.json()["fields"]["file"]
    assert not ImportBatch.objects.exists() and not Job.objects.exists() and uploads(settings) == []


def test_the_import_detail_api_is_for_curators_and_404s_unknown_ids():
    batch = started([row()])
    for role in ("annotator", "scientist"):
        client = APIClient()
        client.force_authenticate(make_user(role[:3], role))
        assert client.get(f"/api/imports/{batch.pk}/").status_code == 403
    client = APIClient()
    client.force_authenticate(make_user("cur", "curator"))
    body = client.get(f"/api/imports/{batch.pk}/").json()
    assert (body["status"], body["job"]["id"], body["split_counts"]) == ("queued", batch.job_id, {})
    missing = client.get(f"/api/imports/{batch.pk + 1}/")
    assert missing.status_code == 404 and set(missing.json()) == {"message", "code", "fields"}


@pytest.mark.django_db(transaction=True)
def test_an_api_import_runs_in_a_real_worker(celery_worker_process, settings):
    """End to end: the request returns at once, the worker imports, a script polls the import."""
    import time

    client = APIClient()
    client.force_authenticate(make_user("cur", "curator"))
    rows = [row("w1", split="val"), row("w2", task="paint")]
    response = client.post("/api/imports/", {"file": zip_upload(rows, "bad.zip")}, format="multipart")
    assert response.status_code == 202
    url, deadline = response.json()["url"], time.monotonic() + 60
    while (body := client.get(url).json())["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert body["status"] == "failed" and [e["line"] for e in body["errors"]] == [2], body
    assert body["job"]["status"] == "failed" and not Sample.objects.exists()
    response = client.post("/api/imports/", {"file": zip_upload(rows[:1], "good.zip")}, format="multipart")
    url, deadline = response.json()["url"], time.monotonic() + 60
    while (body := client.get(url).json())["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (body["status"], body["samples_created"], body["split_counts"]) == ("succeeded", 1, {"val": 1}), body
    assert body["job"]["progress"] == 1.0 and uploads(settings) == []
