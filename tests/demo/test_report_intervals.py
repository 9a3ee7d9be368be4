"""The demo report's intervals and held-out sizes (demo/services.py), without running the demo."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from demo import services
from synthetic import loop_config
from synthetic.oracle_metrics import win_rate_detail


def test_full_size_measures_on_the_issue_sizes_and_a_config_can_change_them(monkeypatch):
    full = services.demo_config("full")["platform"]
    assert full["rm_conditions_per_task"] >= 200 and full["rl_conditions_per_task"] >= 200
    quick = services.demo_config("quick")["platform"]
    assert quick["rm_conditions_per_task"] is None and quick["rl_conditions_per_task"] is None

    real = loop_config.load_demo_config

    def with_eval(size):
        cfg = real(size)
        cfg["eval"] = {**cfg["eval"], "rl_conditions_per_task": 7}
        return cfg

    monkeypatch.setattr(loop_config, "load_demo_config", with_eval)
    assert services.demo_config("full")["platform"]["rl_conditions_per_task"] == 7


def test_per_task_heldout_sets_are_balanced_and_disjoint_from_the_others():
    sets = loop_config.make_condition_sets({"train": 30, "heldout": 30}, seed=0, size=64)
    rl = loop_config.make_task_sets("rl-eval", 6, seed=0, size=64)
    rm = loop_config.make_task_sets("rm-eval", 6, seed=0, size=64)
    assert [c.task for c in rl].count("fill") == [c.task for c in rl].count("removal") == 6
    ids = [{c.id for c in s} for s in (sets["train"], sets["heldout"], rl, rm)]
    assert sum(len(s) for s in ids) == len(set().union(*ids))  # no condition in two sets


def test_policy_win_rate_intervals_have_the_report_layout():
    base, new = [0.5] * 12, [0.6] * 8 + [0.4] * 4
    detail = win_rate_detail(base, new, ["fill"] * 6 + ["removal"] * 6, [str(i // 2) for i in range(12)], 0.03)
    ci = services.win_rate_column(detail, "ci95")
    assert set(ci) == {"fill", "removal"}
    for lo, hi in ci.values():
        assert 0.0 <= lo <= hi <= 1.0
    assert ci["fill"][0] > 0.5 > ci["removal"][0]  # fill: 6 of 6 items won, removal: 2 of 6


def test_label_accuracy_intervals_from_counts():
    table = services._wilson_table({"fill": {"structure": 0.75, "consistency": None}}, {"fill": {"structure": 40}})
    lo, hi = table["fill"]["structure"]
    assert lo < 0.75 < hi and hi - lo == pytest.approx(0.26, abs=0.02)
    assert table["fill"]["consistency"] is None


def test_baseline_oracle_accuracy_on_the_reward_models_pairs(tmp_path):
    """A baseline model folder scores the same held-out rows as the reward models, with
    accuracy, pair counts and an interval per task × criterion."""
    import torch
    from safetensors.torch import save_file

    from rewardtrain.engine.baseline import CARD_NAME, KIND, WEIGHTS_NAME, SiameseBaseline
    from rewardtrain.engine.baseline_config import BaselineConfig

    torch.manual_seed(0)
    config = BaselineConfig(image_size=32, channels=4, embed_dim=4)
    model = SiameseBaseline(2, channels=4, embed_dim=4)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / WEIGHTS_NAME))
    (tmp_path / CARD_NAME).write_text(json.dumps({"kind": KIND, "config": config.to_dict(),
                                                  "conditions": [["fill", "structure"], ["removal", "removal_quality"]]}))
    rng = np.random.default_rng(0)

    def img():
        return Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8))

    rows = [{"condition_id": f"c{i // 3}", "task": task, "criterion": crit, "prompt": "", "better": img(),
             "worse": img(), "margin": margin}
            for i in range(30) for task, crit, margin in (("fill", "structure", 0.2), ("removal", "removal_quality", 0.01),
                                                         ("extend", "aesthetics", 0.3))]
    out = services.baseline_oracle_accuracy(str(tmp_path), rows, threshold=0.03)
    # Only cells the learner was trained on, only pairs above the oracle tie threshold.
    assert out["pairs"] == {"fill": {"structure": 30}}
    acc = out["accuracy"]["fill"]["structure"]
    lo, hi = out["interval"]["fill"]["structure"]
    assert 0.0 <= lo <= acc <= hi <= 1.0 and hi - lo > 0.2  # 30 pairs in 10 conditions: a wide interval


@pytest.mark.django_db
def test_the_demo_trains_the_baseline_through_the_service_and_scores_the_oracle_pairs():
    """``baseline_now`` starts and runs the baseline job as the dashboard's button does; its model
    folder then scores held-out candidate pairs against the oracle."""
    from jobs.models import JobKind, JobStatus
    from tests.rewardtrain.test_runs import reward_snapshot

    lines: list[str] = []
    tiny = {"image_size": 16, "channels": 4, "embed_dim": 4, "max_steps": 8, "batch_size": 4, "eval_every": 4}
    run = services.baseline_now(reward_snapshot(), overrides=tiny, user=None, progress=lines.append)
    assert run.job.kind == JobKind.BASELINE and run.job.status == JobStatus.SUCCEEDED
    assert run.report["counts"] == {"fill": {"structure": 1}} and "baseline learner" in lines[0]
    rng = np.random.default_rng(1)
    rows = [{"condition_id": f"c{i}", "task": "fill", "criterion": "structure", "prompt": "",
             "better": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)),
             "worse": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), "margin": 0.5}
            for i in range(12)]
    out = services.baseline_oracle_accuracy(run.output_dir, rows, threshold=0.03)
    assert out["pairs"] == {"fill": {"structure": 12}} and 0.0 <= out["accuracy"]["fill"]["structure"] <= 1.0


def _rl_diagnostics() -> dict:
    """The RL diagnostics' report keys (synthetic.rl_diagnostics), for one cell."""
    model = {"one_step_oracle_accuracy": {"fill": {"structure": 0.58}},
             "one_step_oracle_accuracy_ci": {"fill": {"structure": [0.51, 0.65]}},
             "one_step_oracle_accuracy_mean": {"fill": 0.58}, "one_step_pairs": {"fill": {"structure": 180}},
             "one_step_policy_better_share": {"fill": {"structure": 0.1}},
             "gradient_cosine": {"fill": {"structure": 0.031}}, "gradient_cosine_ci": {"fill": {"structure": [0.012, 0.05]}},
             "gradient_cosine_mean": {"fill": 0.031}, "gradient_cosine_conditions": {"fill": {"structure": 48}},
             "gradient_cosine_undefined": {"fill": {"structure": 2}}}
    return {**model, "one_step_conditions": {"fill": 200}, "rl_diagnostics_cpu_s": 40.0,
            "gradient_cosine_estimator": {"directions": 8, "step_levels": 1.0, "interval": "t over conditions"}}


def _report() -> dict:
    """The smallest report ``format_summary`` reads, with the interval keys."""
    cell = {"fill": {"structure": 0.7}}
    ci = {"fill": {"structure": [0.61, 0.78]}}
    wins = {"fill": 0.62, "extend": 0.5, "removal": 0.55}
    wci = {"fill": [0.55, 0.69], "extend": [0.44, 0.56], "removal": [0.47, 0.63]}
    detail = {t: {"n": 10, "conditions": 5, "mean_delta": 0.01, "ci95": wci[t], "perceptible_share": 0.2,
                  "perceptible_win_rate": 0.6} for t in wins}
    gsb = {"overall": {"judgments": 0}}
    at = {"fill": 0.53, "extend": 0.5, "removal": None}  # removal: a report can lack a task's figure
    atci = {"fill": [0.47, 0.59], "extend": [0.42, 0.58], "removal": None}
    return {
        "tag": "t", "timings": {"total": 1.0},
        "reward_model": {"accuracy": cell, "label_pairs": {"fill": {"structure": 40}}, "human_ceiling": cell,
                         "oracle_accuracy": cell, "oracle_accuracy_ci": ci, "oracle_pairs": {"fill": {"structure": 400}},
                         "oracle_pairs_source": "200 unannotated held-out conditions per task",
                         "baseline_oracle_accuracy": {"fill": {"structure": 0.66}}, "control": {"oracle_accuracy": cell},
                         "on_policy_oracle_accuracy": cell, "on_policy_pairs": {}, "on_checkpoint_label_accuracy": {},
                         "on_checkpoint_label_pairs": {}, "oracle_accuracy_by_margin": {"accuracy": {}, "pairs": {}},
                         **_rl_diagnostics()},
        "policy": {"oracle_win_rate_vs_base": {"algorithm_1": wins, "algorithm_2": wins},
                   "control_win_rate_vs_base": wins, "oracle_win_rate_ci": {"algorithm_1": wci, "algorithm_2": wci},
                   "control_win_rate_ci": wci, "win_rate_detail": {"algorithm_1": detail}, "best": "algorithm_1",
                   "oracle_win_rate_at_threshold": {"algorithm_1": at, "algorithm_2": at},
                   "oracle_win_rate_at_threshold_ci": {"algorithm_1": atci, "algorithm_2": atci},
                   "control_win_rate_at_threshold": at, "control_win_rate_at_threshold_ci": atci,
                   "annotator_gsb_vs_base": {"fill": gsb},
                   "promotion": {"eligible": False, "promotion": None, "reasons": ["x"], "checkpoint": 1,
                                 "opponent": "base"}},
        "annotations": {"judgments": 1, "annotators": 1, "items_submitted": 1, "overlap": 3,
                        "label_oracle_agreement": 0.8, "snapshot_pairs": 1,
                        "quality": {"peer_agreement_ratio_separation": None}},
        "lineage": {"campaigns": [1], "snapshot": {"id": 1}, "reward_model": {"id": 1}, "control_reward_model": {"id": 2},
                    "policy_runs": {"algorithm_1": {"checkpoint": 3}}, "new_campaigns": [4]},
    }


def test_the_summary_prints_every_accuracy_and_win_rate_with_its_interval():
    text = services.format_summary(_report())
    assert "[0.61, 0.78]" in text and "0.660" in text  # oracle accuracy's interval, the baseline beside it
    assert "[0.55, 0.69]" in text and "[0.44, 0.56]" in text  # the algorithms' and the control's win rates
    # The win rate at the tie threshold (docs/decisions/0020) in a table of its own, with its interval.
    threshold_table = text.split("changes within the tie threshold count 1/2")[1]
    algorithm_1 = next(line for line in threshold_table.splitlines() if line.startswith("algorithm_1"))
    assert "0.530 [0.47, 0.59]" in algorithm_1 and algorithm_1.rstrip().endswith("nan")  # removal has no figure
    assert "clustered by condition" in text
    # RL's pairs: the one-step accuracy with its interval, the gradient cosine with its t interval.
    assert "one-step x0" in text and "[0.51, 0.65]" in text and "[+0.012, +0.050]" in text
