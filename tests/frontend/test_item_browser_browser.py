"""The item browser in a real Chromium: a curator pauses the campaign, filters the disputed items,
adjudicates one and marks another gold, all in the browser."""
from __future__ import annotations

import pytest

from annotation.models import Adjudication, Item
from tests.annotation.test_snapshots import annotate
from tests.factories import make_campaign, make_user

from .conftest import login


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_curator_filters_disputed_adjudicates_and_marks_gold(browser_page, screenshot_dir):
    page = browser_page
    campaign = make_campaign(n_samples=3, overlap=3, criteria=["structure"], name="Browse me")
    anns = [make_user(f"bb{k}", "annotator") for k in range(3)]
    # Item 0: A / B / tie (split, disputed); items 1 and 2: unanimous A.
    annotate(campaign, anns, lambda k, i, s: {"structure": [s[0], s[1], "tie"][k] if i == 0 else s[0]})
    disputed, settled, _ = Item.objects.filter(campaign=campaign).order_by("id")
    make_user("cur", "curator")
    login(page, "cur")

    page.goto(f"/dashboard/campaigns/{campaign.pk}/")
    page.click("[data-campaign-action=pause]")
    page.wait_for_selector("#c-status:has-text('paused')")
    assert page.is_visible("[data-campaign-action=resume]") and not page.is_visible("[data-campaign-action=pause]")
    page.click("text=Browse items")

    page.wait_for_selector(f"tr[data-item='{settled.pk}']")
    page.select_option("#item-filters select[name=disputed]", "yes")
    page.wait_for_selector("#items-count:has-text('1 matching')")
    assert page.locator("#items-table tbody tr").count() == 1
    assert "disputed=yes" in page.url  # the filter survives a reload or a shared link
    page.screenshot(path=str(screenshot_dir / "item-browser.png"), full_page=True)
    page.click(f"tr[data-item='{disputed.pk}'] a")

    page.wait_for_selector("#judgments-table")
    assert page.locator("#judgments-table tbody tr").count() == 3
    assert page.is_visible("text=sys1")  # each candidate names its system
    b = disputed.slots.get(position=1).candidate_id
    page.select_option("#adjudicate-form select[name=answer]", str(b))
    page.fill("#adjudicate-form textarea[name=note]", "A has a seam at the mask edge")
    page.click("#adjudicate-form button[type=submit]")
    page.wait_for_selector("[data-testid=final-structure]:has-text('B')")
    page.screenshot(path=str(screenshot_dir / "item-page.png"), full_page=True)
    adj = Adjudication.objects.get(item=disputed)
    assert (adj.choice, adj.note, adj.created_by.username) == ("b", "A has a seam at the mask edge", "cur")

    # Settled now: the disputed filter comes back empty.
    page.goto(f"/dashboard/campaigns/{campaign.pk}/items/?disputed=yes")
    page.wait_for_selector("#items-count:has-text('0 matching')")

    page.goto(f"/dashboard/items/{settled.pk}/")
    page.select_option("#gold-form select[name=answer]", str(settled.slots.get(position=0).candidate_id))
    page.click("#gold-save")
    page.wait_for_selector("[data-testid=gold-badge]")
    settled.refresh_from_db()
    assert settled.is_gold and settled.gold_answer == {"structure": "a"}
