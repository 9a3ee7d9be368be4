"""The dashboard's Import page (/dashboard/imports/): curators only; an upload starts an import job and
the page follows it (a progress bar, then the result): a good zip shows what it added per split, a bad
one every row error and imports nothing; the recent imports list names each upload and its splits."""
from __future__ import annotations

import io
import re
import threading

import pytest
from django.db import connection
from django.test import Client

from annotation.models import ImportBatch, ImportStatus, Sample
from annotation.services.imports import import_execute
from jobs import services as job_services
from tests.annotation.test_imports import row, zip_upload
from tests.factories import make_user

from .conftest import login

pytestmark = pytest.mark.django_db
URL = "/dashboard/imports/"


def curator() -> Client:
    make_user("cur", "curator")
    client = Client()
    client.login(username="cur", password="pw-test-1234")
    return client


def upload(client: Client, rows: list[dict], name: str) -> ImportBatch:
    """Post the zip: the page answers with the import's own view, its job queued."""
    response = client.post(URL, {"file": zip_upload(rows, name)})
    batch = ImportBatch.objects.get(source_name=name)
    assert response.status_code == 302 and response.url == f"{URL}?batch={batch.pk}"
    return batch


def test_a_good_zip_shows_progress_then_counts_per_split_and_lands_in_the_recent_list():
    client = curator()
    batch = upload(client, [row("s1", split="test"), row("s2", split="train"), row("s3", split="train")], "my-batch.zip")
    queued = client.get(f"{URL}?batch={batch.pk}").content.decode()
    assert f'data-job-url="/api/dashboard/jobs/{batch.job_id}/"' in queued
    assert "Importing my-batch.zip" in queued and "Waiting for a worker" in queued and 'id="import-result"' not in queued
    assert not Sample.objects.exists()
    import_execute(batch.job_id)
    response = client.get(f"{URL}?batch={batch.pk}")
    html = response.content.decode()
    assert response.status_code == 200 and 'id="import-progress"' not in html
    assert "Imported my-batch.zip" in html
    assert re.search(r'data-testid="samples-created">3<', html) and re.search(r'data-testid="candidates-created">6<', html)
    splits = dict(re.findall(r'<tr data-split="(\w+)"><td>\w+</td><td class="num">(\d+)</td>', html))
    assert splits == {"train": "2", "test": "1"}
    assert Sample.objects.get(external_id="s1").split == "test"
    listed = re.search(r'<tr data-import="\d+">(.*?)</tr>', html, re.S).group(1)  # newest first
    assert "my-batch.zip" in listed and "cur" in listed and "succeeded" in listed
    assert dict(re.findall(r'<span data-split="(\w+)">\w+ (\d+)</span>', listed)) == {"train": "2", "test": "1"}


def test_a_bad_zip_lists_every_row_error_and_imports_nothing():
    client = curator()
    batch = upload(client, [row("s1", task="paint", split="holdout"), row("s2"), row("", candidates=[])], "broken.zip")
    import_execute(batch.job_id)
    html = client.get(f"{URL}?batch={batch.pk}").content.decode()
    errors = ImportBatch.objects.get(source_name="broken.zip").errors
    assert len(errors) >= 3  # line 1: task and split; line 3: external_id and candidates
    table = re.search(r'<table class="data-table compact" id="import-errors">(.*?)</table>', html, re.S).group(1)
    assert len(re.findall(r"<tr><td class=\"num\">\d+</td>", table)) == len(errors)
    assert "split must be one of" in table and "external_id is required" in table
    assert not Sample.objects.exists()
    assert ImportBatch.objects.get(source_name="broken.zip").status == ImportStatus.FAILED


def test_a_job_cancelled_before_it_ran_shows_why_nothing_was_imported():
    from jobs.services import job_cancel

    client = curator()
    batch = upload(client, [row()], "later.zip")
    job_cancel(job=batch.job)
    html = client.get(f"{URL}?batch={batch.pk}").content.decode()
    # No worker has seen it yet: the page reads the job, not a progress bar that never moves.
    assert 'id="import-progress"' not in html and "Nothing was imported from later.zip" in html
    assert "the import job stopped." in html


def test_not_a_zip_no_file_and_bad_batch_ids_are_refused():
    client = curator()
    not_zip = io.BytesIO(b"hello")
    not_zip.name = "notes.zip"
    response = client.post(URL, {"file": not_zip})
    assert response.status_code == 400 and "Not a zip archive." in response.content.decode()
    response = client.post(URL, {})
    assert response.status_code == 400 and 'aria-invalid="true"' in response.content.decode()
    assert not ImportBatch.objects.exists()
    assert client.get(f"{URL}?batch=abc").status_code == 404
    assert client.get(f"{URL}?batch=12345").status_code == 404


def test_only_curators_open_it():
    for username, role in (("ann", "annotator"), ("sci", "scientist")):
        make_user(username, role)
        client = Client()
        client.login(username=username, password="pw-test-1234")
        assert client.get(URL).status_code == 403
        assert client.post(URL, {"file": zip_upload([row()], "x.zip")}).status_code == 403
    assert not Sample.objects.exists() and not ImportBatch.objects.exists()
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/accounts/login/")
    assert "<h1>Import samples" in curator().get(URL).content.decode()


def test_the_page_shows_the_jobs_progress_live_then_the_result(browser_page, monkeypatch, tmp_path):
    """A real browser: the job runs beside the server and holds at row 3 until the page has shown
    "2 of 3 rows checked"; then it finishes and the page turns into the result by itself."""
    from annotation.services import imports

    gate, threads = threading.Event(), []
    real_validate_row = imports._validate_row

    def held_validate_row(line_no, *args):
        if line_no == 2:
            # Past the reporter's 0.5 s write interval, so "2 of 3" reaches the job row.
            threading.Event().wait(0.7)
        if line_no == 3:
            gate.wait(30)
        return real_validate_row(line_no, *args)

    def run_beside(job):
        def run():
            try:
                imports.import_execute(job.pk)
            finally:
                connection.close()

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()

    monkeypatch.setattr(imports, "_validate_row", held_validate_row)
    monkeypatch.setattr(job_services, "job_enqueue", run_beside)
    make_user("cur", "curator")
    archive = tmp_path / "progress.zip"
    archive.write_bytes(zip_upload([row("p1", split="val"), row("p2", split="val"), row("p3")], "progress.zip").getvalue())
    page = browser_page
    login(page, "cur")
    page.goto(URL)
    page.set_input_files("#id_file", str(archive))
    page.click("#btn-import")
    page.wait_for_selector("#import-progress h2:has-text('Importing progress.zip')")
    page.wait_for_selector("#import-progress-text:has-text('Checking rows: 2 of 3')")
    assert page.get_attribute("#import-progress-bar", "aria-valuenow") == "33"
    assert page.get_attribute("#import-progress-bar", "class") == "progress big is-running"
    assert not Sample.objects.exists()  # nothing is written while rows are being checked
    gate.set()
    page.wait_for_selector("#import-result h2:has-text('Imported progress.zip')")
    assert page.text_content("[data-testid=samples-created]") == "3"
    assert page.text_content("#import-splits tr[data-split=val] td.num") == "2"
    threads[0].join(10)
    assert ImportBatch.objects.get(source_name="progress.zip").status == ImportStatus.SUCCEEDED
