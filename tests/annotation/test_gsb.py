"""Side-by-side (GSB) results of A-versus-B campaigns: counts, sides by source, clustered intervals."""
from __future__ import annotations

import pytest

from annotation.models import Candidate
from annotation.selectors import campaign_gsb
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

# Per item (in sample order), what each of the three annotators answers for aesthetics: the
# source that wins, or "tie".
AESTHETICS = [["sys0"] * 3, ["sys0"] * 3, ["sys1"] * 3, ["tie"] * 3]


def versus_campaign(opponents: list[str]):
    """Four samples with one sys0 and one sys1 candidate each, judged by three annotators: sys0
    always wins structure; aesthetics follows AESTHETICS."""
    campaign = make_campaign(n_samples=4, overlap=3, criteria=["structure", "aesthetics"], start=False)
    campaign.selection = {**campaign.selection, "opponents": opponents}
    campaign.save(update_fields=["selection"])
    from annotation.services.campaigns import campaign_start

    campaign = campaign_start(campaign=campaign)
    order = {sid: k for k, sid in enumerate(sorted(campaign.selection["sample_ids"]))}
    for n in range(3):
        user = make_user(f"judge-{n}", "annotator")
        while (lease := lease_next(campaign=campaign, annotator=user)) is not None:
            by_source = {c.source_name: c.pk for c in Candidate.objects.filter(items=lease.item)}
            pick = AESTHETICS[order[lease.item.sample_id]][n]
            judgment_submit(lease_uid=lease.uid, annotator=user, idempotency_key=f"{user.pk}-{lease.pk}",
                            answers={"structure": by_source["sys0"],
                                     "aesthetics": "tie" if pick == "tie" else by_source[pick]})
    return campaign


def test_gsb_counts_per_criterion_with_an_item_clustered_interval():
    gsb = campaign_gsb(versus_campaign(["sys0", "sys1"]))
    assert (gsb["a"], gsb["b"]) == ("sys0", "sys1")
    rows = {r["criterion"]: r for r in gsb["criteria"]}
    structure, aesthetics = rows["structure"], rows["aesthetics"]
    assert (structure["good"], structure["same"], structure["bad"], structure["items"]) == (12, 0, 0, 4)
    assert structure["win_rate"] == 1.0 and structure["verdict"] == "A better"
    assert (aesthetics["good"], aesthetics["same"], aesthetics["bad"]) == (6, 3, 3)
    assert aesthetics["win_rate"] == pytest.approx(0.625) and aesthetics["net"] == pytest.approx(0.25)
    # By hand: item wins 3, 3, 0, 1.5 against 1.875 expected each; residuals² sum 6.1875; se =
    # sqrt(6.1875 / (4·3)) / 3 = 0.2394, times t(3 df) = 3.182: the interval is all of [0, 1].
    # A binomial interval over the 12 judgments would have been ±0.27.
    assert aesthetics["ci95"] == [0.0, 1.0] and aesthetics["verdict"] == "no clear difference"
    # If the win rate held, the interval would exclude ½ at k' = 4 · (1.96 · 0.2394 / 0.125)² = 56.4 items:
    # 53 more. A decided criterion needs none.
    assert aesthetics["items_to_decide"] == 53 and structure["items_to_decide"] == 0
    overall = gsb["overall"]
    assert (overall["good"], overall["same"], overall["bad"], overall["judgments"]) == (18, 3, 3, 24)
    # Per item (6 judgments each) wins 6, 6, 3, 4.5 against 4.875: residuals² 6.1875, se = sqrt(6.1875 / 12) / 6.
    se = (6.1875 / 12) ** 0.5 / 6
    assert overall["win_rate"] == pytest.approx(19.5 / 24)
    assert overall["ci95"] == pytest.approx([19.5 / 24 - 3.182 * se, 1.0], abs=1e-6)
    assert overall["verdict"] == "no clear difference"  # 0.43: four items are too few to tell


def test_gsb_sides_follow_the_candidates_source_not_the_slot():
    # sys1 is A now: the same answers are bad for A.
    gsb = campaign_gsb(versus_campaign(["sys1", "sys0"]))
    structure = next(r for r in gsb["criteria"] if r["criterion"] == "structure")
    assert (structure["good"], structure["bad"], structure["win_rate"], structure["verdict"]) == (0, 12, 0.0, "B better")


def test_gsb_is_none_for_a_campaign_without_opponents_and_empty_before_judgments():
    assert campaign_gsb(make_campaign(n_samples=2)) is None
    campaign = make_campaign(n_samples=2, start=False)
    campaign.selection = {**campaign.selection, "opponents": ["sys0", "sys1"]}
    campaign.save(update_fields=["selection"])
    gsb = campaign_gsb(campaign)
    assert gsb["overall"]["judgments"] == 0 and gsb["overall"]["verdict"] is None
    assert {r["criterion"] for r in gsb["criteria"]} == set(campaign.criteria.values_list("slug", flat=True))


def test_outcomes_can_be_read_from_either_side():
    from annotation.selectors import side_by_side_outcomes

    campaign = versus_campaign(["sys0", "sys1"])
    per_a, overall_a = side_by_side_outcomes(campaign)
    per_b, overall_b = side_by_side_outcomes(campaign, side="sys1")
    assert per_a["structure"] and all(o == [1, 1, 1] for o in per_a["structure"].values())
    assert {k: [-o for o in v] for k, v in overall_a.items()} == overall_b
    with pytest.raises(ValueError, match="not one of"):
        side_by_side_outcomes(campaign, side="sys2")
