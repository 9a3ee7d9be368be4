"""Production and the promotion gate: a checkpoint replaces the production policy only when the
annotators' side-by-side judgments against production say so (or a scientist overrides the gate
with a written reason); the API, the idempotent retry and the refusals."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Campaign, Candidate, Provenance, TaskType
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.imports import candidate_create_from_png
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from core.errors import ApplicationError, Conflict
from jobs.models import JobKind
from jobs.services import job_create
from policytrain import services
from policytrain.models import GenerationJob, PolicyCheckpoint, PolicyRun, Promotion
from policytrain.selectors import PromotionRule, checkpoint_gsb, production_checkpoint, promotion_gate
from policytrain.services import checkpoint_promote
from tests.factories import make_sample, make_user, solid_png
from tests.policytrain.test_policy_runs import make_reward_model

pytestmark = pytest.mark.django_db
RULE = PromotionRule(min_judgments=20)


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
def checkpoint(name: str, tmp_path: Path, tasks: dict[str, float] | None = None) -> PolicyCheckpoint:
    """An RL checkpoint whose run sampled ``tasks`` (default fill only); weights folder present."""
    weights = tmp_path / name
    weights.mkdir()
    rm = make_reward_model(tmp_path / f"rm-{name}" / "final", name=f"rm-{name}")
    run = PolicyRun.objects.create(job=job_create(kind=JobKind.POLICY, name=f"rl {name}", config={}),
                                   reward_model=rm, config={"task_probs": tasks or {"fill": 1.0}},
                                   output_dir=str(tmp_path / f"run-{name}"))
    return PolicyCheckpoint.objects.create(name=name, base_policy="tiny", weights_dir=str(weights), run=run,
                                           reward_model=rm, algorithm=1)


def side_by_side(a: PolicyCheckpoint, b: PolicyCheckpoint | None, *, task: str = "fill", items: int = 12,
                 annotators: int = 2, answer=lambda k, criterion: "a") -> Campaign:
    """A judged generation campaign: ``a``'s outputs (slot A) against ``b``'s (None = the base
    policy), ``items`` samples; every annotator answers ``answer(k, criterion)`` ("a", "b" or "tie")
    on item k. Recorded as the GenerationJob that would have made it."""
    names = [f"policy:{a.name}", f"policy:{b.name}" if b else "base:tiny"]
    samples = []
    for k in range(items):
        sample = make_sample(task, n_candidates=0)
        for side, name in enumerate(names):
            candidate_create_from_png(sample=sample, png=solid_png((side * 120, k, 30)), provenance=Provenance.POLICY,
                                      source_name=name)
        samples.append(sample)
    task_type = TaskType.objects.get(slug=task)
    campaign = campaign_start(campaign=campaign_create(
        name=f"{a.name}-vs-{b.name if b else 'base'}-{task}-{Campaign.objects.count()}", task_type=task_type,
        mode="pairwise", overlap=annotators, selection={"sample_ids": [s.pk for s in samples], "opponents": names}))
    order = {s.pk: k for k, s in enumerate(samples)}
    criteria = list(campaign.criteria.values_list("slug", flat=True))
    for n in range(annotators):
        user = make_user(f"judge-{campaign.pk}-{n}", "annotator")
        while (lease := lease_next(campaign=campaign, annotator=user)) is not None:
            by_source = dict(Candidate.objects.filter(items=lease.item).values_list("source_name", "pk"))
            k = order[lease.item.sample_id]
            answers = {}
            for c in criteria:
                pick = answer(k, c)
                answers[c] = "tie" if pick == "tie" else by_source[names[0] if pick == "a" else names[1]]
            judgment_submit(lease_uid=lease.uid, annotator=user, idempotency_key=f"{user.pk}-{lease.pk}", answers=answers)
    GenerationJob.objects.create(job=job_create(kind=JobKind.GENERATION, name=campaign.name, config={}),
                                 checkpoint=a, opponent=b, campaign=campaign, campaign_name=campaign.name)
    return campaign


def api(username: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user(username, username.split("-")[0]))
    return client


# ----------------------------------------------------------------------------------------------
# The gate
# ----------------------------------------------------------------------------------------------
def test_a_clearly_better_checkpoint_passes_and_is_promoted_once(tmp_path):
    rl = checkpoint("rl-1", tmp_path)
    # Structure always A; the other criteria A on 8 items of 12 and tied on 4.
    side_by_side(rl, None, answer=lambda k, c: "a" if c == "structure" or k < 8 else "tie")
    gate = promotion_gate(rl, RULE)
    assert gate["eligible"] and gate["reasons"] == [] and gate["production"] is None
    assert gate["opponent"] == "base:tiny"
    (fill,) = gate["tasks"]
    assert (fill["task"], fill["required"], fill["judgments"], fill["items"]) == ("fill", True, 96, 12)
    # Structure G 24; the other three criteria G 48 / S 24: (72 + 24 / 2) / 96.
    assert fill["win_rate"] == pytest.approx(84 / 96) and fill["verdict"] == "better" and fill["worse_on"] == []
    assert "Structure" in fill["better_on"]

    sci = api("scientist-1")
    response = sci.post(f"/api/policy/checkpoints/{rl.pk}/promote/", {"reason": "beats the base"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["number"], body["checkpoint"]["id"], body["previous"], body["forced"]) == (1, rl.pk, None, False)
    assert body["evidence"]["tasks"][0]["judgments"] == 96 and body["promoted_by"] == "scientist-1"
    assert production_checkpoint() == rl
    # A retried request changes nothing.
    again = sci.post(f"/api/policy/checkpoints/{rl.pk}/promote/", {}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"] and Promotion.objects.count() == 1
    production = sci.get("/api/policy/production/").json()
    assert production["checkpoint"]["id"] == rl.pk and [p["number"] for p in production["promotions"]] == [1]
    assert promotion_gate(rl, RULE)["reasons"] == ["This checkpoint is already the production policy."]


@pytest.mark.parametrize("case", ["too-few", "criterion-worse", "worse-overall", "not-better", "untested-task"])
def test_the_gate_refuses_with_its_reasons_and_writes_nothing(tmp_path, case):
    tasks = {"fill": 0.5, "extend": 0.5} if case == "untested-task" else None
    rl = checkpoint("rl-1", tmp_path, tasks)
    answer = {
        "too-few": lambda k, c: "a",
        "criterion-worse": lambda k, c: "b" if c == "aesthetics" else "a",
        "worse-overall": lambda k, c: "b",
        "not-better": lambda k, c: "tie",
        "untested-task": lambda k, c: "a",
    }[case]
    side_by_side(rl, None, items=2 if case == "too-few" else 12, answer=answer)
    gate = promotion_gate(rl, RULE)
    expected = {
        "too-few": "fill: 16 side-by-side judgments against base:tiny; the rule needs 20.",
        "criterion-worse": "fill: clearly worse on Aesthetics.",
        "worse-overall": "fill: clearly worse than base:tiny overall (win rate 0.000).",
        "not-better": "Not clearly better overall on any required task.",
        "untested-task": "extend: 0 side-by-side judgments against base:tiny; the rule needs 20.",
    }[case]
    assert not gate["eligible"] and expected in gate["reasons"], gate["reasons"]

    with pytest.raises(Conflict) as refused:
        checkpoint_promote(checkpoint=rl, rule=RULE)
    assert expected in refused.value.fields["checkpoint"] and Promotion.objects.count() == 0


def test_a_criterion_worse_passes_when_the_rule_allows_it_and_all_tasks_can_be_required(tmp_path):
    rl = checkpoint("rl-1", tmp_path, {"fill": 0.5, "removal": 0.5})
    side_by_side(rl, None, answer=lambda k, c: "b" if c == "aesthetics" else "a")
    side_by_side(rl, None, task="removal", answer=lambda k, c: "tie")
    assert promotion_gate(rl, PromotionRule(min_judgments=20, allow_worse_criteria=True))["eligible"]
    strict = promotion_gate(rl, PromotionRule(min_judgments=20, allow_worse_criteria=True, require_better="all"))
    assert strict["reasons"] == ["Not clearly better overall on every required task."]
    assert [t["verdict"] for t in strict["tasks"]] == ["better", "no clear difference"]


def test_evidence_pools_campaigns_and_must_be_against_production(tmp_path):
    first, second = checkpoint("rl-1", tmp_path), checkpoint("rl-2", tmp_path)
    side_by_side(first, None, items=6)
    side_by_side(first, None, items=6)  # two campaigns of 6 items pool into one row of 12
    fill = promotion_gate(first, RULE)["tasks"][0]
    assert (fill["judgments"], fill["items"], len(fill["campaigns"])) == (96, 12, 2)
    checkpoint_promote(checkpoint=first, rule=RULE)

    # rl-2 beat the base, but production is rl-1 now: that campaign is no evidence.
    side_by_side(second, None)
    gate = promotion_gate(second, RULE)
    assert gate["opponent"] == "rl-1" and gate["tasks"][0]["judgments"] == 0 and not gate["eligible"]
    # A campaign with production as A, where annotators prefer B (rl-2): read from rl-2's side.
    side_by_side(first, second, answer=lambda k, c: "b")
    gate = promotion_gate(second, RULE)
    assert gate["eligible"] and gate["tasks"][0]["win_rate"] == 1.0 and gate["tasks"][0]["verdict"] == "better"
    promotion, created = checkpoint_promote(checkpoint=second, rule=RULE)
    assert created and (promotion.number, promotion.previous) == (2, first)


def test_checkpoint_gsb_reads_one_campaign_from_either_side(tmp_path):
    a, b = checkpoint("rl-a", tmp_path), checkpoint("rl-b", tmp_path)
    campaign = side_by_side(a, b, items=4, answer=lambda k, c: "a" if c == "structure" or k < 2 else "b")
    as_a, as_b = checkpoint_gsb(a, [campaign]), checkpoint_gsb(b, [campaign])
    assert (as_a["opponent"], as_b["opponent"]) == ("policy:rl-b", "policy:rl-a")
    assert as_a["win_rate"] + as_b["win_rate"] == pytest.approx(1.0)
    assert as_b["ci95"] == pytest.approx([1 - as_a["ci95"][1], 1 - as_a["ci95"][0]])
    assert as_a["better_on"] == as_b["worse_on"] == ["Structure"]
    assert checkpoint_gsb(checkpoint("rl-c", tmp_path), [campaign]) is None  # not in it


def test_forcing_past_the_gate_needs_a_reason_and_is_recorded(tmp_path):
    rl = checkpoint("rl-1", tmp_path)
    with pytest.raises(ApplicationError) as no_reason:
        checkpoint_promote(checkpoint=rl, force=True, reason="  ")
    assert "reason" in no_reason.value.fields
    promotion, _ = checkpoint_promote(checkpoint=rl, force=True, reason="hotfix: the base crashes on extend")
    assert promotion.forced and promotion.evidence["eligible"] is False
    assert promotion.evidence["reasons"] == ["fill: 0 side-by-side judgments against base:tiny; the rule needs 30."]
    # The database refuses a forced promotion without a reason, and a second promotion with the same number.
    with pytest.raises(IntegrityError), transaction.atomic():
        Promotion.objects.create(number=2, checkpoint=rl, forced=True, reason="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Promotion.objects.create(number=1, checkpoint=rl)


def test_a_promotion_that_loses_the_race_is_refused(tmp_path, monkeypatch):
    rl, other = checkpoint("rl-1", tmp_path), checkpoint("rl-2", tmp_path)
    side_by_side(rl, None)
    real_gate = services.promotion_gate

    def gate_then_someone_else_promotes(ckpt, rule=None):
        gate = real_gate(ckpt, rule)
        Promotion.objects.create(number=1, checkpoint=other, forced=True, reason="elsewhere")
        return gate

    monkeypatch.setattr(services, "promotion_gate", gate_then_someone_else_promotes)
    with pytest.raises(Conflict) as lost:
        checkpoint_promote(checkpoint=rl, rule=RULE)
    assert lost.value.code == "production_changed"
    assert list(Promotion.objects.values_list("checkpoint__name", flat=True)) == ["rl-2"]


def test_a_checkpoint_without_its_weights_cannot_be_promoted(tmp_path):
    rl = checkpoint("rl-1", tmp_path)
    side_by_side(rl, None)
    Path(rl.weights_dir).rmdir()
    with pytest.raises(ApplicationError, match="cannot be served") as missing:
        checkpoint_promote(checkpoint=rl, rule=RULE)
    assert "missing" in missing.value.fields["checkpoint"][0] and not Promotion.objects.exists()


def test_rule_settings_are_validated(settings):
    with pytest.raises(ValueError, match="require_better"):
        PromotionRule(require_better="most")
    with pytest.raises(ValueError, match="min_judgments"):
        PromotionRule(min_judgments=0)
    settings.POLICY_PROMOTION = {"min_judgments": 5, "tasks": ["fill"], "colour": "red"}
    with pytest.raises(ValueError, match="colour"):
        PromotionRule.from_settings()
    settings.POLICY_PROMOTION = {"min_judgments": 5, "tasks": ["fill"]}
    assert PromotionRule.from_settings() == PromotionRule(min_judgments=5, tasks=("fill",))


# ----------------------------------------------------------------------------------------------
# API and pages
# ----------------------------------------------------------------------------------------------
def test_api_roles_and_errors(tmp_path):
    rl = checkpoint("rl-1", tmp_path)
    curator, annotator = api("curator-1"), api("annotator-1")
    gate = curator.get(f"/api/policy/checkpoints/{rl.pk}/promotion/")
    assert gate.status_code == 200 and gate.json()["eligible"] is False
    assert annotator.get(f"/api/policy/checkpoints/{rl.pk}/promotion/").status_code == 403
    assert curator.post(f"/api/policy/checkpoints/{rl.pk}/promote/", {}, format="json").status_code == 403
    sci = api("scientist-1")
    refused = sci.post(f"/api/policy/checkpoints/{rl.pk}/promote/", {}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "promotion_refused"
    assert refused.json()["fields"]["checkpoint"] == ["fill: 0 side-by-side judgments against base:tiny; "
                                                      "the rule needs 30."]
    no_reason = sci.post(f"/api/policy/checkpoints/{rl.pk}/promote/", {"force": True}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["fields"]
    bad_type = sci.post(f"/api/policy/checkpoints/{rl.pk}/promote/", {"force": "perhaps"}, format="json")
    assert bad_type.status_code == 400 and "force" in bad_type.json()["fields"]
    assert sci.post("/api/policy/checkpoints/999999/promote/", {}, format="json").status_code == 404
    assert not Promotion.objects.exists()
    assert sci.get("/api/policy/production/").json() == {"checkpoint": None, "promotions": []}


def test_pages_show_the_gate_production_and_the_opponent_default(tmp_path):
    rl, other = checkpoint("rl-1", tmp_path), checkpoint("rl-2", tmp_path)
    side_by_side(rl, None, answer=lambda k, c: "b" if c == "aesthetics" else "a")
    make_user("sci", "scientist")
    client = Client()
    client.login(username="sci", password="pw-test-1234")
    page = client.get(f"/dashboard/checkpoints/{rl.pk}/").content.decode()
    assert 'id="promotion-gate"' in page and "fill: clearly worse on Aesthetics." in page
    assert 'id="btn-promote" disabled' in page and "the base policy (nothing promoted yet)" in page
    checkpoint_promote(checkpoint=rl, force=True, reason="aesthetics regressions are known and accepted")
    page = client.get(f"/dashboard/checkpoints/{rl.pk}/").content.decode()
    assert 'id="production-badge"' in page and 'id="promote-form"' not in page
    assert "overridden</span>: aesthetics regressions are known and accepted" in page
    registry = client.get("/dashboard/registry/").content.decode()
    assert 'rl-1</a> <span class="badge badge-production">production</span>' in registry
    assert "(gate overridden)" in registry
    generation = client.get("/dashboard/new/generation/").content.decode()
    assert f'<option value="{rl.pk}" selected>#{rl.pk} rl-1 (production)</option>' in generation
    assert f'<option value="{other.pk}" >' in generation
    # A curator sees the gate but no promote button.
    make_user("cur", "curator")
    curator = Client()
    curator.login(username="cur", password="pw-test-1234")
    assert 'id="promote-form"' not in curator.get(f"/dashboard/checkpoints/{other.pk}/").content.decode()
