"""Issue #24's "done when": the seeded curator does the whole job in a real Chromium, and two new
annotators judge in their own browsers — new criterion → its guideline → import with a split column
→ campaign on that criterion restricted to the two annotators → their judgments → adjudicate one
item → mark one gold → export JSONL and Parquet (a real Celery worker writes the files).

Every step goes through the pages only; the database is read to check what each step stored.
Screenshots: ``curator-journey-*.png`` (docs/annotation.md, "A curator's journey").
"""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from PIL import Image, ImageDraw

from annotation.export_format import verify_jsonl, verify_parquet
from annotation.models import (
    Adjudication,
    Campaign,
    CampaignStatus,
    Criterion,
    GuidelineVersion,
    ImportBatch,
    ImportStatus,
    Item,
    Judgment,
    Sample,
)
from demo.seed import DEMO_USERS, demo_users_ensure
from jobs.models import Job, JobKind, JobStatus

from .conftest import login, new_page
from .test_workspace_browser import wait_item, wait_state

ANNOTATORS = {"journey-ann1": "Journey-pass-4411", "journey-ann2": "Journey-pass-5522"}
# external_id → split as the manifest gives it (no two of them share a key, so each is kept as given).
SPLITS = {"jr-1": "train", "jr-2": "train", "jr-3": "test", "jr-4": "val"}


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def journey_zip(path) -> None:
    """Four fill samples with a ``split`` column, each with a sysA and a sysB candidate."""
    files, rows = {}, []
    for k, ext in enumerate(SPLITS):
        scene = Image.new("RGB", (96, 96), (40 + 40 * k, 120, 200 - 30 * k))
        mask = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(mask).rectangle((28, 28, 68, 68), fill=255)
        good, bad = scene.copy(), scene.copy()
        ImageDraw.Draw(good).ellipse((30, 30, 66, 66), fill=(220, 40, 40))
        ImageDraw.Draw(bad).rectangle((30, 40, 66, 56), fill=(90, 90, 90))
        for name, img in (("src", scene), ("mask", mask), ("a", good), ("b", bad)):
            files[f"{name}/{ext}.png"] = _png(img)
        rows.append({"external_id": ext, "task": "fill", "prompt": "a red ball", "source": f"src/{ext}.png",
                     "mask": f"mask/{ext}.png", "split": SPLITS[ext],
                     "candidates": [{"image": f"a/{ext}.png", "source_name": "sysA"},
                                    {"image": f"b/{ext}.png", "source_name": "sysB"}]})
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def judge_everything(page, key: str) -> int:
    """Answer every item the workspace hands out with ``key`` (1 = left better, 3 = right); returns how many."""
    lease, judged = "", 0
    while True:
        page.wait_for_function("prev => { const ws = document.getElementById('ws'); return ws.dataset.state"
                               " === 'finished' || (ws.dataset.state === 'ready' && ws.dataset.lease !== prev); }",
                               arg=lease)
        if page.get_attribute("#ws", "data-state") == "finished":
            return judged
        lease = wait_item(page, lease)
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        judged += 1


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_seeded_curator_walks_the_whole_journey_in_the_browser(celery_worker_process, chromium_browser, live_server,
                                                               browser_page, screenshot_dir, tmp_path):
    demo_users_ensure()
    page = browser_page
    login(page, "curator", DEMO_USERS["curator"][0])

    def shot(name: str, full_page: bool = True) -> None:
        page.screenshot(path=str(screenshot_dir / f"curator-journey-{name}.png"), full_page=full_page)

    # 1. A new criterion on the Taxonomy page.
    page.goto("/dashboard/taxonomy/")
    page.click("a[href='/dashboard/taxonomy/criteria/new/']")
    page.fill("#t-name", "Ball realism")
    page.fill("#t-slug", "ball-realism")
    page.fill("#t-description", "whether the inserted ball looks real in the scene")
    page.check("input[name=task_types][value=fill]")
    page.click("#taxonomy-form button[type=submit]")
    page.wait_for_selector("tr[data-criterion=ball-realism]")
    shot("1-taxonomy", full_page=False)
    criterion = Criterion.objects.get(slug="ball-realism")
    assert criterion.description == "whether the inserted ball looks real in the scene"
    assert list(criterion.task_types.values_list("slug", flat=True)) == ["fill"]

    # 2. Its guideline, previewed and published.
    page.click("tr[data-criterion=ball-realism] a[href$='/ball-realism/guideline/']")
    page.fill("#g-body", "# Ball realism\n\nPrefer the ball with **believable shading**; ignore its colour.")
    page.click("#btn-preview")
    page.wait_for_selector("#guideline-preview strong:text-is('believable shading')")
    page.click("#btn-publish")
    page.wait_for_selector("details[data-version='1'] h1:text-is('Ball realism')")
    shot("2-guideline")
    guideline = GuidelineVersion.objects.get(criterion=criterion)
    assert guideline.version == 1 and "believable shading" in guideline.body_markdown

    # 3. Import a zip whose manifest has a split column.
    archive = tmp_path / "journey-batch.zip"
    journey_zip(archive)
    page.click("nav.subnav a[href='/dashboard/imports/']")
    page.set_input_files("#id_file", str(archive))
    page.click("#btn-import")
    page.wait_for_selector("#import-result h2:has-text('Imported journey-batch.zip')")
    assert page.text_content("[data-testid=samples-created]") == "4"
    assert page.text_content("[data-testid=candidates-created]") == "8"
    assert page.text_content("#import-splits tr[data-split=train] td.num") == "2"
    assert page.locator("#imports-table tbody tr").first.text_content().count("journey-batch.zip") == 1
    shot("3-import")
    batch = ImportBatch.objects.get(source_name="journey-batch.zip")
    assert (batch.status, batch.created_by.username, batch.samples_created) == (ImportStatus.SUCCEEDED, "curator", 4)
    assert dict(Sample.objects.filter(external_id__in=SPLITS).values_list("external_id", "split")) == SPLITS

    # 4. Two new annotators on the People page; each sets a password through the link shown.
    links = {}
    page.goto("/dashboard/people/")
    for name in ANNOTATORS:
        page.fill("#p-username", name)
        page.click("#btn-add-person")
        page.wait_for_selector(f"tr[data-user={name}]")
        links[name] = page.text_content("[data-testid=set-password-link]")
    shot("4-people", full_page=False)
    annotators = {}
    for name, password in ANNOTATORS.items():
        ann_page = new_page(chromium_browser, live_server.url)
        ann_page.goto(links[name])
        ann_page.fill("#id_new_password1", password)
        ann_page.fill("#id_new_password2", password)
        ann_page.click("form.form-stack button[type=submit]")
        ann_page.wait_for_url("**/accounts/reset/done/")
        login(ann_page, name, password)
        annotators[name] = ann_page

    # 5. A campaign on the new criterion (sysA vs sysB), restricted to the two before they start.
    page.goto("/dashboard/campaigns/new/")
    page.select_option("#c-task", "fill")
    page.wait_for_selector("#c-side-a option[value=sysA]", state="attached")
    page.select_option("#c-side-a", "sysA")
    page.select_option("#c-side-b", "sysB")
    page.wait_for_selector("#c-preview .count-n:text-is('4')")
    page.fill("#c-name", "Ball realism, sysA vs sysB")
    page.fill("#c-overlap", "2")
    page.check("#c-criteria-list input[value=ball-realism]")
    # Restricted at creation: the seeded annotators are offered too, and must not get its items.
    assert page.locator("#c-restrict input[value=annotator]").count() == 1
    for name in ANNOTATORS:
        page.check(f"#c-restrict input[value={name}]")
    page.click("#btn-start")
    page.wait_for_url(re.compile(r"/dashboard/campaigns/\d+/$"))
    campaign = Campaign.objects.get(name="Ball realism, sysA vs sysB")
    assert list(campaign.criteria.values_list("slug", flat=True)) == ["ball-realism"]
    assert set(campaign.annotators.values_list("username", flat=True)) == set(ANNOTATORS)
    for name in ANNOTATORS:  # the campaign page shows the restriction it was created with
        assert page.is_checked(f"#c-annotators-form input[value={name}]")
    page.wait_for_selector("#c-status:has-text('active')")
    page.wait_for_selector("#c-cards .stat-card")  # the live figures, not "Loading…"
    shot("5-campaign", full_page=False)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE and Item.objects.filter(campaign=campaign).count() == 4

    # 6. Each annotator judges every item in the workspace: one always picks left, the other right.
    for (name, ann_page), key in zip(annotators.items(), ("1", "3"), strict=True):
        ann_page.goto(f"/annotate/{campaign.pk}/")
        if key == "1":
            wait_item(ann_page)
            ann_page.screenshot(path=str(screenshot_dir / "curator-journey-6-workspace.png"))
        assert judge_everything(ann_page, key) == 4
        wait_state(ann_page, "finished")
        ann_page.context.close()
        assert not ann_page.js_errors, f"JavaScript errors in {name}'s workspace: {ann_page.js_errors}"
    judgments = Judgment.objects.filter(item__campaign=campaign)
    assert judgments.count() == 8
    assert set(judgments.values_list("annotator__username", flat=True)) == set(ANNOTATORS)
    assert set(judgments.values_list("criterion__slug", flat=True)) == {"ball-realism"}

    # 7. The item browser: adjudicate one item, mark another gold.
    first, second = Item.objects.filter(campaign=campaign).order_by("id")[:2]
    page.goto(f"/dashboard/campaigns/{campaign.pk}/")
    page.click("text=Browse items")
    page.wait_for_selector(f"tr[data-item='{first.pk}']")
    shot("7-items")
    page.click(f"tr[data-item='{first.pk}'] a")
    page.wait_for_selector("#judgments-table")
    assert page.locator("#judgments-table tbody tr").count() == 2
    better = first.slots.get(position=0).candidate_id
    page.select_option("#adjudicate-form select[name=answer]", str(better))
    page.fill("#adjudicate-form textarea[name=note]", "the left ball has believable shading")
    page.click("#adjudicate-form button[type=submit]")
    page.wait_for_selector("[data-testid=final-ball-realism]:has-text('A')")
    shot("7-adjudicated")
    adjudication = Adjudication.objects.get(item=first)
    assert (adjudication.choice, adjudication.created_by.username) == ("a", "curator")
    page.goto(f"/dashboard/items/{second.pk}/")
    page.select_option("#gold-form select[name=answer]", str(second.slots.get(position=1).candidate_id))
    page.click("#gold-save")
    page.wait_for_selector("[data-testid=gold-badge]")
    second.refresh_from_db()
    assert second.is_gold and second.gold_answer == {"ball-realism": "b"}

    # 8. Export from the campaign page: the worker writes each file, the session downloads it.
    page.goto(f"/dashboard/campaigns/{campaign.pk}/")
    for fmt, verify in (("jsonl", verify_jsonl), ("parquet", verify_parquet)):
        page.click(f"[data-export-format={fmt}]")
        done = f"[data-export-job][data-status=succeeded]:has-text('{fmt} succeeded') [data-testid=export-download]"
        page.wait_for_selector(done, timeout=60_000)
        assert verify(page.request.get(page.get_attribute(done, "href")).body()) == 8  # one row a judgment
    shot("8-export")
    assert Job.objects.filter(kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED).count() == 2
