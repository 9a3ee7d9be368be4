"""The workspace never loses an annotator's input and tells them where they stand, in a real
Chromium: answers survive a reload, a second tab is told so and can take over, leaving gives the
prefetched item back, refusals keep the answers, progress in items, a phone-width layout, and a
styled 403 page with a way home."""
from __future__ import annotations

import time

import pytest

from annotation.models import Judgment, Lease, LeaseState
from tests.factories import make_campaign, make_user

from .conftest import login
from .test_workspace_browser import no_horizontal_overflow, press_all, wait_item, wait_state, wait_stored


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def active_leases(username: str) -> list[str]:
    return [str(u) for u in Lease.objects.filter(annotator__username=username, state=LeaseState.ACTIVE)
            .values_list("uid", flat=True)]


def open_workspace(page, **campaign_kwargs):
    """A fresh campaign (pairwise fill unless told otherwise), annotator "ann" signed in with its
    workspace open on the first item; returns (campaign, lease uid on screen)."""
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", **{"n_samples": 2, "overlap": 1, **campaign_kwargs})
    login(page, "ann")
    page.goto(f"/annotate/{campaign.pk}/")
    return campaign, wait_item(page)


def checked(page) -> list[str]:
    """The checked answer of each criterion row ("" while unanswered), top to bottom."""
    return page.eval_on_selector_all(
        "#criteria .crit-row",
        "rows => rows.map(r => { const b = r.querySelector('[aria-checked=true]'); return b ? b.dataset.value : ''; })")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_reload_mid_item_brings_back_the_same_item_with_its_answers(browser_page):
    page = browser_page
    _, lease = open_workspace(page)
    press_all(page, ["1", "3"])
    assert checked(page) == ["L", "R", "", ""]

    page.reload()
    assert wait_item(page) == lease  # /next/ hands back the lease the annotator holds …
    assert checked(page) == ["L", "R", "", ""]  # … and the draft puts the answers back
    page.wait_for_function("() => /restored/.test(document.getElementById('status-line').textContent)")
    press_all(page, ["2", "4", "Enter"])
    wait_stored(page, lease)
    choices = [j.choice for j in Judgment.objects.filter(lease__uid=lease).order_by("criterion_id")]
    assert choices[2:] == ["tie", "both_bad"] and all(c in ("a", "b") for c in choices[:2])
    # Stored, so the draft goes (once the answer is back in the browser).
    page.wait_for_function("uid => localStorage.getItem(`or:draft:${uid}`) === null", arg=lease)

    # Undo last at 1280 px: "Save changes" does not push "Undo last" out of the side column.
    page.keyboard.press("u")
    wait_state(page, "editing")
    side, undo = page.locator(".side").bounding_box(), page.locator("#undo-btn").bounding_box()
    assert undo["x"] + undo["width"] <= side["x"] + side["width"] + 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_second_tab_is_told_plainly_and_can_take_over_with_the_answers(browser_page):
    first = browser_page
    campaign, lease = open_workspace(first, n_samples=3)
    first.keyboard.press("3")

    second = first.context.new_page()
    second.goto(f"/annotate/{campaign.pk}/")
    wait_state(second, "elsewhere")
    notice = second.locator("#ws-elsewhere")
    assert notice.is_visible() and "This campaign is open in another tab" in notice.inner_text()
    assert second.locator("#ws-body").is_hidden()

    second.click("#takeover-btn")
    assert wait_item(second) == lease  # the same item, with the answer given in the first tab
    assert checked(second)[0] == "R"
    wait_state(first, "elsewhere")
    assert first.locator("#ws-elsewhere").is_visible() and first.locator("#ws-body").is_hidden()
    first.keyboard.press("1")  # keys in the tab that gave up the campaign change nothing
    press_all(second, ["1", "1", "1", "Enter"])
    wait_stored(second, lease)
    assert Judgment.objects.filter(lease__uid=lease).count() == 4
    second.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_leaving_the_page_gives_back_the_prefetched_item(browser_page):
    page = browser_page
    campaign, shown = open_workspace(page, n_samples=3)
    wait_until(lambda: len(active_leases("ann")) == 2, "the prefetched lease")
    (prefetched,) = set(active_leases("ann")) - {shown}

    page.goto("/")  # pagehide → beacon
    wait_until(lambda: not Lease.objects.filter(uid=prefetched).exists(), "the prefetched lease to be released")
    assert active_leases("ann") == [shown]  # the item on screen stays held, so a return resumes it
    page.goto(f"/annotate/{campaign.pk}/")
    assert wait_item(page) == shown


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_refused_submit_says_why_and_keeps_the_answers(browser_page):
    page = browser_page
    _, lease = open_workspace(page, criteria=["structure", "aesthetics"])
    page.wait_for_function("() => window.performance.getEntriesByType('resource')"
                           ".filter(e => e.name.endsWith('/next/')).length >= 2")
    # The item was skipped meanwhile (say, from a phone): the submit is refused with 409.
    page.evaluate("uid => fetch(`/api/leases/${uid}/skip/`, {method: 'POST', headers: {'Content-Type': "
                  "'application/json', 'X-CSRFToken': document.cookie.match(/csrftoken=([^;]+)/)[1]}, "
                  "body: '{}'})", lease)
    wait_until(lambda: Lease.objects.get(uid=lease).state == LeaseState.SKIPPED, "the skip")
    press_all(page, ["1", "3", "Enter"])
    alert = page.locator("#ws-alert")
    alert.wait_for(state="visible")
    assert "skipped" in alert.inner_text() and "answers are still shown" in alert.inner_text()
    assert page.get_attribute("#ws", "data-lease") == lease and checked(page) == ["L", "R"]
    page.click("#move-on-btn")
    assert wait_item(page, lease) != lease


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_progress_is_told_in_the_annotators_own_items(browser_page, settings):
    settings.PROGRESS_CACHE_SECONDS = 0
    page = browser_page
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=2, overlap=2, criteria=["structure"])
    login(page, "ann")
    assert "2 left for you" in page.inner_text(".campaign-list")
    page.goto(f"/annotate/{campaign.pk}/")
    lease = wait_item(page)
    page.wait_for_function("() => /2 left for you/.test(document.getElementById('progress-text').textContent)")
    assert "of 2 items" in page.inner_text("#progress-text")  # items, not item × overlap slots
    press_all(page, ["1", "Enter"])
    lease2 = wait_item(page, lease)
    page.wait_for_function("() => /^1 left for you/.test(document.getElementById('progress-text').textContent)")
    press_all(page, ["2", "Enter"])
    wait_state(page, "finished")
    wait_stored(page, lease2)
    page.wait_for_function("() => /Done for you — 2 items left for others/"
                           ".test(document.getElementById('progress-text').textContent)")
    page.goto("/")
    assert page.locator(f'a[href="/annotate/{campaign.pk}/"]').count() == 0
    assert "Done for you" in page.inner_text("main")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["pairwise", "best_worst"])
def test_the_workspace_at_390_px(browser_page, screenshot_dir, mode):
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=1, overlap=1, mode=mode)
    login(page, "ann")
    page.goto(f"/annotate/{campaign.pk}/")
    wait_item(page)
    page.screenshot(path=str(screenshot_dir / f"workspace-{mode}-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert no_horizontal_overflow(page)

    cands, source = page.locator("#cands").bounding_box(), page.locator("#source-view").bounding_box()
    criteria = page.locator("#criteria").bounding_box()
    assert cands["y"] < source["y"] and cands["y"] < criteria["y"]  # candidates first
    assert cands["width"] >= 340
    first = page.locator("#cands .viewport").first.bounding_box()
    assert first["width"] * first["height"] > source["width"] * source["height"]  # bigger than the source

    # Every answer button is on the screen and big enough to hit.
    boxes = page.eval_on_selector_all("#criteria button.choice", "bs => bs.map(b => b.getBoundingClientRect().toJSON())")
    assert boxes and all(b["left"] >= 0 and b["right"] <= 390 and b["height"] >= 30 for b in boxes)
    for selector in ("#submit-btn", "#skip-btn", "#undo-btn"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, selector

    # Answer groups are named by their criterion for screen readers.
    groups = page.eval_on_selector_all(
        "#criteria [role=radiogroup]",
        "gs => gs.map(g => g.getAttribute('aria-labelledby').split(' ')"
        ".map(id => document.getElementById(id).textContent).join(' '))")
    names = list(campaign.criteria.order_by("id").values_list("name", flat=True))
    per_row = 1 if mode == "pairwise" else 2
    assert len(groups) == per_row * len(names)
    assert all(any(g.startswith(n) for n in names) for g in groups)

    # No text under 13 px anywhere in the workspace.
    small = page.evaluate("""() => [...document.querySelectorAll('#ws *')]
        .filter(e => e.offsetParent !== null && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
        .filter(e => parseFloat(getComputedStyle(e).fontSize) < 13)
        .map(e => `${e.className || e.tagName}: ${getComputedStyle(e).fontSize}`)""")
    assert not small, small

    # A visible focus ring on the answer buttons.
    page.focus("#criteria button.choice")
    assert page.eval_on_selector("#criteria button.choice", "b => getComputedStyle(b).outlineStyle") == "solid"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_annotator_opening_a_dashboard_page_gets_a_styled_403_with_a_way_home(browser_page):
    page = browser_page
    make_user("ann", "annotator")
    make_campaign(task="fill", n_samples=1, overlap=1)
    login(page, "ann")
    response = page.goto("/dashboard/")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "This page is not open to you"
    assert page.locator(".topnav").is_visible()  # the site's own frame, not a bare error
    page.click("text=Back to your home page")
    page.wait_for_url(lambda url: url.endswith("/"))
    assert page.locator(".campaign-list").is_visible()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_skip_with_a_preset_reason_from_the_keyboard(browser_page):
    page = browser_page
    _, lease = open_workspace(page, skip_reasons=["Mask is empty", "Prompt unreadable"])
    page.keyboard.press("s")
    page.wait_for_selector("#skip-reason:focus")  # "Other…" first: typing a reason needs no extra key
    assert page.locator("#skip-presets button").all_inner_texts() == ["Mask is empty", "Prompt unreadable"]
    page.keyboard.press("Shift+Tab")  # back through the form: the last preset
    page.keyboard.press("2")  # digits do not answer rows while the dialog is open
    page.keyboard.press("Enter")
    wait_item(page, lease)
    skipped = Lease.objects.get(uid=lease)
    assert (skipped.state, skipped.skip_reason) == (LeaseState.SKIPPED, "Prompt unreadable")


@pytest.mark.django_db(transaction=True)
def test_the_workspace_and_home_follow_a_dark_system_setting(chromium_browser, live_server):
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=2, overlap=1)

    def luminance(scheme: str) -> dict:
        context = chromium_browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url,
                                               color_scheme=scheme)
        try:
            page = context.new_page()
            login(page, "ann")
            out = {}
            for name, url in (("home", "/"), ("workspace", f"/annotate/{campaign.pk}/")):
                page.goto(url)
                if name == "workspace":
                    wait_item(page)
                out[name] = page.evaluate("""() => { const px = (c) => c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
                    const lum = (c) => px(c).reduce((a, b) => a + b, 0) / 765;
                    return { bg: lum(getComputedStyle(document.documentElement).backgroundColor),
                             text: lum(getComputedStyle(document.body).color) }; }""")
            return out
        finally:
            context.close()

    light, dark = luminance("light"), luminance("dark")
    for name in ("home", "workspace"):
        assert light[name]["bg"] > 0.8 and light[name]["text"] < 0.3, (name, light)
        assert dark[name]["bg"] < 0.15 and dark[name]["text"] > 0.8, (name, dark)
