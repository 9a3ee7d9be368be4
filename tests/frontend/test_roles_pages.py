"""Roles that work: each seeded demo user (and an admin) opens every page their role needs, is
refused the others, and sees no link they cannot use; the curator pages in a real Chromium."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from annotation.models import Criterion, GuidelineVersion
from demo.seed import DEMO_USERS, demo_users_ensure
from tests.factories import make_campaign, make_user

from .conftest import login

# url: text that proves the page itself rendered (not an error page that also says 200).
SCIENCE = {
    "/dashboard/": "<h1>Runs", "/dashboard/new/reward/": 'id="reward-form"', "/dashboard/new/policy/": 'id="policy-form"',
    "/dashboard/new/generation/": 'id="generation-form"', "/dashboard/registry/": "<h1>Registry",
    "/dashboard/leaderboard/": "<h1>Leaderboard", "/dashboard/compare/reward-models/": "<h1>Compare reward models",
    "/dashboard/compare/checkpoints/": "<h1>Compare checkpoints",
}
CAMPAIGNS = {"/dashboard/campaigns/": "<h1>Campaigns", "/dashboard/campaigns/new/": 'id="campaign-form"'}
CURATION = {
    "/dashboard/people/": 'id="people-table"', "/dashboard/taxonomy/": 'id="criteria-table"',
    "/dashboard/taxonomy/criteria/new/": 'id="taxonomy-form"', "/dashboard/taxonomy/criteria/structure/": 'value="structure"',
    "/dashboard/taxonomy/criteria/structure/guideline/": 'id="guideline-form"',
    "/dashboard/taxonomy/task-types/new/": 'id="taxonomy-form"', "/dashboard/taxonomy/task-types/fill/": 'value="fill"',
}
# Nav links (href) each section shows.
# (The top bar's "Dashboard" link, /dashboard/, is everyone's: it sends curators to the campaigns.)
SCIENCE_LINKS = ['>Runs</a>', 'href="/dashboard/new/reward/"', 'href="/dashboard/registry/"']
CURATION_LINKS = ['href="/dashboard/taxonomy/"', 'href="/dashboard/people/"']


def signed_in(username: str, password: str) -> Client:
    client = Client()
    assert client.login(username=username, password=password)
    return client


def opens(client: Client, pages: dict[str, str]) -> str:
    """Open every page (200 with its key element); return the last page's HTML."""
    html = ""
    for url, key in pages.items():
        response = client.get(url)
        html = response.content.decode()
        assert response.status_code == 200, url
        assert key in html, url
    return html


def refused(client: Client, pages: dict[str, str]) -> None:
    for url in pages:
        assert client.get(url).status_code == 403, url


@pytest.mark.django_db
def test_each_seeded_user_sees_exactly_their_pages_and_links():
    demo_users_ensure()
    make_campaign(n_samples=1)
    User.objects.create_superuser("admin", "admin@example.org", "admin-pw-1234")
    password = {name: pw for name, (pw, _) in DEMO_USERS.items()}

    annotator = signed_in("annotator", password["annotator"])
    home = annotator.get("/").content.decode()
    assert 'href="/annotate/' in home and "/dashboard/" not in home and 'href="/admin/"' not in home
    refused(annotator, {**SCIENCE, **CAMPAIGNS, **CURATION})

    curator = signed_in("curator", password["curator"])
    assert curator.get("/dashboard/").url == "/dashboard/campaigns/"  # the curator's dashboard starts there
    html = opens(curator, {**CAMPAIGNS, **CURATION})
    assert all(link in html for link in CURATION_LINKS) and not any(link in html for link in SCIENCE_LINKS)
    assert 'href="/admin/"' in html
    refused(curator, {k: v for k, v in SCIENCE.items() if k != "/dashboard/"})
    # The admin, as the power tool, opens with the curator group's permissions.
    admin_index = curator.get("/admin/").content.decode()
    assert "Campaigns" in admin_index and "permission to view or edit anything" not in admin_index
    assert curator.get("/admin/annotation/criterion/").status_code == 200
    assert curator.get("/admin/auth/user/").status_code == 403  # accounts are managed on People

    scientist = signed_in("scientist", password["scientist"])
    html = opens(scientist, {**SCIENCE, **CAMPAIGNS})
    assert all(link in html for link in SCIENCE_LINKS) and not any(link in html for link in CURATION_LINKS)
    assert 'href="/admin/"' not in html  # no admin permissions, so no link to it
    refused(scientist, CURATION)

    admin = signed_in("admin", "admin-pw-1234")
    html = opens(admin, {**SCIENCE, **CAMPAIGNS, **CURATION})
    assert all(link in html for link in SCIENCE_LINKS + CURATION_LINKS)


@pytest.mark.django_db
def test_anonymous_is_sent_to_login_from_the_curator_pages():
    for url in CURATION:
        response = Client().get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/"), url


@pytest.mark.django_db
def test_guideline_editor_is_prefilled_and_its_history_rendered():
    criterion = Criterion.objects.get(slug="structure")
    GuidelineVersion.objects.create(criterion=criterion, version=2, body_markdown="# Newer\n\n<b>raw</b> *em*")
    make_user("cur", "curator")
    html = signed_in("cur", "pw-test-1234").get("/dashboard/taxonomy/criteria/structure/guideline/").content.decode()
    editor = re.search(r'<textarea id="g-body"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert editor == "# Newer\n\n&lt;b&gt;raw&lt;/b&gt; *em*"  # v2's Markdown, escaped once in the HTML
    assert '<details class="version" data-version="2" open>' in html and 'data-version="1"' in html
    assert "<h1>Newer</h1>" in html and "<em>em</em>" in html and "<b>raw</b>" not in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_curator_invites_deactivates_and_edits_the_taxonomy_in_the_browser(browser_page, screenshot_dir):
    campaign = make_campaign(n_samples=1)
    worker = make_user("ann1", "annotator")
    campaign.annotators.add(worker)
    make_user("sci", "scientist")
    make_user("cur", "curator")
    page = browser_page
    login(page, "cur")

    page.goto("/dashboard/people/")
    row = page.locator("tr[data-user=ann1]")
    assert campaign.name in row.text_content()
    assert page.locator("tr[data-user=sci] button").count() == 0  # not the curator's to manage
    assert page.locator("#p-role option").all_text_contents() == ["annotator"]
    page.fill("#p-username", "newbie")
    page.fill("#p-email", "newbie@example.org")
    page.click("#btn-add-person")
    link = page.locator("[data-testid=set-password-link]")
    assert "/accounts/reset/" in link.text_content()
    page.wait_for_selector("tr[data-user=newbie]")
    page.screenshot(path=str(screenshot_dir / "dashboard-people.png"), full_page=True)

    row.locator("button[data-action=deactivate]").click()
    page.click("#confirm-yes")
    page.wait_for_selector("tr[data-user=ann1] [data-testid=active]:text-is('deactivated')")
    assert not User.objects.get(username="ann1").is_active
    page.fill("#p-username", "newbie")
    page.click("#btn-add-person")
    page.wait_for_selector("[data-error-for=username]:text-is('An account with this username already exists.')")

    page.goto("/dashboard/taxonomy/")
    page.click("a[href='/dashboard/taxonomy/criteria/new/']")
    page.fill("#t-name", "Lighting")
    page.fill("#t-slug", "lighting")
    page.click("#taxonomy-form button[type=submit]")
    page.wait_for_selector("[data-error-for=description]:not(:empty)")  # field errors from the API
    page.fill("#t-description", "whether the light in the edit matches the scene")
    page.check("input[name=task_types][value=fill]")
    page.click("#taxonomy-form button[type=submit]")
    page.wait_for_selector("tr[data-criterion=lighting]")
    page.screenshot(path=str(screenshot_dir / "dashboard-taxonomy.png"), full_page=True)
    created = Criterion.objects.get(slug="lighting")
    assert [t.slug for t in created.task_types.all()] == ["fill"] and not created.uses_prompt
    page.click("tr[data-criterion=lighting] a[href$='/lighting/']")
    page.check("#t-uses-prompt")
    page.screenshot(path=str(screenshot_dir / "dashboard-criterion-form.png"), full_page=False)
    page.click("#taxonomy-form button[type=submit]")
    page.wait_for_url("**/dashboard/taxonomy/")
    created.refresh_from_db()
    assert created.uses_prompt and created.description == "whether the light in the edit matches the scene"

    page.goto("/dashboard/taxonomy/criteria/structure/guideline/")
    assert page.input_value("#g-body").startswith(GuidelineVersion.objects.get(criterion__slug="structure").body_markdown[:20])
    page.fill("#g-body", "# Keep lines straight\n\nNo **warped** walls.")
    page.click("#btn-preview")
    page.wait_for_selector("#guideline-preview h1:text-is('Keep lines straight')")
    assert page.inner_html("#guideline-preview strong") == "warped"
    page.click("#btn-publish")
    page.wait_for_selector("details[data-version='2'] h1:text-is('Keep lines straight')")
    assert page.input_value("#g-body") == "# Keep lines straight\n\nNo **warped** walls."
    page.screenshot(path=str(screenshot_dir / "dashboard-guideline-editor.png"), full_page=True)
