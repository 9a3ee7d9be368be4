"""Security behaviour (issue #21): sign-in throttling and lockout, expiring and revocable tokens,
password policy, pseudonymous snapshot manifests, sanitised guidelines, confined artifacts,
private API docs, bad input as 4xx in the API's error shape, curator admin permissions."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.guidelines import render_guideline
from annotation.models import Campaign, Criterion, Judgment
from core import login_throttle
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def limits(settings):
    """Low limits for these tests, and a clean address counter (the suite shares 127.0.0.1)."""
    settings.LOGIN_FAILURES_PER_ACCOUNT = 10
    settings.LOGIN_FAILURES_PER_ADDRESS = 1000

    def clear():
        for key, _ in login_throttle._keys(None, "127.0.0.1"):
            cache.delete(key)

    clear()
    yield settings
    clear()


def _token_post(client, username, password, **extra):
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json", **extra)


# --- 2. brute force ------------------------------------------------------------------------------

def test_thirty_wrong_passwords_on_the_token_endpoint_lock_the_account(limits):
    make_user("victim-api", "annotator", password=PASSWORD)
    client = APIClient()
    codes = [_token_post(client, "victim-api", f"guess-{i}").status_code for i in range(30)]
    assert codes == [400] * 10 + [429] * 20
    locked = _token_post(client, "victim-api", PASSWORD)  # even the right password, until the window ends
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert locked.json()["code"] == "throttled" and set(locked.json()) == {"message", "code", "fields"}
    # Another account from the same address is not locked by this one's failures.
    make_user("bystander", "annotator", password=PASSWORD)
    assert _token_post(client, "bystander", PASSWORD).status_code == 200


def test_thirty_wrong_passwords_on_the_login_page_lock_it_and_the_admin(limits):
    make_user("victim-web", "curator", password=PASSWORD)
    client = Client()
    codes = [client.post("/accounts/login/", {"username": "victim-web", "password": f"g{i}"}).status_code
             for i in range(30)]
    assert codes == [200] * 10 + [429] * 20
    locked = client.post("/accounts/login/", {"username": "victim-web", "password": PASSWORD})
    assert locked.status_code == 429 and b"Too many failed sign-in attempts" in locked.content
    assert "_auth_user_id" not in client.session
    admin = client.post("/admin/login/", {"username": "victim-web", "password": PASSWORD})
    assert admin.status_code == 200 and "_auth_user_id" not in client.session  # form shown again, not signed in


def test_failures_from_one_address_lock_it_for_every_account_and_x_forwarded_for_does_not_help(limits):
    limits.LOGIN_FAILURES_PER_ACCOUNT, limits.LOGIN_FAILURES_PER_ADDRESS = 1000, 30
    make_user("real-user", "annotator", password=PASSWORD)
    client = APIClient()
    codes = [_token_post(client, f"nobody-{i}", "x", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
             for i in range(30)]
    assert codes == [400] * 30
    assert _token_post(client, "real-user", PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_a_success_clears_the_account_count(limits):
    make_user("typo-prone", "annotator", password=PASSWORD)
    client = APIClient()
    for _ in range(2):
        assert [_token_post(client, "typo-prone", "oops").status_code for _ in range(9)] == [400] * 9
        assert _token_post(client, "typo-prone", PASSWORD).status_code == 200


def test_the_token_endpoint_has_its_own_rate_per_address(limits, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"})
    cache.delete("throttle_auth_127.0.0.1")
    make_user("scripted", "annotator", password=PASSWORD)
    client = APIClient()
    try:
        codes = [_token_post(client, "scripted", PASSWORD).status_code for _ in range(4)]
    finally:
        cache.delete("throttle_auth_127.0.0.1")
    assert codes == [200, 200, 200, 429]


# --- 2. tokens -----------------------------------------------------------------------------------

def test_an_expired_token_gets_401_and_a_new_login_issues_a_fresh_one(settings, limits):
    settings.TOKEN_TTL_SECONDS = 3600
    user = make_user("tokened", "annotator", password=PASSWORD)
    first = _token_post(APIClient(), "tokened", PASSWORD).json()
    assert set(first) == {"token", "expires_at"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first['token']}")
    assert client.get("/api/me/").status_code == 200
    Token.objects.filter(user=user).update(created=timezone.now() - timedelta(seconds=3601))
    expired = client.get("/api/me/")
    assert expired.status_code == 401 and expired["WWW-Authenticate"].startswith("Token")
    assert "expired" in expired.json()["message"]
    second = _token_post(APIClient(), "tokened", PASSWORD).json()["token"]
    assert second != first["token"]


def test_a_wrong_token_is_401_and_no_credentials_stay_403():
    client = APIClient()
    assert client.get("/api/me/").status_code == 403
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/me/").status_code == 401


def test_logout_revokes_the_token_and_ends_the_session(limits):
    make_user("leaving", "annotator", password=PASSWORD)
    token = _token_post(APIClient(), "leaving", PASSWORD).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/api/auth/logout/").status_code == 204
    assert client.get("/api/me/").status_code == 401
    assert not Token.objects.filter(key=token).exists()

    browser = APIClient(enforce_csrf_checks=False)
    assert browser.login(username="leaving", password=PASSWORD)
    assert browser.get("/api/me/").status_code == 200
    assert browser.post("/api/auth/logout/").status_code == 204
    assert browser.get("/api/me/").status_code == 403


# --- 2. passwords --------------------------------------------------------------------------------

@pytest.mark.parametrize("password", ["short1", "12345678901", "password123", "annotator-1"])
def test_weak_passwords_are_refused(password):
    user = make_user("annotator-1", "annotator")
    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_a_strong_password_passes():
    validate_password("plum-violet-orbit-42", make_user("someone", "annotator"))


# --- 3. pseudonymous manifests ------------------------------------------------------------------

def test_a_snapshot_manifest_names_excluded_annotators_only_by_pseudonym():
    from django.contrib.auth.models import User

    from annotation.selectors import hashed_annotator_id
    from tests.annotation.test_snapshots import build, pairwise_campaign

    campaign = pairwise_campaign()
    snap = build(campaign_ids=[campaign.pk], exclude_annotators=["ann1"])
    manifest_text = (Path(snap.path) / "manifest.json").read_text()
    manifest = json.loads(manifest_text)
    pseudonym = hashed_annotator_id(User.objects.get(username="ann1").pk)
    assert manifest["filter"]["exclude_annotators"] == [pseudonym]
    assert "ann1" not in manifest_text and "ann0" not in manifest_text


def test_pseudonyms_depend_on_the_deployment_salt(settings):
    from annotation.selectors import hashed_annotator_id

    settings.ANNOTATOR_ID_SALT = "deployment-one"
    one = hashed_annotator_id(7)
    settings.ANNOTATOR_ID_SALT = "deployment-two"
    assert hashed_annotator_id(7) != one and len(one) == 16


# --- 4. guidelines, artifacts, API docs ----------------------------------------------------------

@pytest.mark.parametrize("markdown", [
    "[guide](javascript:alert(document.cookie))", "[guide](JaVaScRiPt:alert(1))", "[guide]( javascript:alert(1))",
    "![x](javascript:alert(1))", "[guide](data:text/html;base64,PHNjcmlwdD4=)", "<a href='javascript:alert(1)'>x</a>",
])
def test_guideline_html_keeps_no_script_urls(markdown):
    html = render_guideline(markdown).lower()
    assert 'href="javascript' not in html and 'src="javascript' not in html and 'href="data:' not in html
    assert "<a href='javascript" not in html  # raw HTML stays escaped text


def test_guideline_html_keeps_ordinary_links_and_formatting():
    html = render_guideline("**Look** at [the guide](https://example.com/g) and [this](/media/x.png).")
    assert '<a href="https://example.com/g"' in html and '<a href="/media/x.png"' in html
    assert "<strong>Look</strong>" in html


def test_a_published_guideline_reaches_annotators_without_javascript_links():
    curator, annotator = make_user("cur", "curator"), make_user("ann", "annotator")
    client = APIClient()
    client.force_authenticate(curator)
    resp = client.post("/api/criteria/structure/guidelines/",
                       {"body_markdown": "Read [this](javascript:alert(document.cookie)) first."}, format="json")
    assert resp.status_code == 201, resp.content
    client.force_authenticate(annotator)
    html = next(c for c in client.get("/api/criteria/").json() if c["slug"] == "structure")["guideline_html"]
    assert "javascript" not in html and "this</a>" in html


def _policy_run(output_dir: Path):
    from annotation.models import DatasetSnapshot
    from jobs.models import Job, JobKind, JobStatus
    from jobs.services import job_create
    from policytrain.models import PolicyRun
    from rewardtrain.models import RewardModel, RewardRun

    snapshot = DatasetSnapshot.objects.create(name="snap-sec", content_hash="sec")
    job = job_create(kind=JobKind.REWARD, name="reward sec", config={})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    run = RewardRun.objects.create(job=job, snapshot=snapshot, base_model="tiny", output_dir=str(output_dir))
    rm = RewardModel.objects.create(run=run, name="rm-sec", path=str(output_dir), base_model="tiny",
                                    template_version="onereward-query-v2", snapshot=snapshot, eval_split="test")
    return PolicyRun.objects.create(job=job_create(kind=JobKind.POLICY, name="policy sec", config={}),
                                    reward_model=rm, output_dir=str(output_dir))


def test_the_policy_artifact_endpoint_does_not_follow_a_symlink_out_of_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"ok": true}')
    (tmp_path / "outside-secret.json").write_text('{"secret": 1}')
    os.symlink(tmp_path / "outside-secret.json", run_dir / "leak.json")
    os.symlink(run_dir / "metrics.json", run_dir / "inside.json")  # a link that stays inside is fine
    run = _policy_run(run_dir)
    client = APIClient()
    client.force_authenticate(make_user("sci", "scientist"))
    ok = client.get(f"/api/policy/runs/{run.pk}/artifacts/metrics.json")
    assert ok.status_code == 200 and ok["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/api/policy/runs/{run.pk}/artifacts/inside.json").status_code == 200
    assert client.get(f"/api/policy/runs/{run.pk}/artifacts/leak.json").status_code == 404


def test_api_docs_and_schema_are_for_signed_in_users_and_load_no_cdn_script():
    anonymous = Client()
    assert anonymous.get("/api/docs/").status_code in (401, 403)
    assert anonymous.get("/api/schema/").status_code in (401, 403)
    client = Client()
    client.force_login(make_user("reader", "annotator"))
    page = client.get("/api/docs/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "cdn.jsdelivr" not in body and "unpkg" not in body and "/static/drf_spectacular_sidecar/" in body
    assert client.get("/api/schema/").status_code == 200


# --- 5. bad input is a 4xx in the error shape ----------------------------------------------------

def _assert_shape(resp, status=400):
    assert resp.status_code == status, (resp.status_code, resp.content[:300])
    assert set(resp.json()) == {"message", "code", "fields"}


@pytest.fixture
def world():
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    annotator, curator = make_user("ann-bad", "annotator"), make_user("cur-bad", "curator")
    ann = APIClient()
    ann.force_authenticate(annotator)
    cur = APIClient()
    cur.force_authenticate(curator)
    return {"campaign": campaign, "ann": ann, "cur": cur}


@pytest.mark.parametrize("answer", [["a"], {"x": 1}, [], None, 1.5, {"best": [1], "worst": 2}])
def test_malformed_answers_are_400(world, answer):
    lease = world["ann"].post(f"/api/campaigns/{world['campaign'].pk}/next/", {}, format="json").json()
    resp = world["ann"].post(f"/api/leases/{lease['lease']}/submit/",
                             {"answers": {"structure": answer}, "idempotency_key": "k1"}, format="json")
    _assert_shape(resp)


def test_malformed_answer_edits_are_400(world):
    lease = world["ann"].post(f"/api/campaigns/{world['campaign'].pk}/next/", {}, format="json").json()
    resp = world["ann"].post(f"/api/leases/{lease['lease']}/submit/",
                             {"answers": {"structure": "tie"}, "idempotency_key": "k2"}, format="json")
    assert resp.status_code == 201, resp.content
    judgment = Judgment.objects.get()
    for answer in (["a"], {"a": [1]}, None):
        _assert_shape(world["ann"].patch(f"/api/judgments/{judgment.pk}/", {"answer": answer}, format="json"))


@pytest.mark.parametrize("query", ["abc", "²", "1.5", "99999999999999999999", "-1"])
def test_bad_campaign_query_params_are_400(world, query):
    _assert_shape(world["ann"].get("/api/judgments/", {"campaign": query}))
    _assert_shape(world["cur"].get("/api/exports/judgments.jsonl", {"campaign": query}))
    if query in ("abc", "²"):
        _assert_shape(world["cur"].get("/api/exports/jobs/", {"campaign": query}))


@pytest.mark.parametrize("body", [[], [1, 2], "text", 5])
def test_a_body_that_is_not_an_object_is_400(world, body):
    for client, path in ((world["cur"], "/api/campaigns/"), (world["ann"], f"/api/campaigns/{world['campaign'].pk}/next/"),
                         (APIClient(), "/api/auth/token/")):
        _assert_shape(client.post(path, json.dumps(body), content_type="application/json"))


@pytest.mark.parametrize("selection", [[1, 2], "string", {"sample_ids": ["abc"]}, {"sample_ids": 3},
                                       {"max_items_per_sample": "x"}, {"opponents": "ab"}, {"sources": [1]}])
def test_a_malformed_selection_is_refused_on_write(world, selection):
    resp = world["cur"].post("/api/campaigns/", {"name": "bad-sel", "task_type": "fill", "selection": selection},
                             format="json")
    _assert_shape(resp)
    assert "selection" in resp.json()["fields"]
    assert not Campaign.objects.filter(name="bad-sel").exists()


def test_a_stored_malformed_selection_breaks_no_reader(world):
    campaign = make_campaign(n_samples=1, start=False, name="stored-bad")
    Campaign.objects.filter(pk=campaign.pk).update(selection=[1, 2])  # saved before validation existed
    client = APIClient()
    client.force_authenticate(make_user("sci-bad", "scientist"))
    assert client.get(f"/api/dashboard/campaigns/{campaign.pk}/").status_code == 200
    assert client.get("/api/dashboard/campaigns/").status_code == 200
    _assert_shape(world["cur"].post(f"/api/campaigns/{campaign.pk}/start/"))


def test_free_text_fields_are_bounded(world):
    resp = world["cur"].post("/api/campaigns/", {"name": "long", "task_type": "fill", "description": "d" * 10_001},
                             format="json")
    _assert_shape(resp)
    assert "description" in resp.json()["fields"]
    resp = world["cur"].post("/api/criteria/structure/guidelines/", {"body_markdown": "g" * 50_001}, format="json")
    _assert_shape(resp)
    assert "body_markdown" in resp.json()["fields"]


def test_an_oversize_json_body_is_413_in_the_error_shape(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    body = json.dumps({"name": "x" * (2 * 1024 * 1024), "task_type": "fill"})
    resp = world["cur"].post("/api/campaigns/", body, content_type="application/json")
    _assert_shape(resp, 413)


# --- 6. curators in the admin --------------------------------------------------------------------

def test_the_seeded_curator_can_use_the_admin_pages_of_the_role(tmp_path):
    from demo.seed import demo_users_ensure

    passwords = demo_users_ensure()
    client = Client()
    assert client.login(username="curator", password=passwords["curator"])
    campaign = make_campaign(n_samples=1, start=False, name="admin-campaign")
    criterion = Criterion.objects.get(slug="structure")
    pages = ["/admin/", "/admin/annotation/campaign/", "/admin/annotation/campaign/add/",
             f"/admin/annotation/campaign/{campaign.pk}/change/", "/admin/annotation/criterion/",
             f"/admin/annotation/criterion/{criterion.pk}/change/", "/admin/annotation/sample/",
             "/admin/annotation/sample/import/", "/admin/annotation/importbatch/", "/admin/annotation/judgment/"]
    for page in pages:
        assert client.get(page).status_code == 200, page
    index = client.get("/admin/").content.decode()
    assert "Campaigns" in index and "You don’t have permission" not in index


def test_the_admin_import_view_needs_the_import_permission():
    from django.contrib.auth.models import User

    staff = User.objects.create_user("staff-only", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/annotation/sample/import/").status_code == 403


# --- 5. imports: ill-typed manifest fields and damaged archives are row errors / 400 -------------

IMPORT_TYPE_CASES = {
    "long external_id": ({"external_id": "x" * 201}, "external_id is longer than 200"),
    "list external_id": ({"external_id": ["s"]}, "external_id must be a string"),
    "long split_key": ({"split_key": "k" * 201}, "split_key is longer than 200"),
    "list task": ({"task": ["fill"]}, "task must be one of"),
    "dict source": ({"source": {"a": 1}}, "file path must be a string"),
    "list candidates item": ({"candidates": ["out/a.png"]}, "candidates must be a list of objects"),
    "object candidates": ({"candidates": {"image": "out/a.png"}}, "candidates must be a list of objects"),
    "string seed": ({"candidates": [{"image": "out/a.png", "seed": "x"}]}, "seed must be a whole number"),
    "huge seed": ({"candidates": [{"image": "out/a.png", "seed": 2**70}]}, "seed must be a whole number"),
    "list meta": ({"meta": [1]}, "meta must be an object"),
    "list provenance": ({"candidates": [{"image": "out/a.png", "provenance": ["x"]}]}, "provenance"),
    "list image": ({"candidates": [{"image": ["out/a.png"]}]}, "file path must be a string"),
}


def _import_zip(rows, files, *, corrupt: str | None = None) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
        for name, data in files.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    if corrupt:  # flip bytes inside the member's compressed data: a CRC / inflate error on read
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = zf.getinfo(corrupt)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data = data[:start + 4] + bytes(b ^ 0xFF for b in data[start + 4:start + 12]) + data[start + 12:]
    return data


def _post_import(client, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/api/imports/", {"file": SimpleUploadedFile("batch.zip", data)}, format="multipart")


def _import_report(client, data: bytes) -> dict:
    """The finished import of an accepted upload (its job run in-process), as a script polls it."""
    from annotation.services.imports import import_execute

    resp = _post_import(client, data)
    assert resp.status_code == 202, resp.content[:300]
    import_execute(resp.json()["job"]["id"])
    report = client.get(resp.json()["url"])
    assert report.status_code == 200
    return report.json()


@pytest.mark.parametrize("case", IMPORT_TYPE_CASES, ids=list(IMPORT_TYPE_CASES))
def test_ill_typed_manifest_fields_are_reported_per_row_not_500(case):
    from tests.annotation.test_imports import base_files, row

    over, message = IMPORT_TYPE_CASES[case]
    client = APIClient()
    client.force_authenticate(make_user("cur-imp", "curator"))
    report = _import_report(client, _import_zip([row("ok-first"), row("bad", **over)], base_files()))
    rows = report["errors"]
    assert report["status"] == "failed" and [r["line"] for r in rows] == [2] and message in rows[0]["error"], rows


@pytest.mark.parametrize("member", ["manifest.jsonl", "img/s1.png"])
def test_a_damaged_zip_member_is_400(member):
    from annotation.models import Sample
    from tests.annotation.test_imports import base_files, row

    client = APIClient()
    client.force_authenticate(make_user("cur-crc", "curator"))
    data = _import_zip([row()], base_files(), corrupt=member)
    if member == "manifest.jsonl":  # read in the request: refused at once
        resp = _post_import(client, data)
        _assert_shape(resp)
        found = resp.json()
    else:  # an image is read by the import job: a row error in its report
        found = _import_report(client, data)
        assert found["status"] == "failed"
    assert "damaged" in json.dumps(found) and not Sample.objects.exists()


def test_an_oversize_manifest_is_refused_before_it_is_read(monkeypatch):
    from annotation.services import imports
    from tests.annotation.test_imports import base_files, row

    monkeypatch.setattr(imports, "MANIFEST_MAX_BYTES", 100)
    client = APIClient()
    client.force_authenticate(make_user("cur-big", "curator"))
    resp = _post_import(client, _import_zip([row(), row("s2")], base_files()))
    _assert_shape(resp)
    assert "larger than 100 bytes" in resp.json()["message"]
