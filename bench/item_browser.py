"""What one page of the item browser costs on a large campaign.

Builds a pairwise campaign of N items (default 100,000) × 3 annotators × 2 criteria (600k
judgments; about one item in six split 2:1 or worse, a few hundred gold items, some skipped and
open ones) with bulk SQL in a throwaway PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/onereward_itembench), then times
``annotation.item_selectors.campaign_items_page`` (what ``GET /api/campaigns/<id>/items/``
answers) per filter and ``item_detail``. Prints a table (median of 3 calls, ms) and one line:

    result: an item-browser page at <n> items takes <x> ms unfiltered, <y> ms filtered to disputed (<z> ms
    when the disputed set is recomputed)

Usage: python bench/item_browser.py [--items 100000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DJANGO_READ_DOT_ENV_FILE"] = "false"
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/onereward_itembench")
os.environ["DATABASE_URL"] = BENCH_URL
# A database URL means production settings, which refuse to start without their own secrets.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + "k" * 40)
os.environ.setdefault("ANNOTATOR_ID_SALT", "bench-" + "s" * 40)

CRITERIA = ("structure", "aesthetics")
OVERLAP = 3


def recreate_database() -> None:
    import psycopg

    base, name = BENCH_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def load(n_items: int):
    """The campaign, filled with bulk SQL (item i's status, votes and gold follow from i)."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from annotation import models as m

    fill = m.TaskType.objects.get(slug="fill")
    criteria = list(m.Criterion.objects.filter(slug__in=CRITERIA))
    users = []
    for i in range(OVERLAP * 4):
        u = User.objects.create_user(username=f"ann-{i}")
        u.groups.add(Group.objects.get(name="annotator"))
        users.append(u.pk)
    campaign = m.Campaign.objects.create(name="items-bench", task_type=fill, overlap=OVERLAP, status="active")
    campaign.criteria.set(criteria)
    guidelines = [m.GuidelineVersion.objects.get(criterion=c, version=1).pk for c in criteria]
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO annotation_sample (uid, external_id, task_type_id, source_image, mask, width, height, prompt, "
            "split_key, split, meta, created_at, updated_at) SELECT gen_random_uuid(), 's-' || g, %s, 'x.png', "
            "'m.png', 64, 64, 'p', g::text, 'train', '{}', now(), now() FROM generate_series(1, %s) g",
            [fill.pk, n_items])
        cur.execute(
            "INSERT INTO annotation_candidate (sample_id, image, sha256, provenance, source_name, source_ref, "
            "generation_params, created_at, updated_at) SELECT s.id, 'c.png', s.id || '-' || k, 'external', "
            "'sys' || k, '', '{}', now(), now() FROM annotation_sample s, generate_series(0, 1) k")
        # Item i (1-based by sample): every 10th open, every 10th+1 skipped, the rest done; every 300th gold.
        cur.execute(
            "INSERT INTO annotation_item (campaign_id, sample_id, status, priority, is_gold, gold_answer, leased_count, "
            "completed_count, created_at) SELECT %s, s.id, CASE WHEN s.id %% 10 IN (0, 1) THEN 'open' ELSE 'done' END, "
            "0, s.id %% 300 = 7, CASE WHEN s.id %% 300 = 7 THEN '{\"structure\": \"a\"}'::jsonb END, "
            "CASE WHEN s.id %% 10 IN (0, 1) THEN 0 ELSE 3 END, CASE WHEN s.id %% 10 IN (0, 1) THEN 0 ELSE 3 END, now() "
            "FROM annotation_sample s", [campaign.pk])
        cur.execute(
            "INSERT INTO annotation_itemcandidate (item_id, candidate_id, position) SELECT i.id, c.id, "
            "CASE WHEN c.source_name = 'sys0' THEN 0 ELSE 1 END FROM annotation_item i "
            "JOIN annotation_candidate c ON c.sample_id = i.sample_id")
        cur.execute(
            "INSERT INTO annotation_lease (uid, item_id, annotator_id, state, displayed_order, created_at, expires_at, "
            "finished_at, skip_reason) SELECT gen_random_uuid(), i.id, (%s::bigint[])[1 + (i.id + r) %% %s], "
            "CASE WHEN i.sample_id %% 10 = 1 THEN 'skipped' ELSE 'submitted' END, '[]', now(), now(), now(), '' "
            "FROM annotation_item i, generate_series(0, 2) r WHERE i.sample_id %% 10 <> 0 "
            "AND (i.sample_id %% 10 <> 1 OR r = 0)", [users, len(users)])
        for crit, guideline in zip(criteria, guidelines, strict=True):
            # One item in six gets a 2:1 vote with a tie (share 2/3, not disputed) or a three-way split (disputed).
            cur.execute(
                "INSERT INTO annotation_judgment (created_at, updated_at, item_id, lease_id, criterion_id, annotator_id, "
                "choice, displayed_order, guideline_version_id, active_ms, idempotency_key) "
                "SELECT now(), now(), l.item_id, l.id, %s, l.annotator_id, "
                "CASE WHEN l.item_id %% 6 <> 0 THEN 'a' ELSE (ARRAY['a', 'b', 'tie'])[1 + "
                "(l.id + CASE WHEN l.item_id %% 12 = 0 THEN 0 ELSE l.item_id END) %% 3] END, '[]', %s, 4000, "
                "'k' || l.id FROM annotation_lease l WHERE l.state = 'submitted'", [crit.pk, guideline])
        cur.execute("ANALYZE")
    return campaign, User.objects.get(pk=users[0])


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reuse", action="store_true", help="time the campaign an earlier run left in the database")
    args = parser.parse_args()
    if not args.reuse:
        recreate_database()
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.item_selectors import ItemFilter, campaign_items_page, item_detail
    from annotation.models import Campaign, Item, Judgment

    t0 = time.time()
    campaign, annotator = ((Campaign.objects.get(name="items-bench"), User.objects.get(username="ann-0"))
                           if args.reuse else load(args.items))
    print(f"loaded {Item.objects.filter(campaign=campaign).count():,} items, "
          f"{Judgment.objects.filter(item__campaign=campaign).count():,} judgments in {time.time() - t0:.0f} s")
    cases = {
        "first page": ItemFilter(), "page 1000": ItemFilter(), "status=done": ItemFilter(status="done"),
        "status=skipped": ItemFilter(status="skipped"), "gold=yes": ItemFilter(gold=True),
        "annotator": ItemFilter(annotator=annotator), "disputed=yes": ItemFilter(disputed=True),
        "disputed=no, page 500": ItemFilter(disputed=False),
    }
    print(f"{'filter':<24} {'matches':>9} {'statements':>10} {'ms':>8}")
    results = {}
    cache.clear()
    t0 = time.perf_counter()
    campaign_items_page(campaign=campaign, flt=ItemFilter(disputed=True))
    cold = (time.perf_counter() - t0) * 1000
    print(f"{'disputed=yes, cold':<24} {'':>9} {'':>10} {cold:>8.1f}")
    for label, flt in cases.items():
        page = 1000 if label == "page 1000" else 500 if "page 500" in label else 1
        with CaptureQueriesContext(connection) as queries:
            out = campaign_items_page(campaign=campaign, flt=flt, page=page)
        results[label] = timed(lambda f=flt, p=page: campaign_items_page(campaign=campaign, flt=f, page=p))
        print(f"{label:<24} {out['count']:>9,} {len(queries):>10} {results[label]:>8.1f}")
    item = Item.objects.filter(campaign=campaign).order_by("id")[args.items // 2]
    detail = timed(lambda: item_detail(item=item))
    print(f"{'item detail':<24} {'':>9} {'':>10} {detail:>8.1f}")
    print(f"result: an item-browser page at {args.items:,} items takes {results['first page']:.0f} ms unfiltered, "
          f"{results['disputed=yes']:.0f} ms filtered to disputed ({cold:.0f} ms when the disputed set is recomputed)")


if __name__ == "__main__":
    sys.exit(main())
