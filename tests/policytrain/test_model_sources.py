"""Where base models and policies may come from, and who sets ``resume``: both are field errors
when a form or the API tries something else (no engine runs here)."""
from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.models import DatasetSnapshot
from core.errors import ApplicationError
from jobs.models import Job, JobKind
from policytrain.models import PolicyCheckpoint, PolicyRun
from policytrain.services import policy_run_start
from rewardtrain.models import RewardRun
from rewardtrain.services import reward_run_start
from tests.factories import make_user
from tests.policytrain.test_policy_runs import FAST, make_reward_model, make_samples


def _model_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def _snapshot() -> DatasetSnapshot:
    return DatasetSnapshot.objects.create(name="snap", content_hash="h", path="/snapshots/x")


def _refusal(call) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        call()
    return err.value


# ----------------------------------------------------------------------------------------------
# resume is the platform's, never an override
# ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("value", [True, "/tmp/elsewhere/checkpoints/step-1"])
def test_policy_resume_override_is_a_field_error(tiny_reward_dir, value):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    err = _refusal(lambda: policy_run_start(reward_model=rm, overrides={**FAST, "resume": value}))
    assert "resume" in err.fields
    assert not PolicyRun.objects.exists() and not Job.objects.filter(kind=JobKind.POLICY).exists()


@pytest.mark.django_db
def test_policy_run_records_resume_false_and_api_refuses_the_override(tiny_reward_dir):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    run = policy_run_start(reward_model=rm, overrides=FAST, enqueue=False)
    assert run.config["resume"] is False and run.job.config["resume"] is False
    client = APIClient()
    client.force_login(make_user("sci", "scientist"))
    resp = client.post("/api/policy/runs/", {"reward_model": rm.pk, "overrides": {**FAST, "resume": "/x"}},
                       format="json")
    assert resp.status_code == 400 and "resume" in resp.json()["fields"], resp.content


@pytest.mark.django_db
def test_reward_resume_override_is_a_field_error():
    err = _refusal(lambda: reward_run_start(snapshot=_snapshot(), overrides={"resume": True}))
    assert "resume" in err.fields["overrides"][0]
    assert not RewardRun.objects.exists()


# ----------------------------------------------------------------------------------------------
# Base policies
# ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_base_policy_must_be_under_a_model_root_registered_or_an_allowed_hub_id(tiny_reward_dir, tmp_path, settings):
    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    settings.MODEL_ROOTS = [str(tmp_path / "models")]
    settings.ALLOW_HUB_MODELS = False
    outside = _model_folder(tmp_path, "outside")
    inside = _model_folder(tmp_path / "models", "flux-fill")

    def start(base):
        return policy_run_start(reward_model=rm, overrides=FAST, base_policy=base, enqueue=False)

    for bad in (str(outside), str(tmp_path / "models" / ".." / "outside"), "/etc"):
        err = _refusal(lambda bad=bad: start(bad))
        assert list(err.fields) == ["base_policy"] and "model root" in err.fields["base_policy"][0], bad
    err = _refusal(lambda: start("black-forest-labs/FLUX.1-Fill-dev"))
    assert "ALLOW_HUB_MODELS" in err.fields["base_policy"][0]
    assert not PolicyRun.objects.exists()

    assert start(str(inside)).base_policy == str(inside)
    artifacts = _model_folder(Path(settings.ARTIFACTS_ROOT) / "base-models", "mine")  # always a root
    assert start(str(artifacts)).base_policy == str(artifacts)
    PolicyCheckpoint.objects.create(name="registered-base", base_policy=str(outside))  # an admin registered it
    assert start(str(outside)).base_policy == str(outside)
    settings.ALLOW_HUB_MODELS = True
    assert start("black-forest-labs/FLUX.1-Fill-dev").config["base_policy"] == "black-forest-labs/FLUX.1-Fill-dev"


# ----------------------------------------------------------------------------------------------
# Base models of reward runs
# ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_reward_base_model_sources(tiny_reward_dir, tmp_path, settings):
    settings.MODEL_ROOTS = [str(tmp_path / "models")]
    settings.ALLOW_HUB_MODELS = False
    snapshot = _snapshot()
    outside = _model_folder(tmp_path, "qwen-outside")
    inside = _model_folder(tmp_path / "models", "qwen")

    def start(base):
        return reward_run_start(snapshot=snapshot, base_model=base, enqueue=False)

    err = _refusal(lambda: start(str(outside)))
    assert list(err.fields) == ["base_model"] and "model root" in err.fields["base_model"][0]
    err = _refusal(lambda: start("Qwen/Qwen2.5-VL-7B-Instruct"))
    assert "ALLOW_HUB_MODELS" in err.fields["base_model"][0]
    assert not RewardRun.objects.exists()

    assert start(str(inside)).base_model == str(inside)
    registered = make_reward_model(tiny_reward_dir)  # a registered reward model's folder, wherever it is
    assert start(registered.path).base_model == registered.path
    assert start("").base_model.endswith("base-models/tiny-qwen25vl")  # the built-in default
    settings.ALLOW_HUB_MODELS = True
    assert start("Qwen/Qwen2.5-VL-7B-Instruct").config["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"

    client = APIClient()
    client.force_login(make_user("sci", "scientist"))
    resp = client.post("/api/reward/runs/", {"snapshot": snapshot.pk, "base_model": str(outside)}, format="json")
    assert resp.status_code == 400 and "base_model" in resp.json()["fields"], resp.content


@pytest.mark.django_db
def test_a_stored_resume_path_never_reaches_the_engine(tiny_reward_dir, tiny_base, tmp_path):
    """A run recorded before overrides refused ``resume`` may hold a path in its config: the job body
    replaces it with the platform's flag, so the engine never reads a checkpoint from elsewhere."""
    from jobs.models import JobStatus
    from tests.policytrain.test_policy_runs import execute

    rm = make_reward_model(tiny_reward_dir)
    make_samples("fill")
    run = policy_run_start(reward_model=rm, overrides={**FAST, "save_every": 0, "sample_grid_every": 0},
                           enqueue=False)
    elsewhere = tmp_path / "elsewhere" / "checkpoints" / "step-1"
    elsewhere.mkdir(parents=True)
    PolicyRun.objects.filter(pk=run.pk).update(config={**run.config, "resume": str(elsewhere)})
    job = execute(run.job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["resumed_from"] is None and job.result["steps"] == FAST["max_steps"]
