"""The recipe comparison's plan and table (research.vlm_recipe); the runs themselves are ADR 0015's."""

from research.vlm_recipe import AUGMENT, SWEEP, WEIGHT_DECAY, format_table, stage_one, stage_two


def test_stage_one_sweeps_three_rates_per_mode_and_stage_two_varies_one_thing_at_the_best():
    plan = stage_one()
    assert len(plan) == 6 and all(len(lrs) == 3 for lrs in SWEEP.values())
    assert sum(o["lora"] for o in plan.values()) == sum(o["full_finetune"] for o in plan.values()) == 3
    best = plan["full-lr0.001"]
    second = stage_two(best)
    assert second == {"full-lr0.001-augment": {**best, **AUGMENT},
                      f"full-lr0.001-wd{WEIGHT_DECAY:g}": {**best, "weight_decay": WEIGHT_DECAY}}


def test_table_puts_each_run_beside_the_baseline_with_intervals():
    cell = {"accuracy": {"fill": {"consistency": 0.75}}, "interval": {"fill": {"consistency": [0.7, 0.8]}},
            "pairs": {"fill": {"consistency": 400}}, "mean": 0.75, "steps": 500, "selected_step": 400}
    stopped = {"name": "lora-lr0.01", "steps": 500, "not_scored": "clearly trails", "val_curve": [[100, 0.55]]}
    table = format_table({"runs": {"lora-lr0.003": cell, "lora-lr0.01": stopped},
                          "baseline": {**cell, "mean": 0.8, "accuracy": {"fill": {"consistency": 0.8}}}})
    assert "| fill | consistency | 400 | 0.75 [0.70, 0.80] | — | 0.80 [0.70, 0.80] |" in table
    assert table.splitlines()[-2] == "| mean | | | 0.750 | not scored | 0.800 |"
    assert table.splitlines()[-1] == "| steps (best val step) | | | 500 (400) | 500 (—) | |"
