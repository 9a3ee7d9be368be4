"""Suite-wide setup: one torch thread, no outbound network, a database and a Redis broker database per
test process (so pytest-xdist workers and concurrent runs stay apart), the tiny models, temp media,
the Celery worker and database-outage fixtures."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:  # the web-only install has no torch; engine tests import it themselves
    import torch
except ImportError:  # pragma: no cover
    torch = None
if torch is not None:
    torch.set_num_threads(1)

_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith(_LOOPBACK) or host.startswith("/")) and self.family != socket.AF_UNIX:
        raise OSError(f"tests may not reach the network (tried {address!r})")
    return _real_connect(self, address)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect
    if not _is_xdist_controller(config):
        _lease_broker_db(config)


def pytest_unconfigure(config):
    lease = getattr(config, "_broker_lease", None)
    if lease is not None:
        lease.release()


def _is_xdist_controller(config) -> bool:
    """The ``-n N`` controller only hands tests to its workers: it enqueues nothing and needs no broker."""
    return getattr(config, "workerinput", None) is None and bool(getattr(config.option, "numprocesses", None))


# Redis database numbers a test run may take for its Celery broker; 0 is the shared default (the
# cache, by key prefix) and bench/export_stream.py uses 14.
_BROKER_DBS = range(1, 14)
_LEASE_KEY = "onereward:test-broker-db:{}"


class _BrokerLease:
    """One Redis database number held by this test process for as long as it runs.

    Celery queues are plain Redis keys (``default``, ``gpu``): two runs on one database consume each
    other's messages, and a worker test's clean-up deletes the other run's queue. Concurrent runs
    (pytest-xdist workers, or several people on one Redis) therefore each take a database of their
    own. The lease key names a client connection that this process keeps open, so the lease of a
    killed run is recognised as stale (its connection is gone) and taken over.
    """

    def __init__(self, client, db: int, name: str) -> None:
        self.client, self.db, self.name = client, db, name

    @classmethod
    def acquire(cls, url: str) -> _BrokerLease | None:
        import uuid

        import redis

        name = f"onereward-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        client.client_setname(name)
        for db in _BROKER_DBS:
            key = _LEASE_KEY.format(db)
            if client.set(key, name, nx=True):
                return cls(client, db, name)
            holder = client.get(key)
            alive = {c.get("name") for c in client.client_list()}
            if holder is not None and holder.decode() not in alive and client.getset(key, name) == holder:
                return cls(client, db, name)  # the holder's process is gone
        client.close()
        return None

    def release(self) -> None:
        key = _LEASE_KEY.format(self.db)
        if (self.client.get(key) or b"").decode() == self.name:
            self.client.delete(key)
        self.client.close()


def _lease_broker_db(config) -> None:
    """Point this process's Celery app (and the workers its tests start) at a leased Redis database."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://") or not config.pluginmanager.hasplugin("django"):
        return
    from urllib.parse import urlsplit, urlunsplit

    lease = _BrokerLease.acquire(broker)
    if lease is None:  # every database taken: share the default one, as before leases existed
        print(f"[tests] no free Redis database for the Celery broker; sharing {broker}")
        return
    config._broker_lease = lease
    # Celery reads CELERY_BROKER_URL from the environment before its settings, and the workers that
    # tests start inherit it.
    os.environ["CELERY_BROKER_URL"] = urlunsplit(urlsplit(broker)._replace(path=f"/{lease.db}"))


# Fixtures that make a test need a browser or a Celery worker: the marker follows from the fixture,
# so a new browser or worker test lands in the right lane without anyone remembering a decorator.
_MARKING_FIXTURES = {"browser_page": "browser", "chromium_browser": "browser", "celery_worker_process": "worker"}


def pytest_collection_modifyitems(config, items):
    """Mark tests by the fixtures they use; `make check` deselects browser, worker and slow tests."""
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = _MARKING_FIXTURES.get(fixture)
            if marker and marker not in item.keywords:
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell in teardown that a test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Give every test run its own database, so runs on one server never collide."""
    from django.conf import settings

    suffix = os.environ.get("TEST_DB_SUFFIX") or str(os.getpid())
    if os.environ.get("TEST_DB_SUFFIX") and os.environ.get("PYTEST_XDIST_WORKER"):
        suffix += f"_{os.environ['PYTEST_XDIST_WORKER']}"  # a fixed suffix, still one database per xdist worker
    for db in settings.DATABASES.values():
        if db["ENGINE"].endswith("postgresql"):
            db.setdefault("TEST", {})["NAME"] = f"test_{db['NAME']}_{suffix}"


@pytest.fixture(scope="session")
def tiny_flux_model(tmp_path_factory) -> Path:
    """The tiny random FLUX.1-Fill pipeline (seed 0) in the hub folder layout, built once per test
    process and loaded by tests through ``from_pretrained`` like a real checkpoint. Shared: copy it
    before changing anything in it."""
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    return build_tiny_fill_pipeline(tmp_path_factory.mktemp("tiny-flux") / "base", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen_model(tmp_path_factory) -> Path:
    """The tiny random Qwen2.5-VL reward backbone (seed 0) with its tokenizer and processor, built
    once per test process. Shared: copy it before changing anything in it."""
    from rewardtrain.engine.tiny import build_tiny_reward_model

    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-qwen") / "model", seed=0)


@pytest.fixture(autouse=True)
def _media_root(request, tmp_path_factory):
    """Every test writes media and artifacts into its own temp folders."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    settings = request.getfixturevalue("settings")
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.ARTIFACTS_ROOT = tmp_path_factory.mktemp("artifacts")


@pytest.fixture(autouse=True)
def _fresh_progress(request):
    """Progress is read fresh in tests (runs share one Redis; the cache has its own test)."""
    if request.config.pluginmanager.hasplugin("django"):
        request.getfixturevalue("settings").PROGRESS_CACHE_SECONDS = 0


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class WorkerHandle:
    """A real Celery worker subprocess that a test can kill and start again."""

    def __init__(self, env: dict, log_path, args: tuple[str, ...] = ("--pool", "solo")) -> None:
        self.env, self.log_path, self.args, self.proc = env, log_path, args, None

    def start(self) -> None:
        import subprocess
        import sys

        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu", *self.args,
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for(lambda: "ready" in self.log_path.read_text()[offset:] or self.proc.poll() is not None, timeout=90,
                 message="the Celery worker to start")
        if self.proc.poll() is not None:
            pytest.fail("Celery worker exited:\n" + self.log_path.read_text()[-3000:])

    def kill(self) -> None:
        """SIGKILL, as an OOM killer or a lost machine would."""
        self.proc.kill()
        self.proc.wait(20)

    def stop(self) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def celery_worker_process(request, transactional_db, settings, tmp_path):
    """A real Celery worker process (Redis broker, the test database) for integration tests.

    Tests using it must be ``django_db(transaction=True)`` so the worker sees committed rows.
    Indirect parametrization with ``{"args": (...), "env": {...}}`` replaces the pool arguments
    (``--pool solo``) and adds to the worker's environment, e.g. a prefork pool.
    When the test fails, the worker's log and every job row are printed, so that a CI failure
    says what the worker was doing.
    """
    import redis
    from django.db import connection

    from config.celery_app import app

    broker = app.conf.broker_url
    if not broker.startswith("redis://"):
        pytest.fail("the worker tests need CELERY_BROKER_URL=redis://… (make test sets it)")
    client = redis.Redis.from_url(broker)
    client.delete("default", "gpu")  # no stale messages from an earlier run
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": broker,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTIFACTS_ROOT": str(settings.ARTIFACTS_ROOT),
        "DJANGO_READ_DOT_ENV_FILE": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "JOB_STALE_AFTER_SECONDS": "3",
    }
    options = getattr(request, "param", {})
    env.update(options.get("env", {}))
    worker = WorkerHandle(env, tmp_path / "worker.log", tuple(options.get("args", ("--pool", "solo"))))
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            _print_worker_state(worker)


class DatabaseOutage:
    """What a PostgreSQL restart does to its clients, on the test database only: every open
    connection is cut, and new ones are refused ("not currently accepting connections") until
    ``end``. Other databases on the server, and the server itself, are left alone."""

    def __init__(self, settings_dict: dict) -> None:
        self.name = settings_dict["NAME"]
        self.params = {"host": settings_dict["HOST"] or "127.0.0.1", "port": settings_dict["PORT"] or 5432,
                       "user": settings_dict["USER"] or "postgres", "dbname": "postgres", "autocommit": True}

    def _admin(self, allow: bool, terminate: bool = False) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(**self.params) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(self.name), sql.Literal(allow)))
            if terminate:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              [self.name])

    def start(self) -> None:
        self._admin(allow=False, terminate=True)

    def end(self) -> None:
        self._admin(allow=True)

    def end_after(self, seconds: float):
        import threading

        timer = threading.Timer(seconds, self.end)
        timer.start()
        return timer

    def lasting(self, seconds: float) -> None:
        """An outage of ``seconds``, waited out by the caller; its own connection is new afterwards."""
        import time

        from django.db import connection

        self.start()
        time.sleep(seconds)
        self.end()
        connection.close()


@pytest.fixture
def database_outage(transactional_db):
    """A ``DatabaseOutage`` of the test database (PostgreSQL only), always over by teardown."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("database outages are simulated on PostgreSQL: run through `make test`, which provides it")
    outage = DatabaseOutage(connection.settings_dict)
    try:
        yield outage
    finally:
        outage.end()
        connection.close()


def _print_worker_state(worker: WorkerHandle) -> None:
    from jobs.models import Job

    print("--- jobs:")
    for job in Job.objects.order_by("pk"):
        print(f"job {job.pk} {job.kind} {job.status} step {job.step}/{job.total_steps} "
              f"attempts {job.attempts} error {job.error[:300]!r}")
    print("--- worker log (tail):")
    print(worker.log_path.read_text()[-6000:] if worker.log_path.exists() else "(none)")


def cancel_once_training(run_dir, job_id: int, *, timeout: float = 180.0):
    """Start a thread that cancels job ``job_id`` as soon as ``run_dir/metrics.jsonl`` exists.

    For tests that run a distributed job body in the test's own thread; ``join()`` the result.
    """
    import threading
    from pathlib import Path

    def cancel() -> None:
        from django.db import connection

        from jobs.models import Job
        from jobs.services import job_cancel

        try:
            wait_for(lambda: Path(run_dir, "metrics.jsonl").exists(), timeout=timeout, message="training to start")
            job_cancel(job=Job.objects.get(pk=job_id))
        finally:
            connection.close()  # this thread's own connection, or the test database cannot be dropped

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread
