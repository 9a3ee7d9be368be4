"""Checkpoints a run prunes leave the object store too (marker first), and what a run writes under
torchrun is published like a single-process run's; the baseline learner's model folder crosses
hosts. A folder object store (``file://``) and separate ARTIFACTS_ROOTs, one per "host"."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.artifacts import artifact_checkpoint_written, artifact_fetch_latest_child, artifact_store
from enginekit.objectstore import (
    MARKER,
    ArtifactMissing,
    ArtifactStore,
    DirectoryBackend,
    ObjectStoreUnavailable,
    S3Backend,
)
from jobs.models import JobStatus
from tests.s3_server import s3_server

KINDS = ("reward-runs",)
CKPT = "reward-runs/run-1/checkpoints"
STATE = "trainer_state.json"


def _checkpoint(root: Path, step: int, key: str = CKPT) -> Path:
    folder = root / key / f"step-{step}"
    (folder / "shards").mkdir(parents=True)
    (folder / "shards" / "0.bin").write_bytes(bytes([step]) * 100)
    (folder / STATE).write_text(json.dumps({"step": step}))
    return folder


class Recording:
    """A backend wrapper that records every delete call, in order."""

    def __init__(self, backend) -> None:
        self.backend, self.deleted = backend, []
        self.description = backend.description

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def delete(self, keys: list[str]) -> None:
        self.deleted.append(sorted(keys))
        self.backend.delete(keys)


def _unpublish_order(store: ArtifactStore, backend: Recording) -> None:
    """Publish step-1 and step-10, unpublish step-1: marker first, then only step-1's files."""
    _checkpoint(store.root, 1)
    _checkpoint(store.root, 10)
    store.publish(store.root / CKPT / "step-1")
    store.publish(store.root / CKPT / "step-10")
    store.unpublish(f"{CKPT}/step-1")
    assert backend.deleted == [[f"{CKPT}/step-1/{MARKER}"],
                               [f"{CKPT}/step-1/shards/0.bin", f"{CKPT}/step-1/{STATE}"]]
    assert store.published(f"{CKPT}/step-1") is None
    assert store.published_children(CKPT) == [f"{CKPT}/step-10"]  # step-1 is no prefix of step-10
    assert list(backend.list_keys(f"{CKPT}/step-1/")) == []
    assert (store.root / CKPT / "step-1" / STATE).is_file()  # this host's own copy stays
    store.unpublish(f"{CKPT}/step-1")  # again: nothing there, no error


def test_unpublish_deletes_the_marker_first_in_a_folder_store(tmp_path):
    backend = Recording(DirectoryBackend(tmp_path / "store"))
    _unpublish_order(ArtifactStore(tmp_path / "host", backend, KINDS), backend)
    assert not (tmp_path / "store" / CKPT / "step-1").exists()  # no empty folders left behind


def test_unpublish_deletes_the_marker_first_in_s3(tmp_path):
    with s3_server() as s3:
        backend = Recording(S3Backend(s3.bucket, "pre", endpoint_url=s3.endpoint, region="us-east-1",
                                      access_key="testing", secret_key="testing"))
        _unpublish_order(ArtifactStore(tmp_path / "host", backend, KINDS), backend)


def test_a_half_deleted_folder_is_never_taken_for_a_complete_one(tmp_path):
    backend = DirectoryBackend(tmp_path / "store")
    store = ArtifactStore(tmp_path / "a", backend, KINDS)
    store.publish(_checkpoint(store.root, 4))
    real_delete, calls = backend.delete, []

    def cut_after_the_marker(keys):
        calls.append(keys)
        if len(calls) > 1:
            raise ConnectionError("store went away")
        real_delete(keys)

    backend.delete = cut_after_the_marker
    with pytest.raises(ObjectStoreUnavailable, match="store went away"):
        store.unpublish(f"{CKPT}/step-4")
    assert (tmp_path / "store" / CKPT / "step-4" / STATE).is_file()  # the files are still there ...
    other = ArtifactStore(tmp_path / "b", backend, KINDS)
    with pytest.raises(ArtifactMissing):  # ... but nobody fetches them as a checkpoint
        other.fetch(f"{CKPT}/step-4")
    assert other.published_children(CKPT) == []
    backend.delete = real_delete
    store.unpublish(f"{CKPT}/step-4")  # the retry finishes the job
    assert not (tmp_path / "store" / CKPT).exists()


@pytest.fixture
def stored(settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = f"file://{tmp_path / 'store'}"
    settings.ARTIFACTS_ROOT = tmp_path / "gpu-a"
    return tmp_path / "store"


def _published_steps(store_dir: Path, key: str = CKPT) -> list[int]:
    root = store_dir / key
    return sorted(int(p.parent.name.split("-")[1]) for p in root.glob(f"step-*/{MARKER}")) if root.is_dir() else []


def test_the_store_keeps_the_checkpoints_the_run_keeps(stored, settings, tmp_path):
    root = tmp_path / "gpu-a"
    for step in (1, 2, 3, 4):
        folder = _checkpoint(root, step)
        pruned = artifact_checkpoint_written(folder, marker=STATE, keep=2)
        assert _published_steps(stored) == [max(1, step - 1), step][-min(step, 2):]
        assert pruned == ([f"{CKPT}/step-{step - 2}"] if step > 2 else [])
    assert not (stored / CKPT / "step-1").exists() and not (stored / CKPT / "step-2").exists()

    # A resume on another host, whose cache is empty, still finds the newest.
    settings.ARTIFACTS_ROOT = tmp_path / "gpu-b"
    latest = artifact_fetch_latest_child(tmp_path / "gpu-a" / CKPT)
    assert latest == tmp_path / "gpu-b" / CKPT / "step-4" and (latest / STATE).is_file()

    # keep ≤ 0 keeps them all (the engine then prunes nothing either).
    settings.ARTIFACTS_ROOT = root
    assert artifact_checkpoint_written(_checkpoint(root, 5), marker=STATE, keep=0) == []
    assert _published_steps(stored) == [3, 4, 5]


def test_a_checkpoint_pruned_before_it_was_published_is_skipped(stored, tmp_path, monkeypatch):
    """Under torchrun the events are read after the fact: the engine may have pruned the folder."""
    root = tmp_path / "gpu-a"
    gone = _checkpoint(root, 1)
    shutil.rmtree(gone)
    assert artifact_checkpoint_written(gone, marker=STATE, keep=2) == []
    assert _published_steps(stored) == []

    # Pruned while it was being uploaded: its partial upload is removed, nothing half-there stays.
    vanishing = _checkpoint(root, 2)
    real_put = DirectoryBackend.put_file

    def put_then_prune(self, local, key):
        real_put(self, local, key)
        shutil.rmtree(vanishing, ignore_errors=True)

    monkeypatch.setattr(DirectoryBackend, "put_file", put_then_prune)
    artifact_checkpoint_written(vanishing, marker=STATE, keep=2)
    monkeypatch.undo()
    assert not (stored / CKPT / "step-2").exists()
    artifact_checkpoint_written(_checkpoint(root, 3), marker=STATE, keep=2)
    assert _published_steps(stored) == [3]


def test_without_a_store_nothing_is_published_or_deleted(settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = ""
    folder = _checkpoint(tmp_path, 1)
    assert artifact_checkpoint_written(folder, marker=STATE, keep=1) == []
    assert not artifact_store().enabled and (folder / STATE).is_file()


# --- real runs: a reward run's pruning, a torchrun run's publishing, the baseline's folder ----------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("processes", [pytest.param(1), pytest.param(2, marks=pytest.mark.slow)])
def test_a_reward_run_publishes_the_checkpoints_it_keeps_and_its_model(processes, stored, settings, tmp_path):
    from rewardtrain.models import RewardModel
    from rewardtrain.services import reward_run_execute_job, reward_run_start
    from tests.rewardtrain.test_runs import FAST, reward_snapshot

    settings.ARTIFACTS_ROOT = tmp_path / "web"
    run = reward_run_start(snapshot=reward_snapshot(), processes=processes, enqueue=False,
                           overrides={**FAST, "max_steps": 5, "batch_size": 2, "save_every": 1,
                                      "keep_checkpoints": 2})
    settings.ARTIFACTS_ROOT = tmp_path / "gpu"
    job = reward_run_execute_job(run.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    run_key = f"reward-runs/run-{run.job_id}"
    local = tmp_path / "gpu" / run_key / "checkpoints"
    kept = sorted(int(p.name.split("-")[1]) for p in local.glob("step-*"))  # what the engine kept ...
    assert len(kept) == 2 and kept[0] > 1, kept  # (it wrote one a step and pruned the older ones)
    assert _published_steps(stored, f"{run_key}/checkpoints") == kept  # ... is what the store keeps
    left = {p.relative_to(stored / run_key / "checkpoints").parts[0]
            for p in (stored / run_key / "checkpoints").rglob("*") if p.is_file()}
    assert left == {f"step-{s}" for s in kept}  # no file of a pruned checkpoint stays
    model = RewardModel.objects.get(run=run)
    assert (stored / run_key / "final" / MARKER).is_file() and Path(model.path) == tmp_path / "gpu" / run_key / "final"


@pytest.mark.django_db
def test_the_baseline_model_folder_is_published_and_fetched_where_it_is_read(stored, settings, tmp_path):
    from rewardtrain.engine.baseline import load_baseline
    from rewardtrain.models import BaselineRun
    from rewardtrain.services import baseline_execute_job, baseline_model_dir, baseline_start
    from tests.rewardtrain.test_baselines import TINY
    from tests.rewardtrain.test_runs import reward_snapshot

    settings.ARTIFACTS_ROOT = tmp_path / "web"
    run = baseline_start(snapshot=reward_snapshot(), overrides=TINY, enqueue=False)  # snapshot published
    settings.ARTIFACTS_ROOT = tmp_path / "cpu"
    job = baseline_execute_job(run.job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    key = f"baselines/baseline-{run.job_id}"
    assert Path(run.output_dir) == tmp_path / "web" / key  # the row names the web host's path ...
    assert (tmp_path / "cpu" / key / "baseline.json").is_file()  # ... the worker trained into its own
    assert (stored / key / MARKER).is_file() and not list((tmp_path / "cpu" / "baselines").glob(".tmp-*"))

    settings.ARTIFACTS_ROOT = tmp_path / "laptop"  # a host that reads the model
    folder = baseline_model_dir(BaselineRun.objects.get(pk=run.pk))
    assert folder == tmp_path / "laptop" / key
    _, card = load_baseline(folder)
    assert card["evaluation"]["pairs"] == BaselineRun.objects.get(pk=run.pk).report["pairs"]


@pytest.mark.django_db
def test_a_baseline_that_cannot_be_published_fails_and_records_no_report(stored, settings, tmp_path, monkeypatch):
    from rewardtrain.models import BaselineRun
    from rewardtrain.services import baseline_execute_job, baseline_start
    from tests.rewardtrain.test_baselines import TINY
    from tests.rewardtrain.test_runs import reward_snapshot

    run = baseline_start(snapshot=reward_snapshot(), overrides=TINY, enqueue=False)  # built and trained here

    def offline(self, local, key):
        raise ConnectionRefusedError("store offline")

    monkeypatch.setattr(DirectoryBackend, "put_file", offline)
    job = baseline_execute_job(run.job_id)
    assert job.status == JobStatus.FAILED
    assert f"unreachable or refusing while uploading baselines/baseline-{run.job_id}/" in job.error, job.error
    assert "store offline" in job.error
    assert BaselineRun.objects.get(pk=run.pk).report == {}
