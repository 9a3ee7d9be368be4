"""Run validation, the REST API's permissions and shapes, management commands, no torch on the web side."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotation.models import DatasetSnapshot, Judgment
from core.errors import ApplicationError, Conflict
from jobs.models import JobKind, JobStatus
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_resume, reward_run_start
from tests.factories import make_user
from tests.rewardtrain.test_runs import FAST, reward_snapshot

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


def test_web_modules_never_import_torch():
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
            "import rewardtrain.api, rewardtrain.services, rewardtrain.selectors, rewardtrain.urls, rewardtrain.admin;"
            "import rewardtrain.jobs, annotation.jobs, jobs.tasks, annotation.services.snapshots, config.urls; import sys;"
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not bad, bad")
    env = {**os.environ, "DJANGO_READ_DOT_ENV_FILE": "false"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_start_records_the_final_resolved_config():
    snapshot = reward_snapshot()
    run = reward_run_start(snapshot=snapshot, preset="tiny", overrides={"max_steps": 3})
    assert run.job.kind == JobKind.REWARD and run.job.status == JobStatus.QUEUED
    assert run.config == run.job.config and run.config["max_steps"] == 3
    assert run.config["snapshot_dir"] == snapshot.path and run.config["output_dir"] == run.output_dir
    assert run.config["lora_r"] == 8 and run.base_model.endswith("base-models/tiny-qwen25vl")


@pytest.mark.parametrize(("kwargs", "field", "text"), [
    ({"overrides": {"learning_rate": 1}}, "overrides", "unknown config keys: learning_rate"),
    ({"overrides": {"lr": -1}}, "overrides", "lr must be > 0"),
    ({"overrides": {"output_dir": "/tmp/x"}}, "overrides", "output_dir"),
    ({"preset": "huge"}, "preset", "tiny"),
])
def test_start_refuses_bad_input_with_field_messages(kwargs, field, text):
    snapshot = reward_snapshot(n_samples=3)
    with pytest.raises(ApplicationError) as exc:
        reward_run_start(snapshot=snapshot, **kwargs)
    assert text in " ".join(exc.value.fields[field])


def test_start_needs_a_succeeded_snapshot_and_resume_needs_a_finished_run():
    pending = reward_snapshot(n_samples=3, build=False)
    with pytest.raises(ApplicationError) as exc:
        reward_run_start(snapshot=pending)
    assert "snapshot" in exc.value.fields
    run = reward_run_start(snapshot=reward_snapshot(n_samples=3))
    with pytest.raises(Conflict):
        reward_run_resume(run=run)


URLS = [
    ("get", "/api/reward/presets/"), ("get", "/api/snapshots/"), ("post", "/api/snapshots/"),
    ("get", "/api/snapshots/preview/"), ("get", "/api/snapshots/1/"), ("get", "/api/reward/runs/"),
    ("post", "/api/reward/runs/"), ("get", "/api/reward/runs/1/"), ("post", "/api/reward/runs/1/cancel/"),
    ("post", "/api/reward/runs/1/resume/"), ("get", "/api/reward/models/"), ("get", "/api/reward/models/1/"),
    ("post", "/api/reward/models/1/score/"), ("get", "/api/reward/scores/1/"),
]


@pytest.mark.parametrize(("method", "url"), URLS)
@pytest.mark.parametrize("who", ["anonymous", "annotator"])
def test_annotators_and_anonymous_get_403_everywhere(method, url, who):
    client = APIClient()
    if who == "annotator":
        client.force_authenticate(make_user("ann", "annotator"))
    resp = getattr(client, method)(url, {}, format="json")
    assert resp.status_code == 403


def test_scientist_flow_snapshot_preview_create_run_and_errors():
    snapshot = reward_snapshot()
    campaign = snapshot.campaigns.get()
    client = APIClient()
    client.force_authenticate(make_user("sci", "scientist"))
    preview = client.get(f"/api/snapshots/preview/?campaign={campaign.pk}&criterion=structure").json()
    assert preview["pairs"] == snapshot.counts["pairs"] == 8
    assert client.get("/api/snapshots/preview/?campaign=999999").status_code == 400
    bad = client.get(f"/api/snapshots/preview/?campaign={campaign.pk}&aggregation=mean")
    assert bad.status_code == 400 and "aggregation" in bad.json()["fields"]
    resp = client.post("/api/snapshots/", {"name": "api", "filter": {"campaign_ids": [campaign.pk]}},
                       format="json")
    assert resp.status_code == 201 and resp.json()["status"] == "queued" and resp.json()["job"]["kind"] == "snapshot"
    assert resp.json()["aggregation"] == "tie-aware-v1"  # the default for new snapshots
    assert client.get(f"/api/snapshots/{snapshot.pk}/").json()["counts"]["pairs"] == 8
    # Annotator-quality keys: validated with field messages, and previewed with who would be left out.
    resp = client.post("/api/snapshots/", {"name": "q", "filter": {"min_peer_agreement_ratio": 3}},
                       format="json")
    assert resp.status_code == 400 and "min_peer_agreement_ratio" in resp.json()["fields"]["filter"]
    resp = client.post("/api/snapshots/", {"name": "q", "filter": {"exclude_annotators": ["ghost"]}},
                       format="json")
    assert resp.status_code == 400 and resp.json()["fields"] == {"exclude_annotators": ["No such user: ghost."]}
    judged_by = campaign.items.values_list("judgments__annotator__username", flat=True).distinct().first()
    preview = client.get(f"/api/snapshots/preview/?campaign={campaign.pk}&exclude_annotator={judged_by}").json()
    assert [e["annotator"] for e in preview["excluded_annotators"]] == [judged_by]
    assert preview["excluded_annotators"][0]["judgments"] == Judgment.objects.filter(
        annotator__username=judged_by, item__campaign=campaign).count()
    everyone = client.get(f"/api/snapshots/preview/?campaign={campaign.pk}").json()
    assert everyone["excluded_annotators"] == [] and preview["judgments"] < everyone["judgments"]
    assert "tiny" in {p["name"] for p in client.get("/api/reward/presets/").json()}

    resp = client.post("/api/reward/runs/", {"snapshot": snapshot.pk, "overrides": {"nope": 1}}, format="json")
    assert resp.status_code == 400 and "nope" in resp.json()["fields"]["overrides"][0]
    resp = client.post("/api/reward/runs/", {"snapshot": 999999}, format="json")
    assert resp.status_code == 400 and "snapshot" in resp.json()["fields"]
    resp = client.post("/api/reward/runs/", {"snapshot": snapshot.pk, "overrides": FAST}, format="json")
    assert resp.status_code == 201, resp.content
    run_id = resp.json()["id"]
    assert resp.json()["job"]["status"] == "queued" and resp.json()["config"]["max_steps"] == 4
    assert [r["id"] for r in client.get("/api/reward/runs/").json()] == [run_id]
    assert client.post(f"/api/reward/runs/{run_id}/cancel/").json()["job"]["status"] == "cancelled"
    assert client.post(f"/api/reward/runs/{run_id}/cancel/").status_code == 409
    assert client.post(f"/api/reward/runs/{run_id}/resume/").json()["job"]["status"] == "queued"
    assert client.post(f"/api/reward/runs/{run_id}/explode/").status_code == 400
    assert client.get("/api/reward/models/").json() == []


def test_train_reward_sync_runs_in_process_and_registers_a_model(capsys):
    snapshot = reward_snapshot()
    call_command("train_reward", "--snapshot", str(snapshot.pk), "--sync", "--set", "max_steps=2",
                 "--set", "batch_size=4", "--set", "max_pixels=3136", "--set", "save_every=0", "--set", "eval_every=0")
    model = RewardModel.objects.get()
    assert model.run.job.status == JobStatus.SUCCEEDED and model.eval_split == "test"
    assert "registered" in capsys.readouterr().out


def test_build_snapshot_command_and_one_line_errors(capsys):
    snapshot = reward_snapshot()
    campaign = snapshot.campaigns.get()
    call_command("build_snapshot", "--campaign", str(campaign.pk), "--name", "cli")
    assert "8 pairs" in capsys.readouterr().out
    assert DatasetSnapshot.objects.get(name="cli").content_hash == snapshot.content_hash
    call_command("build_snapshot", "--campaign", str(campaign.pk), "--name", "cli-v2", "--aggregation", "majority-v2")
    assert DatasetSnapshot.objects.get(name="cli-v2").aggregation == "majority-v2"
    cases = [
        (["build_snapshot", "--campaign", "999999", "--name", "x"], "No such campaign"),
        (["build_snapshot", "--campaign", str(campaign.pk), "--name", "x", "--aggregation", "mean"], "invalid choice"),
        (["build_snapshot", "--campaign", str(campaign.pk), "--criterion", "consistency", "--name", "x"],
         "no preference pairs match the filter"),
        (["train_reward", "--snapshot", "999999"], "does not exist"),
        (["train_reward", "--snapshot", str(snapshot.pk), "--set", "nonsense"], "key=value"),
        (["train_reward", "--snapshot", str(snapshot.pk), "--set", "bogus=1"], "unknown config keys: bogus"),
        (["train_reward", "--snapshot", str(snapshot.pk), "--preset", "huge"], "Unknown preset"),
        (["cancel_run", "999999"], "does not exist"),
        (["resume_run", "999999"], "does not exist"),
    ]
    for args, text in cases:
        with pytest.raises(CommandError) as exc:
            call_command(*args)
        assert text in str(exc.value) and "\n" not in str(exc.value), args
    call_command("train_reward", "--snapshot", str(snapshot.pk))
    run_id = snapshot.reward_runs.get().pk
    with pytest.raises(CommandError, match="Only failed or cancelled"):
        call_command("resume_run", str(run_id))
    call_command("cancel_run", str(run_id))
    with pytest.raises(CommandError, match="already cancelled"):
        call_command("cancel_run", str(run_id))
