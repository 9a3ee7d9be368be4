"""What the campaign page costs per poll as a side-by-side campaign grows.

The campaign page polls ``GET /api/dashboard/campaigns/<id>/`` every 2 s; that payload
(``frontend.selectors.campaign_dashboard``) reads every judgment of the campaign for the
agreement, the annotator table and the side-by-side (GSB) result. This script builds an
A-versus-B campaign with N judgments (3 annotators per item, 2 criteria, random A / B / tie
answers) in a throwaway PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/onereward_bench) and times each part and the whole payload.
Prints a table (median of 3 calls, ms) and one line:

    result: the payload grows <x>× for <y>× more judgments (GSB <z> ms per 10k judgments)

Usage: python bench/campaign_dashboard.py [--sizes 3000,30000]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DJANGO_READ_DOT_ENV_FILE"] = "false"
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/onereward_bench")
os.environ["DATABASE_URL"] = BENCH_URL
# A database URL means production settings, which refuse to start without their own secrets.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + "k" * 40)
os.environ.setdefault("ANNOTATOR_ID_SALT", "bench-" + "s" * 40)


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

CRITERIA = ("structure", "aesthetics")
OVERLAP = 3


def load(n_judgments: int, tag: str):
    """A started A-versus-B campaign whose items each hold OVERLAP judgments per criterion."""
    from annotation import models as m

    fill = m.TaskType.objects.get(slug="fill")
    criteria = list(m.Criterion.objects.filter(slug__in=CRITERIA))
    guidelines = {c.pk: m.GuidelineVersion.objects.get(criterion=c, version=1) for c in criteria}
    users = annotator_users(tag, OVERLAP * 4)
    n_items = max(1, n_judgments // (OVERLAP * len(criteria)))
    samples = m.Sample.objects.bulk_create(
        [m.Sample(external_id=f"{tag}-{i}", task_type=fill, source_image="x.png", mask="m.png", width=64, height=64,
                  split_key=str(i), split="test") for i in range(n_items)], batch_size=5000)
    cands = m.Candidate.objects.bulk_create(
        [m.Candidate(sample=s, image=f"c{k}.png", sha256=f"{tag}-{s.pk}-{k}", provenance="policy", source_name=name)
         for s in samples for k, name in enumerate(("policy:A", "base:B"))], batch_size=5000)
    campaign = m.Campaign.objects.create(name=f"versus-{tag}", task_type=fill, overlap=OVERLAP, status="active",
                                         selection={"opponents": ["policy:A", "base:B"]})
    campaign.criteria.set(criteria)
    items = m.Item.objects.bulk_create(
        [m.Item(campaign=campaign, sample=s, status="done", leased_count=OVERLAP, completed_count=OVERLAP)
         for s in samples], batch_size=5000)
    m.ItemCandidate.objects.bulk_create(
        [m.ItemCandidate(item=it, candidate=cands[2 * i + k], position=k) for i, it in enumerate(items) for k in range(2)],
        batch_size=10000)
    leases = m.Lease.objects.bulk_create(
        [m.Lease(item=it, annotator=users[(i + r) % len(users)], state="submitted", displayed_order=[0, 1],
                 expires_at="2030-01-01T00:00:00Z") for i, it in enumerate(items) for r in range(OVERLAP)],
        batch_size=5000)
    rng = random.Random(0)
    # A wins 2 of 3 decisive answers; a fifth of the answers are ties.
    m.Judgment.objects.bulk_create(
        [m.Judgment(item=le.item, lease=le, criterion=c, annotator=le.annotator,
                    choice=rng.choice("aab") if rng.random() > 0.2 else "tie", displayed_order=[0, 1],
                    guideline_version=guidelines[c.pk], idempotency_key=f"{le.pk}")
         for le in leases for c in criteria], batch_size=5000)
    return campaign


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3000,30000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    recreate_database()
    setup_django()
    from django.db import connection

    from annotation.models import Judgment
    from annotation.selectors import campaign_agreement, campaign_gsb
    from frontend.selectors import annotator_activity, campaign_dashboard

    rows = []
    for n in sizes:
        t0 = time.time()
        campaign = load(n, f"n{n}")
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
        judged = Judgment.objects.filter(item__campaign=campaign).count()
        gsb = campaign_gsb(campaign)
        assert gsb["overall"]["judgments"] == judged, "the GSB must count every judgment"
        rows.append({"judgments": judged, "load_s": time.time() - t0,
                     "gsb": timed(lambda c=campaign: campaign_gsb(c)),
                     "agreement": timed(lambda c=campaign: campaign_agreement(c)),
                     "annotators": timed(lambda c=campaign: annotator_activity(c)),
                     "payload": timed(lambda c=campaign: campaign_dashboard(c))})
    print(f"{'judgments':>10} {'load s':>7} {'GSB ms':>8} {'agreement ms':>13} {'annotators ms':>14} {'payload ms':>11}")
    for r in rows:
        print(f"{r['judgments']:>10} {r['load_s']:>7.1f} {r['gsb']:>8.1f} {r['agreement']:>13.1f} "
              f"{r['annotators']:>14.1f} {r['payload']:>11.1f}")
    small, large = rows[0], rows[-1]
    per_10k = large["gsb"] / large["judgments"] * 10_000
    print(f"result: the payload grows {large['payload'] / small['payload']:.1f}× for "
          f"{large['judgments'] / small['judgments']:.0f}× more judgments (GSB {per_10k:.0f} ms per 10k judgments)")


if __name__ == "__main__":
    sys.exit(main())
