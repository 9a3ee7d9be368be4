"""Annotators over HTTP against the production server, with the history in the live campaign.

What a user of the workspace hits: `POST /api/campaigns/{id}/next/` then
`POST /api/leases/{uid}/submit/`, each simulated annotator with its own API token and a
keep-alive connection, against gunicorn (config/gunicorn.py, DEBUG off) + a private PostgreSQL
cluster + Redis. The live campaign is grown to 10k, 100k and 1M judgments; at each size:

- closed loop with C = 1, 10, 50 annotators and no think time;
- paced: 50 annotators each starting one loop every 2 s on a fixed (open-loop) schedule, so a
  slow server cannot slow the offered load down (no coordinated omission).

Reported per run: `next` and submit p50/p95/p99 (ms), loops/s, CPU-ms per loop of the server and
of PostgreSQL (process trees, from psutil), SQL statements per call (from the server's
`X-DB-Statements` header) and errors. Afterwards the database is checked: no item over its
overlap, no duplicate (lease, criterion), counters equal to the rows they count.

    .venv/bin/python bench/annotation_load.py                  # 10k, 100k, 1M judgments
    .venv/bin/python bench/annotation_load.py --sizes 10k --window 5 --levels 1,10   # a quick look
    git worktree add /tmp/before <commit>      # then, before and after in one run, paired per level:
    .venv/bin/python bench/annotation_load.py --sizes 10k,100k --before /tmp/before

Prints a table, the host's speed on a fixed reference workload before and after the runs (CPU-ms
figures from different machines compare only through it) and one line: `result: …`.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402  (bench/ is not a package)

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


@dataclass
class Tally:
    """Latencies (ms), statement counts and errors of one run, per call."""

    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    loop_late_ms: list[float] = field(default_factory=list)  # paced: loop end minus its scheduled start
    next_sql: list[int] = field(default_factory=list)
    submit_sql: list[int] = field(default_factory=list)
    loops: int = 0
    empty: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Annotator:
    """One simulated annotator: a token and a keep-alive connection, as a browser tab has."""

    def __init__(self, base: str, token: str, campaign: int) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.campaign = campaign
        self.rng = random.Random(token)

    def call(self, path: str, body: dict) -> tuple[int, dict | list | None, int, float]:
        t0 = time.perf_counter()
        try:
            self.conn.request("POST", path, json.dumps(body), self.headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect once, as a browser would
            self.conn.request("POST", path, json.dumps(body), self.headers)
            response = self.conn.getresponse()
            raw = response.read()
        ms = (time.perf_counter() - t0) * 1000
        return response.status, (json.loads(raw) if raw else None), int(response.getheader("X-DB-Statements", -1)), ms

    def loop(self, tally: Tally, measure: bool) -> None:
        """One next + submit. Answers vary like a person's (a side, a tie, both bad)."""
        status, item, sql, ms = self.call(f"/api/campaigns/{self.campaign}/next/", {})
        if status == 204:
            with tally.lock:
                tally.empty += 1
            return
        if status != 200:
            with tally.lock:
                tally.errors.append(f"next {status} {str(item)[:120]}")
            return
        choices = [c["id"] for c in item["candidates"]] + ["tie", "both_bad"]
        answers = {c["slug"]: self.rng.choice(choices) for c in item["criteria"]}
        body = {"answers": answers, "idempotency_key": uuid.uuid4().hex, "active_ms": 4200}
        s_status, out, s_sql, s_ms = self.call(f"/api/leases/{item['lease']}/submit/", body)
        with tally.lock:
            if s_status != 201:
                tally.errors.append(f"submit {s_status} {str(out)[:120]}")
                return
            if measure:
                tally.next_ms.append(ms)
                tally.submit_ms.append(s_ms)
                tally.next_sql.append(sql)
                tally.submit_sql.append(s_sql)
                tally.loops += 1


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


@dataclass
class Run:
    size: str
    judgments: int
    mode: str
    tally: Tally
    seconds: float
    server_cpu: float
    pg_cpu: float
    code: str = "after"  # "before": the server ran the --before tree


def measure(world: _stack.World, base: str, pids: tuple[int, int | None], annotators: list[Annotator], *,
            mode: str, warmup: float, window: float, pace_s: float = 2.0) -> tuple[Tally, float, float, float]:
    """Run the annotators (closed loop, or paced on an open schedule) and measure a window."""
    tally = Tally()
    stop = threading.Event()
    state = {"measuring": False}
    start = time.perf_counter() + 0.2

    def closed(a: Annotator) -> None:
        while not stop.is_set():
            try:
                a.loop(tally, state["measuring"])
            except Exception as exc:  # counted, never fatal
                with tally.lock:
                    tally.errors.append(f"{type(exc).__name__}: {exc}"[:160])

    def paced(a: Annotator, phase: float) -> None:
        k = 0
        while not stop.is_set():
            due = start + phase + k * pace_s
            k += 1
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if stop.is_set():
                break
            measuring = state["measuring"]
            try:
                a.loop(tally, measuring)
            except Exception as exc:
                with tally.lock:
                    tally.errors.append(f"{type(exc).__name__}: {exc}"[:160])
            if measuring:
                with tally.lock:
                    tally.loop_late_ms.append((time.perf_counter() - due) * 1000)

    threads = [threading.Thread(target=closed, args=(a,), daemon=True) if mode.startswith("closed")
               else threading.Thread(target=paced, args=(a, i * pace_s / len(annotators)), daemon=True)
               for i, a in enumerate(annotators)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    cpu0 = (_stack.cpu_seconds(pids[0]), _stack.cpu_seconds(pids[1]) if pids[1] else 0.0)
    t0 = time.perf_counter()
    state["measuring"] = True
    time.sleep(window)
    state["measuring"] = False
    seconds = time.perf_counter() - t0
    cpu1 = (_stack.cpu_seconds(pids[0]), _stack.cpu_seconds(pids[1]) if pids[1] else 0.0)
    stop.set()
    for t in threads:
        t.join(30)
    return tally, seconds, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]


def verify(pg: _stack.Postgres, world: _stack.World) -> list[str]:
    """Invariants after the load, in SQL; returns the failures (empty = all hold)."""
    import psycopg

    checks = {
        "no item over its overlap": "SELECT count(*) FROM annotation_item i JOIN annotation_campaign c ON c.id = "
        "i.campaign_id WHERE NOT i.is_gold AND i.completed_count > c.overlap",
        "no item with more submitted leases than its overlap": "SELECT count(*) FROM (SELECT l.item_id FROM "
        "annotation_lease l JOIN annotation_item i ON i.id = l.item_id JOIN annotation_campaign c ON c.id = "
        "i.campaign_id WHERE l.state = 'submitted' AND NOT i.is_gold GROUP BY l.item_id, c.overlap "
        "HAVING count(*) > c.overlap) x",
        "no duplicate (lease, criterion)": "SELECT count(*) FROM (SELECT lease_id, criterion_id FROM "
        "annotation_judgment GROUP BY 1, 2 HAVING count(*) > 1) x",
        "completed_count = submitted leases": "SELECT count(*) FROM annotation_item i WHERE i.completed_count <> "
        "(SELECT count(*) FROM annotation_lease l WHERE l.item_id = i.id AND l.state = 'submitted')",
        "leased_count = active + submitted leases": "SELECT count(*) FROM annotation_item i WHERE i.leased_count <> "
        "(SELECT count(*) FROM annotation_lease l WHERE l.item_id = i.id AND l.state IN ('submitted', 'active'))",
        "every submitted lease has one judgment per criterion": "SELECT count(*) FROM annotation_lease l WHERE "
        "l.state = 'submitted' AND (SELECT count(*) FROM annotation_judgment j WHERE j.lease_id = l.id) <> 2",
    }
    failures = []
    with psycopg.connect(pg.url) as conn:
        for name, sql in checks.items():
            bad = conn.execute(sql).fetchone()[0]
            if bad:
                failures.append(f"{name}: {bad} rows break it")
    return failures


def print_table(runs: list[Run]) -> None:
    head = ("code", "size", "judgments", "run", "next p50/p95/p99 ms", "submit p50/p95/p99 ms", "loops/s",
            "CPU-ms/loop (web+pg)", "SQL next/submit", "errors")
    rows = []
    for r in runs:
        t = r.tally
        loops = max(t.loops, 1)
        cpu = (r.server_cpu + r.pg_cpu) * 1000 / loops
        rows.append((
            r.code, r.size, f"{r.judgments:,}", r.mode,
            f"{pct(t.next_ms, 50):.0f} / {pct(t.next_ms, 95):.0f} / {pct(t.next_ms, 99):.0f}",
            f"{pct(t.submit_ms, 50):.0f} / {pct(t.submit_ms, 95):.0f} / {pct(t.submit_ms, 99):.0f}",
            f"{t.loops / r.seconds:.1f}", f"{cpu:.1f} ({r.server_cpu * 1000 / loops:.1f}+{r.pg_cpu * 1000 / loops:.1f})",
            f"{max(t.next_sql, default=-1)}/{max(t.submit_sql, default=-1)}", str(len(t.errors)),
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1m", help="live-campaign judgments: 10k, 100k, 1m")
    parser.add_argument("--levels", default="1,10,50", help="closed-loop annotator counts")
    parser.add_argument("--paced", type=int, default=50, help="paced annotators (0 = skip the paced run)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--before", type=Path, default=None,
                        help="another source tree (a git worktree of the commit before a change): every run is "
                             "made against it too, right before the same run against this tree, on the same data")
    args = parser.parse_args()
    if args.before and not (args.before / "config" / "gunicorn.py").is_file():
        parser.error(f"--before {args.before}: not a checkout of this project (no config/gunicorn.py)")
    trees = ([("before", args.before.resolve())] if args.before else []) + [("after", _stack.ROOT)]
    sizes = [s.strip().lower() for s in args.sizes.split(",")]
    levels = [int(x) for x in args.levels.split(",")]
    n_annotators = max(levels + [args.paced])

    host_start = _stack.host_reference_ms()
    pg = _stack.start_postgres()
    media = Path(tempfile.mkdtemp(prefix="bench-media-"))
    runs: list[Run] = []
    failures: list[str] = []
    try:
        _stack.create_database(pg)
        world = _stack.create_world(pg, n_annotators, media)
        print(f"private PostgreSQL: {pg.url}; campaign {world.campaign}; {n_annotators} annotators", flush=True)
        for size in sizes:
            # Enough open items that no run drains the queue (about 150 loops/s at most here).
            open_items = int((len(levels) + 1) * (args.window + args.warmup) * 150) * len(trees)
            judgments = _stack.grow(pg, world, judgments=SIZES[size], open_items=open_items,
                                    progress=lambda m: print(m, flush=True))
            print(f"== {size}: {judgments:,} judgments in the live campaign", flush=True)
            with contextlib.ExitStack() as servers:
                started = {code: servers.enter_context(_stack.gunicorn(pg.url, media, root=root)) for code, root in trees}
                plan = [(f"closed C={c}", c) for c in levels] + ([(f"paced {args.paced}x1/2s", args.paced)]
                                                                 if args.paced else [])
                for mode, n in plan:
                    for code, _ in trees:  # before, then after: the pair sees the same machine load
                        base, pid = started[code]
                        team = [Annotator(base, tok, world.campaign) for tok in world.tokens[:n]]
                        tally, secs, web, db = measure(world, base, (pid, pg.postmaster_pid), team,
                                                       mode="paced" if mode.startswith("paced") else mode,
                                                       warmup=args.warmup, window=args.window)
                        runs.append(Run(size, judgments, mode, tally, secs, web, db, code))
                        print_table(runs[-1:])
                        if mode.startswith("paced"):
                            print(f"   paced loop end vs schedule p50/p99: {pct(tally.loop_late_ms, 50):.0f} / "
                                  f"{pct(tally.loop_late_ms, 99):.0f} ms", flush=True)
        failures = verify(pg, world)
    finally:
        pg.stop()
        shutil.rmtree(media, ignore_errors=True)
    print()
    print_table(runs)
    for r in runs:
        for e in sorted(set(r.tally.errors))[:3]:
            print(f"  error in {r.size} {r.mode}: {e}")
    print("database checks:", "all hold" if not failures else "; ".join(failures))
    print(f"host reference workload (_stack.host_reference_ms; lower is faster): {host_start:.0f} ms before the "
          f"runs, {_stack.host_reference_ms():.0f} ms after")
    if args.before:
        print(summary([r for r in runs if r.code == "before"], sizes, "before"))
    print(summary([r for r in runs if r.code == "after"], sizes, "result")
          + f"; checks {'ok' if not failures else 'FAILED'}")


def summary(runs: list[Run], sizes: list[str], label: str) -> str:
    """The one-line verdict over one tree's runs (``result:`` for this tree, ``before:`` for --before)."""
    def cpu(r: Run) -> float:
        return (r.server_cpu + r.pg_cpu) * 1000 / max(r.tally.loops, 1)

    closed = [r for r in runs if r.mode.startswith("closed")]
    by_size = {r.size: statistics.median(cpu(x) for x in closed if x.size == r.size) for r in closed}
    first, last = sizes[0], sizes[-1]
    top = max((r for r in closed if r.size == last), key=lambda r: int(r.mode.split("=")[1]), default=None)
    paced = next((r for r in runs if r.size == last and r.mode.startswith("paced")), None)
    sql_next = max((max(r.tally.next_sql, default=-1) for r in runs), default=-1)
    sql_submit = max((max(r.tally.submit_sql, default=-1) for r in runs), default=-1)
    errors = sum(len(r.tally.errors) for r in runs)
    line = (f"{label}: CPU-ms per loop {by_size.get(first, float('nan')):.1f} at {first} -> "
            f"{by_size.get(last, float('nan')):.1f} at {last} (ratio {by_size.get(last, 0) / by_size.get(first, 1):.2f})")
    if top:
        line += f"; {top.tally.loops / top.seconds:.0f} loops/s with {top.mode.split('=')[1]} closed-loop annotators"
    if paced:
        line += (f"; paced p99 next {pct(paced.tally.next_ms, 99):.0f} ms / submit "
                 f"{pct(paced.tally.submit_ms, 99):.0f} ms")
    line += f"; SQL per next {sql_next}, per submit {sql_submit}; {errors} errors"
    return line


if __name__ == "__main__":
    main()
