"""The campaign page's export buttons in a real Chromium, with a real Celery worker writing the file."""
from __future__ import annotations

import pytest

from annotation.export_format import verify_jsonl, verify_parquet
from tests.annotation.test_exports import _world
from tests.factories import make_user

from .conftest import login


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_curator_exports_a_campaign_from_its_page(celery_worker_process, browser_page):
    page = browser_page
    pair, _, _ = _world()
    make_user("cur", "curator")
    login(page, "cur")
    page.goto(f"/dashboard/campaigns/{pair.pk}/")
    for fmt, verify in (("jsonl", verify_jsonl), ("parquet", verify_parquet)):
        page.click(f"[data-export-format={fmt}]")
        row = f"[data-export-job][data-status=succeeded]:has-text('{fmt} succeeded')"
        page.wait_for_selector(f"{row} [data-testid=export-download]", timeout=60_000)
        bar = page.query_selector(f"{row} [role=progressbar]")
        assert bar.get_attribute("aria-valuenow") == "100"
        href = page.get_attribute(f"{row} [data-testid=export-download]", "href")
        body = page.request.get(href).body()  # the signed-in session downloads it
        assert verify(body) == 18  # the pairwise campaign only: 3 items × 3 annotators × 2 criteria
