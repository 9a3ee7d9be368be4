"""axe-core (bundled by axe-playwright-python; nothing is downloaded) on every page of every role,
with data present: no serious or critical violation anywhere.

Each case names the page's role and a URL template filled from the dashboard world
(tests/frontend/dashboard_world.py) plus an annotator's campaign."""
from __future__ import annotations

import pytest

# A dev dependency (it bundles axe.min.js, so nothing is downloaded): a missing one is an error, not a skip.
from axe_playwright_python import sync_playwright as axe_module

from annotation.models import Item
from tests.factories import make_user

from .conftest import login
from .dashboard_world import build_world

SERIOUS = {"serious", "critical"}

# (who, url template); None = signed out.
PAGES = [
    (None, "/accounts/login/"),
    (None, "/accounts/password-reset/"),
    ("annotator", "/"),
    ("annotator", "/annotate/{campaign}/"),
    ("annotator", "/dashboard/"),  # the styled 403 an annotator gets on a scientist page
    ("scientist", "/dashboard/"),
    ("scientist", "/dashboard/runs/{baseline}/"),
    ("scientist", "/dashboard/runs/{policy}/"),
    ("scientist", "/dashboard/runs/overlay/?job={baseline}&job={wide}"),
    ("scientist", "/dashboard/new/reward/"),
    ("scientist", "/dashboard/new/policy/"),
    ("scientist", "/dashboard/new/generation/"),
    ("scientist", "/dashboard/registry/"),
    ("scientist", "/dashboard/leaderboard/"),
    ("scientist", "/dashboard/reward-models/{model}/"),
    ("scientist", "/dashboard/checkpoints/{checkpoint}/"),
    ("scientist", "/dashboard/snapshots/{snapshot}/"),
    ("scientist", "/dashboard/compare/reward-models/?a={model}&b={model}"),
    ("scientist", "/dashboard/compare/checkpoints/?a={checkpoint}&b={checkpoint}"),
    ("curator", "/dashboard/campaigns/"),
    ("curator", "/dashboard/campaigns/new/"),
    ("curator", "/dashboard/campaigns/{campaign}/"),
    ("curator", "/dashboard/campaigns/{campaign}/items/"),
    ("curator", "/dashboard/items/{item}/"),
    ("curator", "/dashboard/imports/"),
    ("curator", "/dashboard/people/"),
    ("curator", "/dashboard/taxonomy/"),
    ("curator", "/dashboard/taxonomy/criteria/structure/"),
    ("curator", "/dashboard/taxonomy/criteria/structure/guideline/"),
    ("curator", "/dashboard/taxonomy/task-types/fill/"),
]

def describe(violations: list[dict]) -> list[str]:
    return [f"{v['impact']} {v['id']}: {v['help']} — {[n['target'] for n in v['nodes'][:4]]}"
            for v in violations if v.get("impact") in SERIOUS]


ROLES = list(dict.fromkeys(who for who, _ in PAGES))  # each role in PAGES, in order


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ROLES, ids=[who or "anonymous" for who in ROLES])
def test_no_serious_accessibility_violations(browser_page, tmp_path, who):
    """Every page of one role, in one signed-in browser over one world (building the world and
    signing in once per page cost more than axe itself); every page's violations are reported."""
    world = build_world(tmp_path)
    ids = {"baseline": world.baseline.pk, "wide": world.wide.pk, "policy": world.policy.pk, "model": world.model.pk,
           "checkpoint": world.checkpoint.pk, "snapshot": world.snapshot.pk, "campaign": world.campaign.pk,
           "item": Item.objects.filter(campaign=world.campaign).order_by("id").first().pk}
    page = browser_page
    if who:
        make_user("person", who)
        login(page, "person")
    axe = axe_module.Axe()
    urls = [url for role, url in PAGES if role == who]
    problems = {}
    for url in urls:
        page.goto(url.format(**ids))
        page.wait_for_load_state("networkidle")
        found = describe(axe.run(page).response["violations"])
        if found:
            problems[url] = found
    assert not problems, "\n".join(f"{url}:\n  " + "\n  ".join(found) for url, found in problems.items())
