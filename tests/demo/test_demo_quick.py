"""`manage.py demo --quick` end to end: real services, real HTTP API, real jobs (about 2–3 minutes
once the pre-trained base policy is cached under var/artifacts/demo-cache; the first run on a
machine also pre-trains it, a few minutes more)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASKS = ("fill", "extend", "removal")


def _unit_values(nested: dict) -> list[float]:
    return [v for crits in nested.values() for v in crits.values()]


def test_demo_quick_runs_the_loop_through_the_platform(tmp_path):
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    from annotation.models import Campaign, CampaignStatus, Judgment, Lease, LeaseState
    from jobs.models import Job, JobKind, JobStatus
    from policytrain.models import GenerationJob

    report_path = tmp_path / "report.json"
    cache = Path(settings.BASE_DIR) / "var" / "artifacts" / "demo-cache"  # shared with `make demo`
    out = io.StringIO()
    call_command("demo", "--quick", "--report", str(report_path), "--cache-dir", str(cache), stdout=out)
    report = json.loads(report_path.read_text())
    text = out.getvalue()
    assert "[9/10 generation] done" in text and "[10/10 side_by_side] done" in text
    assert "Reward model (held-out)" in text and "Side by side:" in text

    # Shape: every key, every figure in [0, 1].
    rm, pol, ann = report["reward_model"], report["policy"], report["annotations"]
    for key in ("accuracy", "oracle_accuracy", "human_ceiling", "on_policy_oracle_accuracy"):
        assert set(rm[key]) <= set(TASKS) and rm[key], key
        values = _unit_values(rm[key])
        assert values and all(0.0 <= v <= 1.0 for v in values), (key, rm[key])
    for algorithm in ("algorithm_1", "algorithm_2"):
        assert set(pol["oracle_win_rate_vs_base"][algorithm]) == set(TASKS)
        assert all(0.0 <= v <= 1.0 for v in pol["oracle_win_rate_vs_base"][algorithm].values())
    assert set(pol["control_win_rate_vs_base"]) == set(TASKS)
    assert all(0.0 <= v <= 1.0 for v in pol["control_win_rate_vs_base"].values())
    # What stands behind each win rate: an interval around it and the share of visible changes.
    for name in ("algorithm_1", "algorithm_2", "control"):
        rates = {**pol["oracle_win_rate_vs_base"], "control": pol["control_win_rate_vs_base"]}[name]
        for task, d in pol["win_rate_detail"][name].items():
            assert d["ci95"][0] <= rates[task] <= d["ci95"][1] and 0.0 <= d["perceptible_share"] <= 1.0, (name, d)
            at = {**pol["oracle_win_rate_at_threshold"], "control": pol["control_win_rate_at_threshold"]}[name][task]
            ci = {**pol["oracle_win_rate_at_threshold_ci"], "control": pol["control_win_rate_at_threshold_ci"]}[name][task]
            assert at == d["win_rate_at_threshold"] and ci[0] <= at <= ci[1], (name, task)
    by_margin = rm["oracle_accuracy_by_margin"]
    # Every judged pair lands in exactly one margin bin.
    assert sum(n for bins in _unit_values(by_margin["pairs"]) for n in bins.values()) == sum(
        _unit_values(rm["oracle_pairs"]))
    assert "Behind each win rate" in text and "by oracle margin" in text
    # On-policy pairs (two of the base's own fills per held-out sample) were scored and printed.
    assert sum(_unit_values(rm["on_policy_pairs"])) > 0 and "on-policy" in text
    # RL's own pairs (the base's one-step x0 vs its reference): oracle accuracy with an interval per
    # task × criterion, and the gradient cosine with its t interval, for the model and the control.
    assert set(rm["one_step_conditions"]) == set(TASKS) and min(rm["one_step_conditions"].values()) >= 48
    for model in (rm, rm["control"]):
        for task, crits in model["one_step_oracle_accuracy"].items():
            for crit, acc in crits.items():
                lo, hi = model["one_step_oracle_accuracy_ci"][task][crit]
                assert 0.0 <= lo <= acc <= hi <= 1.0 and model["one_step_pairs"][task][crit] > 0, (task, crit)
        cosines = [(t, c, v) for t, crits in model["gradient_cosine"].items() for c, v in crits.items() if v is not None]
        assert {t for t, _, _ in cosines} == set(TASKS), model["gradient_cosine"]
        for task, crit, value in cosines:
            assert -1.0 <= value <= 1.0 and model["gradient_cosine_conditions"][task][crit] >= 1, (task, crit)
            bounds = model["gradient_cosine_ci"][task][crit]
            assert bounds is None or bounds[0] <= value <= bounds[1], (task, crit, bounds)
    # Its cost is reported (a figure for the docs, not a timed assertion: CPU time moves with the machine).
    assert rm["rl_diagnostics_cpu_s"] > 0 and "Reward model on RL's pairs" in text
    for stage in ("seed", "base_policy", "candidates", "annotate", "snapshot", "reward_model", "rl_algorithm_1",
                  "rl_algorithm_2", "rl_control", "evaluate", "generation", "side_by_side", "rl_diagnostics", "total"):
        assert report["timings"][stage] >= 0, stage

    # Judgments were made over HTTP (token logins, leases, idempotency keys) by >= 3 annotators.
    campaigns = Campaign.objects.filter(pk__in=report["lineage"]["campaigns"])
    assert {c.mode for c in campaigns} == {"pairwise", "best_worst"}
    judgments = Judgment.objects.filter(item__campaign__in=campaigns)
    assert ann["judgments"] == judgments.count() > 0
    annotators = set(judgments.values_list("annotator__username", flat=True))
    assert len(annotators) >= 3 and ann["annotators"] == len(annotators)
    assert all(name.startswith("sim-annotator-") for name in annotators)
    assert Token.objects.filter(user__in=User.objects.filter(username__in=annotators)).count() == len(annotators)
    assert not judgments.filter(idempotency_key="").exists()
    assert Lease.objects.filter(item__campaign__in=campaigns, state=LeaseState.SUBMITTED).count() == ann["items_submitted"]

    # Every stage ran as a job, and every job succeeded (so the dashboard shows the whole loop).
    lineage = report["lineage"]
    jobs = Job.objects.filter(pk__in=[lineage["snapshot"]["job"], lineage["reward_model"]["job"],
                                      lineage["control_reward_model"]["job"],
                                      *(r["job"] for r in lineage["policy_runs"].values()),
                                      *(g["job"] for g in lineage["generation"])])
    kinds = sorted(jobs.values_list("kind", flat=True))
    assert kinds.count(JobKind.SNAPSHOT) == 1 and kinds.count(JobKind.REWARD) == 2
    assert kinds.count(JobKind.POLICY) == 3 and kinds.count(JobKind.GENERATION) >= 1
    assert set(jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert Job.objects.exclude(status=JobStatus.SUCCEEDED).count() == 0

    # The loop closes: the generation job made a new, started campaign of best checkpoint vs base.
    for g in lineage["generation"]:
        gen = GenerationJob.objects.get(pk=g["id"])
        new = Campaign.objects.get(pk=gen.campaign_id)
        assert new.status == CampaignStatus.ACTIVE and new.started_at is not None and new.items.exists()
        assert new.source_ref == f"generation-job:{gen.pk}" and new.pk not in lineage["campaigns"]

    # ... and the same annotators judged it over HTTP: the platform's GSB of the checkpoint vs base,
    # whose counts are the campaign's judgments, beside the oracle's win rate on the same items.
    gsb = pol["annotator_gsb_vs_base"]
    assert set(gsb) == {GenerationJob.objects.get(pk=g["id"]).campaign.task_type.slug for g in lineage["generation"]}
    for task, g in gsb.items():
        stored = Judgment.objects.filter(item__campaign_id=g["campaign"])
        overall = g["overall"]
        assert overall["good"] + overall["same"] + overall["bad"] == overall["judgments"] == stored.count() > 0, task
        assert sum(r["judgments"] for r in g["criteria"].values()) == overall["judgments"]
        assert overall["ci95"][0] <= overall["win_rate"] <= overall["ci95"][1] and 0.0 <= g["oracle_win_rate"] <= 1.0
        assert 0.0 <= g["oracle_win_rate_at_threshold"] <= 1.0  # sub-threshold differences count ½ (ADR 0020)
        assert g["a"].startswith("policy:") and g["b"].startswith("base:"), (g["a"], g["b"])
    assert pol["gsb_judgments"] == sum(g["overall"]["judgments"] for g in gsb.values())
    # The promotion gate read the same judgments (the campaigns are against the base, and nothing
    # was in production) and promoted the checkpoint only if it let it.
    from policytrain.models import Promotion

    promotion = pol["promotion"]
    assert promotion["checkpoint"] == lineage["policy_runs"][pol["best"]]["checkpoint"]
    ours = {"A better": "better", "B better": "worse", "no clear difference": "no clear difference"}
    for task, g in gsb.items():
        assert promotion["tasks"][task]["judgments"] == g["overall"]["judgments"], task
        assert promotion["tasks"][task]["verdict"] == ours[g["overall"]["verdict"]], task
    worse = [t for t, row in promotion["tasks"].items() if row["verdict"] == "worse" or row["worse_on"]]
    assert promotion["eligible"] == (not promotion["reasons"]) and (not worse or not promotion["eligible"])
    promoted = list(Promotion.objects.values_list("checkpoint_id", flat=True))
    assert promoted == ([promotion["checkpoint"]] if promotion["eligible"] else []), promotion
    assert "Promotion gate: " in text
    # The reward model was evaluated, as a job, on a snapshot of exactly those judgments.
    from rewardtrain.models import RewardEvaluation

    evaluation = RewardEvaluation.objects.get(pk=lineage["reward_evaluation"])
    assert evaluation.snapshot_id == lineage["side_by_side_snapshot"] and evaluation.job.status == JobStatus.SUCCEEDED
    assert set(evaluation.snapshot.campaigns.values_list("pk", flat=True)) == {g["campaign"] for g in gsb.values()}
    assert evaluation.reward_model_id == lineage["reward_model"]["id"] and evaluation.split == "all"
    on_rl = _unit_values(rm["on_checkpoint_label_accuracy"])
    assert on_rl and all(0.0 <= v <= 1.0 for v in on_rl) and "on RL" in text
    assert sum(_unit_values(rm["on_checkpoint_label_pairs"])) == evaluation.report["pairs"]

    # "Moved in the right direction", the check that holds at quick size: the labels the simulated
    # annotators produced over HTTP carry the oracle's signal (well above chance), and the held-out
    # labels' noise ceiling is above chance too. The RM and RL figures are reported but not asserted:
    # at this size they are at chance level (a few held-out test pairs per criterion).
    assert ann["label_oracle_agreement"] > 0.55, ann
    # The report's annotator quality is the platform's own (annotator_stats over those judgments).
    # How well it singles out the careless annotator is reported, not asserted: at quick size the
    # candidates are so close that careful annotators agree with each other only about half the
    # time, so one careless annotator's rank is noise (CI saw a separation of 0.82, a local run 1.00).
    # tests/annotation/test_snapshots.py asserts the separation on controlled judgments.
    from annotation.selectors import annotator_stats

    quality = ann["quality"]
    assert len(quality["careless_annotators"]) == ann["careless"] >= 1
    stats = {s["annotator"]: s for s in annotator_stats(judgments=Judgment.objects.filter(item__campaign__in=campaigns))}
    for key in ("peer_agreement", "peer_agreement_ratio"):
        assert quality[key] == {u: round(s[key], 4) for u, s in stats.items() if s[key] is not None}, key
    assert set(stats) == set(ann["per_annotator"])
    assert 0.0 <= quality["peer_agreement_ratio_separation"] <= 1.0, quality
    assert "Annotator quality: careless annotators agree with their peers" in text
    ceiling = _unit_values(rm["human_ceiling"])
    assert sum(ceiling) / len(ceiling) > 0.55, rm["human_ceiling"]
