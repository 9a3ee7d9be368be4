"""The distillation check (research/distill.py): the baseline's scorer adapter, the pooled
accuracy, the go/no-go rule and the tables."""

from __future__ import annotations

import pytest

from research import distill


def _judged(task, cond, crit, correct):
    return ({"task": task, "condition_id": cond, "criterion": crit}, correct)


def test_pooled_accuracy_pools_criteria_and_clusters_by_condition():
    judged = [_judged("fill", "a", "consistency", 1.0), _judged("fill", "a", "structure", 0.0),
              _judged("fill", "b", "consistency", 1.0), _judged("fill", "c", "structure", 0.5),
              _judged("extend", "d", "structure", 1.0)]
    out = distill.pooled_accuracy(judged)
    assert out["fill"]["accuracy"] == pytest.approx(2.5 / 4) and out["fill"]["pairs"] == 4
    lo, hi = out["fill"]["accuracy_ci"]
    assert 0.0 <= lo <= 2.5 / 4 <= hi <= 1.0
    assert out["extend"]["pairs"] == 1
    assert out["removal"] == {"accuracy": None, "accuracy_ci": None, "pairs": 0}


def test_go_needs_a_lower_bound_above_half_on_two_tasks():
    cell = {"fill": {"accuracy_ci": [0.51, 0.6]}, "extend": {"accuracy_ci": [0.5, 0.7]},
            "removal": {"accuracy_ci": None}}
    assert distill.above_chance_tasks(cell) == ["fill"]  # 0.5 itself is not above chance
    assert not distill.distillation_can_help(cell)
    cell["extend"]["accuracy_ci"] = [0.52, 0.7]
    assert distill.above_chance_tasks(cell) == ["fill", "extend"]
    assert distill.distillation_can_help(cell)
    assert not distill.distillation_can_help(cell, min_tasks=3)


def _summary(acc, ci, pairs=10, share=0.4, cosine=0.01, cosine_ci=(-0.02, 0.04), n=8):
    return {"accuracy": acc, "accuracy_ci": list(ci) if ci else None, "pairs": pairs, "x0_better_share": share,
            "cosine": cosine, "cosine_ci": list(cosine_ci) if cosine_ci else None, "cosine_conditions": n}


def test_tables_have_one_row_per_task_and_every_interval():
    per_task = {m: {t: _summary(0.55, (0.45, 0.65)) for t in ("fill", "extend", "removal")}
                for m in ("baseline", "trained")}
    per_task["trained"]["removal"] = _summary(None, None, cosine=None, cosine_ci=None, n=0)
    lines = distill.one_step_table(per_task, ("baseline", "trained"))
    assert len(lines) == 2 + 3
    assert lines[0].startswith("| task | pairs | x0 better | baseline learner acc | VLM (loop) acc |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| fill | 10 | 0.40 | 0.55 [0.45, 0.65] | 0.55 [0.45, 0.65] | +0.010 [-0.020, +0.040] (8) |" in lines[2]
    assert lines[4] == "| removal | 10 | 0.40 | 0.55 [0.45, 0.65] | n/a | +0.010 [-0.020, +0.040] (8) | n/a (0) |"
    short = distill.one_step_table(per_task, ("baseline",), cosines=False)
    assert short[2] == "| fill | 10 | 0.40 | 0.55 [0.45, 0.65] |"
    held = distill.heldout_table(per_task, ("baseline", "trained"))
    assert held[2] == "| fill | 10 | 0.55 [0.45, 0.65] | 0.55 [0.45, 0.65] |"


def test_baseline_scorer_is_the_networks_log_odds_and_sends_a_pixel_gradient():
    torch = pytest.importorskip("torch")
    from rewardtrain.engine.baseline import SiameseBaseline

    torch.manual_seed(0)
    conditions = [["fill", "consistency"], ["fill", "structure"], ["removal", "removal_quality"]]
    net = SiameseBaseline(len(conditions), channels=4, embed_dim=4)
    scorer = distill.BaselineScorer(net, conditions, image_size=16)
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    out = scorer.differentiable(a, b, "fill", ["structure", "consistency"], ["p", "q"], return_log_odds=True)
    with torch.no_grad():
        expected = net(a, b, torch.tensor([1, 0]))
    assert torch.allclose(out, expected)
    # order symmetry is the network's: swapping the images negates the log-odds
    swapped = scorer.differentiable(b, a, "fill", ["structure", "consistency"], return_log_odds=True)
    assert torch.allclose(swapped, -out, atol=1e-6)
    assert torch.allclose(scorer.differentiable(a, b, "fill", "structure"),
                          torch.sigmoid(scorer.differentiable(a, b, "fill", "structure", return_log_odds=True)))
    # a larger image is resized to the learner's square, and the gradient reaches its pixels
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(scorer.differentiable(x, torch.rand(1, 3, 32, 32), "removal",
                                                        ["removal_quality"], return_log_odds=True).sum(), x)
    assert grad.shape == x.shape and float(grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="extend:structure"):
        scorer.differentiable(a, b, "extend", "structure")


def test_judge_pairs_counts_the_oracle_better_side_and_skips_ties_and_unknown_cells():
    pytest.importorskip("torch")
    from PIL import Image

    class Fixed(distill.BaselineScorer):
        """Prefers the brighter first image: log-odds = mean(first) - mean(second)."""

        def __init__(self):
            self.index = {("fill", "consistency"): 0}

        def differentiable(self, first, second, task, criterion, prompt=None, return_log_odds=False):
            return first.mean(dim=(1, 2, 3)) - second.mean(dim=(1, 2, 3))

    light, dark = Image.new("RGB", (4, 4), (200, 200, 200)), Image.new("RGB", (4, 4), (20, 20, 20))
    rows = [{"task": "fill", "criterion": "consistency", "better": light, "worse": dark, "margin": 0.2},
            {"task": "fill", "criterion": "consistency", "better": dark, "worse": light, "margin": 0.2},
            {"task": "fill", "criterion": "consistency", "better": light, "worse": light, "margin": 0.2},
            {"task": "fill", "criterion": "consistency", "better": light, "worse": dark, "margin": 0.01},
            {"task": "fill", "criterion": "structure", "better": light, "worse": dark, "margin": 0.2}]
    judged = Fixed().judge_pairs(rows, threshold=0.03)
    assert [c for _, c in judged] == [1.0, 0.0, 0.5]


def test_pooled_records_keep_draws_apart_and_refuse_a_draw_twice():
    def report(draw, correct):
        row = {"task": "fill", "condition_id": "c1", "criterion": "structure", "policy_better": True}
        return {"draw": draw, "one_step_records": {"baseline": {
            "judged": [[row, correct]],
            "cosines": [{"task": "fill", "condition_id": "c1", "criterion": "structure", "cosine": 0.1}]}}}

    out = distill.pooled_records([report(0, 1.0), report(1, 0.0)])
    ids = [r["condition_id"] for r, _ in out["baseline"]["judged"]]
    assert ids == ["d0:c1", "d1:c1"]  # the same name in two draws is two conditions
    assert [c for _, c in out["baseline"]["judged"]] == [1.0, 0.0]
    assert [r["condition_id"] for r in out["baseline"]["cosines"]] == ["d0:c1", "d1:c1"]
    with pytest.raises(ValueError, match="repeat"):
        distill.pooled_records([report(0, 1.0), report(0, 1.0)])


def test_main_passes_the_snapshot_vlm_and_tag_flags(monkeypatch):
    seen = {}
    monkeypatch.setattr(distill, "check", lambda *a, **k: seen.update(args=a, **k))
    distill.main(["check", "loop", "quick", "--draw=1", "--snapshot=snap", "--vlm=rm/final", "--tag=onestep",
                  "--baseline-seed=1"])
    assert seen["args"] == ("loop", "quick", None)
    assert (seen["draw"], seen["snapshot"], seen["vlm"], seen["tag"], seen["baseline_seed"]) == (
        1, "snap", "rm/final", "onestep", 1)
    distill.main(["check", "loop", "quick"])
    assert (seen["snapshot"], seen["vlm"], seen["tag"], seen["baseline_seed"]) == (None, None, "", 0)
    with pytest.raises(SystemExit):
        distill.main(["check", "loop", "quick", "--snapshots=x"])
