"""Experiment views on the dashboard: run tags and parameter columns, curve overlays with
smoothing and log scale, counts and 95 % intervals in accuracy and win-rate cells, labelled sample
grids; and the dashboard's phone layout, dark theme and text sizes in a real Chromium."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from annotation.selectors import gsb_row
from core.stats import wilson_interval
from frontend.templatetags.dashboard_format import interval_text, rate_ci
from jobs.models import JobKind
from tests.factories import make_user

from .conftest import BROWSER_TIMEOUT_MS, login
from .dashboard_world import build_world

ACCURACY = re.compile(r"\d+\.\d (\(n=\d+, \d+\.\d+–\d+\.\d+\))")


def scientist() -> Client:
    make_user("sci", "scientist")
    c = Client()
    assert c.login(username="sci", password="pw-test-1234")
    return c


def test_wilson_interval_never_collapses_at_0_or_1():
    lo, hi = wilson_interval(4, 4)
    assert 0.45 < lo < 0.55 and hi == pytest.approx(1.0)
    lo, hi = wilson_interval(338, 412)
    assert lo < 338 / 412 < hi and hi - lo < 0.08
    assert wilson_interval(0, 0) is None
    assert interval_text(99.96, 100.0, 1) == "99.96–100.00" and interval_text(0.5, 0.6, 1) == "0.5–0.6"
    assert str(rate_ci(100.0, 4, [51.0, 100.0])) == '100.0 <span class="ci">(n=4, 51.0–100.0)</span>'


def test_a_unanimous_side_by_side_gets_an_interval_not_a_point():
    row = gsb_row({k: [1, 1, 1] for k in range(4)})  # 4 items, every judgment "A"
    assert row["win_rate"] == 1.0 and row["ci95"][1] == pytest.approx(1.0) and row["ci95"][0] < 0.9
    assert row["verdict"] == "A better"  # 12 judgments all one way still decide


@pytest.mark.django_db
def test_runs_carry_tags_and_key_parameters(tmp_path):
    world = build_world(tmp_path)
    c = scientist()
    jobs = {j["id"]: j for j in c.get("/api/dashboard/jobs/").json()["jobs"]}
    assert jobs[world.baseline.pk]["tags"] == ["baseline"]
    assert jobs[world.baseline.pk]["params"] == {"preset": "tiny", "lr": 1e-4, "batch_size": 4, "max_steps": 50, "seed": 0}
    assert jobs[world.policy.pk]["params"] == {"algorithm": 2, "lr": 1e-5, "batch_size": 2, "max_steps": 40,
                                               "hinge_lambda": 0.9, "ema_decay": 0.99}
    snapshot_job = next(j for j in jobs.values() if j["kind"] == JobKind.SNAPSHOT)
    assert snapshot_job["tags"] is None and snapshot_job["params"] == {}

    url = f"/api/dashboard/jobs/{world.wide.pk}/tags/"
    r = c.put(url, {"tags": ["  best  run ", "Sweep", "sweep", "lr"]}, content_type="application/json")
    assert r.status_code == 200 and r.json()["tags"] == ["best run", "Sweep", "lr"]
    world.wide.reward_run.refresh_from_db()
    assert world.wide.reward_run.tags == ["best run", "Sweep", "lr"]
    bad = c.put(url, {"tags": ["ok", "", "x" * 41]}, content_type="application/json")
    assert bad.status_code == 400 and len(bad.json()["fields"]["tags"]) == 2
    assert c.put(url, {"tags": "a,b"}, content_type="application/json").status_code == 400
    refused = c.put(f"/api/dashboard/jobs/{snapshot_job['id']}/tags/", {"tags": ["x"]}, content_type="application/json")
    assert refused.status_code == 400 and "no tags" in refused.json()["fields"]["tags"][0]
    world.wide.reward_run.refresh_from_db()
    assert world.wide.reward_run.tags == ["best run", "Sweep", "lr"]  # a refused write changes nothing


@pytest.mark.django_db
def test_overlay_api_returns_every_runs_curves_in_the_order_asked(tmp_path):
    world = build_world(tmp_path)
    c = scientist()
    data = c.get(f"/api/dashboard/runs/overlay/?job={world.wide.pk}&job={world.baseline.pk}").json()
    assert [r["id"] for r in data["runs"]] == [world.wide.pk, world.baseline.pk]
    curves = data["runs"][1]["curves"]
    assert curves["loss · train"] == [[10, 0.69], [20, 0.61], [30, 0.52], [40, 0.47], [50, 0.41]]
    assert curves["loss · eval (val)"] == [[50, pytest.approx(0.451)]] and "split · eval (val)" not in curves
    missing = c.get(f"/api/dashboard/runs/overlay/?job={world.wide.pk}&job=999999")
    assert missing.status_code == 400 and missing.json()["fields"]["job"] == ["No run with id 999999."]
    assert c.get("/api/dashboard/runs/overlay/?job=x").status_code == 400
    assert c.get("/api/dashboard/runs/overlay/").status_code == 400


@pytest.mark.django_db
def test_every_accuracy_and_win_rate_cell_on_server_pages_has_a_count_and_interval(tmp_path):
    world = build_world(tmp_path)
    c = scientist()
    page = c.get(f"/dashboard/reward-models/{world.model.pk}/").content.decode()
    cells = re.findall(r'data-testid="accuracy-cell">(.*?)</(?:td|span)>\s*(?:<td|%|</?p)', page, flags=re.S)
    texts = [re.sub(r"<[^>]+>", "", cell) for cell in cells]
    assert "82.0 (n=412, 78.0–85.4)" in texts and any(t.startswith("100.0 (n=4, 51.0–100.0)") for t in texts)
    assert "100–100" not in page
    registry = c.get("/dashboard/registry/").content.decode()
    assert re.search(r"82\.2 <span class=\"ci\">\(n=416, 78\.2–85\.6\)</span>", registry)


def signed_in_scientist(page, tmp_path):
    """The dashboard world, with ``page`` signed in as a scientist."""
    world = build_world(tmp_path)
    make_user("sci", "scientist")
    login(page, "sci")
    return world


def chart_state(page, selector: str) -> dict:
    return page.evaluate("""(sel) => { const c = Chart.getChart(document.querySelector(sel));
        return { labels: c.data.datasets.map((d) => d.label), raw: c.data.datasets.filter((d) => d.isRaw).length,
                 scale: c.options.scales.y.type, tension: c.options.elements.line.tension,
                 points: c.data.datasets.map((d) => d.data.length) }; }""", selector)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_scientist_overlays_two_runs_with_smoothing_log_scale_and_a_data_table(browser_page, tmp_path, screenshot_dir):
    page = browser_page
    world = signed_in_scientist(page, tmp_path)
    page.goto("/dashboard/")
    page.wait_for_selector(f"#runs-body tr[data-job='{world.wide.pk}']")
    # Parameter columns sort client-side: lr descending puts the wide-lr run first.
    page.click("button[data-sort='param:lr']")
    page.click("button[data-sort='param:lr']")
    first = page.get_attribute("#runs-body tr:first-child", "data-job")
    assert first == str(world.wide.pk)
    assert page.get_attribute("th:has(button[data-sort='param:lr'])", "aria-sort") == "descending"
    # … and filter: a tag, then a parameter value.
    page.fill("#runs-local-filter", "baseline")
    page.wait_for_function("document.querySelectorAll('#runs-body tr[data-job]').length === 1")
    assert page.get_attribute("#runs-body tr", "data-job") == str(world.baseline.pk)
    page.fill("#runs-local-filter", "lr=0.0003")
    page.wait_for_function(f"document.querySelector('#runs-body tr').dataset.job === '{world.wide.pk}'")
    page.fill("#runs-local-filter", "")
    page.wait_for_function("document.querySelectorAll('#runs-body tr[data-job]').length >= 4")
    # Tags are edited in place.
    page.click(f"tr[data-job='{world.wide.pk}'] [data-action=edit-tags]")
    page.fill(f"tr[data-job='{world.wide.pk}'] .tag-input", "sweep, lr, keep")
    page.click(f"tr[data-job='{world.wide.pk}'] [data-action=save-tags]")
    page.wait_for_selector(f"tr[data-job='{world.wide.pk}'] .tag:has-text('keep')")
    world.wide.reward_run.refresh_from_db()
    assert world.wide.reward_run.tags == ["sweep", "lr", "keep"]

    page.check(f"tr[data-job='{world.baseline.pk}'] input.pick")
    page.check(f"tr[data-job='{world.wide.pk}'] input.pick")
    assert page.text_content("#overlay-selected") == "Overlay selected (2)"
    page.click("#overlay-selected")
    page.wait_for_url(re.compile(r"/dashboard/runs/overlay/\?job="))
    page.wait_for_function("document.querySelectorAll('#overlay-runs li').length === 2")
    assert page.input_value("#overlay-metric") == "loss · train"
    state = chart_state(page, "#overlay-chart")
    assert sorted(state["labels"]) == sorted([f"#{world.baseline.pk} rm baseline", f"#{world.wide.pk} rm wide lr"])
    assert state["raw"] == 0 and state["scale"] == "linear" and state["tension"] == 0 and state["points"] == [5, 5]
    # Smoothing keeps the raw points, faint, behind the smoothed line; log scale switches the axis.
    page.fill("#smoothing", "0.6")
    page.dispatch_event("#smoothing", "input")
    state = chart_state(page, "#overlay-chart")
    assert state["raw"] == 2 and len(state["labels"]) == 4 and page.text_content("#smoothing-value") == "0.60"
    smoothed = page.evaluate("""() => Chart.getChart(document.querySelector('#overlay-chart')).data.datasets
                                 .filter((d) => !d.isRaw)[0].data.map((p) => p.y)""")
    assert smoothed[0] == pytest.approx(0.69) and smoothed[-1] > 0.41  # EMA lags the falling raw loss
    page.screenshot(path=str(screenshot_dir / "dashboard-overlay.png"), full_page=True)
    page.check("#log-scale")
    assert chart_state(page, "#overlay-chart")["scale"] == "logarithmic"
    assert "smoothing=0.6" in page.url and "log=1" in page.url
    # The data table under the chart lists both runs' raw points.
    page.click("#overlay-data summary")
    page.wait_for_selector("#overlay-data table")
    heads = page.eval_on_selector_all("#overlay-data thead th", "ths => ths.map((t) => t.textContent)")
    assert heads == ["step", f"#{world.baseline.pk} rm baseline", f"#{world.wide.pk} rm wide lr"]
    assert page.eval_on_selector_all("#overlay-data tbody tr", "rs => rs.length") == 5
    # Another metric, and a third run added from the page.
    page.select_option("#overlay-metric", "accuracy · train")
    assert chart_state(page, "#overlay-chart")["points"][-1] == 5
    page.select_option("#overlay-run", str(world.policy.pk))
    page.click("#overlay-add button")
    page.wait_for_function("document.querySelectorAll('#overlay-runs li').length === 3")
    assert f"job={world.policy.pk}" in page.url


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_accuracy_cell_shows_a_count_and_an_interval(browser_page, tmp_path):
    page = browser_page
    world = signed_in_scientist(page, tmp_path)
    for url in (f"/dashboard/runs/{world.baseline.pk}/", f"/dashboard/reward-models/{world.model.pk}/",
                f"/dashboard/compare/reward-models/?a={world.model.pk}&b={world.model.pk}"):
        page.goto(url)
        page.wait_for_selector("[data-testid=accuracy-table]")
        # Every applicable RM cell (not the human ceiling, not "–") carries n and an interval.
        cells = page.eval_on_selector_all("[data-testid=accuracy-table] tbody td:not(.ceiling):not(.na)",
                                          "tds => tds.map((t) => t.textContent.trim())")
        assert cells and all(ACCURACY.fullmatch(c) or c == "n/a" for c in cells), (url, cells)
        assert "82.0 (n=412, 78.0–85.4)" in cells and "100.0 (n=4, 51.0–100.0)" in cells
        overall = page.text_content("p [data-testid=accuracy-cell]")
        assert overall.startswith("82.2 (n=416, ")
        assert "100–100" not in page.text_content("#dash")
    page.goto(f"/dashboard/campaigns/{world.campaign.pk}/")
    page.wait_for_selector("#c-gsb-table")
    wins = page.eval_on_selector_all("[data-testid=win-rate-cell]", "tds => tds.map((t) => t.textContent)")
    assert len(wins) == 3 and all(re.fullmatch(r"\d+\.\d% \(n=\d+, \d+\.\d+–\d+\.\d+%\)", w) for w in wins), wins


DASH_PAGES = ["/dashboard/", "/dashboard/runs/{baseline}/", "/dashboard/runs/overlay/?job={baseline}&job={wide}",
              "/dashboard/runs/{policy}/", "/dashboard/new/reward/", "/dashboard/new/policy/", "/dashboard/new/generation/",
              "/dashboard/registry/", "/dashboard/leaderboard/", "/dashboard/reward-models/{model}/",
              "/dashboard/checkpoints/{checkpoint}/", "/dashboard/snapshots/{snapshot}/",
              "/dashboard/compare/reward-models/?a={model}&b={model}",
              "/dashboard/compare/checkpoints/?a={checkpoint}&b={checkpoint}", "/dashboard/campaigns/",
              "/dashboard/campaigns/new/", "/dashboard/campaigns/{campaign}/"]


def dash_urls(world) -> list[str]:
    ids = {"baseline": world.baseline.pk, "wide": world.wide.pk, "policy": world.policy.pk, "model": world.model.pk,
           "checkpoint": world.checkpoint.pk, "snapshot": world.snapshot.pk, "campaign": world.campaign.pk}
    return [u.format(**ids) for u in DASH_PAGES]


SMALL_TEXT = """() => Array.from(document.querySelectorAll('body *')).filter((e) => {
    if (!e.offsetParent && getComputedStyle(e).position !== 'fixed') return false;
    if (e.closest('.sr-only') || e.matches('canvas, img, svg, option')) return false;
    const own = Array.from(e.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    return own && parseFloat(getComputedStyle(e).fontSize) < 13;
  }).map((e) => `${e.tagName.toLowerCase()}.${e.className}: ${e.textContent.trim().slice(0, 30)} (${getComputedStyle(e).fontSize})`)"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_fits_a_390px_phone_without_horizontal_overflow_or_tiny_text(chromium_browser, live_server, tmp_path,
                                                                              screenshot_dir):
    world = build_world(tmp_path)
    make_user("boss", "scientist", "curator")
    context = chromium_browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url,
                                           device_scale_factor=1, is_mobile=True, has_touch=True)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, "boss")
        overflow, small = {}, {}
        for url in dash_urls(world):
            page.goto(url)
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                overflow[url] = width
            if tiny := page.evaluate(SMALL_TEXT):
                small[url] = tiny[:5]
            if url == "/dashboard/":
                page.screenshot(path=str(screenshot_dir / "dashboard-runs-390.png"), full_page=False)
        assert not overflow, f"pages wider than the 390 px screen: {overflow}"
        assert not small, f"text under 13 px: {small}"
        assert not errors
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dark_theme_follows_the_system_setting(chromium_browser, live_server, tmp_path, screenshot_dir):
    world = build_world(tmp_path)
    make_user("sci", "scientist")

    def colours(scheme: str) -> dict:
        context = chromium_browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url,
                                               color_scheme=scheme)
        try:
            page = context.new_page()
            login(page, "sci")
            page.goto(f"/dashboard/runs/{world.baseline.pk}/")
            page.wait_for_selector("#charts:not([hidden])")
            if scheme == "dark":
                page.screenshot(path=str(screenshot_dir / "dashboard-run-dark.png"), full_page=False)
            return page.evaluate("""() => { const px = (c) => c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
                const lum = (c) => px(c).reduce((a, b) => a + b, 0) / 765;
                return { body: lum(getComputedStyle(document.documentElement).backgroundColor),
                         card: lum(getComputedStyle(document.querySelector('.card')).backgroundColor),
                         text: lum(getComputedStyle(document.querySelector('h1')).color),
                         scheme: getComputedStyle(document.documentElement).colorScheme }; }""")
        finally:
            context.close()

    light, dark = colours("light"), colours("dark")
    assert light["body"] > 0.8 and light["card"] > 0.9 and light["text"] < 0.3
    assert dark["body"] < 0.15 and dark["card"] < 0.2 and dark["text"] > 0.8 and dark["scheme"] == "dark"
