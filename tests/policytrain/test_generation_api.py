"""Generation jobs (checkpoint vs opponent → candidates → a started pairwise campaign), the REST API's
permissions, and the rule that the web side never imports torch."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Campaign, CampaignStatus, Candidate, Item, Provenance
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from core.errors import ApplicationError
from jobs.models import JobStatus
from jobs.services import job_execute
from policytrain.models import GenerationJob, PolicyCheckpoint
from policytrain.services import (
    generation_execute,
    generation_job_start,
    policy_run_execute,
    policy_run_start,
)
from tests.factories import make_sample, make_user
from tests.policytrain.test_policy_runs import FAST, make_reward_model, make_samples

pytest.importorskip("torch")
GEN = {"num_inference_steps": 2, "max_sequence_length": 16}


def trained_checkpoint(reward_dir: Path) -> PolicyCheckpoint:
    """A real RL checkpoint (2 steps; deploy the raw policy weights so its outputs differ from the base)."""
    rm = make_reward_model(reward_dir)
    run = policy_run_start(reward_model=rm, overrides={**FAST, "max_steps": 2, "sample_grid_every": 0,
                                                        "deploy_weights": "policy", "learning_rate": 0.05})
    job = job_execute(run.job_id, policy_run_execute)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return PolicyCheckpoint.objects.get(run=run)


@pytest.mark.django_db
def test_generation_job_creates_candidates_and_started_campaign(tiny_reward_dir, tiny_base):
    samples = make_samples("fill", n=2, prefix="gen")
    checkpoint = trained_checkpoint(tiny_reward_dir)
    user = make_user("sci", "scientist")
    gen = generation_job_start(checkpoint=checkpoint, samples=[s.pk for s in samples], seeds=[0, 1],
                               campaign_name="ckpt-vs-base", criteria=["structure"], overlap=2, params=GEN, user=user)
    assert gen.job.status == JobStatus.QUEUED and gen.job.kind == "generation"
    job = job_execute(gen.job_id, generation_execute)
    assert job.status == JobStatus.SUCCEEDED, job.error
    gen.refresh_from_db()

    a_name, b_name = f"policy:{checkpoint.name}", "base:tiny"
    cands = Candidate.objects.filter(provenance=Provenance.POLICY)
    assert cands.filter(source_name=a_name).count() == 4 and cands.filter(source_name=b_name).count() == 4
    assert gen.candidates_created == 8
    a = cands.filter(source_name=a_name).first()
    assert a.source_ref == str(checkpoint.pk) and a.seed in (0, 1)
    assert a.generation_params["generation_job"] == gen.pk and a.generation_params["num_inference_steps"] == 2
    assert a.image.storage.exists(a.image.name)

    campaign = gen.campaign
    assert campaign is not None and campaign.name == "ckpt-vs-base"
    assert campaign.status == CampaignStatus.ACTIVE and campaign.mode == "pairwise" and campaign.overlap == 2
    assert list(campaign.criteria.values_list("slug", flat=True)) == ["structure"]
    assert campaign.selection["opponents"] == [a_name, b_name]
    assert sorted(campaign.selection["sample_ids"]) == sorted(s.pk for s in samples)
    items = Item.objects.filter(campaign=campaign)
    assert items.count() == 4  # 2 samples × 2 seeds
    for item in items:
        slots = list(item.slots.order_by("position").select_related("candidate"))
        assert [s.candidate.source_name for s in slots] == [a_name, b_name]
        assert slots[0].candidate.seed == slots[1].candidate.seed
        assert all(s.candidate.sample_id == item.sample_id for s in slots)
    assert job.result["campaign_id"] == campaign.pk

    # Annotators judge it; the checkpoint's page shows their side-by-side verdict from its side.
    for n in range(2):
        ann = make_user(f"judge-{n}", "annotator")
        while (lease := lease_next(campaign=campaign, annotator=ann)) is not None:
            ours = lease.item.slots.get(position=0).candidate_id  # position 0 = the checkpoint (asserted above)
            tie = n == 1 and lease.item_id == items.last().pk
            judgment_submit(lease_uid=lease.uid, annotator=ann, idempotency_key=str(lease.uid),
                            answers={"structure": "tie" if tie else ours})
    client = Client()
    client.login(username="sci", password="pw-test-1234")
    page = client.get(f"/dashboard/checkpoints/{checkpoint.pk}/").content.decode()
    # G 7 / S 1 / B 0 over 4 items × 2: win rate 7.5 / 8, interval 0.9375 ± t(3 df) 3.182 · 0.0625 (by item).
    shown = re.search(r'annotators: win rate <span data-testid="win-rate-cell">([\d.]+) <span class="ci">'
                      r"\(n=(\d+), ([\d.]+)–([\d.]+)\)</span></span> vs base:tiny: "
                      r"<strong>better</strong>; better on Structure</span>", page)
    assert shown, page[page.find("annotators:"):][:400]
    assert shown.group(1) == "0.94" and shown.group(2) == "8"
    assert float(shown.group(3)) == pytest.approx(0.739, abs=0.006)


@pytest.mark.django_db
def test_generation_failing_midway_leaves_nothing(tiny_reward_dir, tiny_base, tiny_flux_dir, tmp_path, settings):
    samples = make_samples("fill", n=1, prefix="genfail")
    checkpoint = trained_checkpoint(tiny_reward_dir)
    broken = tmp_path / "not-fill"
    shutil.copytree(tiny_flux_dir, broken)
    cfg = json.loads((broken / "transformer" / "config.json").read_text())
    cfg["in_channels"] = 64
    (broken / "transformer" / "config.json").write_text(json.dumps(cfg))
    opponent = PolicyCheckpoint.objects.create(name="flux-dev", base_policy=str(broken))
    before = set(Path(settings.MEDIA_ROOT).rglob("*.png"))
    gen = generation_job_start(checkpoint=checkpoint, opponent=opponent, samples=[s.pk for s in samples],
                               campaign_name="doomed", params=GEN)
    job = job_execute(gen.job_id, generation_execute)
    assert job.status == JobStatus.FAILED and "not a FLUX Fill model" in job.error
    assert not Candidate.objects.filter(provenance=Provenance.POLICY).exists()
    assert not Campaign.objects.filter(name="doomed").exists()
    assert set(Path(settings.MEDIA_ROOT).rglob("*.png")) == before
    assert not Path(job.run_dir).exists()


@pytest.mark.django_db
def test_generation_start_validation(tiny_reward_dir, tiny_base):
    fill = make_samples("fill", n=1, prefix="v")
    removal = make_samples("removal", n=1, prefix="v")
    odd = [make_sample("fill", n_candidates=0, size=(72, 72))]  # 72 is not a multiple of 16
    base = PolicyCheckpoint.objects.create(name="base", base_policy="tiny")
    other = PolicyCheckpoint.objects.create(name="other", base_policy="tiny", weights_dir="/x")
    ok = {"seeds": [0], "campaign_name": "c1"}
    with pytest.raises(ApplicationError) as err:
        generation_job_start(checkpoint=base, samples=[fill[0].pk], **ok)
    assert "opponent" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        generation_job_start(checkpoint=other, opponent=other, samples=[fill[0].pk], **ok)
    assert "opponent" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        generation_job_start(checkpoint=other, samples=[fill[0].pk, removal[0].pk], **ok)
    assert "mix task types" in err.value.fields["samples"][0]
    with pytest.raises(ApplicationError) as err:
        generation_job_start(checkpoint=other, samples=[odd[0].pk], **ok)
    assert "multiples of 16" in err.value.fields["samples"][0]
    with pytest.raises(ApplicationError) as err:
        generation_job_start(checkpoint=other, samples=[fill[0].pk], criteria=["removal_quality"], **ok)
    assert "criteria" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        generation_job_start(checkpoint=other, samples=[fill[0].pk], params={"steps": 3}, **ok)
    assert "params" in err.value.fields
    assert "paste_back" in err.value.fields["params"][0]  # the message lists the settings that exist
    with pytest.raises(CommandError, match="no policy checkpoint"):
        call_command("generate_candidates", "--checkpoint", "999999", "--samples", "1", "--campaign", "x")
    with pytest.raises(CommandError, match="opponent"):
        call_command("generate_candidates", "--checkpoint", str(base.pk), "--samples", str(fill[0].pk),
                     "--campaign", "x")
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
def test_generate_candidates_command_sync(tiny_reward_dir, tiny_base, capsys):
    samples = make_samples("fill", n=1, prefix="cmd")
    checkpoint = trained_checkpoint(tiny_reward_dir)
    call_command("generate_candidates", "--checkpoint", str(checkpoint.pk), "--samples", str(samples[0].pk),
                 "--campaign", "cmd-campaign", "--set", "num_inference_steps=2", "--set", "max_sequence_length=16",
                 "--sync")
    campaign = Campaign.objects.get(name="cmd-campaign")
    assert campaign.status == CampaignStatus.ACTIVE and campaign.items.count() == 1
    assert GenerationJob.objects.get().campaign == campaign
    assert "candidates_created" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# REST API
# ----------------------------------------------------------------------------------------------
ROLES = ("anonymous", "annotator", "curator", "scientist")


@pytest.fixture
def api_world(tiny_reward_dir):
    rm = make_reward_model(tiny_reward_dir)
    samples = make_samples("fill", n=1, prefix="api")
    run = policy_run_start(reward_model=rm, overrides=FAST)
    ckpt = PolicyCheckpoint.objects.create(name="api-ckpt", base_policy="tiny", weights_dir="/w", run=run,
                                           reward_model=rm, algorithm=1)
    gen = generation_job_start(checkpoint=ckpt, samples=[samples[0].pk], campaign_name="api-gen", params=GEN)
    Path(run.output_dir, "samples").mkdir(parents=True, exist_ok=True)
    Path(run.output_dir, "samples", "step-000001.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    users = {r: make_user(f"u-{r}", r) for r in ROLES[1:]}
    return {"rm": rm, "run": run, "ckpt": ckpt, "gen": gen, "sample": samples[0], "users": users}


def _endpoints(w):
    r, c, g = w["run"].pk, w["ckpt"].pk, w["gen"].pk
    return [
        ("get", "/api/policy/runs/", None),
        ("post", "/api/policy/runs/", {"reward_model": w["rm"].pk, "overrides": FAST}),
        ("get", f"/api/policy/runs/{r}/", None),
        ("post", f"/api/policy/runs/{r}/cancel/", None),
        ("post", f"/api/policy/runs/{r}/resume/", None),
        ("get", f"/api/policy/runs/{r}/artifacts/samples/step-000001.png", None),
        ("get", "/api/policy/checkpoints/", None),
        ("get", f"/api/policy/checkpoints/{c}/", None),
        ("get", "/api/policy/generations/", None),
        ("post", "/api/policy/generations/", {"checkpoint": c, "sample_ids": [w["sample"].pk],
                                              "campaign_name": "api-gen-2", "params": GEN}),
        ("get", f"/api/policy/generations/{g}/", None),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["anonymous", "annotator"])
def test_annotators_and_anonymous_get_403_everywhere(api_world, role):
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(api_world["users"][role])
    for method, path, body in _endpoints(api_world):
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 403, (role, method, path, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["curator", "scientist"])
def test_staff_roles_use_every_endpoint(api_world, role):
    client = APIClient()
    client.force_authenticate(api_world["users"][role])
    for method, path, body in _endpoints(api_world):
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code in (200, 201), (method, path, response.status_code, response.content[:300])
    run = api_world["run"]
    run.job.refresh_from_db()
    assert run.job.status == JobStatus.QUEUED  # cancelled (queued → cancelled at once), then resumed


@pytest.mark.django_db
def test_api_errors_are_clear_4xx(api_world):
    client = APIClient()
    client.force_authenticate(api_world["users"]["scientist"])
    bad = client.post("/api/policy/runs/", {"reward_model": api_world["rm"].pk,
                                            "overrides": {k: v for k, v in FAST.items() if k != "task_probs"}},
                      format="json")
    assert bad.status_code == 400 and "reward_model" in bad.json()["fields"]
    assert "extend, removal" in bad.json()["message"]
    bad = client.post("/api/policy/runs/", {"reward_model": 999999}, format="json")
    assert bad.status_code == 400 and "reward_model" in bad.json()["fields"]
    bad = client.post("/api/policy/runs/", {"reward_model": api_world["rm"].pk, "overrides": {"max_steps": 0}},
                      format="json")
    assert bad.status_code == 400 and "max_steps" in bad.json()["fields"]
    run = api_world["run"]
    assert client.post(f"/api/policy/runs/{run.pk}/resume/").status_code == 409  # queued: nothing to resume
    assert client.post(f"/api/policy/runs/{run.pk}/explode/").status_code == 400
    assert client.get(f"/api/policy/runs/{run.pk}/artifacts/../../etc/passwd").status_code == 404
    assert client.get(f"/api/policy/runs/{run.pk}/artifacts/config.json").status_code == 404  # not written yet
    assert client.get("/api/policy/runs/999999/").status_code == 404


def test_web_modules_never_import_torch():
    code = (
        "import sys, django; django.setup();"
        "import policytrain.api, policytrain.services, policytrain.selectors, policytrain.urls, policytrain.jobs, jobs.tasks,"
        " policytrain.admin, policytrain.conditions, config.urls;"
        "from policytrain.management.commands import train_policy, generate_candidates;"
        "bad = [m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules];"
        "assert not bad, bad"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
