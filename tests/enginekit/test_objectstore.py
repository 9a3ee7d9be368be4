"""enginekit.objectstore against a real S3-compatible server (moto, on 127.0.0.1) and a folder."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from enginekit.objectstore import (
    MARKER,
    ArtifactMissing,
    ArtifactStore,
    DirectoryBackend,
    ObjectStoreUnavailable,
    S3Backend,
    backend_from_url,
)
from tests.s3_server import free_port, s3_server

KINDS = ("snapshots", "reward-runs")


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def _backend(s3, prefix: str) -> S3Backend:
    return S3Backend(s3.bucket, prefix, endpoint_url=s3.endpoint, region="us-east-1",
                     access_key="testing", secret_key="testing")


def _folder(root: Path, key: str) -> Path:
    folder = root / key
    (folder / "images").mkdir(parents=True)
    (folder / "pairs.jsonl").write_text('{"pair_id": "a"}\n')
    (folder / "images" / "x.png").write_bytes(bytes(range(256)) * 50)
    return folder


def test_a_folder_published_on_one_host_is_fetched_once_by_another(s3, tmp_path):
    backend = _backend(s3, "roundtrip")
    a = ArtifactStore(tmp_path / "host-a", backend, KINDS)
    b = ArtifactStore(tmp_path / "host-b", backend, KINDS)
    src = _folder(a.root, "snapshots/3-abc")
    assert a.publish(src) == "snapshots/3-abc"
    marker = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=f"roundtrip/snapshots/3-abc/{MARKER}")["Body"].read())
    assert sorted(marker["files"]) == ["images/x.png", "pairs.jsonl"]

    # Host B was handed host A's path (as the database records it) and keeps its own copy.
    local = b.fetch(str(src))
    assert local == b.root / "snapshots" / "3-abc"
    assert (local / "images" / "x.png").read_bytes() == (src / "images" / "x.png").read_bytes()
    assert (local / "pairs.jsonl").read_text() == '{"pair_id": "a"}\n'
    assert not list(local.parent.glob(".fetch-*"))

    calls = []
    b_spy = ArtifactStore(b.root, backend, KINDS)
    backend_get = backend.get_file
    backend.get_file = lambda *args: (calls.append(args), backend_get(*args))
    try:
        assert b_spy.fetch("snapshots/3-abc") == local
    finally:
        del backend.get_file
    assert calls == []  # downloaded once per host


def test_a_half_published_folder_is_never_fetched(s3, tmp_path):
    backend = _backend(s3, "half")
    store = ArtifactStore(tmp_path / "a", backend, KINDS)
    src = _folder(store.root, "reward-runs/run-1/checkpoints/step-2")
    real_put = backend.put_file
    uploaded = []

    def failing_put(local, key):
        if uploaded:
            raise ConnectionError("connection reset")
        uploaded.append(key)
        real_put(local, key)

    backend.put_file = failing_put
    try:
        with pytest.raises(ObjectStoreUnavailable, match="connection reset"):
            store.publish(src)
    finally:
        del backend.put_file
    assert len(uploaded) == 1  # one file went up, the marker did not
    other = ArtifactStore(tmp_path / "b", backend, KINDS)
    with pytest.raises(ArtifactMissing, match="did not finish"):
        other.fetch("reward-runs/run-1/checkpoints/step-2")
    assert other.published_children("reward-runs/run-1/checkpoints") == []
    assert not (other.root / "reward-runs/run-1/checkpoints/step-2").exists()


def test_a_corrupted_object_is_refused_and_leaves_nothing(s3, tmp_path):
    backend = _backend(s3, "corrupt")
    store = ArtifactStore(tmp_path / "a", backend, KINDS)
    store.publish(_folder(store.root, "snapshots/9-def"))
    s3.client().put_object(Bucket=s3.bucket, Key="corrupt/snapshots/9-def/pairs.jsonl", Body=b"tampered")
    other = ArtifactStore(tmp_path / "b", backend, KINDS)
    with pytest.raises(ObjectStoreUnavailable, match="sha256"):
        other.fetch("snapshots/9-def")
    assert list((other.root / "snapshots").iterdir()) == []


def test_the_newest_published_checkpoint_is_listed(s3, tmp_path):
    backend = _backend(s3, "ckpt")
    store = ArtifactStore(tmp_path / "a", backend, KINDS)
    for step in (2, 10, 4):
        store.publish(_folder(store.root, f"reward-runs/run-5/checkpoints/step-{step}"))
    (store.root / "reward-runs/run-5/checkpoints/step-12").mkdir()  # written, not published
    assert store.published_children("reward-runs/run-5/checkpoints") == [
        f"reward-runs/run-5/checkpoints/step-{s}" for s in (10, 2, 4)]


def test_an_unreachable_store_fails_fast_with_the_reason(tmp_path):
    backend = S3Backend("b", "", endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1",
                        access_key="x", secret_key="y", connect_timeout=1, attempts=1)
    store = ArtifactStore(tmp_path, backend, KINDS)
    started = time.monotonic()
    with pytest.raises(ObjectStoreUnavailable, match=r"unreachable or refusing while reading snapshots/1-a"):
        store.fetch("snapshots/1-a")
    assert time.monotonic() - started < 15
    assert not (tmp_path / "snapshots").exists()


def test_without_a_backend_everything_stays_local(tmp_path):
    store = ArtifactStore(tmp_path, None, KINDS)
    folder = _folder(tmp_path, "snapshots/1-a")
    assert store.publish(folder) is None
    assert store.fetch(str(folder)) == folder
    assert store.local_path("/elsewhere/snapshots/1-a") == Path("/elsewhere/snapshots/1-a")
    assert backend_from_url("") is None


def test_keys_are_the_same_whatever_the_host_root(tmp_path):
    store = ArtifactStore(tmp_path / "root", DirectoryBackend(tmp_path / "store"), KINDS)
    assert store.key_for(tmp_path / "root" / "snapshots" / "1-a") == "snapshots/1-a"
    assert store.key_for("/srv/other/artifacts/reward-runs/run-3/final") == "reward-runs/run-3/final"
    assert store.local_path("/srv/other/artifacts/reward-runs/run-3/final") == tmp_path / "root/reward-runs/run-3/final"
    with pytest.raises(ValueError, match="neither under the artifact root"):
        store.key_for("/srv/models/qwen")


def test_a_directory_store_behaves_like_s3(tmp_path):
    backend = backend_from_url(f"file://{tmp_path / 'store'}")
    a = ArtifactStore(tmp_path / "a", backend, KINDS)
    b = ArtifactStore(tmp_path / "b", backend, KINDS)
    a.publish(_folder(a.root, "snapshots/2-b"))
    assert (b.fetch("snapshots/2-b") / "pairs.jsonl").read_text() == '{"pair_id": "a"}\n'
    with pytest.raises(ValueError, match="use s3://bucket"):
        backend_from_url("ftp://host/x")
