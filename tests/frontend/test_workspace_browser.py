"""The annotator workspace in a real Chromium: keyboard-only judging, best–worst, skip, undo-last,
prefetch, lost responses, layout at desktop and tablet widths.

Run: DATABASE_URL=postgres://... pytest tests/frontend -p no:playwright
"""
from __future__ import annotations

import time

import pytest
from django.urls import reverse

from annotation.models import (
    Candidate,
    Choice,
    ItemCandidate,
    Judgment,
    JudgmentRevision,
    Lease,
    LeaseState,
)
from tests.factories import make_campaign, make_user

from .conftest import login

PAIRWISE_KEY = {"1": 0, "3": 1}  # key → index into displayed_order of the better candidate


def wait_item(page, previous: str = "") -> str:
    """Wait until an item other than ``previous`` is on screen; returns its lease uid."""
    page.wait_for_function(
        "prev => { const ws = document.getElementById('ws');"
        " return ws.dataset.state === 'ready' && ws.dataset.lease && ws.dataset.lease !== prev; }",
        arg=previous,
    )
    return page.get_attribute("#ws", "data-lease")


def wait_stored(page, lease_uid: str, timeout: float = 15.0) -> None:
    """Wait until the lease's judgments are in the database: the next item is on screen at the
    key press and the submission lands behind it."""
    deadline = time.monotonic() + timeout
    while not Judgment.objects.filter(lease__uid=lease_uid).exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the judgments of lease {lease_uid} were never stored")
        page.wait_for_timeout(50)


def wait_state(page, state: str) -> None:
    page.wait_for_function("s => document.getElementById('ws').dataset.state === s", arg=state)


def press_all(page, keys) -> None:
    for key in keys:
        page.keyboard.press(key)


def canonical(item_id: int) -> list[int]:
    return list(ItemCandidate.objects.filter(item_id=item_id).order_by("position").values_list("candidate_id", flat=True))


def media_url(candidate_id: int) -> str:
    return reverse("media", kwargs={"path": Candidate.objects.get(pk=candidate_id).image.name})


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")


def keyboard_login(page, username: str) -> None:
    """Sign in with the keyboard only (the username field has autofocus)."""
    page.goto("/accounts/login/")
    page.wait_for_selector("#id_username:focus")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type("pw-test-1234")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_pairwise_items_judged_with_keyboard_only(browser_page, screenshot_dir):
    page = browser_page
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=3, overlap=1)
    requests: list[str] = []
    submits: list[dict] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("request", lambda r: submits.append(r.post_data_json) if r.url.endswith("/submit/") else None)

    page.goto("/accounts/login/")
    page.screenshot(path=str(screenshot_dir / "workspace-login-1280x800.png"))
    keyboard_login(page, "ann")
    page.screenshot(path=str(screenshot_dir / "workspace-home-1280x800.png"))
    assert page.locator(f'a[href="/annotate/{campaign.pk}/"]').first.is_visible()
    page.goto(f"/annotate/{campaign.pk}/")
    lease1 = wait_item(page)

    # The next item is leased and its images are fetched while the first is still being judged.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        upcoming = Lease.objects.filter(annotator__username="ann", state=LeaseState.ACTIVE).exclude(uid=lease1).first()
        wanted = [media_url(c) for c in upcoming.displayed_order] if upcoming else []
        if wanted and all(any(r.endswith(u) for r in requests) for u in wanted):
            break
        page.wait_for_timeout(100)
    else:
        pytest.fail(f"next item's images were not prefetched; requests: {requests}")
    assert not submits

    shortcuts = page.locator("#shortcuts")
    assert shortcuts.is_visible()
    for words in ("A better", "tie", "B better", "both bad", "submit", "skip", "undo last"):
        assert words in shortcuts.inner_text()

    # One shared zoom for every candidate image; swipe and flicker views; 0 resets.
    press_all(page, ["+", "+"])
    transforms = page.eval_on_selector_all("#cands .zimg", "imgs => imgs.map(i => i.style.transform)")
    assert len(set(transforms)) == 1 and "scale(1.5625)" in transforms[0]
    page.keyboard.press("w")
    assert page.locator("#swipe").is_visible() and page.locator("#cands").is_hidden()
    page.wait_for_timeout(100)
    page.screenshot(path=str(screenshot_dir / "workspace-swipe-1280x800.png"))
    press_all(page, ["w", "0"])
    assert page.locator("#cands").is_visible()
    assert page.eval_on_selector("#cands .zimg", "i => i.style.transform") == "translate(0%, 0%) scale(1)"
    page.keyboard.press("m")
    assert page.locator("#mask-overlay").is_hidden()
    page.keyboard.press("m")
    assert page.locator("#mask-overlay").is_visible()
    page.keyboard.down("f")
    assert page.locator(".flicker-img").is_visible()
    page.keyboard.up("f")
    assert page.locator(".flicker-img").is_hidden()

    # Item 1: three rows, Enter is refused while a row is open, then the fourth row and Enter.
    press_all(page, ["1", "3", "g"])
    page.wait_for_timeout(100)
    page.screenshot(path=str(screenshot_dir / "workspace-pairwise-1280x800.png"))
    page.keyboard.press("g")
    press_all(page, ["2", "Enter"])
    page.wait_for_timeout(200)
    assert not submits and Lease.objects.get(uid=lease1).state == LeaseState.ACTIVE
    press_all(page, ["4", "Enter"])
    lease2 = wait_item(page, lease1)

    # Item 2: the first response is lost after the server stored it; the retry reuses the key.
    lost = {"done": False}

    def lose_first_response(route):
        if not lost["done"]:
            lost["done"] = True
            route.fetch()  # reaches the server and is stored …
            route.abort()  # … but the browser never sees the answer
        else:
            route.continue_()

    page.route("**/submit/", lose_first_response)
    before = len(submits)
    press_all(page, ["3", "2", "4", "3", "Enter"])
    lease3 = wait_item(page, lease2)  # on screen at once; item 2's submission goes on behind it
    deadline = time.monotonic() + 15
    while len(submits) - before < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    page.wait_for_function("() => !/retrying/.test(document.getElementById('ws').innerText)")
    page.unroute("**/submit/")
    item2_submits = submits[before:]
    assert len(item2_submits) == 2 and item2_submits[0]["idempotency_key"] == item2_submits[1]["idempotency_key"]

    # Item 3: answer everything, then go back up with ↑ / K and change two rows.
    press_all(page, ["1", "1", "1", "1", "ArrowUp", "3", "k", "k", "2", "Enter"])
    wait_state(page, "finished")
    assert page.locator("#ws-empty").is_visible()

    expected = {
        lease1: ["1", "3", "2", "4"],
        lease2: ["3", "2", "4", "3"],
        lease3: ["1", "2", "3", "1"],
    }
    criteria = list(campaign.criteria.order_by("id").values_list("slug", flat=True))
    assert Judgment.objects.count() == 3 * len(criteria)
    for uid, keys in expected.items():
        lease = Lease.objects.get(uid=uid)
        assert lease.state == LeaseState.SUBMITTED
        order = lease.displayed_order
        canon = canonical(lease.item_id)
        judgments = {j.criterion.slug: j for j in Judgment.objects.filter(lease=lease).select_related("criterion")}
        assert set(judgments) == set(criteria)
        for slug, key in zip(criteria, keys, strict=True):
            j = judgments[slug]
            assert j.displayed_order == order
            if key == "2":
                assert j.choice == Choice.TIE
            elif key == "4":
                assert j.choice == Choice.BOTH_BAD
            else:
                winner = order[PAIRWISE_KEY[key]]
                assert j.choice == (Choice.A if winner == canon[0] else Choice.B), (slug, key, order, canon)
        assert len({j.idempotency_key for j in judgments.values()}) == 1
    assert submits[0]["active_ms"] > 0  # the page was visible and focused while judging


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_submit_during_a_database_restart_is_retried_until_it_lands_once(browser_page, database_outage,
                                                                            screenshot_dir):
    """The server answers 503 + Retry-After while the database restarts; the page says it is
    retrying, comes back when the server asks (not on its short schedule, which a restart longer
    than ~12 s would outlast) and sends the same submission again until it is stored, exactly once."""
    from django.db import connection

    page = browser_page
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=2, overlap=1)
    answers: list[tuple[float, int]] = []
    page.on("response", lambda r: answers.append((time.monotonic(), r.status)) if r.url.endswith("/submit/") else None)
    keyboard_login(page, "ann")
    page.goto(f"/annotate/{campaign.pk}/")
    lease1 = wait_item(page)

    database_outage.start()
    press_all(page, ["1", "1", "1", "1", "Enter"])
    page.wait_for_function("() => document.getElementById('status-line').textContent"
                           ".includes('The server is briefly unavailable — retrying with the same submission')")
    page.screenshot(path=str(screenshot_dir / "workspace-database-restart-1280x800.png"))
    while sum(status == 503 for _, status in answers) < 3:  # ~10 s: the old schedule made 3 tries in 1.1 s
        page.wait_for_timeout(200)
    database_outage.end()
    connection.close()
    wait_item(page, lease1)  # the next item may be on screen before the retried submission lands
    wait_stored(page, lease1)
    deadline = time.monotonic() + 20
    while (not answers or answers[-1][1] != 201) and time.monotonic() < deadline:
        page.wait_for_timeout(100)

    refused = [t for t, status in answers if status == 503]
    assert all(b - a >= 4.5 for a, b in zip(refused, refused[1:], strict=False)), answers  # Retry-After: 5
    assert answers[-1][1] == 201 and {status for _, status in answers} == {503, 201}, answers
    criteria = campaign.criteria.count()
    assert Judgment.objects.filter(lease__uid=lease1).count() == criteria
    assert Judgment.objects.filter(annotator__username="ann").count() == criteria
    assert Lease.objects.get(uid=lease1).state == LeaseState.SUBMITTED


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_submit_while_the_campaign_is_paused_says_why_and_keeps_the_answers(browser_page):
    from annotation.services.campaigns import campaign_set_status

    page = browser_page
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=2, overlap=1, criteria=["structure", "aesthetics"])
    keyboard_login(page, "ann")
    page.goto(f"/annotate/{campaign.pk}/")
    lease = wait_item(page)
    campaign_set_status(campaign=campaign, status="paused")
    press_all(page, ["1", "3", "Enter"])
    page.wait_for_function("() => /paused/.test(document.body.innerText)")
    assert "answers are not taken now" in page.inner_text("body")
    assert page.get_attribute("#ws", "data-lease") == lease and not Judgment.objects.exists()
    campaign_set_status(campaign=campaign, status="active")
    page.keyboard.press("Enter")  # the same answers, sent again once the campaign runs
    wait_item(page, lease)
    wait_stored(page, lease)
    stored = {j.criterion.slug: j.choice for j in Judgment.objects.filter(lease__uid=lease).select_related("criterion")}
    assert set(stored) == {"structure", "aesthetics"}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_next_item_is_on_screen_while_the_submission_is_still_on_its_way(browser_page):
    page = browser_page
    make_user("ann", "annotator")
    campaign = make_campaign(task="fill", n_samples=3, overlap=1, criteria=["structure"])
    keyboard_login(page, "ann")
    page.goto(f"/annotate/{campaign.pk}/")
    lease1 = wait_item(page)
    page.wait_for_function("() => Boolean(window.performance.getEntriesByType('resource')"
                           ".filter(e => e.name.endsWith('/next/')).length >= 2)")  # the prefetch is back
    held = []
    page.route("**/submit/", lambda route: held.append(route))  # the server's answer is held back
    press_all(page, ["1", "Enter"])
    lease2 = wait_item(page, lease1)
    assert held and not Judgment.objects.exists()  # on screen before the submission even arrived
    for route in held:
        route.continue_()
    page.unroute("**/submit/")
    wait_stored(page, lease1)
    page.wait_for_function("() => /Saved/.test(document.getElementById('ws').innerText)")
    assert page.get_attribute("#ws", "data-lease") == lease2


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_best_worst_of_four_and_skip_by_keyboard(browser_page, screenshot_dir):
    page = browser_page
    make_user("bw", "annotator")
    campaign = make_campaign(task="fill", n_samples=2, overlap=1, mode="best_worst")
    login(page, "bw")
    page.goto(f"/annotate/{campaign.pk}/")
    lease1 = wait_item(page)
    assert page.locator("#cands .cand").count() == 4
    assert "no clear difference" in page.locator("#shortcuts").inner_text()

    # Row 1: best A, worst B. Row 2: best D, worst C. Row 3: no clear difference.
    # Row 4: Shift+2 marks B worst first, then 3 picks C best.
    page.keyboard.press("1")
    assert "worst" in page.locator("#step-hint").inner_text().lower()
    press_all(page, ["2", "4", "3", "0", "Shift+2", "3"])
    assert page.locator(".crit-row.is-done").count() == 4
    page.wait_for_timeout(100)
    page.screenshot(path=str(screenshot_dir / "workspace-best-worst-1280x800.png"))
    page.set_viewport_size({"width": 800, "height": 1180})
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(screenshot_dir / "workspace-best-worst-tablet-800.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.keyboard.press("Enter")
    lease2 = wait_item(page, lease1)
    wait_stored(page, lease1)

    lease = Lease.objects.get(uid=lease1)
    d = lease.displayed_order
    got = {j.criterion.slug: j for j in Judgment.objects.filter(lease=lease).select_related("criterion")}
    slugs = list(campaign.criteria.order_by("id").values_list("slug", flat=True))
    want = [(Choice.BEST_WORST, d[0], d[1]), (Choice.BEST_WORST, d[3], d[2]),
            (Choice.NO_DIFFERENCE, None, None), (Choice.BEST_WORST, d[2], d[1])]
    for slug, (choice, best, worst) in zip(slugs, want, strict=True):
        j = got[slug]
        assert (j.choice, j.best_id, j.worst_id) == (choice, best, worst), slug
        assert j.displayed_order == d

    # Skip item 2 with a reason typed into the inline box.
    page.keyboard.press("s")
    page.wait_for_selector("#skip-reason:focus")
    page.keyboard.type("mask misses the object")
    page.keyboard.press("Enter")
    wait_state(page, "finished")
    skipped = Lease.objects.get(uid=lease2)
    assert skipped.state == LeaseState.SKIPPED
    assert skipped.skip_reason == "mask misses the object"
    assert not Judgment.objects.filter(lease=skipped).exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_undo_last_edits_a_judgment_at_tablet_width(browser_page, screenshot_dir):
    page = browser_page
    make_user("tab", "annotator")
    campaign = make_campaign(task="fill", n_samples=2, overlap=1)
    page.set_viewport_size({"width": 800, "height": 1180})
    login(page, "tab")
    page.goto(f"/annotate/{campaign.pk}/")
    lease1 = wait_item(page)
    assert no_horizontal_overflow(page)
    press_all(page, ["1", "1"])
    page.wait_for_timeout(100)
    page.screenshot(path=str(screenshot_dir / "workspace-pairwise-tablet-800.png"), full_page=True)
    press_all(page, ["1", "1", "Enter"])
    lease2 = wait_item(page, lease1)

    # U re-opens the previous item with its answers; change the first row to B and save.
    page.keyboard.press("u")
    wait_state(page, "editing")
    assert page.get_attribute("#ws", "data-lease") == lease1
    assert page.locator("#edit-banner").is_visible()
    assert page.locator(".crit-row.is-done").count() == 4  # prefilled from the earlier answers
    page.screenshot(path=str(screenshot_dir / "workspace-undo-tablet-800.png"), full_page=True)
    press_all(page, ["3", "Enter"])
    assert wait_item(page, lease1) == lease2

    lease = Lease.objects.get(uid=lease1)
    order, canon = lease.displayed_order, canonical(lease.item_id)
    first = campaign.criteria.order_by("id").first()
    edited = Judgment.objects.get(lease=lease, criterion=first)
    assert edited.choice == (Choice.A if order[1] == canon[0] else Choice.B)
    revisions = JudgmentRevision.objects.filter(judgment__lease=lease)
    assert revisions.count() == 1 and revisions.get().judgment_id == edited.pk
    assert revisions.get().choice == (Choice.A if order[0] == canon[0] else Choice.B)

    # Shortcuts overlay opens with ?, closes with Escape; the desktop width has no overflow either.
    page.keyboard.press("?")
    assert page.locator("#shortcuts-overlay").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#shortcuts-overlay").is_hidden()
    assert no_horizontal_overflow(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    assert no_horizontal_overflow(page)


@pytest.mark.django_db
def test_workspace_page_access(client):
    campaign = make_campaign(task="fill", n_samples=1, overlap=1)
    hidden = make_campaign(task="fill", n_samples=1, overlap=1, start=False)
    url = reverse("annotate", args=[campaign.pk])
    assert client.get(url).status_code == 302  # login first

    make_user("cur", "curator")
    client.login(username="cur", password="pw-test-1234")
    assert client.get(url).status_code == 403
    home = client.get("/", follow=True)  # a curator's home is the campaigns dashboard
    assert home.redirect_chain == [(reverse("dash-campaigns"), 302)]
    assert 'href="/dashboard/"' in home.content.decode() and 'href="/admin/"' in home.content.decode()

    make_user("ann2", "annotator")
    client.login(username="ann2", password="pw-test-1234")
    response = client.get(url)
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert client.get(reverse("annotate", args=[hidden.pk])).status_code == 404
    home = client.get("/").content.decode()
    assert f'href="/annotate/{campaign.pk}/"' in home and 'href="/dashboard/"' not in home
    assert 'action="/accounts/logout/"' in home
