"""Exports: rows equal the database rows on both readers, a cut download is detectable, the
query count does not grow with the items, and big exports run as a job that writes a file."""
from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import UTC, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import selectors
from annotation.export_format import ExportIncomplete, read_jsonl_rows, verify_jsonl, verify_parquet
from annotation.models import Candidate, Choice, GuidelineVersion, Item, Judgment, Lease, LeaseState
from annotation.selectors import hashed_annotator_id, judgment_export_rows
from annotation.services import exports
from annotation.services.exports import export_execute, export_jsonl, export_parquet, export_start
from jobs import services as job_services
from jobs.models import Job, JobStatus
from jobs.services import JobCancelled
from tests.conftest import wait_for
from tests.factories import make_campaign, make_user

#: A prompt that needs every kind of escaping JSON and COPY have: quotes, backslashes, a newline,
#: a tab, a control character and non-ASCII text.
NASTY = 'say "hi" \\ back\\slash\nnew line\ttab \x01 ünïcødé ✓ 😀'


def _judge(campaign, users, answer, *, start=None):
    """Judgments straight into the tables (every item × criterion × user), through ``answer(item,
    slots, criterion_slug, user_index) -> (choice, best, worst)``."""
    start = start or timezone.now()
    n = 0
    for item in Item.objects.filter(campaign=campaign).order_by("id"):
        slots = list(item.slots.order_by("position").values_list("candidate_id", flat=True))
        for u, user in enumerate(users):
            lease = Lease.objects.create(item=item, annotator=user, state=LeaseState.SUBMITTED,
                                         displayed_order=slots[::-1] if u % 2 else slots,
                                         expires_at=start + timedelta(hours=1), finished_at=start)
            for criterion in campaign.criteria.order_by("id"):
                choice, best, worst = answer(item, slots, criterion.slug, u)
                guideline = GuidelineVersion.objects.filter(criterion=criterion).order_by("-version").first()
                if guideline is None:
                    guideline = GuidelineVersion.objects.create(criterion=criterion, version=1, body_markdown="g")
                j = Judgment.objects.create(
                    item=item, lease=lease, criterion=criterion, annotator=user, choice=choice, best_id=best,
                    worst_id=worst, displayed_order=lease.displayed_order, guideline_version=guideline,
                    active_ms=1000 + n, idempotency_key=f"k{lease.pk}")
                # One timestamp without microseconds: isoformat() leaves them out then.
                Judgment.objects.filter(pk=j.pk).update(
                    created_at=start.replace(microsecond=0) if n == 0 else start + timedelta(microseconds=7 * n + 1))
                n += 1
    return n


def _world():
    """A pairwise campaign (a, b, tie, both_bad; one gold item; a nasty prompt and name) and a
    best–worst campaign (best_worst, no_difference)."""
    pair = make_campaign(n_samples=3, overlap=3, criteria=["structure", "aesthetics"], name='pair "ü" \\ camp')
    first = Item.objects.filter(campaign=pair).order_by("id").first()
    first.is_gold, first.gold_answer = True, {"structure": "a", "aesthetics": "tie"}
    first.save(update_fields=["is_gold", "gold_answer"])
    sample = first.sample
    sample.prompt = NASTY
    sample.save(update_fields=["prompt"])
    # A source system name that needs escaping in every list column's encoding.
    Candidate.objects.filter(pk=first.slots.order_by("position").first().candidate_id).update(
        source_name='flux "ü" \\ v2 ✓')
    users = [make_user(f"exp-{i}", "annotator") for i in range(3)]
    pair_choices = [Choice.A, Choice.B, Choice.TIE, Choice.BOTH_BAD]
    _judge(pair, users, lambda item, slots, crit, u: (pair_choices[(item.pk + u + len(crit)) % 4], None, None))
    bw = make_campaign(n_samples=2, overlap=2, mode="best_worst", criteria=["structure"])

    def bw_answer(item, slots, crit, u):
        if u == 1:
            return Choice.NO_DIFFERENCE, None, None
        return Choice.BEST_WORST, slots[2], slots[0]

    _judge(bw, users[:2], bw_answer)
    return pair, bw, users


def _expected_rows(campaign_ids=None) -> list[dict]:
    """The export rows computed here from the model objects, independently of either reader."""
    out = []
    qs = Judgment.objects.select_related("item__campaign", "item__sample__task_type", "criterion",
                                         "guideline_version").order_by("id")
    if campaign_ids:
        qs = qs.filter(item__campaign_id__in=campaign_ids)
    for j in qs:
        item_slots = list(j.item.slots.order_by("position").select_related("candidate"))
        slots = [s.candidate_id for s in item_slots]
        winner, loser = {
            Choice.A: (slots[0], slots[1]), Choice.B: (slots[1], slots[0]), Choice.BEST_WORST: (j.best_id, j.worst_id),
        }.get(j.choice, (None, None))
        created = j.created_at.astimezone(UTC)
        out.append({
            "judgment_id": j.pk, "campaign": j.item.campaign.name, "mode": j.item.campaign.mode,
            "task": j.item.sample.task_type.slug, "criterion": j.criterion.slug,
            "sample_id": j.item.sample.external_id, "split": j.item.sample.split, "prompt": j.item.sample.prompt,
            "candidate_ids": slots, "candidate_sources": [s.candidate.source_name for s in item_slots],
            "candidate_provenance": [s.candidate.provenance for s in item_slots],
            "displayed_order": j.displayed_order, "choice": j.choice,
            "winner_candidate_id": winner, "loser_candidate_id": loser, "annotator": hashed_annotator_id(j.annotator_id),
            "guideline_version": j.guideline_version.version, "active_ms": j.active_ms, "is_gold": j.item.is_gold,
            "created_at": created.isoformat(),
        })
    return out


def _parquet_rows(data: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(data)).to_pylist()  # list columns come back as Python lists


# --- rows -------------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("reader", ["copy", "portable"])
def test_export_rows_equal_the_database_rows(reader, monkeypatch):
    pair, bw, _ = _world()
    if reader == "portable":  # the ORM reader SQLite uses, run against the same rows
        monkeypatch.setattr(selectors, "_uses_copy", lambda: False)
    else:
        assert selectors._uses_copy(), "the suite runs on PostgreSQL with psycopg 3"
    expected = _expected_rows()
    assert len(expected) == 3 * 3 * 2 + 2 * 2 * 1
    assert {r["choice"] for r in expected} == set(Choice.values)  # every branch of winner/loser
    assert any(r["prompt"] == NASTY for r in expected)
    assert any("." not in r["created_at"] for r in expected)  # isoformat() without microseconds
    jsonl = b"".join(export_jsonl())
    assert list(read_jsonl_rows(jsonl)) == expected
    assert _parquet_rows(b"".join(export_parquet())) == expected
    assert list(judgment_export_rows()) == expected
    # The campaign filter keeps only that campaign's rows.
    only_bw = [r for r in expected if r["campaign"] == bw.name]
    assert list(read_jsonl_rows(b"".join(export_jsonl(campaign_ids=[bw.pk])))) == only_bw


@pytest.mark.django_db
def test_parquet_columns_keep_their_types_and_row_groups(monkeypatch):
    monkeypatch.setattr(exports, "ROW_GROUP", 4)
    _world()
    data = b"".join(export_parquet())
    meta = pq.ParquetFile(io.BytesIO(data))
    assert meta.num_row_groups == -(-22 // 4)
    assert meta.schema_arrow == exports.SCHEMA
    # Lists are Parquet lists (as JSONL has them), not JSON text.
    table = meta.read()
    assert table.schema.field("candidate_ids").type.value_type == pa.int64()
    assert table.schema.field("candidate_sources").type.value_type == pa.string()
    first = table.slice(0, 1).to_pylist()[0]
    assert len(first["candidate_ids"]) == len(first["candidate_sources"]) == len(first["candidate_provenance"]) == 2
    assert isinstance(first["displayed_order"], list)


@pytest.mark.django_db
@pytest.mark.parametrize("reader", ["copy", "portable"])
def test_export_reads_a_fixed_number_of_queries_whatever_the_items(reader, monkeypatch):
    if reader == "portable":
        monkeypatch.setattr(selectors, "_uses_copy", lambda: False)
    _world()
    items = Item.objects.filter(judgments__isnull=False).distinct().count()
    assert items >= 5
    with CaptureQueriesContext(connection) as ctx:
        rows = list(read_jsonl_rows(b"".join(export_jsonl())))
    assert len(rows) == 22
    # copy: the user list + COPY (+ transaction statements); portable: judgments + slots per chunk
    # and the empty chunk that ends it. The old reader made 2 queries per item.
    assert len(ctx.captured_queries) <= 4, [q["sql"][:80] for q in ctx.captured_queries]


@pytest.mark.django_db
def test_a_stream_closed_early_leaves_the_connection_usable(monkeypatch):
    """A client that goes away mid-download ends the COPY; the next request's queries work."""
    monkeypatch.setattr(exports, "JSONL_CHUNK_ROWS", 3)
    _world()
    stream = export_jsonl()
    first = next(stream)
    assert first.count(b"\n") == 3
    stream.close()
    assert Judgment.objects.count() == 22


# --- cut detection ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_cut_jsonl_stream_is_detected_and_a_complete_one_passes():
    _world()
    data = b"".join(export_jsonl())
    assert verify_jsonl(data) == 22
    assert verify_jsonl(iter([data[:100], data[100:]])) == 22  # streamed chunks, split mid-line
    lines = data.splitlines(keepends=True)
    assert json.loads(lines[-1]) == {"_trailer": {"rows": 22, "sha256": hashlib.sha256(b"".join(lines[:-1])).hexdigest()}}
    row_ends = [len(b"".join(lines[:k])) for k in (1, 10, 22)]  # cut exactly after a whole row
    for cut in (0, 1, len(lines[0]) // 2, *row_ends, len(data) - 20, len(data) - 1):
        with pytest.raises(ExportIncomplete):
            verify_jsonl(data[:cut])
    # A row dropped from the middle, or altered, no longer matches the trailer either.
    with pytest.raises(ExportIncomplete):
        verify_jsonl(b"".join(lines[:5] + lines[6:]))
    with pytest.raises(ExportIncomplete):
        verify_jsonl(data.replace(b"pairwise", b"pairwisx", 1))
    # Readers skip the trailer and refuse a cut file once they reach its end.
    assert len(list(read_jsonl_rows(data))) == 22
    with pytest.raises(ExportIncomplete):
        list(read_jsonl_rows(data[:row_ends[1]]))


@pytest.mark.django_db
def test_a_cut_parquet_file_is_detected_and_a_complete_one_passes(tmp_path):
    _world()
    data = b"".join(export_parquet())
    assert verify_parquet(data) == 22
    (tmp_path / "x.parquet").write_bytes(data)
    assert verify_parquet(tmp_path / "x.parquet") == 22
    for cut in (0, 3, 200, len(data) // 2, len(data) - 8, len(data) - 1):
        with pytest.raises(ExportIncomplete):
            verify_parquet(data[:cut])


# --- API: sync, bad input ----------------------------------------------------------------------------

def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_small_exports_stream_with_their_trailer():
    pair, _, users = _world()
    curator = _client(make_user("cur", "curator"))
    response = curator.get(f"/api/exports/judgments.jsonl?campaign={pair.pk}")
    assert response.status_code == 200 and response.streaming
    assert verify_jsonl(b"".join(response.streaming_content)) == 18
    response = curator.get("/api/exports/judgments.parquet")
    assert response.status_code == 200
    assert verify_parquet(b"".join(response.streaming_content)) == 22
    assert _client(users[0]).get("/api/exports/jobs/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "field"), [
    ("/api/exports/judgments.jsonl?campaign=abc", "campaign"),
    ("/api/exports/judgments.jsonl?campaign=999999", "campaign"),
    ("/api/exports/judgments.csv", "format"),
    ("/api/exports/jobs/?campaign=x", "campaign"),
])
def test_bad_export_requests_are_400_with_the_field(url, field):
    response = _client(make_user("sci", "scientist")).get(url)
    assert response.status_code == 400
    assert set(response.json()) == {"message", "code", "fields"} and field in response.json()["fields"]


@pytest.mark.django_db
def test_bad_export_job_requests_are_4xx():
    sci = _client(make_user("sci", "scientist"))
    response = sci.post("/api/exports/jobs/", {"format": "xml"}, format="json")
    assert response.status_code == 400 and "format" in response.json()["fields"]
    response = sci.post("/api/exports/jobs/", {"format": "jsonl", "campaign_ids": "1"}, format="json")
    assert response.status_code == 400 and "campaign_ids" in response.json()["fields"]
    assert sci.get("/api/exports/jobs/987654/").status_code == 404
    job = export_start(fmt="jsonl", campaign_ids=None, enqueue=False)
    assert sci.get(f"/api/exports/jobs/{job.pk}/download/").status_code == 404  # not done yet
    assert Job.objects.filter(kind="export").count() == 1


# --- export jobs ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_big_export_answers_202_and_its_job_writes_the_file(fmt, settings, monkeypatch):
    settings.EXPORT_SYNC_MAX_ROWS = 10
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: None)  # run in this process below
    pair, _, _ = _world()
    curator = _client(make_user("cur", "curator"))
    response = curator.get(f"/api/exports/judgments.{fmt}?campaign={pair.pk}")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["download_url"] is None and response["Location"] == body["url"]
    export_execute(body["id"])
    done = curator.get(f"/api/exports/jobs/{body['id']}/").json()
    assert done["status"] == "succeeded", done
    assert (done["rows"], done["rows_done"], done["rows_total"], done["progress"]) == (18, 18, 18, 1.0)
    download = curator.get(done["download_url"])
    assert download.status_code == 200
    data = b"".join(download.streaming_content)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (done["size"], done["sha256"])
    assert download["X-Content-SHA256"] == done["sha256"]
    verify = verify_jsonl if fmt == "jsonl" else verify_parquet
    assert verify(data) == 18
    folder = Path(settings.ARTIFACTS_ROOT) / "exports" / str(body["id"])
    assert [p.name for p in folder.iterdir()] == [f"judgments.{fmt}"]  # no temporary file left
    # A worker killed mid-export leaves a temporary file; the attempt that takes over removes it.
    (folder / f".judgments.{fmt}.dead0001.tmp").write_bytes(b"half a file")
    Job.objects.filter(pk=body["id"]).update(status=JobStatus.QUEUED)
    export_execute(body["id"])
    assert [p.name for p in folder.iterdir()] == [f"judgments.{fmt}"]
    listed = curator.get(f"/api/exports/jobs/?campaign={pair.pk}").json()["results"]
    assert [j["id"] for j in listed] == [body["id"]]


@pytest.mark.django_db
def test_async_forces_a_job_and_small_exports_stay_streamed(settings, monkeypatch):
    enqueued = []
    monkeypatch.setattr(job_services, "job_enqueue", enqueued.append)
    _world()
    sci = _client(make_user("sci", "scientist"))
    assert sci.get("/api/exports/judgments.jsonl").status_code == 200
    response = sci.get("/api/exports/judgments.jsonl?async=1")
    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["id"]).config == {"format": "jsonl", "campaign_ids": []}


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_export_stops_and_leaves_no_file(settings, monkeypatch):
    monkeypatch.setattr(exports, "JSONL_CHUNK_ROWS", 2)
    _world()
    job = export_start(fmt="jsonl", campaign_ids=None, enqueue=False)
    real_write = exports.export_write_file

    def slow_write(*, progress, **kw):  # 11 chunks of 2 rows, 0.3 s each: the cancel lands mid-way
        def slow(n):
            time.sleep(0.3)
            progress(n)
        return real_write(progress=slow, **kw)

    seen = []

    def stop_requested(self):
        seen.append(1)
        return True

    monkeypatch.setattr(exports, "export_write_file", slow_write)
    monkeypatch.setattr("jobs.services.JobReporter.should_stop", stop_requested)
    finished = export_execute(job.pk)
    assert finished.status == JobStatus.CANCELLED and seen
    folder = Path(settings.ARTIFACTS_ROOT) / "exports" / str(job.pk)
    assert not folder.exists() or not any(folder.iterdir())
    sci = _client(make_user("sci", "scientist"))
    assert sci.get(f"/api/exports/jobs/{job.pk}/download/").status_code == 404


def test_the_writer_thread_raises_cancel_into_the_job(tmp_path, monkeypatch):
    """Unit check of the hand-over: a cancel request stops the writer, the job sees JobCancelled."""

    def fake_write_file(*, progress, dest, **_):
        for n in range(1, 1000):  # 10 s unless the cancel stops it
            time.sleep(0.01)
            progress(n)
        raise AssertionError("never stopped")

    monkeypatch.setattr(exports, "export_write_file", fake_write_file)

    class Reporter:
        def progress(self, event):
            pass

        def should_stop(self):
            return True

    with pytest.raises(JobCancelled):
        exports._write_in_thread(fmt="jsonl", campaign_ids=None, dest=tmp_path / "x.jsonl", total=5,
                                 reporter=Reporter())


@pytest.mark.django_db(transaction=True)
def test_export_job_runs_in_a_real_celery_worker(celery_worker_process, settings):
    _world()
    sci = _client(make_user("sci", "scientist"))
    response = sci.post("/api/exports/jobs/", {"format": "parquet", "campaign_ids": []}, format="json")
    assert response.status_code == 202
    url = f"/api/exports/jobs/{response.json()['id']}/"
    done = wait_for(lambda: (d := sci.get(url).json())["status"] in ("succeeded", "failed") and d, timeout=90,
                    message="the export job")
    assert done["status"] == "succeeded", done
    data = b"".join(sci.get(done["download_url"]).streaming_content)
    assert verify_parquet(data) == 22 and hashlib.sha256(data).hexdigest() == done["sha256"]


def test_trailer_format_is_stable():
    """The documented trailer (docs/api.md): a client may rely on these exact keys."""
    from annotation.export_format import trailer_line

    assert trailer_line(3, "ab") == b'{"_trailer": {"rows": 3, "sha256": "ab"}}\n'
