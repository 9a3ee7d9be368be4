"""The scientist / curator dashboard in a real Chromium, against a real Celery worker.

Run: DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... pytest tests/frontend -p no:playwright
Screenshots land in test-artifacts/screenshots/dashboard-*.png (docs/dashboard.md links copies).
"""
from __future__ import annotations

import re
import time

import pytest

from annotation.models import Campaign, CampaignStatus, DatasetSnapshot, Item
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from jobs import services as job_services
from jobs.models import Job, JobKind, JobStatus
from rewardtrain.models import RewardModel
from tests.annotation.test_snapshots import best_worst_campaign, pairwise_campaign
from tests.factories import make_campaign, make_user
from tests.rewardtrain.test_runs import reward_snapshot

from .conftest import login

RUN_OVERRIDES = '{"save_every": 0, "eval_every": 0, "log_every": 1, "max_pixels": 3136, "device": "cpu"}'


def shot(page, screenshot_dir, name: str, full_page: bool = True) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshot_dir / f"dashboard-{name}.png"), full_page=full_page)


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_scientist_starts_a_reward_run_watches_it_and_follows_lineage(celery_worker_process, browser_page,
                                                                      screenshot_dir):
    page = browser_page
    snapshot = reward_snapshot()
    make_user("sci", "scientist")
    login(page, "sci")

    page.goto("/dashboard/new/reward/")
    # Build a snapshot from campaign filters, with a live pair count; the worker builds it and the
    # form selects it when it is ready (same judgments → same content hash as the first one).
    page.click("#snapshot-builder summary")
    page.check(f"#b-campaigns input[value='{snapshot.campaigns.get().pk}']")
    page.check("#snapshot-builder input[name=criterion][value=structure]")
    page.wait_for_selector("#pair-count [data-testid=pair-count]:text-is('8')")
    page.fill("#b-name", "structure, from the dashboard")
    page.click("#btn-build")
    page.wait_for_function("() => document.getElementById('f-snapshot').value !== ''", timeout=60_000)
    built = DatasetSnapshot.objects.get(name="structure, from the dashboard")
    assert page.input_value("#f-snapshot") == str(built.pk) and built.content_hash == snapshot.content_hash
    snapshot = built
    page.fill("#f-name", "structure RM (dashboard)")
    page.fill("#f-steps", "12")
    page.fill("#f-batch", "4")
    page.fill("#f-overrides", RUN_OVERRIDES)
    # The final config is resolved by the server (preset ← overrides ← platform fields).
    page.wait_for_function("() => document.getElementById('config-preview').textContent.includes('\"max_steps\": 12')")
    assert snapshot.path in page.text_content("#config-preview")
    shot(page, screenshot_dir, "new-reward-run")

    page.click("#btn-start")
    page.wait_for_url(re.compile(r"/dashboard/runs/\d+/$"))
    job = Job.objects.get(kind=JobKind.REWARD)
    assert page.url.endswith(f"/dashboard/runs/{job.pk}/")
    assert job.created_by.username == "sci" and job.config["max_steps"] == 12

    # Watch the live progress bar until the worker finishes (the page polls the API every second).
    seen: list[float] = []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        value = float(page.get_attribute("#run-progress", "aria-valuenow") or 0)
        if not seen or value != seen[-1]:
            seen.append(value)
        if 0 < value < 100 and not (screenshot_dir / "dashboard-run-live.png").exists():
            page.wait_for_timeout(500)  # let the bar's width transition finish
            shot(page, screenshot_dir, "run-live", full_page=False)
        if page.get_attribute("#run-status", "data-status") in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error + celery_worker_process.log_path.read_text()[-3000:]
    assert seen == sorted(seen), f"the progress bar went backwards: {seen}"
    assert len(seen) >= 2 and seen[-1] == 100, f"the progress bar did not move to completion: {seen}"

    # The accuracy table (paper Table 1 layout, human ceiling beside it) and the live curves.
    table = page.wait_for_selector("[data-testid=accuracy-table]", timeout=15_000)
    text = table.inner_text().lower()
    assert "image fill" in text and "structure" in text and "human" in text
    page.wait_for_function("() => !document.getElementById('charts').hidden")
    page.wait_for_selector("#run-artifacts a")
    shot(page, screenshot_dir, "run-detail")

    # Runs list shows it finished; registry lists the model.
    page.goto("/dashboard/")
    page.wait_for_selector(f"tr[data-job='{job.pk}'][data-status='succeeded']")
    shot(page, screenshot_dir, "runs", full_page=False)
    page.goto("/dashboard/registry/")
    model = RewardModel.objects.get(run__job=job)
    page.wait_for_selector(f"a[href='/dashboard/reward-models/{model.pk}/']")
    shot(page, screenshot_dir, "registry", full_page=False)
    page.goto(f"/dashboard/reward-models/{model.pk}/")
    page.wait_for_selector("[data-testid=accuracy-table]")
    shot(page, screenshot_dir, "reward-model")

    # Follow the lineage link from the run to its snapshot, then back down to the model.
    page.goto(f"/dashboard/runs/{job.pk}/")
    page.click("#kind-section a[data-lineage=snapshot]")
    page.wait_for_url(f"**/dashboard/snapshots/{snapshot.pk}/")
    assert page.text_content("#snapshot-title").strip() == snapshot.name
    shot(page, screenshot_dir, "snapshot")
    page.click(f"a[href='/dashboard/reward-models/{model.pk}/']")
    page.wait_for_url(f"**/dashboard/reward-models/{model.pk}/")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_invalid_start_forms_show_field_errors(browser_page, screenshot_dir):
    page = browser_page
    snapshot = reward_snapshot()
    make_user("sci", "scientist")
    login(page, "sci")

    page.goto("/dashboard/new/reward/")
    page.fill("#f-steps", "0")
    page.fill("#f-lr", "fast")
    page.fill("#f-overrides", '{"lora_r": 4}')
    page.wait_for_function("() => document.getElementById('config-preview').textContent.includes('lora_r')")
    page.click("#btn-start")
    page.wait_for_selector("[data-error-for=snapshot]:has-text('Pick a snapshot.')")
    assert "greater than or equal to 1" in page.text_content("[data-error-for=max_steps]")
    assert "valid number" in page.text_content("[data-error-for=lr]")
    assert page.get_attribute("#f-steps", "aria-invalid") == "true"
    assert page.is_visible("#form-error")
    shot(page, screenshot_dir, "form-errors")

    # Errors found by the service itself (unknown config key) land on their field too.
    page.select_option("#f-snapshot", str(snapshot.pk))
    page.fill("#f-steps", "3")
    page.fill("#f-lr", "")
    page.fill("#f-overrides", '{"no_such_knob": 1}')
    page.click("#btn-start")
    page.wait_for_selector("[data-error-for=overrides]:has-text('no_such_knob')")
    assert page.text_content("[data-error-for=snapshot]") == ""
    assert not Job.objects.filter(kind=JobKind.REWARD).exists()

    page.goto("/dashboard/new/policy/")
    page.fill("#p-lambda", "1.5")
    page.click("#btn-start")
    page.wait_for_selector("[data-error-for=reward_model]:has-text('Pick a reward model.')")
    assert "between 0 and 1" in page.text_content("[data-error-for=hinge_lambda]")

    page.goto("/dashboard/new/generation/")
    page.click("#btn-start")
    page.wait_for_selector("[data-error-for=checkpoint]:has-text('Pick a checkpoint.')")
    assert not Job.objects.exists() or not Job.objects.exclude(kind=JobKind.SNAPSHOT).exists()


def judged_campaign() -> Campaign:
    """Six items × overlap 3 on two criteria, sys0 (A) against sys1 (B): alice and bob finish, carol
    is half-way (some ties)."""
    from annotation.services.campaigns import campaign_start
    from annotation.services.snapshots import snapshot_create, snapshot_execute

    campaign = make_campaign(n_samples=6, overlap=3, criteria=["structure", "aesthetics"], name="fill: sys0 vs sys1",
                             start=False)
    campaign.selection = {**campaign.selection, "opponents": ["sys0", "sys1"]}
    campaign.save(update_fields=["selection"])
    campaign = campaign_start(campaign=campaign)
    for name, limit, seconds in (("alice", 6, 4200), ("bob", 6, 6100), ("carol", 3, 2500)):
        ann = make_user(name, "annotator")
        for n in range(limit):
            lease = lease_next(campaign=campaign, annotator=ann)
            a, b = lease.item.slots.order_by("position").values_list("candidate_id", flat=True)
            tie = name == "carol" and n % 2 == 0
            judgment_submit(lease_uid=lease.uid, annotator=ann, idempotency_key=str(lease.uid), active_ms=seconds + 300 * n,
                            answers={"structure": "tie" if tie else a, "aesthetics": b if name == "bob" else a})
    snapshot_execute(snapshot_create(name="fill judgments", filter={"campaign_ids": [campaign.pk]}, enqueue=False).job_id)
    return campaign


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_curator_watches_a_campaign_and_starts_one_from_candidates(browser_page, screenshot_dir):
    page = browser_page
    judged = judged_campaign()
    make_user("cur", "curator")
    login(page, "cur")

    page.goto("/dashboard/campaigns/")
    page.wait_for_selector(f"a[href='/dashboard/campaigns/{judged.pk}/']")
    shot(page, screenshot_dir, "campaigns", full_page=False)
    page.click(f"a[href='/dashboard/campaigns/{judged.pk}/']")
    page.wait_for_selector("#c-annotators table")
    assert "alice" in page.text_content("#c-annotators") and "carol" in page.text_content("#c-annotators")
    assert page.text_content("#c-lineage a[href^='/dashboard/snapshots/']")
    # Its side-by-side table: structure G 13 / S 2 / B 0 of 15 (A wins 14 / 15), aesthetics G 9 / B 6.
    page.wait_for_selector("#c-gsb-table")
    rows = {r.query_selector("td").text_content(): [td.text_content() for td in r.query_selector_all("td")]
            for r in page.query_selector_all("#c-gsb-table tbody tr")}
    assert rows["Structure"][1:4] == ["86.7%", "13.3%", "0.0%"] and rows["Structure"][6] == "A better"
    assert re.fullmatch(r"93\.3% \(n=15, \d+\.\d–\d+\.\d%\)", rows["Structure"][4])
    assert rows["Aesthetics"][4].startswith("60.0% (n=15, ") and rows["All criteria"][5] == "30"
    shot(page, screenshot_dir, "campaign")

    page.goto("/dashboard/campaigns/new/")
    page.select_option("#c-task", "fill")
    page.wait_for_selector("#c-side-a option[value=sys0]", state="attached")
    # Sides are named, not taken from tick order: B is chosen first here.
    page.select_option("#c-side-b", "sys1")
    page.select_option("#c-side-a", "sys1")
    page.wait_for_selector("#c-preview:has-text('A and B must be two different sources.')")
    page.select_option("#c-side-a", "sys0")
    page.wait_for_selector("#c-preview .count-n")
    assert "A = sys0, B = sys1" in page.text_content("#c-preview")
    assert page.text_content("#c-preview .count-n") == "6"
    page.fill("#c-name", "sys0 vs sys1 (dashboard)")
    page.check("#c-criteria-list input[value=aesthetics]")
    shot(page, screenshot_dir, "new-campaign")
    page.click("#btn-start")
    page.wait_for_url(re.compile(r"/dashboard/campaigns/\d+/$"))
    campaign = Campaign.objects.get(name="sys0 vs sys1 (dashboard)")
    assert campaign.status == CampaignStatus.ACTIVE and campaign.selection["opponents"] == ["sys0", "sys1"]
    assert Item.objects.filter(campaign=campaign).count() == 6
    assert list(campaign.criteria.values_list("slug", flat=True)) == ["aesthetics"]
    page.wait_for_selector("#c-cards .stat-card")
    # The new versus campaign shows its side-by-side table too, empty until judged.
    page.wait_for_selector("#c-gsb-table")
    gsb = page.text_content("#c-gsb-card")
    assert "A = sys0, B = sys1" in gsb and "Aesthetics" in gsb and "no judgments yet" in gsb


@pytest.mark.django_db
def test_curator_without_candidates_gets_a_field_error(client):
    make_user("cur", "curator")
    client.login(username="cur", password="pw-test-1234")
    resp = client.post("/api/campaigns/from-candidates/", {"name": "x", "task": "fill", "sources": ["a", "b"]},
                       content_type="application/json")
    assert resp.status_code == 400 and "sources" in resp.json()["fields"]


def build_from_builder(page, name: str) -> DatasetSnapshot:
    """Name the snapshot in the open builder, build it, and wait until the form selected it."""
    page.fill("#b-name", name)
    page.click("#btn-build")
    page.wait_for_function("() => document.getElementById('f-snapshot').value !== ''", timeout=30_000)
    return DatasetSnapshot.objects.get(name=name)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_snapshot_builder_aggregation_changes_the_count_and_the_built_snapshot(browser_page, monkeypatch):
    """The picker feeds both the live count and the build request; the snapshot page shows the choice."""
    from annotation.services import snapshots as snapshot_services

    # Build inline in the server thread: the real worker path is covered by the reward-run test above.
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: snapshot_services.snapshot_execute(job.pk))
    campaign, _ = best_worst_campaign()
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")

    page.goto("/dashboard/new/reward/")
    # No snapshot exists yet, so the builder starts open.
    assert page.get_attribute("#snapshot-builder", "open") is not None
    assert page.input_value("#b-aggregation") == "tie-aware-v1"
    assert "votes count" in page.text_content("#b-aggregation-help")
    page.check(f"#b-campaigns input[value='{campaign.pk}']")
    page.select_option("#b-aggregation", "majority-v2")
    page.wait_for_selector("#pair-count [data-testid=pair-count]:text-is('4')")
    page.select_option("#b-aggregation", "majority-v1")
    page.wait_for_selector("#pair-count [data-testid=pair-count]:text-is('1')")
    assert "most annotators" in page.text_content("#b-aggregation-help")

    built = build_from_builder(page, "best-worst, v1")
    assert built.aggregation == "majority-v1" and built.counts["pairs"] == 1
    page.goto(f"/dashboard/snapshots/{built.pk}/")
    assert page.text_content("[data-testid=aggregation]").strip() == "majority-v1"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_curator_spots_a_careless_annotator_and_builds_a_snapshot_without_them(browser_page, monkeypatch,
                                                                                screenshot_dir):
    """ann2 disagrees with everyone (``pairwise_campaign``): the campaign page marks their agreement
    with peers, and the snapshot builder's minimum leaves them out, in the count and in the snapshot."""
    from annotation.services import snapshots as snapshot_services

    pairwise = pairwise_campaign()
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: snapshot_services.snapshot_execute(job.pk))
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")

    page.goto(f"/dashboard/campaigns/{pairwise.pk}/")
    page.wait_for_selector("#annotator-table")
    careless = page.locator("[data-testid=peer-ratio][data-annotator=ann2]")
    careful = page.locator("[data-testid=peer-ratio][data-annotator=ann0]")
    # ann2 agrees with nobody while the other two agree on 9 of 10: 0× their rate. ann0's peers
    # (ann1, ann2) never agree with each other, so there is no ratio to mark.
    assert careless.text_content() == "0.00×" and "warn" in careless.get_attribute("class")
    assert careful.text_content() == "—" and "warn" not in careful.get_attribute("class")
    assert page.locator("[data-testid=peer-agreement][data-annotator=ann0]").text_content().startswith("45")
    assert "20 comparisons" in careless.get_attribute("title") and "90.0% of the time" in careless.get_attribute("title")
    page.locator("#annotator-table").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "dashboard-annotator-quality.png"), full_page=False)

    page.goto("/dashboard/new/reward/")
    page.check(f"#b-campaigns input[value='{pairwise.pk}']")
    page.select_option("#b-aggregation", "majority-v2")  # the counts below are majority-v2's
    page.wait_for_selector("#pair-count [data-testid=pair-count]:text-is('7')")
    page.fill("#b-min-peer", "0.3")
    page.press("#b-min-peer", "Tab")  # a change event, as when the curator moves on
    page.wait_for_selector("#pair-count [data-testid=pair-count]:text-is('8')")
    assert "ann2 (agreement with peers 0.00× theirs with each other < 0.3" in page.text_content("#excluded-annotators")
    built = build_from_builder(page, "without ann2")
    assert built.filter["min_peer_agreement_ratio"] == 0.3 and built.counts["annotators_excluded"] == 1
    assert built.counts["pairs"] == 8
    page.goto(f"/dashboard/snapshots/{built.pk}/")
    assert "1 (8 judgments" in page.text_content("#annotators-excluded")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_scientist_evaluates_a_reward_model_on_another_snapshot(browser_page, screenshot_dir):
    from rewardtrain.models import RewardEvaluation
    from rewardtrain.services import reward_evaluation_execute_job, reward_evaluation_start
    from tests.rewardtrain.test_evaluations import trained_model

    model = trained_model()
    other = reward_snapshot()
    done = reward_evaluation_start(model=model, snapshot=other, enqueue=False)
    reward_evaluation_execute_job(done.job_id)
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")
    page.goto(f"/dashboard/reward-models/{model.pk}/")
    section = f"[data-evaluation='{done.pk}']"
    page.wait_for_selector(f"{section} [data-testid=accuracy-table]")
    assert other.name in page.text_content(section) and "succeeded" in page.text_content(section)
    shot(page, screenshot_dir, "reward-model-evaluations")
    # Start another from the form: no worker here, so it shows up queued (and the page keeps polling).
    page.select_option("#ev-snapshot", str(model.snapshot_id))
    page.select_option("#ev-split", "test")
    page.click("#evaluation-form #btn-start")
    page.wait_for_selector("[data-evaluation] .status-queued")
    queued = RewardEvaluation.objects.exclude(pk=done.pk).get()
    assert (queued.snapshot_id, queued.split, queued.job.status) == (model.snapshot_id, "test", "queued")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_scientist_promotes_a_checkpoint_the_gate_lets_through(browser_page, screenshot_dir, tmp_path):
    from policytrain.models import Promotion
    from tests.policytrain.test_promotion import checkpoint, side_by_side

    rl, regressed = checkpoint("rl-good", tmp_path), checkpoint("rl-regressed", tmp_path)
    side_by_side(rl, None, items=16)
    side_by_side(regressed, None, items=16, answer=lambda k, c: "b" if c == "consistency" else "a")
    make_user("sci", "scientist")
    page = browser_page
    login(page, "sci")
    # The gate holds back the checkpoint that people judged worse on one criterion.
    page.goto(f"/dashboard/checkpoints/{regressed.pk}/")
    assert "fill: clearly worse on Consistency." in page.text_content("#promotion-reasons")
    assert page.is_disabled("#btn-promote")
    page.goto(f"/dashboard/checkpoints/{rl.pk}/")
    assert "better" in page.text_content("#promotion-gate [data-task=fill]")
    shot(page, screenshot_dir, "checkpoint-promotion")
    page.click("#btn-promote")
    page.click("#confirm-yes")
    page.wait_for_selector("#production-badge")
    assert Promotion.objects.get().checkpoint_id == rl.pk
    assert "rl-good" in page.text_content("#promotion-history")
    # Overriding the gate without a reason is refused on the form, with one it is recorded.
    page.goto(f"/dashboard/checkpoints/{regressed.pk}/")
    page.click("details.override summary")
    page.click("#btn-force")
    page.click("#confirm-yes")
    page.wait_for_selector("[data-error-for=reason]:has-text('Required when forcing')")
    page.fill("#promote-reason", "rollback drill")
    page.click("#btn-force")
    page.click("#confirm-yes")
    page.wait_for_selector("#production-badge")
    assert list(Promotion.objects.values_list("number", "forced", "reason")) == [(2, True, "rollback drill"), (1, False, "")]
    # The leaderboard ranks both against the base, production marked.
    page.goto("/dashboard/registry/")
    page.click("#leaderboard-link")
    page.wait_for_selector("#leaderboard")
    assert page.text_content("#leaderboard tbody tr:first-child td:nth-child(2)").startswith("policy:rl-good")
    assert "production" in page.text_content("#leaderboard [data-system='policy:rl-regressed']")
    shot(page, screenshot_dir, "leaderboard")
