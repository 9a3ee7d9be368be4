"""Browser-test fixtures: the system Chromium driven by Playwright's sync API.

The Playwright sync API runs an event loop in the test thread, which trips Django's
async-unsafe guard on ORM calls made by the test itself; the live server runs in its own
thread, so allowing it here is safe.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--headless=new",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "pw-test-1234"


@pytest.fixture(scope="session")
def chromium_browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make test`, which installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()



#: How long a browser action or wait may take before the test fails. A passing run never waits it
#: out; it only has to cover a page that the live server renders slowly while every core is busy
#: (the full suite under xdist beside other work once took just over 10 s for one navigation).
BROWSER_TIMEOUT_MS = 20_000


def new_page(browser, base_url: str):
    """A 1280×800 page in a context of its own (own cookies: another signed-in person); the page's
    JavaScript errors collect in ``page.js_errors``. Close ``page.context`` when done."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base_url)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.in_flight = set()  # requests the page has sent and not yet seen answered (``settle``)
    page.on("request", lambda request: page.in_flight.add(request))
    page.on("requestfinished", lambda request: page.in_flight.discard(request))
    page.on("requestfailed", lambda request: page.in_flight.discard(request))
    return page


def settle(page, timeout_ms: int = 10_000) -> None:
    """Wait until none of the page's requests is still on its way (at most ``timeout_ms``).

    A test that ends while the workspace's prefetch is in flight would otherwise leave the live
    server answering it while the test's database is being torn down: the request fails with
    "Database access not allowed" and the teardown can fail on a test that passed."""
    waited = 0
    while page.in_flight and waited < timeout_ms:
        page.wait_for_timeout(50)
        waited += 50


@pytest.fixture
def browser_page(chromium_browser, live_server):
    """A fresh 1280×800 page; yields (page, base_url)."""
    page = new_page(chromium_browser, live_server.url)
    yield page
    settle(page)
    page.context.close()
    assert not page.js_errors, f"JavaScript errors on the page: {page.js_errors}"


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def login(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
