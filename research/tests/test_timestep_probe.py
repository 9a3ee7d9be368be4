"""The per-k RL diagnostics probe (research/timestep_probe.py): its windows, summaries and table."""

from __future__ import annotations

import json

import pytest

from research import timestep_probe as tp
from synthetic import rl_diagnostics as diag


@pytest.mark.parametrize("steps", [3, 4, 7, 28])
def test_pinned_windows_make_rl_draw_exactly_k(steps):
    torch = pytest.importorskip("torch")
    from policytrain.engine.onestep import sample_grad_step

    windows = tp.pinned_windows(steps)
    assert sorted(windows) == list(range(steps))
    gen = torch.Generator("cpu").manual_seed(0)
    for k, window in windows.items():
        assert {sample_grad_step(gen, steps, tuple(window)) for _ in range(20)} == {k}


def _row(task, cond, crit, better):
    return {"task": task, "condition_id": cond, "criterion": crit, "policy_better": better}


def test_task_summary_pools_criteria_and_clusters_by_condition():
    judged = [(_row("fill", "a", "consistency", False), 1.0), (_row("fill", "a", "structure", True), 0.0),
              (_row("fill", "b", "consistency", False), 1.0), (_row("fill", "c", "structure", False), 0.5)]
    cosines = [{"task": "fill", "condition_id": "a", "criterion": "consistency", "cosine": 0.2},
               {"task": "fill", "condition_id": "a", "criterion": "structure", "cosine": 0.0},
               {"task": "fill", "condition_id": "b", "criterion": "consistency", "cosine": None},
               {"task": "fill", "condition_id": "c", "criterion": "structure", "cosine": -0.1}]
    out = tp.task_summary(judged, cosines)
    fill = out["fill"]
    assert fill["accuracy"] == pytest.approx(2.5 / 4) and fill["pairs"] == 4
    assert fill["x0_better_share"] == pytest.approx(0.25)
    lo, hi = fill["accuracy_ci"]
    assert lo <= fill["accuracy"] <= hi
    # condition a's two criteria average first (0.1), b has none defined, c gives -0.1
    assert fill["cosine"] == pytest.approx(0.0) and fill["cosine_conditions"] == 2
    assert fill["cosine_ci"] == pytest.approx(list(diag.mean_interval([0.1, -0.1])))
    assert out["removal"] == {"accuracy": None, "accuracy_ci": None, "pairs": 0, "x0_better_share": None,
                              "cosine": None, "cosine_ci": None, "cosine_conditions": 0}


def test_recording_captures_each_models_rows_and_restores_the_module():
    judge, cosines = diag.judge_rows, diag.gradient_cosines
    diag.judge_rows = lambda *a, **k: ["judged", a[0]]
    diag.gradient_cosines = lambda *a, **k: ["cos", a[0]]
    try:
        with tp.recording() as calls:
            assert diag.judge_rows("m1") == ["judged", "m1"]
            diag.gradient_cosines("m1")
            diag.judge_rows("m2")
        assert calls == {"judged": [["judged", "m1"], ["judged", "m2"]], "cosines": [["cos", "m1"]]}
        assert diag.judge_rows("x") == ["judged", "x"]  # the module's own function is back
    finally:
        diag.judge_rows, diag.gradient_cosines = judge, cosines


def test_table_lists_every_k_and_task_with_intervals_and_survives_json():
    summary = {"accuracy": 0.4, "accuracy_ci": [0.3, 0.5], "pairs": 12, "x0_better_share": 0.25,
               "cosine": 0.01, "cosine_ci": [-0.01, 0.03], "cosine_conditions": 8}
    empty = {"accuracy": None, "accuracy_ci": None, "pairs": 0, "x0_better_share": None,
             "cosine": None, "cosine_ci": None, "cosine_conditions": 0}
    per_task = {"fill": summary, "extend": summary, "removal": empty}
    windows = {str(k): {"t_range": [k / 2, k / 2], "per_task": {m: per_task for m in tp.MODELS}}
               for k in (0, 1)}
    windows = json.loads(json.dumps(windows))  # the table reads the written JSON as well as the live dict
    lines = tp.table_lines(windows)
    assert len(lines) == 1 + 2 * 3
    assert "trained acc" in lines[0] and "untrained cos" in lines[0]
    assert lines[1].split()[:4] == ["0", "fill", "12", "0.25"]
    assert "0.40 [0.30, 0.50]" in lines[1] and "+0.010 [-0.010, +0.030] (8)" in lines[1]
    assert "n/a" in lines[3] and lines[4].startswith(" 1 fill")


def test_cli_refuses_unknown_options():
    with pytest.raises(SystemExit, match="options: --conditions=N --gradient=N --oracle-port"):
        tp.main(["k", "loop", "quick", "--steps=3"])
    with pytest.raises(SystemExit, match="usage"):
        tp.main(["k", "loop"])


def test_oracle_port_scorer_scores_each_row_with_its_own_criterion():
    torch = pytest.importorskip("torch")
    from synthetic.candidate_fills import _condition_tensors
    from synthetic.loop_config import make_task_sets

    conds = [c for c in make_task_sets("test-port", 2, 0, 64) if c.task == "fill"]
    src, masks = _condition_tensors(conds)
    scorer = tp.OraclePortScorer(conds)
    noisy = (src + 0.2 * torch.rand_like(src) * masks).clamp(0, 1)
    criteria = ["consistency", "aesthetics"]
    same = scorer.differentiable(src, src, "fill", criteria, [c.prompt for c in conds], return_log_odds=True)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2))
    x = noisy.clone().requires_grad_(True)
    values = scorer.differentiable(x, src, "fill", criteria, [c.prompt for c in conds], return_log_odds=True)
    (grad,) = torch.autograd.grad(values.sum(), x)
    assert grad.abs().sum() > 0  # the ports pass a pixel gradient, which the cosine needs


def test_compare_lines_show_each_comparison_per_task():
    detail = {"ci95": [0.55, 0.65], "mean_delta": 0.0001, "perceptible_share": 0.005}
    result = {"pairs": {"b vs a": {"win_rate": {"fill": 0.6}, "detail": {"fill": detail}}}}
    assert tp.compare_lines(result) == ["b vs a                       fill     0.600 [0.55, 0.65] "
                                        "Δ +0.0001, 0.5 % perceptible"]
