"""Next-item and submit latency under concurrent annotators, as the judgment table grows.

Creates a throwaway PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/onereward_bench), bulk-loads campaigns with N existing
judgments, then runs W annotator threads doing next → submit for a fixed number of items each.
Prints a table (p50/p95 of next and submit per size) and one line:

    result: next p95 grows <x>× from <small> to <large> judgments

Usage: python bench/queue_latency.py [--sizes 10000,100000,1000000] [--workers 8] [--items 25]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DJANGO_READ_DOT_ENV_FILE"] = "false"
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/onereward_bench")
os.environ["DATABASE_URL"] = BENCH_URL


def recreate_database() -> None:
    import psycopg

    base, name = BENCH_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def annotator_users(tag: str, n: int) -> list:
    """``n`` users in the annotator group, named after ``tag`` (created once)."""
    from django.contrib.auth.models import Group, User

    annot = Group.objects.get(name="annotator")
    users = []
    for i in range(n):
        u, _ = User.objects.get_or_create(username=f"bench-{tag}-{i}")
        u.groups.add(annot)
        users.append(u)
    return users


def load(n_judgments: int, tag: str):
    """A finished campaign holding ``n_judgments`` judgments, plus a fresh campaign to work on."""
    from django.db import connection

    from annotation.models import (
        Campaign,
        Candidate,
        Criterion,
        GuidelineVersion,
        Item,
        ItemCandidate,
        Judgment,
        Lease,
        Sample,
        TaskType,
    )
    from annotation.services.campaigns import campaign_create, campaign_start

    fill = TaskType.objects.get(slug="fill")
    structure = Criterion.objects.get(slug="structure")
    guideline = GuidelineVersion.objects.get(criterion=structure, version=1)
    users = annotator_users(tag, 20)

    def samples(n: int, prefix: str) -> list[Sample]:
        objs = Sample.objects.bulk_create([
            Sample(external_id=f"{prefix}-{i}", task_type=fill, source_image="x.png", mask="m.png", width=64,
                   height=64, split_key=str(i), split="train") for i in range(n)
        ], batch_size=5000)
        cands = Candidate.objects.bulk_create([
            Candidate(sample=s, image=f"c{k}.png", sha256=f"{s.external_id}-{k}", provenance="synthetic",
                      source_name=f"s{k}") for s in objs for k in range(2)
        ], batch_size=5000)
        return objs, cands

    # History: n judgments, one per item, spread over the annotators (the table that grows).
    old = campaign_create(name=f"history-{tag}", task_type=fill, criteria=[structure], overlap=1)
    hs, hc = samples(n_judgments, f"h{tag}")
    items = Item.objects.bulk_create([Item(campaign=old, sample=s, status="done", leased_count=1, completed_count=1)
                                      for s in hs], batch_size=5000)
    ItemCandidate.objects.bulk_create([ItemCandidate(item=it, candidate=hc[2 * i + k], position=k)
                                       for i, it in enumerate(items) for k in range(2)], batch_size=10000)
    leases = Lease.objects.bulk_create([
        Lease(item=it, annotator=users[i % len(users)], state="submitted", displayed_order=[0, 1],
              expires_at="2030-01-01T00:00:00Z") for i, it in enumerate(items)
    ], batch_size=5000)
    Judgment.objects.bulk_create([
        Judgment(item=it, lease=le, criterion=structure, annotator=le.annotator, choice="a", displayed_order=[0, 1],
                 guideline_version=guideline, idempotency_key=f"h{i}")
        for i, (it, le) in enumerate(zip(items, leases, strict=True))
    ], batch_size=5000)
    Campaign.objects.filter(pk=old.pk).update(status="completed")
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    # The live campaign: enough items for every worker, overlap 2.
    live = campaign_create(name=f"live-{tag}", task_type=fill, criteria=[structure], overlap=2,
                           selection={"sample_ids": [s.pk for s in samples(400, f"l{tag}")[0]]})
    return campaign_start(campaign=live), users


def run_workers(campaign, users, workers: int, per_worker: int) -> tuple[list[float], list[float]]:
    from django.db import close_old_connections

    from annotation.services.judgments import judgment_submit
    from annotation.services.queue import lease_next

    next_ms, submit_ms = [], []
    lock = threading.Lock()

    def work(user):
        try:
            for i in range(per_worker):
                t0 = time.perf_counter()
                lease = lease_next(campaign=campaign, annotator=user)
                t1 = time.perf_counter()
                if lease is None:
                    return
                judgment_submit(lease=lease, annotator=user, answers={"structure": "tie"},
                                idempotency_key=f"{user.pk}-{i}-{lease.pk}")
                t2 = time.perf_counter()
                with lock:
                    next_ms.append((t1 - t0) * 1000)
                    submit_ms.append((t2 - t1) * 1000)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=work, args=(u,)) for u in users[:workers]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return next_ms, submit_ms


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else (values or [0])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="existing judgments per round (comma list)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--items", type=int, default=25, help="items judged by each worker")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    recreate_database()
    setup_django()
    rows = []
    for size in sizes:
        t0 = time.perf_counter()
        campaign, users = load(size, tag=str(size))
        load_s = time.perf_counter() - t0
        nxt, sub = run_workers(campaign, users, args.workers, args.items)
        rows.append((size, len(nxt), pct(nxt, 50), pct(nxt, 95), pct(sub, 50), pct(sub, 95), load_s))
    print(f"{'judgments':>10} {'ops':>5} {'next p50':>9} {'next p95':>9} {'submit p50':>11} {'submit p95':>11} {'load s':>7}")
    for size, n, n50, n95, s50, s95, ls in rows:
        print(f"{size:>10} {n:>5} {n50:>8.1f}ms {n95:>8.1f}ms {s50:>10.1f}ms {s95:>10.1f}ms {ls:>7.1f}")
    growth = rows[-1][3] / rows[0][3] if rows[0][3] else float("nan")
    print(f"result: next p95 grows {growth:.2f}× from {rows[0][0]} to {rows[-1][0]} judgments "
          f"({args.workers} concurrent annotators)")


if __name__ == "__main__":
    main()
