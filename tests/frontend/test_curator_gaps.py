"""Issue #24's last curator gaps: a campaign restricted (and left a draft) at creation, links a role
cannot open are plain text, the dashboard's vocabulary read from the database, and the snapshot
page's tie-aware counters."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from annotation.models import Campaign, CampaignStatus, DatasetSnapshot
from annotation.selectors import campaign_list_for
from annotation.services.taxonomy import criterion_create
from demo.seed import DEMO_USERS, demo_users_ensure
from frontend.selectors import accuracy_table
from jobs.services import job_create
from policytrain.models import PolicyCheckpoint, PolicyRun
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_start
from tests.factories import make_campaign, make_user
from tests.rewardtrain.test_runs import reward_snapshot

pytestmark = pytest.mark.django_db
HREF = re.compile(r'href="([^"#]+)"')


def client_for(username: str, *roles: str) -> Client:
    make_user(username, *roles)
    c = Client()
    assert c.login(username=username, password="pw-test-1234")
    return c


def seeded(username: str) -> Client:
    demo_users_ensure()
    c = Client()
    assert c.login(username=username, password=DEMO_USERS[username][0])
    return c


def test_a_campaign_is_restricted_and_left_a_draft_at_creation():
    make_campaign(n_samples=3, start=False, name="sources")  # samples with candidates from sys0 and sys1
    for name in ("ann1", "ann2", "ann3"):
        make_user(name, "annotator")
    make_user("sci", "scientist")
    cur = client_for("cur", "curator")
    page = cur.get("/dashboard/campaigns/new/").content.decode()
    assert all(f'name="annotators" value="{n}"' in page for n in ("ann1", "ann2", "ann3"))
    assert 'value="sci"' not in page and "in the admin" not in page
    body = {"name": "A vs B", "task": "fill", "sources": ["sys0", "sys1"], "overlap": 2}

    bad = cur.post("/api/campaigns/from-candidates/", {**body, "annotators": ["ann1", "ghost", "sci"]},
                   content_type="application/json")
    assert bad.status_code == 400
    msgs = " ".join(bad.json()["fields"]["annotators"])
    assert "ghost" in msgs and "sci" in msgs and "ann1" not in msgs
    assert not Campaign.objects.filter(name="A vs B").exists()  # nothing half-made

    draft = cur.post("/api/campaigns/from-candidates/", {**body, "annotators": ["ann1", "ann2"], "start": False},
                     content_type="application/json")
    assert draft.status_code == 201, draft.content
    campaign = Campaign.objects.get(name="A vs B")
    assert campaign.status == CampaignStatus.DRAFT and not campaign.items.exists()
    assert set(campaign.annotators.values_list("username", flat=True)) == {"ann1", "ann2"}

    started = cur.post("/api/campaigns/from-candidates/", {**body, "name": "A vs B live", "annotators": ["ann1"]},
                       content_type="application/json")
    assert started.status_code == 201, started.content
    live = Campaign.objects.get(name="A vs B live")
    assert live.status == CampaignStatus.ACTIVE and live.items.count() == 3
    from django.contrib.auth.models import User

    assert live in campaign_list_for(User.objects.get(username="ann1"))
    assert live not in campaign_list_for(User.objects.get(username="ann3"))  # never open to the others


def _lineage_world(settings):
    """A judged campaign → snapshot → reward model → RL run → checkpoint."""
    snapshot = reward_snapshot()
    rrun = reward_run_start(snapshot=snapshot, overrides={"max_steps": 2}, enqueue=False)
    model = RewardModel.objects.create(run=rrun, name="rm", path="/nope", base_model="tiny", template_version="v1",
                                       snapshot=snapshot, eval_split="test")
    job = job_create(kind="policy", name="rl", config={})
    out = Path(settings.ARTIFACTS_ROOT) / "policy-runs" / f"job-{job.pk}"
    run = PolicyRun.objects.create(job=job, reward_model=model, algorithm=2, output_dir=str(out))
    PolicyCheckpoint.objects.create(name="ckpt-a", base_policy="tiny", weights_dir=str(out / "final"), run=run,
                                    reward_model=model, algorithm=2)
    return snapshot, model


def _urls(data) -> list[str]:
    if isinstance(data, dict):
        return [u for k, v in data.items() for u in ([v] if k == "url" and isinstance(v, str) else _urls(v))]
    return [u for v in data for u in _urls(v)] if isinstance(data, list) else []


def test_the_seeded_curator_is_shown_no_link_that_answers_403(settings):
    snapshot, model = _lineage_world(settings)
    campaign = snapshot.campaigns.get()
    cur = seeded("curator")
    for page in (f"/dashboard/campaigns/{campaign.pk}/", f"/dashboard/snapshots/{snapshot.pk}/"):
        resp = cur.get(page)
        assert resp.status_code == 200
        hrefs = {h for h in HREF.findall(resp.content.decode()) if h.startswith("/") and "logout" not in h}
        for href in hrefs:
            assert cur.get(href).status_code != 403, f"{page} links to {href}"
    html = cur.get(f"/dashboard/snapshots/{snapshot.pk}/").content.decode()
    assert f'href="/dashboard/campaigns/{campaign.pk}/"' in html  # what a curator may open stays a link
    assert 'node-plain">rm <span' in html and f"/dashboard/reward-models/{model.pk}/" not in html  # named only
    assert 'node-plain">ckpt-a <span' in html and f"/dashboard/runs/{snapshot.job_id}/" not in html
    # The campaign page draws its lineage from the API: every url there opens for the curator too.
    data = cur.get(f"/api/dashboard/campaigns/{campaign.pk}/").json()
    urls = _urls(data)
    assert f"/dashboard/snapshots/{snapshot.pk}/" in urls
    for url in urls:
        assert cur.get(url).status_code != 403, url
    for url in _urls(cur.get(f"/api/dashboard/lineage/snapshot/{snapshot.pk}/").json()):
        assert cur.get(url).status_code != 403, url
    node = next(n for n in data["lineage"]["downstream"]["reward_models"] if n["id"] == model.pk)
    assert node["url"] is None and node["label"] == "rm"
    # A scientist may open the reward model, so the link stays for them.
    sci = seeded("scientist")
    sci_node = sci.get(f"/api/dashboard/campaigns/{campaign.pk}/").json()["lineage"]["downstream"]["reward_models"][0]
    assert sci_node["url"] == f"/dashboard/reward-models/{model.pk}/"
    assert f"/dashboard/reward-models/{model.pk}/" in sci.get(f"/dashboard/snapshots/{snapshot.pk}/").content.decode()


def test_a_curators_new_criterion_reaches_tables_filters_and_the_leaderboard():
    criterion_create(slug="lighting", name="Lighting", description="Is the light consistent?", task_types=["fill"])
    table = accuracy_table({"accuracy": {"fill": {"lighting": 0.7, "structure": 0.8}},
                            "counts": {"fill": {"lighting": 10, "structure": 10}}, "overall_accuracy": 0.75, "pairs": 20})
    columns = {c["slug"]: c for c in table["columns"]}
    assert columns["lighting"]["name"] == "Lighting" and not columns["lighting"]["builtin"]
    assert columns["structure"]["builtin"]
    fill = {c["criterion"]: c for c in next(r for r in table["rows"] if r["task"] == "fill")["cells"]}
    assert fill["lighting"]["accuracy"] == 70.0 and fill["lighting"]["paper"] is None  # no paper number
    assert fill["structure"]["paper"] == 74.63
    removal = {c["criterion"]: c for c in next(r for r in table["rows"] if r["task"] == "removal")["cells"]}
    assert not removal["lighting"]["applicable"]  # only the task types that offer it

    sci = client_for("sci", "scientist")
    page = sci.get("/dashboard/leaderboard/").content.decode()
    assert '<option value="lighting"' in page
    builder = sci.get("/dashboard/new/reward/").content.decode()  # the snapshot builder's criterion filter
    assert 'name="criterion" value="lighting"> Lighting' in builder
    assert 'name="criterion" value="structure"> Structure' in builder
    assert sci.get("/api/dashboard/leaderboard/?task=fill&criterion=lighting").status_code == 200
    wrong = sci.get("/api/dashboard/leaderboard/?task=removal&criterion=lighting")
    assert wrong.status_code == 400 and "criterion" in wrong.json()["fields"]


def test_the_snapshot_page_shows_the_tie_aware_counters():
    snapshot = reward_snapshot()
    assert snapshot.aggregation == "tie-aware-v1" and "tie_votes" in snapshot.counts
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
        counts={**snapshot.counts, "tie_votes": 7, "tie_outvoted": 2, "adjudicated": 3})
    sci = client_for("sci", "scientist")
    html = sci.get(f"/dashboard/snapshots/{snapshot.pk}/").content.decode()
    for key, value in (("tie_votes", 7), ("tie_outvoted", 2), ("adjudicated", 3)):
        assert re.search(rf'data-testid="count-{key}"[^>]*>{value}\b', html), key
    # A majority-rule snapshot has no tie votes to show.
    counts = {k: v for k, v in snapshot.counts.items() if k not in ("tie_votes", "tie_outvoted")}
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(aggregation="majority-v2", counts=counts)
    html = sci.get(f"/dashboard/snapshots/{snapshot.pk}/").content.decode()
    assert 'data-testid="count-tie_votes"' not in html and 'data-testid="count-adjudicated"' in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_snapshot_builders_preview_shows_the_tie_aware_counters(browser_page):
    from annotation.services.snapshots import snapshot_preview
    from tests.annotation.test_snapshots import ties_campaign

    from .conftest import login

    campaign = ties_campaign()  # 2 alike votes outvote a flip on one item; one tie vote on another
    want = snapshot_preview(filter={"campaign_ids": [campaign.pk]}, aggregation="tie-aware-v1")
    assert want["tie_votes"] == 3 and want["tie_outvoted"] == 1
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")
    page.goto("/dashboard/new/reward/")
    page.check(f"#b-campaigns input[value='{campaign.pk}']")
    page.wait_for_selector(f"#pair-count [data-testid=pair-count]:text-is('{want['pairs']}')")
    page.wait_for_selector("#tie-counts")
    assert page.text_content("#tie-counts").strip() == "· tie votes 3, outvoted by ties 1, adjudicated 0"
    page.select_option("#b-aggregation", "majority-v2")  # a majority rule drops ties: nothing to show
    page.wait_for_selector("#tie-counts", state="detached")
