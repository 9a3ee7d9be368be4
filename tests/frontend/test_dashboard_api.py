"""Dashboard pages and /api/dashboard/: access rules, job actions, artifacts, lineage, RL tables."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from annotation.models import Campaign
from jobs.models import Job, JobStatus
from policytrain.models import PolicyCheckpoint, PolicyRun
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_start
from tests.factories import make_campaign, make_user
from tests.rewardtrain.test_runs import reward_snapshot

from .conftest import login

pytestmark = pytest.mark.django_db

PAGES = [
    "/dashboard/", "/dashboard/runs/1/", "/dashboard/new/reward/", "/dashboard/new/policy/",
    "/dashboard/new/generation/", "/dashboard/registry/", "/dashboard/reward-models/1/", "/dashboard/checkpoints/1/",
    "/dashboard/snapshots/1/", "/dashboard/compare/reward-models/?a=1&b=2", "/dashboard/compare/checkpoints/?a=1&b=2",
    "/dashboard/campaigns/", "/dashboard/campaigns/new/", "/dashboard/campaigns/1/", "/dashboard/runs/overlay/?job=1",
]
API_GET = [
    "/api/dashboard/jobs/", "/api/dashboard/jobs/1/", "/api/dashboard/jobs/1/artifacts/config.json",
    "/api/dashboard/lineage/campaign/1/", "/api/dashboard/lineage/snapshot/1/", "/api/dashboard/lineage/reward-model/1/",
    "/api/dashboard/lineage/checkpoint/1/", "/api/dashboard/compare/reward-models/?a=1&b=2",
    "/api/dashboard/compare/checkpoints/?a=1&b=2", "/api/dashboard/campaigns/", "/api/dashboard/campaigns/1/",
    "/api/candidate-sources/?task=fill", "/api/dashboard/runs/overlay/?job=1",
    # the existing APIs the dashboard pages call
    "/api/snapshots/", "/api/snapshots/preview/", "/api/reward/runs/", "/api/reward/models/",
    "/api/policy/checkpoints/", "/api/policy/generations/",
]
API_POST = [
    "/api/jobs/1/cancel/", "/api/jobs/1/resume/", "/api/reward/runs/",
    "/api/reward/runs/preview/", "/api/policy/runs/", "/api/policy/runs/preview/",
    "/api/campaigns/from-candidates/", "/api/snapshots/", "/api/policy/generations/",
]


def client_for(username: str, *roles: str) -> Client:
    make_user(username, *roles)
    c = Client()
    assert c.login(username=username, password="pw-test-1234")
    return c


def test_annotators_get_403_on_every_dashboard_page_and_api():
    make_campaign(n_samples=1)
    c = client_for("ann", "annotator")
    for url in PAGES + API_GET:
        assert c.get(url).status_code == 403, url
    for url in API_POST:
        assert c.post(url, {}, content_type="application/json").status_code == 403, url
    assert c.put("/api/dashboard/jobs/1/tags/", {"tags": ["x"]}, content_type="application/json").status_code == 403
    home = c.get("/").content.decode()
    assert "/dashboard/" not in home


def test_anonymous_is_sent_to_login_and_refused_by_the_api():
    c = Client()
    for url in PAGES:
        resp = c.get(url)
        assert resp.status_code == 302 and "/accounts/login/" in resp["Location"], url
    for url in API_GET:
        assert c.get(url).status_code == 403, url


@pytest.mark.parametrize("role", ["scientist", "curator"])
def test_staff_roles_open_every_page(role):
    snapshot = reward_snapshot()
    run = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False)
    campaign = snapshot.campaigns.get()
    c = client_for("staff", role)
    # Campaigns and their snapshots are both roles'; runs and models the scientists' (test_roles_pages).
    shared = [f"/dashboard/snapshots/{snapshot.pk}/", "/dashboard/campaigns/", "/dashboard/campaigns/new/",
              f"/dashboard/campaigns/{campaign.pk}/"]
    science = ["/dashboard/", f"/dashboard/runs/{run.job_id}/", "/dashboard/new/reward/", "/dashboard/new/policy/",
               "/dashboard/new/generation/", "/dashboard/registry/", "/dashboard/compare/reward-models/",
               "/dashboard/compare/checkpoints/", f"/dashboard/runs/overlay/?job={run.job_id}"]
    for url in shared + science:
        expected = 200 if role == "scientist" or url in shared else 403
        if role == "curator" and url == "/dashboard/":
            expected = 302  # a curator's dashboard starts at the campaigns
        assert c.get(url).status_code == expected, url
    body = c.get(f"/api/dashboard/lineage/snapshot/{snapshot.pk}/").json()
    assert body["upstream"]["campaigns"][0]["id"] == campaign.pk
    assert body["downstream"]["reward_runs"][0]["job"] == run.job_id
    camp = c.get(f"/api/dashboard/campaigns/{campaign.pk}/").json()
    assert camp["progress"]["items_done"] == 8 and camp["criteria"][0]["items_done"] == 8
    assert camp["annotators"][0]["judgments"] == 8 and camp["lineage"]["downstream"]["snapshots"]


def test_job_list_filters_cancel_resume_and_errors():
    snapshot = reward_snapshot()
    run = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False, name="my run")
    c = client_for("sci", "scientist")
    jobs = c.get("/api/dashboard/jobs/").json()
    kinds = {j["kind"] for j in jobs["jobs"]}
    assert kinds == {"reward", "snapshot"} and jobs["counts"]["queued"] == 1
    only = c.get("/api/dashboard/jobs/?kind=reward&q=my").json()["jobs"]
    assert [j["id"] for j in only] == [run.job_id] and only[0]["can_cancel"] and not only[0]["can_resume"]
    assert only[0]["links"][0]["url"] == f"/dashboard/snapshots/{snapshot.pk}/"
    assert c.get("/api/dashboard/jobs/?kind=nope").status_code == 400

    # Cancel and resume are the jobs domain's (/api/jobs/), answered with the job (JobOut).
    resp = c.post(f"/api/jobs/{run.job_id}/cancel/")
    assert resp.status_code == 200 and (resp.json()["id"], resp.json()["status"]) == (run.job_id, JobStatus.CANCELLED)
    assert c.get("/api/dashboard/jobs/?kind=reward").json()["jobs"][0]["can_resume"]
    again = c.post(f"/api/jobs/{run.job_id}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["message"]
    # A snapshot build does not resume (the registry says so): 409 with the reason, nothing changed.
    refused = c.post(f"/api/jobs/{snapshot.job_id}/resume/")
    assert refused.status_code == 409 and "cannot be resumed" in refused.json()["message"]
    assert "resume" not in Job.objects.get(pk=snapshot.job_id).config
    resumed = c.post(f"/api/jobs/{run.job_id}/resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == JobStatus.QUEUED
    assert Job.objects.get(pk=run.job_id).config["resume"] is True
    assert c.post(f"/api/jobs/{run.job_id}/resume/").status_code == 409  # queued: nothing to resume
    assert c.post("/api/jobs/999999/cancel/").status_code == 404
    assert c.post(f"/api/dashboard/jobs/{run.job_id}/cancel/").status_code in (404, 405)  # the old route is gone


def test_reward_form_api_validates_previews_and_starts():
    snapshot = reward_snapshot()
    c = client_for("sci", "scientist")
    bad = c.post("/api/reward/runs/", {"snapshot": None, "max_steps": 0, "preset": "huge"},
                 content_type="application/json").json()
    assert set(bad["fields"]) >= {"snapshot", "max_steps", "preset"}
    preview = c.post("/api/reward/runs/preview/", {"snapshot": snapshot.pk, "max_steps": 7, "lr": 0.01},
                     content_type="application/json").json()["config"]
    assert preview["max_steps"] == 7 and preview["lr"] == 0.01 and preview["snapshot_dir"] == snapshot.path
    assert not RewardModel.objects.exists() and snapshot.reward_runs.count() == 0  # the preview kept nothing
    reserved = c.post("/api/reward/runs/", {"snapshot": snapshot.pk, "overrides": {"output_dir": "/tmp"}},
                      content_type="application/json")
    assert reserved.status_code == 400 and "overrides" in reserved.json()["fields"]


def test_artifacts_download_and_refuse_path_traversal(tmp_path, settings):
    snapshot = reward_snapshot()
    run = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False)
    out = Path(run.output_dir)
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (out / "sub").mkdir()
    (out / "sub" / "weights.bin").write_bytes(b"\0" * 10)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (out / "link.txt").symlink_to(secret)
    c = client_for("sci", "scientist")
    detail = c.get(f"/api/dashboard/jobs/{run.job_id}/").json()
    assert {a["path"] for a in detail["artifacts"]} == {"metrics.jsonl", "sub/weights.bin"}
    assert "loss" in detail["log_tail"]
    ok = c.get(f"/api/dashboard/jobs/{run.job_id}/artifacts/metrics.jsonl")
    assert ok.status_code == 200 and b"loss" in b"".join(ok.streaming_content)
    assert "attachment" in c.get(f"/api/dashboard/jobs/{run.job_id}/artifacts/sub/weights.bin")["Content-Disposition"]
    for bad in ["../../../etc/passwd", "..%2F..%2Fsecret.txt", str(secret), "link.txt", "sub", "nope.json"]:
        assert c.get(f"/api/dashboard/jobs/{run.job_id}/artifacts/{bad}").status_code == 404, bad


def test_policy_run_detail_reads_reward_vs_reference_table(settings):
    snapshot = reward_snapshot()
    rrun = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False)
    model = RewardModel.objects.create(run=rrun, name="rm", path="/nope", base_model="tiny", template_version="v1",
                                       snapshot=snapshot, eval_split="test",
                                       eval_report={"accuracy": {"fill": {"structure": 0.75}},
                                                    "human_ceiling": {"fill": {"structure": 0.8}},
                                                    "counts": {"fill": {"structure": 4}}, "overall_accuracy": 0.75})
    from jobs.services import job_create

    job = job_create(kind="policy", name="rl", config={})
    out = Path(settings.ARTIFACTS_ROOT) / "policy-runs" / f"job-{job.pk}"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "step-000010.png").write_bytes(b"\x89PNG fake")
    rows = [{"step": s, "kind": "train", "loss": 1 / s, "reward/fill/structure": 0.4 + s / 100} for s in range(1, 11)]
    (out / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    job.run_dir = str(out)
    job.save()
    run = PolicyRun.objects.create(job=job, reward_model=model, algorithm=2, output_dir=str(out))
    ckpt = PolicyCheckpoint.objects.create(name="ckpt-a", base_policy="tiny", weights_dir=str(out / "final"), run=run,
                                           reward_model=model, algorithm=2)
    c = client_for("sci", "scientist")
    pol = c.get(f"/api/dashboard/jobs/{job.pk}/").json()["policy"]
    fill = next(r for r in pol["rl_table"]["rows"] if r["task"] == "fill")
    cell = next(x for x in fill["cells"] if x["criterion"] == "structure")
    assert cell["latest"] == pytest.approx(0.48) and cell["first"] == pytest.approx(0.43)
    # A run recorded before grids were copied to media: served from its folder, where it is here.
    assert pol["sample_grids"] == [f"/api/policy/runs/{run.pk}/artifacts/samples/step-000010.png"]
    assert pol["checkpoint"]["id"] == ckpt.pk
    lineage = c.get(f"/api/dashboard/lineage/reward-model/{model.pk}/").json()
    assert [n["kind"] for n in lineage["chain"]] == ["campaign", "snapshot", "reward_model"]
    assert lineage["downstream"]["checkpoints"][0]["id"] == ckpt.pk
    up = c.get(f"/api/dashboard/lineage/checkpoint/{ckpt.pk}/").json()
    assert up["upstream"]["snapshot"]["id"] == snapshot.pk
    table = c.get(f"/api/dashboard/compare/reward-models/?a={model.pk}&b={model.pk}").json()["a"]["table"]
    fill_row = next(r for r in table["rows"] if r["task"] == "fill")
    structure = next(x for x in fill_row["cells"] if x["criterion"] == "structure")
    assert structure["accuracy"] == 75.0 and structure["ceiling"] == 80.0
    assert c.get("/api/dashboard/compare/reward-models/?a=999&b=1").status_code == 400
    for url in [f"/dashboard/reward-models/{model.pk}/", f"/dashboard/checkpoints/{ckpt.pk}/",
                f"/dashboard/compare/checkpoints/?a={ckpt.pk}&b={ckpt.pk}", f"/dashboard/runs/{job.pk}/"]:
        assert c.get(url).status_code == 200, url
    # The compare pages render both sides when both ids exist, and only the pickers otherwise.
    side_b = 'class="side-tag b"'
    assert side_b in c.get(f"/dashboard/compare/reward-models/?a={model.pk}&b={model.pk}").content.decode()
    assert side_b in c.get(f"/dashboard/compare/checkpoints/?a={ckpt.pk}&b={ckpt.pk}").content.decode()
    assert side_b not in c.get(f"/dashboard/compare/checkpoints/?a={ckpt.pk}&b=999999").content.decode()


def test_start_campaign_from_candidates_api():
    make_campaign(n_samples=3, start=False, name="draft")  # samples with candidates from sys0 and sys1
    cur = client_for("cur", "curator")
    sci = client_for("sci", "scientist")
    sources = cur.get("/api/candidate-sources/?task=fill&source=sys0&source=sys1").json()
    assert {s["source_name"] for s in sources["sources"]} == {"sys0", "sys1"}
    assert sources["preview"] == {"samples": 3, "items": 3}
    body = {"name": "A vs B", "task": "fill", "sources": ["sys0", "sys1"], "overlap": 2}
    assert sci.post("/api/campaigns/from-candidates/", body, content_type="application/json").status_code == 403
    one = cur.post("/api/campaigns/from-candidates/", {**body, "sources": ["sys0"]}, content_type="application/json")
    assert one.status_code == 400 and "sources" in one.json()["fields"]
    resp = cur.post("/api/campaigns/from-candidates/", body, content_type="application/json")
    assert resp.status_code == 201, resp.content
    campaign = Campaign.objects.get(name="A vs B")
    assert campaign.status == "active" and campaign.items.count() == 3 and campaign.overlap == 2
    assert resp.json()["id"] == campaign.pk and resp.json()["status"] == "active"
    # The dashboard's campaign page has the side-by-side result from the start, empty until judged.
    gsb = cur.get(f"/api/dashboard/campaigns/{campaign.pk}/").json()["gsb"]
    assert (gsb["a"], gsb["b"], gsb["overall"]["judgments"]) == ("sys0", "sys1", 0)
    dup = cur.post("/api/campaigns/from-candidates/", body, content_type="application/json")
    assert dup.status_code == 400 and "name" in dup.json()["fields"]


def test_policy_run_preview_shows_criterion_weights_and_refuses_weights_that_leave_nothing(tmp_path):
    card = tmp_path / "rm"
    card.mkdir()
    (card / "onereward.json").write_text(json.dumps({"trained_on": {"fill": ["structure", "consistency"]}}))
    snapshot = reward_snapshot()
    rrun = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False)
    model = RewardModel.objects.create(run=rrun, name="rm", path=str(card), base_model="tiny", template_version="v1",
                                       snapshot=snapshot, eval_split="test")
    c = client_for("sci", "scientist")
    form = {"reward_model": model.pk, "task_fill": 1.0, "task_extend": 0.0, "task_removal": 0.0}
    weights = {"fill": {"structure": 2, "consistency": 0.5}}
    ok = c.post("/api/policy/runs/preview/", {**form, "overrides": {"criterion_weights": weights}},
                content_type="application/json")
    assert ok.status_code == 200 and ok.json()["config"]["criterion_weights"] == weights
    # Valid weights, but they zero everything this reward model scores for fill: a field error, nothing started.
    zeroed = {"fill": {"structure": 0, "consistency": 0}}
    bad = c.post("/api/policy/runs/preview/", {**form, "overrides": {"criterion_weights": zeroed}},
                 content_type="application/json")
    assert bad.status_code == 400
    assert "fill: structure, consistency" in json.dumps(bad.json())
    assert not PolicyRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_policy_form_previews_and_starts_through_the_policy_api(browser_page, tmp_path):
    """The RL form resolves its config from POST /api/policy/runs/preview/ (nothing written) and
    starts the run with POST /api/policy/runs/, then opens the run's page."""
    from tests.policytrain.test_policy_runs import make_reward_model, make_samples

    card = tmp_path / "rm" / "final"
    card.mkdir(parents=True)
    (card / "onereward.json").write_text(json.dumps({"trained_on": {"fill": ["structure", "consistency"]}}))
    model = make_reward_model(card)
    make_samples("fill", n=2)
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")
    page.goto("/dashboard/new/policy/")
    page.select_option("#p-rm", str(model.pk))
    for field, value in (("#p-fill", "1"), ("#p-extend", "0"), ("#p-removal", "0"), ("#p-steps", "3")):
        page.fill(field, value)
    page.wait_for_function("() => document.getElementById('config-preview').textContent.includes('\"max_steps\": 3')")
    assert '"task_probs"' in page.text_content("#config-preview") and not PolicyRun.objects.exists()
    page.click("#btn-start")
    page.wait_for_url("**/dashboard/runs/*/")
    run = PolicyRun.objects.get()
    assert page.url.endswith(f"/dashboard/runs/{run.job_id}/") and run.config["max_steps"] == 3
    assert run.config["task_probs"] == {"fill": 1.0, "extend": 0.0, "removal": 0.0}
