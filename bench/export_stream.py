"""Export throughput through HTTP against a production server: JSONL and Parquet at 10k, 100k, 1M.

Self-contained: fills its own PostgreSQL database (BENCH_EXPORT_DATABASE_URL, default
``onereward_bench_export`` on 127.0.0.1) with one campaign per size — the small rows through the
ORM, the bulk with ``INSERT … SELECT generate_series`` — reusing campaigns already filled; then,
per size, starts the production server (``gunicorn -c config/gunicorn.py config.wsgi``, DEBUG off,
two workers for the two cores) on a free 127.0.0.1 port and downloads
``/api/exports/judgments.jsonl`` and ``.parquet`` for that campaign with a curator's token.

Every download is checked the way a client would (``annotation.export_format``: the JSONL
trailer's row count and sha256, the Parquet footer's row count). Server peak RSS is the largest
resident size any gunicorn worker reached during the download (sampled every 20 ms), with its
size before the download next to it. The machine is shared, so wall time depends on what else
runs: the table also gives the CPU seconds the gunicorn workers and the PostgreSQL backends spent
on each download (from /proc), and rows per server CPU-second, which does not.

The bench server raises EXPORT_SYNC_MAX_ROWS above the largest size so that every size streams
(the product default sends exports over 100k rows to a job instead; ``--async-too`` also times
that path for the largest size, with a Celery worker).

    python bench/export_stream.py [--sizes 10000,100000,1000000] [--async-too]

Prints a table and:

    result: JSONL <r> rows/s (<c> per server CPU-second), Parquet <r> rows/s (<c> per CPU-s) at <n>
    judgments through gunicorn; trailer/footer row counts verified for every download; server peak
    RSS <a>-<b> MiB
"""
from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import _stack  # noqa: E402  (bench/ is not a package)

BENCH_URL = os.environ.get("BENCH_EXPORT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/onereward_bench_export")
ANNOTATORS, CRITERIA = 5, 2  # judgments per item = ANNOTATORS × CRITERIA

# The production web process's environment, as every bench starts it (bench/_stack.py).
ENV = _stack.server_env(BENCH_URL, EXPORT_SYNC_MAX_ROWS="100000000", PYTHONUNBUFFERED="1")

# Runs in a child process with Django set up: makes (or finds) the campaign of N judgments and
# prints "<campaign id> <curator token>".
FILL = r"""
import os, sys, time, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings"); django.setup()
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from rest_framework.authtoken.models import Token
from annotation.models import Campaign, CampaignStatus, Criterion, GuidelineVersion, Judgment, TaskType

n, annotators, n_criteria = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
curator, _ = User.objects.get_or_create(username="bench-export-curator")
curator.groups.add(Group.objects.get(name="curator"))
Token.objects.filter(user=curator).delete()  # a fresh token: tokens expire
token = Token.objects.create(user=curator).key
name = f"export-bench-{n}"
campaign = Campaign.objects.filter(name=name).first()
if campaign is not None and Judgment.objects.filter(item__campaign=campaign).count() == n:
    print(campaign.pk, token); sys.exit(0)
if campaign is not None:
    with connection.cursor() as c:  # a half-filled campaign from an interrupted run: start over
        c.execute("DELETE FROM annotation_judgment WHERE item_id IN (SELECT id FROM annotation_item WHERE campaign_id = %s)", [campaign.pk])
        c.execute("DELETE FROM annotation_lease WHERE item_id IN (SELECT id FROM annotation_item WHERE campaign_id = %s)", [campaign.pk])
    campaign.delete()
t0 = time.perf_counter()
task = TaskType.objects.get(slug="fill")
criteria = list(Criterion.objects.filter(task_types=task).order_by("id")[:n_criteria])
guidelines = []
for crit in criteria:
    g = GuidelineVersion.objects.filter(criterion=crit).order_by("-version").first()
    guidelines.append(g or GuidelineVersion.objects.create(criterion=crit, version=1, body_markdown="bench"))
users = [User.objects.get_or_create(username=f"bench-export-ann-{i}")[0] for i in range(annotators)]
items = n // (annotators * n_criteria)
prefix = f"exb{n}-"
with transaction.atomic():
    campaign = Campaign.objects.create(name=name, task_type=task, mode="pairwise", status=CampaignStatus.ACTIVE,
                                       overlap=annotators, candidates_per_item=2, selection={})
    campaign.criteria.set(criteria)
    with connection.cursor() as c:
        c.execute('''INSERT INTO annotation_sample (created_at, updated_at, uid, external_id, source_image, mask, width,
                     height, prompt, split_key, split, meta, task_type_id)
                     SELECT now(), now(), gen_random_uuid(), %s || g, 'samples/bench.png', 'masks/bench.png', 64, 64,
                            'a "quoted" prompt \ number ' || g || ' — ünïcødé', %s || g,
                            (ARRAY['train','val','test'])[1 + g %% 3], '{}', %s
                     FROM generate_series(1, %s) g''', [prefix, prefix, task.pk, items])
        c.execute('''INSERT INTO annotation_candidate (created_at, updated_at, image, sha256, provenance, source_name,
                     source_ref, seed, generation_params, sample_id)
                     SELECT now(), now(), 'candidates/bench.png', md5(s.id::text || k), 'synthetic', 'sys' || k, '',
                            NULL, '{}', s.id
                     FROM annotation_sample s CROSS JOIN generate_series(0, 1) k WHERE s.external_id LIKE %s''',
                  [prefix + "%"])
        c.execute('''INSERT INTO annotation_item (status, priority, is_gold, gold_answer, leased_count, completed_count,
                     created_at, campaign_id, sample_id)
                     SELECT 'done', 0, false, NULL, %s, %s, now(), %s, s.id
                     FROM annotation_sample s WHERE s.external_id LIKE %s ORDER BY s.id''',
                  [annotators, annotators, campaign.pk, prefix + "%"])
        c.execute('''INSERT INTO annotation_itemcandidate (position, candidate_id, item_id)
                     SELECT row_number() OVER (PARTITION BY i.id ORDER BY cand.id) - 1, cand.id, i.id
                     FROM annotation_item i JOIN annotation_candidate cand ON cand.sample_id = i.sample_id
                     WHERE i.campaign_id = %s''', [campaign.pk])
        c.execute('''INSERT INTO annotation_lease (uid, state, displayed_order, created_at, expires_at, finished_at,
                     skip_reason, annotator_id, item_id)
                     SELECT gen_random_uuid(), 'submitted',
                            CASE WHEN (i.id + u.k) %% 2 = 0 THEN to_jsonb(sl.ids) ELSE to_jsonb(ARRAY[sl.ids[2], sl.ids[1]]) END,
                            now(), now() + interval '1 hour', now(), '', u.id, i.id
                     FROM annotation_item i
                     CROSS JOIN LATERAL (SELECT array_agg(candidate_id ORDER BY position) AS ids
                                         FROM annotation_itemcandidate WHERE item_id = i.id) sl
                     CROSS JOIN unnest(%s::int[], %s::int[]) AS u(id, k)
                     WHERE i.campaign_id = %s''',
                  [[u.pk for u in users], list(range(annotators)), campaign.pk])
        c.execute('''INSERT INTO annotation_judgment (created_at, updated_at, choice, displayed_order, active_ms,
                     idempotency_key, annotator_id, best_id, worst_id, criterion_id, guideline_version_id, item_id,
                     lease_id)
                     SELECT now() - (l.id %% 100000) * interval '1 second', now(),
                            (ARRAY['a','b','tie','both_bad'])[1 + (l.id + cr.k) %% 4], l.displayed_order,
                            500 + (l.id * 37 + cr.k) %% 20000, 'k' || l.id, l.annotator_id, NULL, NULL, cr.id, cr.g,
                            l.item_id, l.id
                     FROM annotation_lease l JOIN annotation_item i ON i.id = l.item_id
                     CROSS JOIN unnest(%s::bigint[], %s::bigint[], %s::int[]) AS cr(id, g, k)
                     WHERE i.campaign_id = %s''',
                  [[c_.pk for c_ in criteria], [g.pk for g in guidelines], list(range(len(criteria))), campaign.pk])
    with connection.cursor() as c:
        c.execute("ANALYZE")
print(campaign.pk, token)
print(f"filled {n} judgments in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
"""


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (load-independent, unlike wall time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu(admin, dbname: str) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend serving the bench database (this one excepted)."""
    pids = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                         [dbname]).fetchall()
    return {pid: cpu_seconds(pid) for (pid,) in pids}


def workers_of(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [int(p) for p in children]


class Server:
    """The production gunicorn on a free port; ``rss`` reads its workers' resident size."""

    def __init__(self, env: dict | None = None, workers: int = 2) -> None:
        self.port = _stack.free_port()
        self.log = open(ROOT / "var" / "bench-export-gunicorn.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"], cwd=ROOT,
            env={**(env or ENV), "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers)},
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/api/me/")  # 403 without a token: the app answers
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            sys.exit("gunicorn did not start: see var/bench-export-gunicorn.log")

    def get(self, path: str, token: str = "", timeout: float = 600) -> http.client.HTTPResponse:
        """A GET whose response the caller reads (and closes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("GET", path, headers={"Authorization": f"Token {token}"} if token else {})
        return conn.getresponse()

    def get_json(self, path: str, token: str) -> tuple[int, dict]:
        import json

        resp = self.get(path, token)
        with resp:
            return resp.status, json.loads(resp.read())

    def rss(self) -> int:
        return max((rss_kib(p) for p in workers_of(self.proc.pid)), default=0)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def download(server: Server, path: str, token: str, admin, dbname: str) -> dict:
    """One GET: seconds, body, HTTP status, RSS before and peak RSS during (KiB), and the CPU
    seconds the gunicorn workers and the database backends spent on it."""
    before = server.rss()
    workers = workers_of(server.proc.pid)
    cpu0, db0 = sum(cpu_seconds(p) for p in workers), backend_cpu(admin, dbname)
    peak, stop = [before], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], server.rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    chunks = []
    try:
        with server.get(path, token) as resp:
            status = resp.status
            while chunk := resp.read(1 << 20):
                chunks.append(chunk)
    except (http.client.HTTPException, OSError) as exc:  # a cut stream: the format check says so below
        print(f"  download of {path} broke off: {exc}", file=sys.stderr)
        status = -1
    dt = time.perf_counter() - t0
    stop.set()
    sampler.join()
    web_cpu = sum(cpu_seconds(p) for p in workers) - cpu0
    db_cpu = sum(v - db0.get(pid, 0.0) for pid, v in backend_cpu(admin, dbname).items())
    return {"s": dt, "body": b"".join(chunks), "status": status, "before": before, "peak": peak[0],
            "web_cpu": web_cpu, "db_cpu": db_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="judgment counts, comma separated")
    parser.add_argument("--async-too", action="store_true", help="also time an export job at the largest size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    (ROOT / "var").mkdir(exist_ok=True)

    import psycopg

    from annotation.export_format import ExportIncomplete, verify_jsonl, verify_parquet

    admin = BENCH_URL.rsplit("/", 1)[0] + "/postgres"
    dbname = BENCH_URL.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            conn.execute(f'CREATE DATABASE "{dbname}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)

    rows = []
    admin_conn = psycopg.connect(admin, autocommit=True)
    for n in sizes:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", FILL, str(n), str(ANNOTATORS), str(CRITERIA)], cwd=ROOT, env=ENV,
                             check=True, capture_output=True, text=True)
        campaign_id, token = out.stdout.split()
        print(f"campaign of {n} judgments ready ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        server = Server()
        try:
            for fmt, verify in (("jsonl", verify_jsonl), ("parquet", verify_parquet)):
                d = download(server, f"/api/exports/judgments.{fmt}?campaign={campaign_id}", token, admin_conn, dbname)
                try:
                    counted = verify(d["body"]) if d["status"] == 200 else None
                except ExportIncomplete as exc:
                    print(f"  {fmt} at {n}: INCOMPLETE ({exc})", file=sys.stderr)
                    counted = None
                cpu = d["web_cpu"] + d["db_cpu"]
                rows.append({"n": n, "fmt": fmt, "status": d["status"], "rate": n / d["s"], "s": d["s"],
                             "mb": len(d["body"]) / 1e6, "before": d["before"] // 1024, "peak": d["peak"] // 1024,
                             "web_cpu": d["web_cpu"], "db_cpu": d["db_cpu"], "cpu_rate": n / cpu if cpu else 0.0,
                             "verified": counted == n, "load": os.getloadavg()[0]})
                print(f"  {fmt:8} {n:>9} rows {d['s']:6.2f}s {n / d['s']:>9,.0f} rows/s  verified={counted == n}",
                      file=sys.stderr)
        finally:
            server.stop()
    admin_conn.close()

    print(f"{'judgments':>10} {'format':>8} {'HTTP':>5} {'seconds':>8} {'rows/s':>9} {'MB':>6} {'web CPU s':>9} "
          f"{'db CPU s':>8} {'rows/CPU-s':>10} {'RSS MiB':>8} {'peak RSS':>8} {'verified':>8} {'load':>5}")
    for r in rows:
        print(f"{r['n']:>10} {r['fmt']:>8} {r['status']:>5} {r['s']:>8.2f} {r['rate']:>9,.0f} {r['mb']:>6.1f} "
              f"{r['web_cpu']:>9.1f} {r['db_cpu']:>8.1f} {r['cpu_rate']:>10,.0f} {r['before']:>8} {r['peak']:>8} "
              f"{'yes' if r['verified'] else 'NO':>8} {r['load']:>5.1f}")
    if args.async_too:
        async_job(sizes[-1])
    top = [r for r in rows if r["n"] == sizes[-1]]
    rate = {r["fmt"]: r["rate"] for r in top}
    per_cpu = {r["fmt"]: r["cpu_rate"] for r in top}
    ok = all(r["verified"] for r in rows)
    print(f"result: JSONL {rate.get('jsonl', 0):,.0f} rows/s ({per_cpu.get('jsonl', 0):,.0f} per server CPU-second), "
          f"Parquet {rate.get('parquet', 0):,.0f} rows/s ({per_cpu.get('parquet', 0):,.0f} per CPU-s) at "
          f"{sizes[-1]:,} judgments through gunicorn; trailer/footer row counts "
          f"{'verified for every download' if ok else 'WRONG for some download'}; server peak RSS "
          f"{min(r['peak'] for r in rows)}-{max(r['peak'] for r in rows)} MiB")
    if not ok:
        sys.exit(1)


def async_job(n: int) -> None:
    """The path big exports take in the product: 202 + a job a Celery worker runs; time to the
    verified file, through the API (start, poll, download)."""
    from annotation.export_format import verify_jsonl

    broker = os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    env = {**ENV, "CELERY_BROKER_URL": broker, "EXPORT_SYNC_MAX_ROWS": "100000"}
    out = subprocess.run([sys.executable, "-c", FILL, str(n), str(ANNOTATORS), str(CRITERIA)], cwd=ROOT, env=ENV,
                         check=True, capture_output=True, text=True)
    campaign_id, token = out.stdout.split()
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default", "--pool",
                               "solo", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(env)
    try:
        t0 = time.perf_counter()
        status, job = server.get_json(f"/api/exports/judgments.jsonl?campaign={campaign_id}&async=1", token)
        assert status == 202, (status, job)
        path = f"/api/exports/jobs/{job['id']}/"
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
            _, job = server.get_json(path, token)
        assert job["status"] == "succeeded", job
        with server.get(f"{path}download/", token) as resp:
            body = resp.read()
        dt = time.perf_counter() - t0
        print(f"async job: {n} rows JSONL, 202 → file verified ({verify_jsonl(body)} rows) in {dt:.1f}s "
              f"({n / dt:,.0f} rows/s end to end, worker + download)")
    finally:
        server.stop()
        worker.terminate()
        worker.wait(30)


if __name__ == "__main__":
    main()
