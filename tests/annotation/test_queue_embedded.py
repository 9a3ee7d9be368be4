"""The annotator's loop on the embedded database (SQLite, what `make run` uses with no configuration).

The hot path has PostgreSQL-only statements (data-modifying CTEs, row locks) and a plain
variant for SQLite; the suite's database is PostgreSQL, so this runs the loop through the API in
a process of its own on a fresh SQLite file: hand-out, the lease cap, the left/right shuffle, the
expiry sweep and a submit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, os, random, sys
from datetime import timedelta
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
sys.path.insert(0, os.getcwd())
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from annotation.models import Item, Judgment, Lease, LeaseState
from tests.factories import make_campaign, make_user

def client_for(user):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)
    return c

out = {"vendor": connection.vendor}
campaign = make_campaign(n_samples=3, overlap=1, criteria=["structure"])
a, b = client_for(make_user("a", "annotator")), client_for(make_user("b", "annotator"))
first = a.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
second = a.post(f"/api/campaigns/{campaign.pk}/next/", {"exclude": [first["lease"]]}, format="json").json()
capped = a.post(f"/api/campaigns/{campaign.pk}/next/", {"exclude": [first["lease"], second["lease"]]}, format="json")
out["held"] = [first["item"], second["item"], capped.status_code]
out["order_matches_lease"] = [c["id"] for c in first["candidates"]] == Lease.objects.get(uid=first["lease"]).displayed_order
Lease.objects.filter(uid=first["lease"]).update(expires_at=timezone.now() - timedelta(seconds=1))
taken = b.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
b_second = b.post(f"/api/campaigns/{campaign.pk}/next/", {"exclude": [taken["lease"]]}, format="json").json()
out["reclaimed"] = [Lease.objects.get(uid=first["lease"]).state, sorted([taken["item"], b_second["item"]])]
done = b.post(f"/api/leases/{taken['lease']}/submit/",
              {"answers": {"structure": "tie"}, "idempotency_key": "k1"}, format="json")
item = Item.objects.get(pk=taken["item"])
out["submitted"] = [done.status_code, Judgment.objects.count(), item.status, item.leased_count, item.completed_count]
print(json.dumps(out))
"""


def test_the_loop_runs_on_the_embedded_sqlite_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    (tmp_path / "var").mkdir()
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path / "var"),
                "DJANGO_READ_DOT_ENV_FILE": "false"})
    result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["vendor"] == "sqlite"
    held_first, held_second, capped = out["held"]
    assert held_first != held_second and capped == 204  # two leases at most, never the same item
    assert out["order_matches_lease"]
    # b gets the expired lease's item back (reclaimed on the way) and the one item a never had.
    state, items = out["reclaimed"]
    assert state == "expired" and held_first in items
    assert out["submitted"] == [201, 1, "done", 1, 1]

