"""Dataset snapshots built from real judgments in PostgreSQL (leases + judgment_submit)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from annotation.models import Item, Judgment, Sample
from annotation.services.judgments import judgment_submit
from annotation.services.queue import lease_next
from annotation.services.snapshots import snapshot_create, snapshot_execute, snapshot_preview
from core.errors import ApplicationError
from jobs.models import JobStatus
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db



def annotate(campaign, annotators, answer) -> None:
    """Every annotator works through the campaign; ``answer(k, item_index, slots)`` gives the answers."""
    order = {pk: i for i, pk in enumerate(Item.objects.filter(campaign=campaign).order_by("id")
                                          .values_list("id", flat=True))}
    for k, ann in enumerate(annotators):
        while (lease := lease_next(campaign=campaign, annotator=ann)) is not None:
            slots = list(lease.item.slots.order_by("position").values_list("candidate_id", flat=True))
            judgment_submit(lease_uid=lease.uid, annotator=ann, answers=answer(k, order[lease.item_id], slots),
                            idempotency_key=str(lease.uid))


def build(name="snap", aggregation="majority-v2", **flt):
    snapshot = snapshot_create(name=name, filter=flt, aggregation=aggregation, enqueue=False)
    return snapshot_execute(snapshot.job_id)


def rows_of(snapshot) -> list[dict]:
    return [json.loads(line) for line in (Path(snapshot.path) / "pairs.jsonl").read_text().splitlines()]


@pytest.fixture
def pairwise():
    return pairwise_campaign()


def pairwise_campaign():
    """5 items × 3 annotators on structure + aesthetics; item 4 is later made gold."""
    campaign = make_campaign(n_samples=5, overlap=3, criteria=["structure", "aesthetics"])
    anns = [make_user(f"ann{k}", "annotator") for k in range(3)]

    def answer(k, i, slots):
        a, b = slots
        structure = [a, a, b][k]  # 2:1 for A
        aesthetics = [a, "tie", b][k] if i == 0 else [a, a, "both_bad"][k]  # item 0: 1:1 → tied
        return {"structure": structure, "aesthetics": aesthetics}

    annotate(campaign, anns, answer)
    gold = Item.objects.filter(campaign=campaign).order_by("id").last()
    Item.objects.filter(pk=gold.pk).update(is_gold=True, gold_answer={"structure": "a"})
    return campaign


def test_pairwise_majority_rows_counts_splits_and_ceiling(pairwise):
    snap = build(campaign_ids=[pairwise.pk])
    assert snap.status == JobStatus.SUCCEEDED and snap.job.status == JobStatus.SUCCEEDED
    rows = rows_of(snap)
    by_crit = {c: [r for r in rows if r["criterion"] == c] for c in ("structure", "aesthetics")}
    assert len(by_crit["structure"]) == 4 and len(by_crit["aesthetics"]) == 3
    assert {(r["votes"], r["agreement"]) for r in by_crit["structure"]} == {(2, round(2 / 3, 6))}
    assert {(r["votes"], r["agreement"]) for r in by_crit["aesthetics"]} == {(2, 1.0)}
    c = snap.counts
    assert c["pairs"] == 7 and c["tied_excluded"] == 1 and c["tie_judgments_excluded"] == 1 + 3
    assert c["gold_judgments_excluded"] == 6 and c["judgments"] == 24
    assert c["per_task"] == {"fill": {"aesthetics": 3, "structure": 4}}
    assert sum(c["per_split"].values()) == 7
    # Splits are the sample's, never per pair; the winner is canonical position A.
    for r in rows:
        sample = Sample.objects.get(external_id=r["sample_id"])
        assert r["split"] == sample.split and r["task"] == "fill" and r["prompt"] == sample.prompt
        first = sample.items.get().slots.order_by("position").first().candidate
        assert r["winner"] == f"images/{first.sha256}.png" and r["winner_candidate_id"] == first.pk
        assert (Path(snap.path) / r["winner"]).is_file() and (Path(snap.path) / r["loser"]).is_file()
    assert snap.human_ceiling == {"fill": {"aesthetics": 0.25, "structure": round(1 / 3, 6)}}
    manifest = json.loads((Path(snap.path) / "manifest.json").read_text())
    assert manifest["content_hash"] == snap.content_hash and manifest["format_version"] == 1
    assert manifest["guideline_versions"] == {"aesthetics": [1], "structure": [1]}
    assert Path(snap.path).name == f"{snap.pk}-{snap.content_hash[:12]}"
    assert list(snap.campaigns.values_list("pk", flat=True)) == [pairwise.pk]
    # Parquet holds the same rows; the preview counts what a build would write.
    assert pq.read_table(Path(snap.path) / "pairs.parquet").to_pylist() == rows
    preview = snapshot_preview(filter={"campaign_ids": [pairwise.pk]})
    assert preview["pairs"] == 7 and preview["per_task"]["fill"]["structure"] == 4


def test_content_hash_is_stable_and_identical_data_reuses_the_folder(pairwise):
    first = build("one", campaign_ids=[pairwise.pk])
    second = build("two", campaign_ids=[pairwise.pk])
    assert second.content_hash == first.content_hash and second.path == first.path
    assert second.reused_from_id == first.pk
    only_structure = build("three", campaign_ids=[pairwise.pk], criteria=["structure"])
    assert only_structure.content_hash != first.content_hash and only_structure.counts["pairs"] == 4


def test_loads_with_hf_datasets_offline(pairwise, tmp_path):
    datasets = pytest.importorskip("datasets")
    snap = build(campaign_ids=[pairwise.pk])
    ds = datasets.load_dataset("parquet", data_files=str(Path(snap.path) / "pairs.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == snap.counts["pairs"]
    assert {"pair_id", "split", "task", "criterion", "prompt", "winner", "loser", "votes", "agreement"} <= set(
        ds.column_names)


@pytest.fixture
def best_worst():
    return best_worst_campaign()


def best_worst_campaign():
    """2 items of 4 candidates × 3 annotators on structure; returns the campaign and each item's slots.

    v2 makes 4 pairs of it and v1 only 1 (item 1 ends in a plurality tie), so callers can tell the
    aggregations apart.
    """
    campaign = make_campaign(n_samples=2, overlap=3, mode="best_worst", criteria=["structure"])
    anns = [make_user(f"bw{k}", "annotator") for k in range(3)]

    def answer(k, i, slots):
        c1, c2, c3, c4 = slots
        if i == 0:  # (c1, c4) twice, (c2, c3) once
            return {"structure": [{"best": c1, "worst": c4}, {"best": c1, "worst": c4},
                                  {"best": c2, "worst": c3}][k]}
        return {"structure": [{"best": c1, "worst": c4}, {"best": c2, "worst": c3}, "no_difference"][k]}

    annotate(campaign, anns, answer)
    slots = [list(item.slots.order_by("position").values_list("candidate_id", flat=True))
             for item in Item.objects.filter(campaign=campaign).order_by("id")]
    return campaign, slots


def test_best_worst_v1_keeps_the_plurality_choice_only(best_worst):
    campaign, slots = best_worst
    snap = build(campaign_ids=[campaign.pk], aggregation="majority-v1")
    rows = rows_of(snap)
    # Item 0: c1 > c4 with 2 of 3 votes; item 1: a 1–1 plurality tie, dropped.
    assert len(rows) == 1 and rows[0]["votes"] == 2 and rows[0]["agreement"] == round(2 / 3, 6)
    assert (rows[0]["winner_candidate_id"], rows[0]["loser_candidate_id"]) == (slots[0][0], slots[0][3])
    assert snap.counts["no_difference_excluded"] == 1 and snap.counts["tied_excluded"] == 1
    assert snap.human_ceiling["fill"]["structure"] == round((1 / 3 + 0) / 2, 6)


def test_best_worst_v2_makes_every_judgment_a_best_over_worst_vote(best_worst):
    campaign, slots = best_worst
    snap = build(campaign_ids=[campaign.pk], aggregation="majority-v2")
    got = {(r["winner_candidate_id"], r["loser_candidate_id"]): (r["votes"], r["agreement"]) for r in rows_of(snap)}
    (a1, a2, a3, a4), (b1, b2, b3, b4) = slots
    # Every judgment's (best, worst) is a pair; nobody contradicted another, so each is unanimous.
    assert got == {(a1, a4): (2, 1.0), (a2, a3): (1, 1.0), (b1, b4): (1, 1.0), (b2, b3): (1, 1.0)}
    assert snap.counts["no_difference_excluded"] == 1 and snap.counts["tied_excluded"] == 0
    assert snap.aggregation == "majority-v2" and snap.counts["pairs"] == 4
    # Same ceiling: it is computed from the raw labels, whatever the aggregation.
    assert snap.human_ceiling["fill"]["structure"] == round((1 / 3 + 0) / 2, 6)
    flt = {"campaign_ids": [campaign.pk]}
    assert snapshot_preview(filter=flt, aggregation="majority-v2")["pairs"] == 4
    assert snapshot_preview(filter=flt, aggregation="majority-v1")["pairs"] == 1
    # The default counts the "no difference" answer as a tie vote, which outvotes a lone preference.
    assert snapshot_preview(filter=flt)["pairs"] == snapshot_preview(filter=flt, aggregation="tie-aware-v1")["pairs"] < 4


def test_best_worst_v2_opposite_votes_cancel(best_worst):
    """Two judgments with (x best, y worst) and one with (y best, x worst): x > y, 2 of 3 votes."""
    campaign = make_campaign(n_samples=1, overlap=3, mode="best_worst", criteria=["structure"])
    anns = [make_user(f"cx{k}", "annotator") for k in range(3)]

    def answer(k, i, slots):
        c1, _, _, c4 = slots
        return {"structure": [{"best": c1, "worst": c4}, {"best": c1, "worst": c4}, {"best": c4, "worst": c1}][k]}

    annotate(campaign, anns, answer)
    rows = rows_of(build(campaign_ids=[campaign.pk]))
    assert len(rows) == 1 and rows[0]["votes"] == 2 and rows[0]["agreement"] == round(2 / 3, 6)


def test_aggregations_never_share_a_folder(pairwise):
    """Pairwise-only data gives the same rows under v1 and v2, but each is its own dataset."""
    v1 = build("v1", campaign_ids=[pairwise.pk], aggregation="majority-v1")
    v2 = build("v2", campaign_ids=[pairwise.pk])
    assert [(r["winner"], r["loser"]) for r in rows_of(v1)] == [(r["winner"], r["loser"]) for r in rows_of(v2)]
    assert v1.content_hash != v2.content_hash and v2.reused_from_id is None
    assert json.loads((Path(v2.path) / "manifest.json").read_text())["aggregation"] == "majority-v2"


def test_unknown_aggregation_is_a_field_error():
    with pytest.raises(ApplicationError) as err:
        snapshot_create(name="x", aggregation="mean", enqueue=False)
    assert "aggregation" in err.value.fields
    with pytest.raises(ApplicationError) as err:
        snapshot_preview(filter={}, aggregation="mean")
    assert "aggregation" in err.value.fields


def test_empty_result_fails_the_job_with_a_clear_error(pairwise):
    snap = build(campaign_ids=[pairwise.pk], criteria=["consistency"])
    assert snap.status == JobStatus.FAILED and snap.job.status == JobStatus.FAILED
    assert "no preference pairs match the filter" in snap.error and "no preference pairs" in snap.job.error
    assert not snap.path


@pytest.mark.parametrize(("flt", "field"), [
    ({"campaign_ids": [999999]}, "campaign_ids"),
    ({"criteria": ["nope"]}, "criteria"),
    ({"date_from": "yesterday"}, "date_from"),
    ({"date_from": "2026-02-01", "date_to": "2026-01-01"}, "date_to"),
    ({"colour": "red"}, "filter"),
    ({"min_peer_agreement_ratio": 2.5}, "min_peer_agreement_ratio"),
    ({"min_gold_accuracy": "high"}, "min_gold_accuracy"),
    ({"min_peer_agreement_ratio": 0.5, "quality_min_evidence": 0}, "quality_min_evidence"),
    ({"exclude_annotators": ["ghost"]}, "exclude_annotators"),
    ({"exclude_annotators": "ann0"}, "exclude_annotators"),
])
def test_invalid_filters_are_refused_with_field_errors(flt, field):
    with pytest.raises(ApplicationError) as exc:
        snapshot_create(name="x", filter=flt, enqueue=False)
    assert field in exc.value.fields


# --- annotator quality ------------------------------------------------------------------------------
# In ``pairwise`` ann2 disagrees with everyone on every item, ann0 and ann1 agree with each other on
# 9 of their 10 (item, criterion) units: peer agreement 9/20 for them, 0/20 for ann2. The others
# agree with each other 0 times in 10 for ann0 and ann1 (their peers are each other and ann2), 9 in
# 10 for ann2: ratio 0 for ann2, none for ann0 and ann1 (nothing to compare them with).

def test_peer_agreement_is_measured_per_annotator(pairwise):
    from annotation.selectors import annotator_stats

    stats = {s["annotator"]: s for s in annotator_stats(pairwise)}
    assert {u: (s["peer_compared"], s["peer_agreement"], s["peer_expected"], s["peer_agreement_ratio"])
            for u, s in stats.items()} == {
        "ann0": (20, 0.45, 0.0, None), "ann1": (20, 0.45, 0.0, None), "ann2": (20, 0.0, 0.9, 0.0)}


def test_peer_agreement_ratio_is_fair_across_easy_and_hard_work():
    """Careful people agree less often on hard work (best–worst) than on easy work (an obvious
    pairwise choice): raw agreement would rank every careful best–worst annotator below one who
    answers at random on the easy campaign; the ratio to how often the others agree with each
    other ranks the random one last, and the filter leaves out only them."""
    from annotation.selectors import annotator_stats

    easy = make_campaign(n_samples=10, overlap=4, criteria=["structure"])
    hard = make_campaign(n_samples=9, overlap=3, mode="best_worst", criteria=["structure"])
    annotate(easy, [make_user(u, "annotator") for u in ("p0", "p1", "p2", "random")],
             lambda k, i, slots: {"structure": slots[0] if k < 3 or i % 2 == 0 else slots[1]})

    def best_worst(k, i, slots):
        # On every item one of the three (in turn) sees it differently from the other two.
        c1, c2, c3, c4 = slots
        return {"structure": {"best": c2, "worst": c3} if i % 3 == k else {"best": c1, "worst": c4}}

    annotate(hard, [make_user(u, "annotator") for u in ("b0", "b1", "b2")], best_worst)
    stats = {s["annotator"]: s for s in annotator_stats(judgments=Judgment.objects.all())}
    raw = {u: round(s["peer_agreement"], 3) for u, s in stats.items()}
    ratio = {u: round(s["peer_agreement_ratio"], 3) for u, s in stats.items()}
    assert raw == {"p0": 0.833, "p1": 0.833, "p2": 0.833, "random": 0.5, "b0": 0.333, "b1": 0.333, "b2": 0.333}
    # p*: 25 agreements where the others agree with each other at 20/30; random: 15 where they always do.
    assert ratio == {"p0": 1.25, "p1": 1.25, "p2": 1.25, "random": 0.5, "b0": 1.0, "b1": 1.0, "b2": 1.0}
    preview = snapshot_preview(filter={"campaign_ids": [easy.pk, hard.pk], "min_peer_agreement_ratio": 0.8})
    assert [(e["annotator"], e["reasons"]) for e in preview["excluded_annotators"]] == [
        ("random", ["agreement with peers 0.50× theirs with each other < 0.8"])]


def test_a_quality_filter_leaves_out_the_annotator_who_agrees_with_nobody(pairwise):
    from django.contrib.auth.models import User

    from annotation.selectors import hashed_annotator_id

    snap = build(campaign_ids=[pairwise.pk], min_peer_agreement_ratio=0.3)
    assert snap.status == JobStatus.SUCCEEDED, snap.error
    rows = rows_of(snap)
    # Without ann2's dissent every structure pair is unanimous and item 0's aesthetics is decided.
    assert [(r["votes"], r["agreement"]) for r in rows if r["criterion"] == "structure"] == [(2, 1.0)] * 4
    assert len([r for r in rows if r["criterion"] == "aesthetics"]) == 4
    assert snap.counts["annotators_excluded"] == 1 and snap.counts["judgments_excluded_by_annotator"] == 8
    assert snap.counts["judgments"] == 16
    manifest = json.loads((Path(snap.path) / "manifest.json").read_text())
    ann2 = User.objects.get(username="ann2")
    assert manifest["excluded_annotators"] == [{
        "annotator": hashed_annotator_id(ann2.pk), "reasons": ["agreement with peers 0.00× theirs with each other < 0.3"],
        "judgments": 10, "peer_agreement": 0.0, "peer_agreement_ratio": 0.0, "gold_accuracy": 0.0}]
    assert "ann2" not in json.dumps(manifest)  # pseudonymous, like the exports
    assert snap.human_ceiling["fill"]["structure"] == 1.0  # the remaining two always agree there


def test_too_little_evidence_keeps_an_annotator_and_a_name_always_excludes(pairwise):
    kept = build(name="evidence", campaign_ids=[pairwise.pk], min_peer_agreement_ratio=0.3, quality_min_evidence=21)
    assert "annotators_excluded" not in kept.counts and kept.counts["pairs"] == 7
    preview = snapshot_preview(filter={"campaign_ids": [pairwise.pk], "exclude_annotators": ["ann0"],
                                       "min_gold_accuracy": 0.5, "quality_min_evidence": 1})
    assert [(e["annotator"], e["reasons"]) for e in preview["excluded_annotators"]] == [
        ("ann0", ["excluded by name"]), ("ann2", ["gold accuracy 0.000 < 0.5"])]
    assert preview["annotators_excluded"] == 2 and preview["judgments"] == 8


# --- tie-aware aggregation and soft labels ----------------------------------------------------------

def ties_campaign():
    """Pairwise, 3 annotators: item 0 has 2 "alike" votes (tie, both bad) and 1 flip to A; item 1 a
    clear majority (A, A, tie); item 2 is unanimous (A, A, A)."""
    campaign = make_campaign(n_samples=3, overlap=3, criteria=["structure"])
    anns = [make_user(f"tie{k}", "annotator") for k in range(3)]

    def answer(k, i, slots):
        a, _ = slots
        return {"structure": [["tie", "both_bad", a], [a, a, "tie"], [a, a, a]][i][k]}

    annotate(campaign, anns, answer)
    return campaign


def test_two_ties_outvote_one_flipped_vote_and_a_clear_majority_stays():
    campaign = ties_campaign()
    samples = list(Item.objects.filter(campaign=campaign).order_by("id").values_list("sample__external_id", flat=True))
    v2 = {r["sample_id"]: r for r in rows_of(build("v2", campaign_ids=[campaign.pk]))}
    # majority-v2 leaves the ties out: the one flipped vote becomes a "unanimous" label.
    assert (v2[samples[0]]["votes"], v2[samples[0]]["agreement"], v2[samples[0]]["p_winner"]) == (1, 1.0, 1.0)
    assert v2[samples[1]]["votes_tie"] == 0 and v2[samples[1]]["agreement"] == 1.0

    snap = build("tie-aware", campaign_ids=[campaign.pk], aggregation="tie-aware-v1")
    rows = {r["sample_id"]: r for r in rows_of(snap)}
    assert samples[0] not in rows  # 2 alike votes outvote 1 preference: nothing to learn
    clear = rows[samples[1]]
    assert (clear["votes"], clear["votes_loser"], clear["votes_tie"]) == (2, 0, 1)
    assert clear["agreement"] == round(2 / 3, 6) and clear["p_winner"] == round(2.5 / 3, 6)
    assert (rows[samples[2]]["agreement"], rows[samples[2]]["p_winner"], rows[samples[2]]["votes_tie"]) == (1.0, 1.0, 0)
    c = snap.counts
    assert (c["pairs"], c["tie_votes"], c["tie_outvoted"], c["tie_judgments_excluded"]) == (2, 3, 1, 0)
    # The soft labels are Parquet columns too, and the reward engine's reader takes the rows.
    assert pq.read_table(Path(snap.path) / "pairs.parquet").to_pylist() == rows_of(snap)
    from rewardtrain.engine.data import read_pairs

    assert len(read_pairs(snap.path)) == 2
    preview = snapshot_preview(filter={"campaign_ids": [campaign.pk]}, aggregation="tie-aware-v1")
    assert preview["pairs"] == 2 and preview["tie_outvoted"] == 1


def test_tie_aware_counts_no_difference_as_a_tie_for_every_pair_of_the_item(best_worst):
    campaign, slots = best_worst
    snap = build(campaign_ids=[campaign.pk], aggregation="tie-aware-v1")
    got = {(r["winner_candidate_id"], r["loser_candidate_id"]): (r["votes"], r["votes_tie"], r["agreement"])
           for r in rows_of(snap)}
    (a1, a2, a3, a4), _ = slots
    # Item 1's single (best, worst) votes each meet one "no difference": outvoted; item 0 keeps both.
    assert got == {(a1, a4): (2, 0, 1.0), (a2, a3): (1, 0, 1.0)}
    assert snap.counts["tie_outvoted"] == 2 and snap.counts["tie_votes"] == 1
