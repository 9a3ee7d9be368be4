"""The production stack for benchmarks: a private PostgreSQL cluster, the schema, a live campaign
filled to a given number of judgments, and gunicorn serving the real app.

Benchmarks measure through HTTP what users hit; this module only prepares data (bulk SQL, which
is how a large campaign's history would look after months of work; the campaign, its annotators
and distinct images through the product's services in a subprocess, before anything is timed) and
starts the servers. Nothing here is a measured call. ``host_reference_ms`` is a calibration of the
machine, printed beside the HTTP figures, not a figure about the product.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CAMPAIGN = "bench-live"
CRITERIA = ("structure", "aesthetics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_reference_ms() -> float:
    """Milliseconds this host takes for a fixed pure-Python workload (JSON round trips of a fixed
    document, best of 5; lower is faster). Machines differ between sessions and drift within one
    (shared hosts): printed beside CPU-ms figures, it says how fast the machine was when they
    were taken, so figures from different machines can be put side by side."""
    document = {f"k{i}": [i, str(i), i / 3, {"x": [i] * 3}] for i in range(2000)}
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(10):
            json.loads(json.dumps(document))
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree, counting children it has already reaped."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                ct = child.cpu_times()
                total += ct.user + ct.system
        return total
    except psutil.Error:
        return 0.0


@dataclass
class Postgres:
    """A PostgreSQL server: a private cluster this process started, or one given by URL."""

    url: str
    postmaster_pid: int | None
    datadir: Path | None = None

    def stop(self) -> None:
        if self.datadir:
            subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "stop"]),
                           capture_output=True)
            shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres() -> Postgres:
    """A private cluster on a free port (so other work on the machine's shared server does not
    land in the measured CPU), or BENCH_DATABASE_URL when set or when no cluster can be made."""
    if url := os.environ.get("BENCH_DATABASE_URL"):
        return Postgres(url=url, postmaster_pid=None)
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")  # the cluster runs as postgres
    datadir, port = base / "data", free_port()
    subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    conf = (f"port={port}\nlisten_addresses='127.0.0.1'\nunix_socket_directories='{base}'\nshared_buffers=512MB\n"
            "work_mem=16MB\nmax_connections=200\nfsync=on\nsynchronous_commit=on\n")
    with open(datadir / "postgresql.conf", "a") as fh:
        fh.write(conf)
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(datadir), "-l", str(base / "log"), "-w", "start"]),
                   check=True, capture_output=True)
    pid = int((datadir / "postmaster.pid").read_text().split()[0])
    return Postgres(url=f"postgres://postgres@127.0.0.1:{port}/bench", postmaster_pid=pid, datadir=datadir)


def server_env(db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production web process (DEBUG off, persistent connections)."""
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
    return {
        **os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis, "CELERY_BROKER_URL": redis,
        "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "bench-" + "k" * 40, "ANNOTATOR_ID_SALT": "bench-" + "s" * 40,
        "DJANGO_SECURE_SSL_REDIRECT": "false", "DJANGO_SECURE_COOKIES": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_READ_DOT_ENV_FILE": "false",
        "THROTTLE_USER": "100000/min", "OMP_NUM_THREADS": "1", **extra,
    }


def manage(db_url: str, *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=server_env(db_url), check=True, capture_output=True)


def create_database(pg: Postgres) -> None:
    import psycopg

    admin = pg.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench")
        conn.execute("CREATE DATABASE bench")
    manage(pg.url, "migrate", "--no-input")


SETUP = r"""
import json, os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings"); django.setup()
from django.contrib.auth.models import Group, User
from PIL import Image
from rest_framework.authtoken.models import Token
from annotation.models import Campaign, Criterion, Provenance, TaskType
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.imports import candidate_create_from_png, sample_create_from_images
import io
n_annotators, name, criteria = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
def png(color):
    b = io.BytesIO(); Image.new("RGB", (512, 512), color).save(b, format="PNG"); return b.getvalue()
mask = Image.new("L", (512, 512), 0); mask.paste(255, (128, 128, 384, 384))
sample = sample_create_from_images(external_id="bench-sample", task=TaskType.objects.get(slug="fill"),
                                   source=Image.new("RGB", (512, 512), (40, 90, 140)), mask=mask, prompt="a red kite")
cands = [candidate_create_from_png(sample=sample, png=png(c), provenance=Provenance.SYNTHETIC, source_name=f"sys{i}")
         for i, c in enumerate([(200, 40, 40), (40, 200, 40)])]
campaign = campaign_create(name=name, task_type=sample.task_type, criteria=list(Criterion.objects.filter(slug__in=criteria)),
                           overlap=1, selection={"sample_ids": [sample.pk]}, lease_seconds=600)
campaign = campaign_start(campaign=campaign)
group = Group.objects.get(name="annotator")
tokens = []
for i in range(n_annotators):
    u = User.objects.create_user(username=f"bench{i}", password=f"bench-Pass-{i}")
    u.groups.add(group)
    tokens.append(Token.objects.create(user=u).key)
curator = User.objects.create_user(username="bench-curator", password="bench-Pass-c")
curator.groups.add(Group.objects.get(name="curator"))
print(json.dumps({"campaign": campaign.pk, "sample": sample.pk, "candidates": [c.pk for c in cands],
                  "tokens": tokens, "curator_token": Token.objects.create(user=curator).key}))
"""


@dataclass
class World:
    campaign: int
    sample: int
    candidates: list[int]
    tokens: list[str]
    curator_token: str


def create_world(pg: Postgres, n_annotators: int, media_root: Path) -> World:
    """One started pairwise campaign (two criteria, overlap 1), annotators with API tokens."""
    out = subprocess.run([PY, "-c", SETUP, str(n_annotators), CAMPAIGN, ",".join(CRITERIA)], cwd=ROOT,
                         env=server_env(pg.url, MEDIA_ROOT=str(media_root)), check=True, capture_output=True, text=True)
    return World(**json.loads(out.stdout.strip().splitlines()[-1]))


def _add_items(conn, world: World, n: int, *, done: bool) -> None:
    """``n`` more items in the live campaign: judged history (one submitted lease and one
    judgment per criterion, spread over the annotators) or fresh open work."""
    a, b = world.candidates
    order = json.dumps([a, b])
    status, counted = ("done", 1) if done else ("open", 0)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS new_items (id bigint)")
    conn.execute("TRUNCATE new_items")
    conn.execute(
        "WITH ins AS (INSERT INTO annotation_item (campaign_id, sample_id, status, priority, is_gold, leased_count, "
        "completed_count, created_at) SELECT %s, %s, %s, 0, false, %s, %s, now() FROM generate_series(1, %s) "
        "RETURNING id) INSERT INTO new_items SELECT id FROM ins",
        (world.campaign, world.sample, status, counted, counted, n))
    conn.execute("INSERT INTO annotation_itemcandidate (item_id, candidate_id, position) "
                 "SELECT id, %s, 0 FROM new_items UNION ALL SELECT id, %s, 1 FROM new_items", (a, b))
    if not done:
        return
    annotators = [r[0] for r in conn.execute(
        "SELECT user_id FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id "
        "WHERE u.username LIKE 'bench%%' AND u.username <> 'bench-curator' ORDER BY user_id")]
    conn.execute(
        "INSERT INTO annotation_lease (uid, item_id, annotator_id, state, displayed_order, created_at, expires_at, "
        "finished_at, skip_reason) SELECT gen_random_uuid(), id, (%s::bigint[])[1 + id %% %s], 'submitted', "
        "%s::jsonb, now(), now(), now(), '' FROM new_items", (annotators, len(annotators), order))
    guidelines = conn.execute(
        "SELECT c.id, max(g.id) FROM annotation_criterion c JOIN annotation_guidelineversion g ON g.criterion_id = c.id "
        "WHERE c.slug = ANY(%s) GROUP BY c.id", (list(CRITERIA),)).fetchall()
    for criterion, guideline in guidelines:
        conn.execute(
            "INSERT INTO annotation_judgment (created_at, updated_at, item_id, lease_id, criterion_id, annotator_id, "
            "choice, displayed_order, guideline_version_id, active_ms, idempotency_key) "
            "SELECT now(), now(), l.item_id, l.id, %s, l.annotator_id, CASE WHEN l.id %% 3 = 0 THEN 'b' ELSE 'a' END, "
            "%s::jsonb, %s, 4200, 'h' || l.id FROM annotation_lease l JOIN new_items n ON n.id = l.item_id",
            (criterion, order, guideline))


def grow(pg: Postgres, world: World, *, judgments: int, open_items: int, progress=print) -> int:
    """Fill the live campaign's history up to ``judgments`` judgments and add ``open_items`` fresh
    items; returns the judgment count. Batches of 50k items keep each transaction moderate."""
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM annotation_judgment j JOIN annotation_item i ON i.id = j.item_id "
                            "WHERE i.campaign_id = %s", (world.campaign,)).fetchone()[0]
        todo = max(0, (judgments - have) // len(CRITERIA))
        t0 = time.perf_counter()
        while todo > 0:
            batch = min(todo, 50_000)
            with conn.transaction():
                _add_items(conn, world, batch, done=True)
            todo -= batch
            progress(f"  history: {judgments - todo * len(CRITERIA):>9,} judgments ({time.perf_counter() - t0:.0f} s)")
        with conn.transaction():
            _add_items(conn, world, open_items, done=False)
        conn.execute("VACUUM ANALYZE")
        return conn.execute("SELECT count(*) FROM annotation_judgment j JOIN annotation_item i ON i.id = j.item_id "
                            "WHERE i.campaign_id = %s", (world.campaign,)).fetchone()[0]


@contextlib.contextmanager
def gunicorn(db_url: str, media_root: Path, *, root: Path = ROOT, **extra: str) -> Iterator[tuple[str, int]]:
    """The production web server (config/gunicorn.py) on a free port; yields (base URL, pid).
    ``root`` is the source tree it serves: another checkout (a ``git worktree`` of an older
    commit) serves the code before a change against the same database, for a paired comparison."""
    port = free_port()
    env = server_env(db_url, MEDIA_ROOT=str(media_root), GUNICORN_BIND=f"127.0.0.1:{port}",
                     DB_STATEMENT_COUNT_HEADER="true", GUNICORN_LOGLEVEL="warning", **extra)
    subprocess.run([PY, "manage.py", "collectstatic", "--no-input", "-v", "0"], cwd=root, env=env, check=True)
    proc = subprocess.Popen([str(Path(PY).parent / "gunicorn"), "-c", "config/gunicorn.py", "config.wsgi"], cwd=root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                probe.request("GET", "/accounts/login/")
                probe.getresponse().read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("gunicorn did not start: " + proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.3)
        yield base, proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()


DISTINCT = r"""
import json, os, random, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings"); django.setup()
import io
from PIL import Image, ImageChops
from annotation.models import Item, ItemCandidate, Provenance, TaskType
from annotation.services.imports import candidate_create_from_png, sample_create_from_images
campaign, n = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(7)
def picture():
    # Smooth colour fields plus grain: compresses and decodes like a photo, not like a flat fill.
    small = Image.frombytes("RGB", (8, 8), bytes(rng.randrange(256) for _ in range(192)))
    grain = Image.effect_noise((512, 512), 12).convert("RGB")
    return ImageChops.add(small.resize((512, 512), Image.BICUBIC), grain, 1.0, -128)
def png(img):
    b = io.BytesIO(); img.save(b, format="PNG"); return b.getvalue()
mask = Image.new("L", (512, 512), 0); mask.paste(255, (128, 128, 384, 384))
task = TaskType.objects.get(slug="fill")
for k, item in enumerate(Item.objects.filter(campaign_id=campaign, status="open").order_by("id")[:n]):
    sample = sample_create_from_images(external_id=f"bench-distinct-{k}", task=task, source=picture(), mask=mask,
                                       prompt="a red kite")
    for pos in (0, 1):
        cand = candidate_create_from_png(sample=sample, png=png(picture()), provenance=Provenance.SYNTHETIC,
                                         source_name=f"sys{pos}")
        ItemCandidate.objects.filter(item=item, position=pos).update(candidate=cand)
    Item.objects.filter(pk=item.pk).update(sample=sample)
print(json.dumps({"items": k + 1}))
"""


def distinct_images(pg: Postgres, world: World, media_root: Path, n: int) -> int:
    """Give the first ``n`` open items of the live campaign their own sample and candidate images
    (photo-like PNGs), so a browser benchmark cannot be served every image from its cache; returns
    how many items were changed. The world's items otherwise all share one sample and two images."""
    out = subprocess.run([PY, "-c", DISTINCT, str(world.campaign), str(n)], cwd=ROOT,
                         env=server_env(pg.url, MEDIA_ROOT=str(media_root)), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["items"]
