"""What the oracle says about reward models and policies (synthetic/oracle_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.stats import wilson_interval

torch = pytest.importorskip("torch")

from synthetic import oracle_metrics  # noqa: E402


def test_oracle_win_rate_counts_wins_per_task_and_ties_as_half():
    base = [0.5, 0.5, 0.5, 0.2, 0.9]
    new = [0.6, 0.4, 0.5, 0.3, 0.8]
    tasks = ["fill", "fill", "fill", "removal", "removal"]
    rates = oracle_metrics.oracle_win_rate(base, new, tasks)
    assert rates == {"fill": pytest.approx((1 + 0 + 0.5) / 3), "removal": pytest.approx(0.5)}


def test_oracle_win_rate_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        oracle_metrics.oracle_win_rate([0.1, 0.2], [0.3], ["fill", "fill"])


def test_win_rate_detail_separates_perceptible_changes_and_clusters_conditions():
    # fill: condition a loses a little on both seeds (invisible), b wins clearly on both.
    base = [0.50, 0.50, 0.40, 0.40, 0.70]
    new = [0.49, 0.49, 0.50, 0.50, 0.70]
    tasks = ["fill", "fill", "fill", "fill", "removal"]
    groups = ["a", "a", "b", "b", "c"]
    detail = oracle_metrics.win_rate_detail(base, new, tasks, groups, threshold=0.03)
    fill = detail["fill"]
    assert fill["n"] == 4 and fill["mean_delta"] == pytest.approx((-0.01 * 2 + 0.1 * 2) / 4)
    assert fill["perceptible_share"] == 0.5 and fill["perceptible_win_rate"] == 1.0
    # Two conditions, one all-loss and one all-win: two independent units, not four, so the
    # interval is the clustered one (t with 1 degree of freedom), far wider than Wilson over 4 items.
    lo, hi = fill["ci95"]
    assert fill["conditions"] == 2 and lo == 0.0 and hi == 1.0
    removal = detail["removal"]
    # One condition: no spread to estimate, so the Wilson interval of its one tie (not a point).
    assert removal["ci95"] == pytest.approx(list(wilson_interval(0.5, 1))) and removal["perceptible_share"] == 0.0
    assert removal["perceptible_win_rate"] is None
    assert "perceptible" in oracle_metrics.describe_win(fill) and "(win" not in oracle_metrics.describe_win(removal)
    # At the tie threshold a's invisible losses are ties: (½ + ½ + 1 + 1) / 4; removal's tie is ½.
    assert fill["win_rate_at_threshold"] == pytest.approx(0.75) and removal["win_rate_at_threshold"] == 0.5
    assert "at the tie threshold 0.75" in oracle_metrics.describe_win(fill)


def test_win_scores_count_changes_within_the_threshold_as_ties():
    deltas = [0.05, 0.01, 0.0, -0.01, -0.05]
    assert oracle_metrics.win_scores(deltas).tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert oracle_metrics.win_scores(deltas, 0.03).tolist() == [1.0, 0.5, 0.5, 0.5, 0.0]
    assert oracle_metrics.win_scores(deltas, 0.01).tolist() == [1.0, 0.5, 0.5, 0.5, 0.0]  # the threshold is a tie


def test_invisible_changes_of_one_sign_win_only_below_the_threshold():
    # 40 conditions × 2 seeds, every change +0.01 (under the 0.03 threshold): the plain win rate is 1
    # with a tight interval, the win rate at the threshold exactly ½, the verdict an annotator would give.
    n = 80
    groups = [str(i // 2) for i in range(n)]
    detail = oracle_metrics.win_rate_detail([0.5] * n, [0.51] * n, ["fill"] * n, groups, threshold=0.03)["fill"]
    assert detail["ci95"][0] > 0.9 and detail["perceptible_share"] == 0.0
    assert detail["win_rate_at_threshold"] == 0.5 and detail["ci95_at_threshold"][0] < 0.5 < detail["ci95_at_threshold"][1]
    # The same changes made perceptible (+0.05) win at the threshold too.
    clear = oracle_metrics.win_rate_detail([0.5] * n, [0.55] * n, ["fill"] * n, groups, threshold=0.03)["fill"]
    assert clear["win_rate_at_threshold"] == 1.0 and clear["ci95_at_threshold"][0] > 0.9


def test_oracle_accuracy_intervals_cluster_pairs_by_condition():
    # 30 conditions × 3 pairs: a condition's pairs all right or all wrong (they share its images).
    judged = [({"condition_id": f"c{i}", "task": "fill", "criterion": "structure"}, float(i < 24))
              for i in range(30) for _ in range(3)]
    lo, hi = oracle_metrics.oracle_accuracy_intervals(judged)["fill"]["structure"]
    w_lo, w_hi = wilson_interval(72, 90)
    assert lo < 0.8 < hi and hi - lo > 1.4 * (w_hi - w_lo)
    # Without condition ids every pair is its own cluster: about the Wilson interval.
    bare = [({"task": "fill", "criterion": "structure"}, c) for _, c in judged]
    b_lo, b_hi = oracle_metrics.oracle_accuracy_intervals(bare)["fill"]["structure"]
    assert b_hi - b_lo == pytest.approx(w_hi - w_lo, rel=0.1)


def test_win_rate_detail_interval_narrows_with_more_conditions():
    rng = np.random.default_rng(1)
    deltas = rng.normal(0.02, 0.05, size=400)
    wide = oracle_metrics.win_rate_detail([0.0] * 20, deltas[:20], ["fill"] * 20, [str(i) for i in range(20)], 0.03)
    narrow = oracle_metrics.win_rate_detail([0.0] * 400, deltas, ["fill"] * 400, [str(i) for i in range(400)], 0.03)
    width = {k: d["fill"]["ci95"][1] - d["fill"]["ci95"][0] for k, d in (("wide", wide), ("narrow", narrow))}
    assert width["narrow"] < width["wide"] / 2
    assert narrow["fill"]["ci95"][0] < float(np.mean(deltas > 0)) < narrow["fill"]["ci95"][1]


class _FixedScorer:
    """Log-odds from a table keyed by the first image's name: the 'model' prefers what the table says."""

    def __init__(self, value_of):
        self.value_of = value_of

    def score_log_odds(self, requests, batch_size=32):
        return torch.tensor([self.value_of[r.first] for r in requests])


def test_oracle_accuracy_by_margin_bins_each_judged_pair():
    # The model ranks "g" (good) above "b" (bad) for structure, and gets aesthetics backwards.
    scorer = _FixedScorer({"g": 1.0, "b": -1.0, "g2": -1.0, "b2": 1.0})
    row = {"task": "fill", "prompt": "a red circle"}
    rows = [{**row, "criterion": "structure", "better": "g", "worse": "b", "margin": 0.05},
            {**row, "criterion": "structure", "better": "g", "worse": "b", "margin": 0.5},
            {**row, "criterion": "aesthetics", "better": "g2", "worse": "b2", "margin": 0.5},
            {**row, "criterion": "aesthetics", "better": "g2", "worse": "b2", "margin": 0.01}]  # a tie: dropped
    judged = oracle_metrics.oracle_judged(scorer, rows, threshold=0.03)
    assert [c for _, c in judged] == [1.0, 1.0, 0.0]
    assert oracle_metrics.oracle_accuracy(scorer, rows) == ({"fill": {"structure": 1.0, "aesthetics": 0.0}},
                                                       {"fill": {"structure": 2, "aesthetics": 1}})
    by_margin = oracle_metrics.oracle_accuracy_by_margin(judged)
    assert by_margin["accuracy"]["fill"]["structure"] == {"0.03-0.06": 1.0, "0.2-1": 1.0}
    assert by_margin["pairs"]["fill"]["aesthetics"] == {"0.2-1": 1}
    assert oracle_metrics.describe_margins(by_margin, "fill", "structure") == "0.03-0.06: 1.00 (1) · 0.2-1: 1.00 (1)"
    assert [oracle_metrics.margin_bin(m) for m in (0.0, 0.03, 0.031, 0.1, 0.7, 3.0)] == [
        "0-0.03", "0-0.03", "0.03-0.06", "0.06-0.1", "0.2-1", "0.2-1"]
