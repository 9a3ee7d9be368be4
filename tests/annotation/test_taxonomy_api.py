"""Task types and criteria as data: create and edit them through the API (annotation.services.taxonomy)."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotation.models import Criterion, Judgment, TaskType
from contracts.vocabulary import BUILTIN
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

NEW_CRITERION = {"slug": "text_legibility", "name": "Text legibility",
                 "description": "quoted words are spelled exactly and easy to read", "uses_prompt": True,
                 "task_types": ["fill"]}


@pytest.fixture
def clients():
    out = {}
    for role in ("annotator", "curator", "scientist"):
        client = APIClient()
        client.force_authenticate(make_user(role, role))
        out[role] = client
    return out


def test_seeded_criteria_carry_the_builtin_descriptions(clients):
    rows = {c["slug"]: c for c in clients["annotator"].get("/api/criteria/").json()}
    for spec in BUILTIN.criteria:
        assert rows[spec.slug]["description"] == spec.description
        assert rows[spec.slug]["task_types"] == list(spec.tasks)
    assert clients["annotator"].get("/api/task-types/removal/").json()["criteria"] == ["removal_quality"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/api/task-types/", {"slug": "relight", "name": "Relighting"}),
    ("patch", "/api/task-types/fill/", {"name": "Fill"}),
    ("post", "/api/criteria/", NEW_CRITERION),
    ("patch", "/api/criteria/structure/", {"name": "Shape"}),
])
@pytest.mark.parametrize("role", ["annotator", "scientist"])
def test_only_curators_change_the_vocabulary(clients, role, method, path, body):
    response = getattr(clients[role], method)(path, body, format="json")
    assert response.status_code == 403, response.content
    assert getattr(clients["curator"], method)(path, body, format="json").status_code in (200, 201)


def test_curator_creates_a_criterion_and_a_task_type_and_edits_them(clients):
    curator = clients["curator"]
    created = curator.post("/api/criteria/", NEW_CRITERION, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["description"] == NEW_CRITERION["description"] and body["task_types"] == ["fill"]
    assert body["uses_prompt"] is True and body["guideline_version"] is None
    assert "text_legibility" in curator.get("/api/task-types/fill/").json()["criteria"]

    task = curator.post("/api/task-types/", {"slug": "relight", "name": "Relighting", "fixed_prompt": "relight",
                                             "criteria": ["text_legibility", "aesthetics"]}, format="json")
    assert task.status_code == 201, task.content
    assert set(task.json()["criteria"]) == {"aesthetics", "text_legibility"}
    assert set(Criterion.objects.get(slug="text_legibility").task_types.values_list("slug", flat=True)) == {
        "fill", "relight"}

    edited = curator.patch("/api/criteria/text_legibility/", {"description": "  letters are crisp  ",
                                                              "task_types": ["relight"]}, format="json")
    assert edited.status_code == 200, edited.content
    assert edited.json()["description"] == "letters are crisp" and edited.json()["task_types"] == ["relight"]
    assert edited.json()["name"] == "Text legibility"  # a PATCH leaves the other fields alone
    renamed = curator.patch("/api/task-types/relight/", {"slug": "relighting", "criteria": []}, format="json")
    assert renamed.status_code == 200 and renamed.json()["slug"] == "relighting" and renamed.json()["criteria"] == []
    published = curator.post("/api/criteria/text_legibility/guidelines/", {"body_markdown": "Read every letter."},
                             format="json")
    assert published.status_code == 201 and published.json()["guideline_version"] == 1


@pytest.mark.parametrize(("path", "body", "field", "message"), [
    ("/api/criteria/", {**NEW_CRITERION, "slug": "Text Legibility"}, "slug", "lowercase"),
    ("/api/criteria/", {**NEW_CRITERION, "slug": "structure"}, "slug", "'structure' is taken"),
    ("/api/criteria/", {**NEW_CRITERION, "task_types": ["fill", "inpaint"]}, "task_types", "No such slug: inpaint"),
    ("/api/criteria/", {**NEW_CRITERION, "task_types": []}, "task_types", "at least 1"),
    ("/api/criteria/", {**NEW_CRITERION, "description": "   "}, "description", "blank"),
    ("/api/criteria/", {k: v for k, v in NEW_CRITERION.items() if k != "name"}, "name", "required"),
    ("/api/task-types/", {"slug": "fill", "name": "Again"}, "slug", "'fill' is taken"),
    ("/api/task-types/", {"slug": "re/light", "name": "Relight"}, "slug", "lowercase"),
    ("/api/task-types/", {"slug": "relight", "name": "Relight", "criteria": ["nope"]}, "criteria", "No such slug"),
])
def test_bad_input_gets_field_messages(clients, path, body, field, message):
    response = clients["curator"].post(path, body, format="json")
    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    assert field in fields and message in " ".join(map(str, fields[field])), fields
    assert not Criterion.objects.filter(slug=body["slug"].lower().replace(" ", "_")).exclude(
        slug__in=[c.slug for c in BUILTIN.criteria]).exists()


def test_patch_errors(clients):
    curator = clients["curator"]
    assert curator.patch("/api/criteria/nope/", {"name": "x"}, format="json").status_code == 404
    blank = curator.patch("/api/criteria/structure/", {"description": ""}, format="json")
    assert blank.status_code == 400 and "description" in blank.json()["fields"]
    taken = curator.patch("/api/criteria/structure/", {"slug": "aesthetics"}, format="json")
    assert taken.status_code == 400 and "taken" in taken.json()["fields"]["slug"][0]


def test_slugs_are_immutable_once_judgments_exist(clients):
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    annotator = APIClient()
    annotator.force_authenticate(make_user("ann-1", "annotator"))
    lease = annotator.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    submitted = annotator.post(f"/api/leases/{lease['lease']}/submit/", {
        "answers": {"structure": lease["candidates"][0]["id"]}, "idempotency_key": "k1"}, format="json")
    assert submitted.status_code in (200, 201), submitted.content
    assert Judgment.objects.filter(criterion__slug="structure").exists()

    curator = clients["curator"]
    for path, body in (("/api/criteria/structure/", {"slug": "shape"}), ("/api/task-types/fill/", {"slug": "inpaint"})):
        response = curator.patch(path, body, format="json")
        assert response.status_code == 409, response.content
        assert response.json()["code"] == "slug_in_use" and "judgments" in response.json()["message"]
    assert Criterion.objects.filter(slug="structure").exists() and TaskType.objects.filter(slug="fill").exists()
    # Wording may still change: snapshots record the wording they were built with.
    assert curator.patch("/api/criteria/structure/", {"name": "Shape"}, format="json").status_code == 200
    # A criterion nobody judged yet may be renamed.
    assert curator.patch("/api/criteria/aesthetics/", {"slug": "beauty"}, format="json").status_code == 200


def test_the_admin_form_asks_for_the_description(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1234"))
    form = {"slug": "sharpness", "name": "Sharpness", "new_guideline": "",
            "guidelines-TOTAL_FORMS": "0", "guidelines-INITIAL_FORMS": "0"}
    missing = client.post("/admin/annotation/criterion/add/", form)
    assert missing.status_code == 200 and not Criterion.objects.filter(slug="sharpness").exists()
    saved = client.post("/admin/annotation/criterion/add/", {**form, "description": "edges are crisp"})
    assert saved.status_code == 302, saved.content[:500]
    assert Criterion.objects.get(slug="sharpness").description == "edges are crisp"


def test_the_admin_keeps_a_judged_slug_fixed(client, django_user_model):
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure"])
    annotator = APIClient()
    annotator.force_authenticate(make_user("ann-2", "annotator"))
    lease = annotator.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json").json()
    annotator.post(f"/api/leases/{lease['lease']}/submit/", {
        "answers": {"structure": lease["candidates"][0]["id"]}, "idempotency_key": "k2"}, format="json")
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1234"))
    judged, fresh = Criterion.objects.get(slug="structure"), Criterion.objects.get(slug="aesthetics")
    form = {"name": "Shape", "description": judged.description, "uses_prompt": "", "new_guideline": "",
            "guidelines-TOTAL_FORMS": "0", "guidelines-INITIAL_FORMS": "0"}
    response = client.post(f"/admin/annotation/criterion/{judged.pk}/change/", {**form, "slug": "shape"})
    assert response.status_code == 302, response.content[:500]
    judged.refresh_from_db()
    assert (judged.slug, judged.name) == ("structure", "Shape")  # the slug field is read-only, the rest saves
    client.post(f"/admin/annotation/criterion/{fresh.pk}/change/",
                {**form, "name": fresh.name, "description": fresh.description, "slug": "beauty"})
    assert Criterion.objects.filter(pk=fresh.pk, slug="beauty").exists()
    task_page = client.get(f"/admin/annotation/tasktype/{campaign.task_type.pk}/change/").content.decode()
    assert 'name="slug"' not in task_page
