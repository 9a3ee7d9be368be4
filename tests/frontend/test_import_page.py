"""The dashboard's Import page (/dashboard/imports/): curators only; a good zip shows what it added
per split, a bad one every row error and imports nothing; the recent imports list names each upload."""
from __future__ import annotations

import io
import re

import pytest
from django.test import Client

from annotation.models import ImportBatch, ImportStatus, Sample
from tests.annotation.test_imports import row, zip_upload
from tests.factories import make_user

pytestmark = pytest.mark.django_db
URL = "/dashboard/imports/"


def curator() -> Client:
    make_user("cur", "curator")
    client = Client()
    client.login(username="cur", password="pw-test-1234")
    return client


def test_a_good_zip_shows_counts_per_split_and_lands_in_the_recent_list():
    client = curator()
    rows = [row("s1", split="test"), row("s2", split="train"), row("s3", split="train")]
    response = client.post(URL, {"file": zip_upload(rows, "my-batch.zip")})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Imported my-batch.zip" in html
    assert re.search(r'data-testid="samples-created">3<', html) and re.search(r'data-testid="candidates-created">6<', html)
    splits = dict(re.findall(r'<tr data-split="(\w+)"><td>\w+</td><td class="num">(\d+)</td>', html))
    assert splits == {"train": "2", "test": "1"}
    assert Sample.objects.get(external_id="s1").split == "test"
    listed = re.search(r'<tr data-import="\d+">(.*?)</tr>', html, re.S).group(1)  # newest first
    assert "my-batch.zip" in listed and "cur" in listed and "succeeded" in listed


def test_a_bad_zip_lists_every_row_error_and_imports_nothing():
    client = curator()
    bad = [row("s1", task="paint", split="holdout"), row("s2"), row("", candidates=[])]
    response = client.post(URL, {"file": zip_upload(bad, "broken.zip")})
    html = response.content.decode()
    assert response.status_code == 400
    errors = ImportBatch.objects.get(source_name="broken.zip").errors
    assert len(errors) >= 3  # line 1: task and split; line 3: external_id and candidates
    table = re.search(r'<table class="data-table compact" id="import-errors">(.*?)</table>', html, re.S).group(1)
    assert len(re.findall(r"<tr><td class=\"num\">\d+</td>", table)) == len(errors)
    assert "split must be one of" in table and "external_id is required" in table
    assert not Sample.objects.exists()
    assert ImportBatch.objects.get(source_name="broken.zip").status == ImportStatus.FAILED


def test_not_a_zip_and_no_file_are_field_errors():
    client = curator()
    not_zip = io.BytesIO(b"hello")
    not_zip.name = "notes.zip"
    response = client.post(URL, {"file": not_zip})
    assert response.status_code == 400 and "Not a zip archive." in response.content.decode()
    response = client.post(URL, {})
    assert response.status_code == 400 and 'aria-invalid="true"' in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_only_curators_open_it():
    for username, role in (("ann", "annotator"), ("sci", "scientist")):
        make_user(username, role)
        client = Client()
        client.login(username=username, password="pw-test-1234")
        assert client.get(URL).status_code == 403
        assert client.post(URL, {"file": zip_upload([row()], "x.zip")}).status_code == 403
    assert not Sample.objects.exists()
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/accounts/login/")
    assert "<h1>Import samples" in curator().get(URL).content.decode()
