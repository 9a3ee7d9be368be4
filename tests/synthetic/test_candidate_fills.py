"""Condition sets and candidate fills of the synthetic world (synthetic/loop_config.py, synthetic/candidate_fills.py)
and the reward-model base (synthetic/reward_base.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthetic import candidate_fills, loop_config, reward_base  # noqa: E402
from synthetic.oracles import score_all  # noqa: E402


def test_condition_sets_are_disjoint_and_stable():
    a = loop_config.make_condition_sets({"train": 6, "heldout": 4}, seed=3, size=64)
    b = loop_config.make_condition_sets({"train": 6, "heldout": 9}, seed=3, size=64)
    assert [c.id for c in a["train"]] == [c.id for c in b["train"]]
    assert not {c.id for c in a["train"]} & {c.id for c in a["heldout"]}


def test_candidate_spread_measures_how_much_candidates_differ():
    grey = np.full((8, 8, 3), 0.5, dtype=np.float32)
    white = np.ones((8, 8, 3), dtype=np.float32)
    spread = candidate_fills.candidate_spread([[grey, white], [grey, grey]])
    # Flat images have no pixel std; the pairs differ by 0.5 (first condition) and 0 (second).
    assert spread["image_std"] == pytest.approx(0.0)
    assert spread["pair_abs_diff"] == pytest.approx(255 * 0.25)


def test_on_policy_pairs_rank_the_policys_own_samples_per_condition(tmp_path):
    """What RL has to rank: fills of one policy at the RL sampling settings, every pair of them per
    condition and criterion, the oracle-better one first."""
    from policytrain.engine.pipeline import FillPolicy
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    torch.set_num_threads(1)
    cfg = loop_config.load_demo_config("quick")
    conds = loop_config.make_condition_sets({"train": 6}, 0, cfg["resolution"])["train"]
    policy = FillPolicy.from_pretrained(build_tiny_fill_pipeline(tmp_path / "fill", seed=0))
    rows = candidate_fills.on_policy_pairs(policy, conds, cfg, seed=0, samples=3)

    # Three pairs per criterion the oracle scores, condition after condition.
    per_condition = [list(score_all(c, np.asarray(c.target, dtype=np.float32) / 255.0)) for c in conds]
    assert len(rows) == 3 * sum(len(criteria) for criteria in per_condition)
    assert np.asarray(rows[0]["better"]).tolist() != np.asarray(rows[0]["worse"]).tolist()  # different samples
    k = 0
    for cond, criteria in zip(conds, per_condition, strict=True):
        for _pair in range(3):
            for criterion in criteria:
                r = rows[k]
                k += 1
                assert (r["task"], r["prompt"], r["criterion"]) == (cond.task, cond.prompt, criterion)
                better = score_all(cond, np.asarray(r["better"], dtype=np.float32) / 255.0)[criterion]
                worse = score_all(cond, np.asarray(r["worse"], dtype=np.float32) / 255.0)[criterion]
                # The rows hold 8-bit images; the oracle scored the float fills, hence the tolerance
                # (rounding to 8 bits moved a structure score by up to 0.011 on some samples).
                assert better >= worse - 0.02 and r["margin"] == pytest.approx(better - worse, abs=0.02)


def test_wider_reward_base_loads_and_scores(tmp_path):
    """``build_reward_base`` size keywords give a loadable Qwen2.5-VL folder with the same template."""
    from PIL import Image

    from rewardtrain.engine.data import PairCollator
    from rewardtrain.engine.model import forward_log_odds, load_reward_model

    folder = reward_base.build_reward_base(tmp_path / "rm", min_pixels=56 * 56, max_pixels=56 * 56,
                                          text_hidden_size=96, text_layers=3, vision_hidden_size=48)
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    assert text["hidden_size"] == 96 and text["num_hidden_layers"] == 3
    rm = load_reward_model(folder, min_pixels=56 * 56, max_pixels=56 * 56)
    img = Image.new("RGB", (56, 56), (200, 30, 30))
    batch = PairCollator(rm.processor).encode([(img, img, "fill", "aesthetics", "")])
    with torch.no_grad():
        out = forward_log_odds(rm.model, batch, rm.yes_token_id, rm.no_token_id)
    assert out.shape == (1,) and torch.isfinite(out).all()
