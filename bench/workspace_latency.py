"""Workspace: from the annotator's submit key to the next item's images decoded on screen.

Method. A private PostgreSQL cluster holds one started pairwise campaign (criteria structure +
aesthetics) whose history is grown by bulk SQL to ``--judgments`` judgments, with ~200 open items
on top; the first open items get their own photo-like images (``_stack.distinct_images``) so the
browser cannot serve every item from its image cache. gunicorn serves the real app (DEBUG off).
The system Chromium, driven by Playwright, signs in as ``bench0`` at /accounts/login/ and opens
the real workspace at /annotate/<campaign>/. For each item it waits until the workspace shows it
(``#ws[data-state=ready]`` with a new ``data-lease``), answers every criterion with the keyboard
(1–4), waits ``--think-ms`` (a person looks before submitting, which is the time the workspace's
prefetch of the next item has), then presses Enter.

Timing is taken in the page's own clock, so no Playwright round trip is counted:

- t0: a capture-phase ``keydown`` listener, registered once before the workspace's own, stores
  ``performance.now()`` when Enter arrives (``performance.now()`` just before the press is also
  taken: "key delivery" is the gap, a check that the key went straight to the page);
- t1: a MutationObserver on ``#ws`` sees ``data-lease`` change with ``data-state=ready``, then
  every <img> of the new item (``#cands img`` and ``#source-img``) is ``complete`` and its
  ``img.decode()`` promise has resolved; t1 is taken when they all have.

t1 − t0 covers the submit POST (also shown alone, from Resource Timing), the workspace's hand-over to its prefetched item (or its fallback
``next`` call), the DOM render and image fetch + decode. It does not include the paint of that
frame (≤ one frame more). Prefetch hits are counted from the network: an item is a miss when the
page had to POST ``next`` without ``exclude`` (the fallback) after the key; "late images" counts
the new item's images whose request started after the key (Resource Timing), i.e. that the
prefetch had not already fetched. The first ``--warmup`` items are not counted.

    .venv/bin/python bench/workspace_latency.py                              # 1M judgments, 50 items
    .venv/bin/python bench/workspace_latency.py --judgments 10k --items 10   # a quick look

Prints a table and one line: `result: …`.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _stack  # noqa: E402  (bench/ is not a package)

CHROMIUM = "/usr/bin/chromium"
# As tests/frontend/conftest.py launches it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--headless=new"]
TARGET_MS = 150.0

# Registered before the workspace script runs, so its keydown listener (capture phase on window)
# sees Enter before the workspace's document listener starts the submit.
PAGE_PROBE = """
window.__bench = { keyT: null };
window.addEventListener("keydown", (e) => { if (e.key === "Enter") window.__bench.keyT = performance.now(); },
                        { capture: true });
"""

# Resolves, in the page, with the time the next item's images are decoded (see the docstring).
WAIT_NEXT = """
prev => new Promise((resolve) => {
  const ws = document.getElementById("ws");
  let done = false;
  const check = () => {
    if (done || ws.dataset.state !== "ready" || !ws.dataset.lease || ws.dataset.lease === prev) return;
    done = true;
    obs.disconnect();
    const imgs = [...document.querySelectorAll("#cands img, #source-img")];
    const lease = ws.dataset.lease;
    const renderedT = performance.now();
    // decode() waits for the load too; it rejects if the image is broken, which we report.
    Promise.all(imgs.map((i) => i.decode().then(() => i.complete && i.naturalWidth > 0, () => false)))
      .then((ok) => {
        const t1 = performance.now();
        const t0 = window.__bench.keyT;
        const urls = new Set(imgs.map((i) => i.currentSrc || i.src));
        const after = performance.getEntriesByType("resource").filter((e) => e.startTime >= t0);
        const late = after.filter((e) => urls.has(e.name)).length;
        const submit = after.find((e) => e.name.endsWith(`/leases/${prev}/submit/`));
        const submittedT = submit ? submit.responseEnd : NaN;
        resolve({ lease, t0, t1, renderedT, submittedT, late, broken: ok.filter((x) => !x).length, n: imgs.length });
      });
  };
  const obs = new MutationObserver(check);
  obs.observe(ws, { attributes: true, attributeFilter: ["data-lease", "data-state"] });
  check();
})
"""


def count(text: str) -> int:
    """'10k', '1m', '1_000_000' → int."""
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))] if s else float("nan")


def wait_item(page: Page, previous: str = "") -> str:
    page.wait_for_function(
        "prev => { const ws = document.getElementById('ws');"
        " return ws.dataset.state === 'ready' && ws.dataset.lease && ws.dataset.lease !== prev; }",
        arg=previous, timeout=30_000)
    return page.get_attribute("#ws", "data-lease") or ""


def drive(base: str, campaign: int, items: int, warmup: int, think_ms: int) -> dict:
    """Judge ``warmup + items`` items in Chromium; returns the measured samples."""
    rng = random.Random(18)
    samples: list[dict] = []
    fallback_next: list[float] = []  # wall time of each `next` POST without `exclude`
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def on_request(req) -> None:
            if req.method == "POST" and req.url.endswith("/next/") and "exclude" not in (req.post_data or ""):
                fallback_next.append(time.monotonic())
        page.on("request", on_request)

        page.goto("/accounts/login/")
        page.fill("#id_username", "bench0")
        page.fill("#id_password", "bench-Pass-0")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        page.add_init_script(PAGE_PROBE)
        page.goto(f"/annotate/{campaign}/")
        lease = wait_item(page)
        # Resource Timing keeps 250 entries by default; a run makes a few hundred.
        page.evaluate("performance.setResourceTimingBufferSize(100000)")
        n_criteria = page.locator("#criteria .crit-row").count()
        for k in range(warmup + items):
            for _ in range(n_criteria):  # answers vary like a person's: A, tie, B, both bad
                page.keyboard.press(rng.choice("1234"))
            page.wait_for_timeout(think_ms)
            if "is-ready" not in (page.get_attribute("#submit-btn", "class") or ""):
                raise RuntimeError("submit button not ready after answering every criterion")
            # Arm the observer before the key; the promise is kept in the page and awaited after.
            page.evaluate(f"prev => {{ window.__bench.next = ({WAIT_NEXT})(prev); }}", lease)
            before = page.evaluate("performance.now()")
            mark = time.monotonic()
            page.keyboard.press("Enter")
            got = page.evaluate("window.__bench.next")  # waits for the page-side promise
            got["before"] = before
            got["miss"] = any(t >= mark for t in fallback_next)
            if k >= warmup:
                samples.append(got)
            lease = got["lease"]
        context.close()
        browser.close()
    return {"samples": samples, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judgments", type=count, default=1_000_000, help="history in the live campaign (10k, 1m, …)")
    ap.add_argument("--items", type=int, default=50, help="measured items")
    ap.add_argument("--warmup", type=int, default=5, help="items judged first and not counted")
    ap.add_argument("--think-ms", type=int, default=1000, help="pause between the last answer and the submit key")
    args = ap.parse_args()

    media = Path(tempfile.mkdtemp(prefix="bench-media-"))
    pg = _stack.start_postgres()
    try:
        _stack.create_database(pg)
        world = _stack.create_world(pg, 1, media)
        print(f"growing the live campaign to {args.judgments:,} judgments …", flush=True)
        have = _stack.grow(pg, world, judgments=args.judgments, open_items=200)
        # +2: the item on screen when the last measured key is pressed is prefetched one ahead.
        _stack.distinct_images(pg, world, media, args.warmup + args.items + 2)
        with _stack.gunicorn(pg.url, media) as (base, _pid):
            out = drive(base, world.campaign, args.items, args.warmup, args.think_ms)
    finally:
        pg.stop()
        shutil.rmtree(media, ignore_errors=True)  # the distinct images are ~1.8 MB per item

    rows = out["samples"]
    ms = [r["t1"] - r["t0"] for r in rows]
    render = [r["renderedT"] - r["t0"] for r in rows]
    submitted = [r["submittedT"] - r["t0"] for r in rows if r["submittedT"] is not None]
    delivery = max(r["t0"] - r["before"] for r in rows)
    misses = sum(r["miss"] for r in rows)
    late = sum(r["late"] for r in rows)
    broken = sum(r["broken"] for r in rows)
    print()
    print(f"{'':24}{'items':>6}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for name, vals in (("key → images decoded", ms), ("key → item rendered", render),
                       ("key → submit answered", submitted)):
        print(f"{name:24}{len(vals):>6}" + "".join(f"{pct(vals, p):>9.1f}" for p in (50, 95, 99)) + f"{max(vals):>9.1f}")
    print(f"prefetch hits {len(rows) - misses}/{len(rows)}; images requested after the key {late} "
          f"(of {sum(r['n'] for r in rows)}); broken images {broken}; key delivery ≤ {delivery:.1f} ms; "
          f"page errors {len(out['errors'])}")
    for e in out["errors"][:5]:
        print("  page error:", e)
    print(f"result: next item on screen p95 {pct(ms, 95):.0f} ms after the submit key ({len(rows)} items, "
          f"{have:,} judgments in the live campaign; target <= {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
