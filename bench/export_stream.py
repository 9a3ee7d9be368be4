"""Streaming export rate and memory: JSONL and Parquet of N judgments, peak RSS per size.

Uses the database filled by bench/queue_latency.py (BENCH_DATABASE_URL). Prints a table and:

    result: peak-RSS growth <x>× for <n>× more rows (flat memory means ≈1×)
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/onereward_bench")

CHILD = r"""
import os, sys, time, resource, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings"); django.setup()
from annotation.models import Campaign
from annotation.services.exports import export_jsonl, export_parquet
fmt, name = sys.argv[1], sys.argv[2]
ids = list(Campaign.objects.filter(name=name).values_list("id", flat=True))
fn = export_jsonl if fmt == "jsonl" else export_parquet
t0 = time.perf_counter(); n = 0; size = 0
for chunk in fn(campaign_ids=ids):
    size += len(chunk)
dt = time.perf_counter() - t0
print(size, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def main() -> None:
    env = {**os.environ, "DATABASE_URL": BENCH_URL, "DJANGO_READ_DOT_ENV_FILE": "false"}
    import psycopg

    with psycopg.connect(BENCH_URL) as conn:
        campaigns = conn.execute(
            "SELECT c.name, count(j.id) FROM annotation_campaign c JOIN annotation_item i ON i.campaign_id = c.id "
            "JOIN annotation_judgment j ON j.item_id = i.id WHERE c.name LIKE 'history-%' GROUP BY c.name ORDER BY 2"
        ).fetchall()
    if len(campaigns) < 2:
        sys.exit("run bench/queue_latency.py first (it fills the bench database with two sizes)")
    rows = []
    for name, n in campaigns:
        for fmt in ("jsonl", "parquet"):
            out = subprocess.run([sys.executable, "-c", CHILD, fmt, name], cwd=ROOT, env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            size, dt, rss = int(out[0]), float(out[1]), int(out[2])
            rows.append((n, fmt, n / dt, size / 1e6, rss))
    print(f"{'judgments':>10} {'format':>8} {'rows/s':>9} {'MB':>7} {'peak RSS MiB':>13}")
    for n, fmt, rate, mb, rss in rows:
        print(f"{n:>10} {fmt:>8} {rate:>9.0f} {mb:>7.1f} {rss:>13}")
    small = [r for r in rows if r[0] == campaigns[0][1]]
    large = [r for r in rows if r[0] == campaigns[-1][1]]
    growth = max(l_[4] for l_ in large) / max(s[4] for s in small)
    print(f"result: peak-RSS growth {growth:.2f}× for {campaigns[-1][1] / campaigns[0][1]:.0f}× more rows "
          f"(flat memory means ≈1×)")


if __name__ == "__main__":
    _ = (resource, time)
    main()
