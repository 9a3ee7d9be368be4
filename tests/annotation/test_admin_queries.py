"""Admin change lists read a fixed number of statements whatever the number of rows shown."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import ImportBatch
from jobs.models import Job, JobKind
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _batches(n: int, user) -> None:
    for i in range(n):
        job = Job.objects.create(kind=JobKind.IMPORT, name=f"import {i}", created_by=user)
        ImportBatch.objects.create(source_name=f"rows-{i}.jsonl", created_by=user, job=job)


def _changelist_statements(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/annotation/importbatch/")
    assert response.status_code == 200
    return len(queries)


def test_import_batch_changelist_statements_do_not_grow_with_rows(client):
    admin = make_user("admin-q")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    _batches(2, admin)
    few = _changelist_statements(client)
    _batches(10, admin)
    many = _changelist_statements(client)
    assert many == few, f"{few} statements for 2 batches, {many} for 12: a column reads a row per batch"
    assert client.get("/admin/annotation/importbatch/").context["cl"].result_count == 12
