"""Policy RL runs on the Django side: start validation, a real-worker end-to-end run, failures,
cancel/resume, lineage and the management command. Tiny models built once per session."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import DatasetSnapshot, Sample, TaskType
from annotation.services.imports import sample_create_from_images
from annotation.vocabulary import split_for_key
from core.errors import ApplicationError
from jobs.models import Job, JobKind, JobStatus
from jobs.services import JobReporter, job_cancel, job_create, job_execute
from policytrain.models import PolicyCheckpoint, PolicyRun
from policytrain.services import policy_run_execute, policy_run_resume, policy_run_start
from tests.conftest import wait_for

pytest.importorskip("torch")

SIZE = 64
# Tiny, fast RL settings: 3 steps of batch 1, 2 sampler steps, a checkpoint and a grid every step.
FAST = {"max_steps": 3, "batch_size": 1, "reference_steps": 2, "policy_steps": 2, "resolution": SIZE,
        "max_sequence_length": 16, "save_every": 1, "sample_grid_every": 1, "log_every": 1,
        "task_probs": {"fill": 1.0}, "learning_rate": 1e-2}


# ----------------------------------------------------------------------------------------------
# Builders shared with test_generation_api.py
# ----------------------------------------------------------------------------------------------
def make_reward_model(path: Path, name: str = "rm-tiny"):
    from rewardtrain.models import RewardModel, RewardRun

    snapshot = DatasetSnapshot.objects.create(name=f"snap-{name}", content_hash="abc123")
    job = job_create(kind=JobKind.REWARD, name=f"reward {name}", config={})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    run = RewardRun.objects.create(job=job, snapshot=snapshot, base_model="tiny", output_dir=str(path.parent))
    return RewardModel.objects.create(run=run, name=name, path=str(path), base_model="tiny",
                                      template_version="onereward-query-v2", snapshot=snapshot, eval_split="test")


def _train_key(prefix: str, i: int) -> str:
    n = 0
    while True:
        key = f"{prefix}-{i}-{n}"
        if split_for_key(key) == "train":
            return key
        n += 1


def make_samples(task: str = "fill", n: int = 2, size: int = SIZE, prefix: str = "s") -> list[Sample]:
    from synthetic.scenes import make_condition

    out = []
    for i in range(n):
        cond = make_condition(task, seed=1000 + i, size=size)
        key = _train_key(f"{prefix}-{task}", i)
        out.append(sample_create_from_images(external_id=key, task=TaskType.objects.get(slug=task),
                                             source=cond.source, mask=cond.mask, prompt=cond.prompt, split_key=key))
    return out


def execute(job: Job, body=policy_run_execute) -> Job:
    return job_execute(job.pk, body)


# ----------------------------------------------------------------------------------------------
# Start-time validation (no engine runs)
# ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_reward_model_not_covering_a_task_is_refused_at_start(tiny_reward_dir):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    with pytest.raises(ApplicationError) as err:  # default task_probs sample extend and removal too
        policy_run_start(reward_model=rm, overrides={k: v for k, v in FAST.items() if k != "task_probs"})
    assert "extend, removal" in err.value.message
    assert "reward_model" in err.value.fields and "task_probs" in err.value.fields
    assert not PolicyRun.objects.exists() and not Job.objects.filter(kind=JobKind.POLICY).exists()


@pytest.mark.django_db
def test_bad_overrides_are_field_errors(tiny_reward_dir):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides={**FAST, "hinge_lambda": 1.5})
    assert "hinge_lambda" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides={**FAST, "kl_weight": -1})
    assert "kl_weight must be >= 0" in err.value.fields["kl_weight"][0]
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides={**FAST, "criterion_weights": {"fill": {"structur": 2}}})
    assert "unknown criterion 'structur'" in err.value.fields["criterion_weights"][0]
    with pytest.raises(ApplicationError) as err:  # valid weights, but they zero all this reward model scores
        policy_run_start(reward_model=rm, overrides={**FAST, "criterion_weights": {"fill": {"structure": 0,
                                                                                          "consistency": 0}}})
    assert "fill: structure, consistency" in err.value.fields["criterion_weights"][0]
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides={**FAST, "lamda": 0.5})
    assert "unknown RLConfig field" in err.value.fields["overrides"][0]
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides={**FAST, "output_dir": "/etc"})
    assert "output_dir" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides=FAST, base_policy="/no/such/folder")
    assert "base_policy" in err.value.fields


@pytest.mark.django_db
def test_no_condition_samples_for_a_task_is_refused(tiny_reward_dir):
    rm = make_reward_model(tiny_reward_dir)
    with pytest.raises(ApplicationError) as err:
        policy_run_start(reward_model=rm, overrides=FAST)
    assert "fill" in err.value.fields["samples"][0]


@pytest.mark.django_db
def test_start_exports_conditions_folder(tiny_reward_dir, settings):
    rm = make_reward_model(tiny_reward_dir)
    samples = make_samples("fill", n=2)
    make_samples("removal", n=1)  # not sampled (task_probs fill only): not exported
    run = policy_run_start(reward_model=rm, overrides=FAST)
    folder = Path(run.conditions_dir)
    assert folder.parent == Path(settings.ARTIFACTS_ROOT) / "conditions"
    rows = [json.loads(line) for line in (folder / "conditions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [str(s.pk) for s in samples]
    assert {r["task"] for r in rows} == {"fill"} and {r["split"] for r in rows} == {"train"}
    assert all((folder / r["source"]).is_file() and (folder / r["mask"]).is_file() for r in rows)
    assert run.job.status == JobStatus.QUEUED and run.job.kind == JobKind.POLICY
    assert run.config["reward_model"] == str(tiny_reward_dir) and run.config["max_steps"] == 3
    # The same samples again reuse the same folder (content-hashed name).
    again = policy_run_start(reward_model=rm, overrides=FAST)
    assert again.conditions_dir == run.conditions_dir


# ----------------------------------------------------------------------------------------------
# Engine failures, cancel and resume (in-process job bodies; deterministic)
# ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_non_fill_base_policy_fails_with_clear_error_and_no_checkpoint(tiny_reward_dir, tiny_flux_dir, tmp_path,
                                                                      settings):
    settings.MODEL_ROOTS = [str(tmp_path)]  # a base policy must live under a model root
    not_fill = tmp_path / "flux-dev-like"
    shutil.copytree(tiny_flux_dir, not_fill)
    cfg_path = not_fill / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["in_channels"] = 64  # a FLUX.1-dev (text-to-image) transformer, not Fill
    cfg_path.write_text(json.dumps(cfg))
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    run = policy_run_start(reward_model=rm, overrides=FAST, base_policy=str(not_fill))
    job = execute(run.job)
    assert job.status == JobStatus.FAILED
    assert "not a FLUX Fill model" in job.error
    assert not PolicyCheckpoint.objects.exists()


@pytest.mark.django_db
def test_mask_of_wrong_size_fails_the_run_cleanly(tiny_reward_dir, tiny_base):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill", n=1)
    run = policy_run_start(reward_model=rm, overrides=FAST)
    # Corrupt the exported condition (the DB validates masks on import; the engine must still refuse).
    row = json.loads((Path(run.conditions_dir) / "conditions.jsonl").read_text().splitlines()[0])
    from PIL import Image

    Image.new("L", (32, 32), 255).save(Path(run.conditions_dir) / row["mask"])
    job = execute(run.job)
    assert job.status == JobStatus.FAILED
    assert "mask size" in job.error
    assert not PolicyCheckpoint.objects.exists()


@pytest.mark.django_db
def test_cancel_mid_run_then_resume_succeeds(tiny_reward_dir, tiny_base):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    run = policy_run_start(reward_model=rm, algorithm=2, overrides=FAST)

    def cancel_after_first_step(job, reporter: JobReporter):
        reporter.min_interval = 0
        progress = reporter.progress

        def spy(event):
            progress(event)
            if event["step"] == 1:
                job_cancel(job=job)

        reporter.progress = spy
        return policy_run_execute(job, reporter)

    job = execute(run.job, cancel_after_first_step)
    assert job.status == JobStatus.CANCELLED
    assert not PolicyCheckpoint.objects.exists()
    assert (Path(run.output_dir) / "checkpoints" / "step-1" / "state.json").is_file()

    policy_run_resume(run=run)
    run.job.refresh_from_db()
    assert run.job.status == JobStatus.QUEUED and run.job.config["resume"] is True
    job = execute(run.job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2
    assert job.result["resumed_from"].endswith("step-1") and job.result["steps"] == 3
    checkpoint = PolicyCheckpoint.objects.get()
    assert checkpoint.run == run and checkpoint.algorithm == 2
    assert (Path(checkpoint.weights_dir) / "policy.json").is_file()


@pytest.mark.django_db
def test_train_policy_command(tiny_reward_dir, tiny_base, capsys):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    with pytest.raises(CommandError, match="no reward model"):
        call_command("train_policy", "--reward-model", "999999")
    with pytest.raises(CommandError, match="hinge_lambda"):
        call_command("train_policy", "--reward-model", str(rm.pk), "--set", "hinge_lambda=2")
    with pytest.raises(CommandError, match=r"task\(s\) extend \(it covers fill\)"):
        call_command("train_policy", "--reward-model", str(rm.pk), "--set", 'task_probs={"fill":0.5,"extend":0.5}')
    sets = [f"{k}={json.dumps(v)}" for k, v in {**FAST, "max_steps": 2, "sample_grid_every": 0}.items()]
    args = ["train_policy", "--reward-model", str(rm.pk), "--sync"]
    for item in sets:
        args += ["--set", item]
    call_command(*args)
    run = PolicyRun.objects.get()
    assert run.job.status == JobStatus.SUCCEEDED
    assert PolicyCheckpoint.objects.get().run == run
    assert "checkpoint_id" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_next_round_starts_from_production(tiny_reward_dir, tiny_base, capsys):
    from django.test import Client
    from safetensors.torch import load_file

    from policytrain.services import checkpoint_promote
    from tests.factories import make_user

    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    first = policy_run_start(reward_model=rm, overrides={**FAST, "max_steps": 2, "lora_rank": 2, "lora_alpha": 2})
    assert execute(first.job).status == JobStatus.SUCCEEDED
    production = PolicyCheckpoint.objects.get(run=first)
    with pytest.raises(CommandError, match="nothing is in production"):
        call_command("train_policy", "--reward-model", str(rm.pk), "--init-checkpoint", "production")
    checkpoint_promote(checkpoint=production, force=True, reason="round 1 of the test loop")

    # The LoRA shape comes from the checkpoint; the run starts at its weights and trains on.
    call_command("train_policy", "--reward-model", str(rm.pk), "--init-checkpoint", "production",
                 *[a for k, v in {**FAST, "max_steps": 2}.items() for a in ("--set", f"{k}={json.dumps(v)}")])
    second = PolicyRun.objects.exclude(pk=first.pk).get()
    assert second.init_checkpoint == production
    assert (second.config["init_weights"], second.config["lora_rank"]) == (production.weights_dir, 2)
    assert execute(second.job).status == JobStatus.SUCCEEDED, second.job.error
    after = load_file(str(Path(PolicyCheckpoint.objects.get(run=second).weights_dir) / "weights.safetensors"))
    before = load_file(str(Path(production.weights_dir) / "weights.safetensors"))
    assert after.keys() == before.keys() and any(not after[k].equal(before[k]) for k in after)
    make_user("sci", "scientist")
    client = Client()
    client.login(username="sci", password="pw-test-1234")
    page = client.get(f"/dashboard/checkpoints/{second.checkpoint.pk}/").content.decode()
    assert f'<a href="/dashboard/checkpoints/{production.pk}/">{production.name}</a> (its LoRA weights)' in page
    form = client.get("/dashboard/new/policy/").content.decode()
    assert f'<option value="{production.pk}" selected>#{production.pk} {production.name} (production)' in form
    preview = client.post("/api/policy/runs/preview/", {"reward_model": rm.pk, "init_checkpoint": production.pk,
                          "overrides": FAST}, content_type="application/json")
    assert preview.status_code == 200 and preview.json()["config"]["init_weights"] == production.weights_dir

    # Refusals name the field and write nothing.
    bare = PolicyCheckpoint.objects.create(name="bare", base_policy="tiny")
    other_base = PolicyCheckpoint.objects.create(name="other-base", base_policy="/elsewhere", weights_dir=production.weights_dir)
    vanished = PolicyCheckpoint.objects.create(name="vanished", base_policy="tiny", weights_dir="/no/such/final")
    cases = [(bare, {}, "bare base policy"), (other_base, {}, "trained on base policy '/elsewhere'"),
             (vanished, {}, "not a policy weights folder"), (production, {"lora_rank": 4}, "lora_rank 2")]
    for checkpoint, extra, message in cases:
        with pytest.raises(ApplicationError) as refused:
            policy_run_start(reward_model=rm, overrides={**FAST, **extra}, init_checkpoint=checkpoint)
        assert message in refused.value.fields["init_checkpoint"][0], refused.value.fields
    with pytest.raises(ApplicationError) as direct:
        policy_run_start(reward_model=rm, overrides={**FAST, "init_weights": production.weights_dir})
    assert "init_weights" in direct.value.fields
    unknown = client.post("/api/policy/runs/", {"reward_model": rm.pk, "init_checkpoint": 999999},
                          content_type="application/json")
    assert unknown.status_code == 400 and "init_checkpoint" in unknown.json()["fields"]
    assert PolicyRun.objects.count() == 2


# ----------------------------------------------------------------------------------------------
# End to end through a real Celery worker
# ----------------------------------------------------------------------------------------------
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_policy_run_end_to_end_through_worker(celery_worker_process, tiny_reward_dir, tiny_base):
    from rest_framework.test import APIClient

    from tests.factories import make_user

    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill", n=2)
    scientist = make_user("sci", "scientist")
    client = APIClient()
    client.force_authenticate(scientist)
    client.force_login(scientist)  # the sample grids are media, served to a signed-in session (or a token)
    # With the velocity anchor on, so the worker path carries it from the API to the engine's metrics.
    response = client.post("/api/policy/runs/", {"reward_model": rm.pk, "algorithm": 1,
                                                 "overrides": {**FAST, "kl_weight": 1.0}}, format="json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    run = PolicyRun.objects.get(pk=run_id)

    def finished():
        run.job.refresh_from_db()
        return run.job.is_finished

    try:
        wait_for(finished, timeout=150, message="the policy run to finish")
    except AssertionError:
        raise AssertionError(celery_worker_process.log_path.read_text()[-4000:]) from None
    assert run.job.status == JobStatus.SUCCEEDED, run.job.error + celery_worker_process.log_path.read_text()[-3000:]
    assert run.job.progress == 1.0 and run.job.step == 3

    checkpoint = PolicyCheckpoint.objects.get(run=run)
    assert checkpoint.reward_model == rm and checkpoint.base_policy == "tiny"
    assert Path(checkpoint.weights_dir, "policy.json").is_file()

    detail = client.get(f"/api/policy/runs/{run_id}/").json()
    assert detail["job"]["status"] == "succeeded" and detail["checkpoint"] == checkpoint.pk
    train_rows = [m for m in detail["metrics"] if m["kind"] == "train"]
    assert train_rows[-1]["step"] == 3
    anchors = [m["velocity_anchor"] for m in train_rows if "velocity_anchor" in m]
    assert anchors[0] == 0.0 < anchors[-1], anchors
    assert len(detail["sample_grids"]) == 3 and all("/media/policy-runs/" in u for u in detail["sample_grids"])
    windows = [m for m in detail["metrics"] if m["kind"] == "window"]  # metrics.jsonl's rows, recorded by the worker
    assert [w["step"] for w in windows] == [1, 2, 3] and any(k.startswith("reward/fill/") for k in windows[-1])
    grid = client.get(detail["sample_grids"][0])
    assert grid.status_code == 200 and b"".join(grid.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    for evil in ("../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", "checkpoints/step-1/optimizer.pt"):
        assert client.get(f"/api/policy/runs/{run_id}/artifacts/{evil}").status_code == 404, evil

    lineage = client.get(f"/api/policy/checkpoints/{checkpoint.pk}/").json()["lineage"]
    assert lineage["run"]["id"] == run.pk
    assert lineage["reward_model"]["id"] == rm.pk
    assert lineage["snapshot"]["id"] == rm.snapshot_id
    assert os.path.isdir(lineage["checkpoint"]["weights_dir"])
