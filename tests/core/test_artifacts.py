"""core.artifacts: the store the settings describe, and how job paths map onto this host."""
from __future__ import annotations

from pathlib import Path

from core.artifacts import (
    artifact_available,
    artifact_fetch,
    artifact_fetch_if_published,
    artifact_fetch_latest_child,
    artifact_file,
    artifact_local,
    artifact_publish,
    artifact_store,
)


def _folder(path: Path, text: str = "x") -> Path:
    path.mkdir(parents=True)
    (path / "weights.bin").write_text(text)
    return path


def test_without_a_store_every_path_is_used_as_it_is(settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = ""
    assert not artifact_store().enabled
    elsewhere = tmp_path / "other-host" / "snapshots" / "1-a"
    assert artifact_local(elsewhere) == elsewhere and artifact_fetch(elsewhere) == elsewhere
    assert artifact_publish(_folder(tmp_path / "snapshots" / "2-b")) is None
    assert artifact_fetch_latest_child(tmp_path / "reward-runs" / "run-1" / "checkpoints") is None


def test_paths_from_another_host_map_to_this_hosts_root(settings, tmp_path):
    settings.ARTIFACTS_STORE_URL = f"file://{tmp_path / 'store'}"
    settings.ARTIFACTS_ROOT = tmp_path / "host-a"
    for step in (9, 10, 2):  # the newest is step 10, not the last in name order
        artifact_publish(_folder(tmp_path / "host-a" / "reward-runs" / "run-4" / "checkpoints" / f"step-{step}",
                                 str(step)))
    recorded = str(tmp_path / "host-a" / "reward-runs" / "run-4")

    settings.ARTIFACTS_ROOT = tmp_path / "host-b"
    assert artifact_local(recorded) == tmp_path / "host-b" / "reward-runs" / "run-4"
    latest = artifact_fetch_latest_child(Path(recorded) / "checkpoints")
    assert latest == tmp_path / "host-b" / "reward-runs" / "run-4" / "checkpoints" / "step-10"
    assert (latest / "weights.bin").read_text() == "10"
    assert not (latest.parent / "step-9").exists()  # only the newest is fetched

    # A base model never published (each worker builds it) maps to this host's root ...
    assert artifact_fetch_if_published(tmp_path / "host-a" / "base-models" / "tiny") == \
        tmp_path / "host-b" / "base-models" / "tiny"
    # ... and a folder this host has (a MODEL_ROOTS folder) stays where it is.
    own = _folder(tmp_path / "models" / "base-models" / "qwen")
    assert artifact_fetch_if_published(own) == own


def test_one_file_of_a_published_folder_without_the_rest(settings, tmp_path):
    """A web host reads a model's card from the store, not the weights beside it."""
    settings.ARTIFACTS_STORE_URL = f"file://{tmp_path / 'store'}"
    settings.ARTIFACTS_ROOT = tmp_path / "gpu"
    model = _folder(tmp_path / "gpu" / "reward-runs" / "run-2" / "final")
    (model / "onereward.json").write_text('{"trained_on": {"fill": ["structure"]}}')
    settings.ARTIFACTS_ROOT = tmp_path / "web"
    recorded = tmp_path / "elsewhere" / "reward-runs" / "run-2" / "final"  # as another host recorded it
    assert not artifact_available(recorded)  # not published yet
    assert artifact_file(model, "onereward.json") == model / "onereward.json"  # here: read in place

    settings.ARTIFACTS_ROOT = tmp_path / "gpu"
    artifact_publish(model)
    settings.ARTIFACTS_ROOT = tmp_path / "web"
    card = artifact_file(recorded, "onereward.json")
    assert card.read_text() == '{"trained_on": {"fill": ["structure"]}}'
    assert card.is_relative_to(tmp_path / "web" / ".files")
    assert not (tmp_path / "web" / "reward-runs").exists()  # the weights stayed in the store
    assert artifact_file(recorded, "missing.json") == recorded / "missing.json"
    assert artifact_available(recorded) and not artifact_available(tmp_path / "elsewhere" / "reward-runs" / "run-9")
