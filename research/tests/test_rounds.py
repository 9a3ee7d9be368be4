"""More rounds of the loop (research/rounds.py): the RL policy's outputs go back to the annotators."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from research import loop, rounds  # noqa: E402
from synthetic import candidate_fills, loop_config, reward_base  # noqa: E402
from synthetic.annotators import make_pool  # noqa: E402
from synthetic.conditions import write_conditions_folder  # noqa: E402


def _snapshot(path, conds, seed):
    """A real snapshot: a clean and a noisy fill per condition, judged by simulated annotators."""
    rng = np.random.default_rng(seed)
    candidates = []
    for c in conds:
        clean = np.asarray(c.target, dtype=np.float32) / 255.0
        candidates.append([clean, np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)])
    scores = [candidate_fills.oracle_scores([c] * 2, k) for c, k in zip(conds, candidates, strict=True)]
    judgments = loop.simulate_judgments(conds, scores, make_pool(4, 0.0, seed=0), seed=seed)
    return loop.write_snapshot(path, conds, candidates, judgments, {"fill": {"consistency": 0.9}})


def _rows(snapshot):
    return [json.loads(line) for line in (snapshot / "pairs.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"round": 2}, "unknown round option"),
        ({"rounds": 1}, "at least 2"),
        ({"policy_samples": 0}, "at least one policy sample"),
        ({"policy_samples": 1, "base_samples": 0}, "two candidates"),
    ],
)
def test_round_config_refuses_what_cannot_run(data, message):
    with pytest.raises(ValueError, match=message):
        rounds.RoundConfig.from_dict(data)


def test_merge_snapshots_keeps_every_row_once_with_ids_per_round(tmp_path):
    conds = loop_config.make_condition_sets({"train": 6}, 0, 64)["train"]
    first, second = _snapshot(tmp_path / "a", conds, seed=1), _snapshot(tmp_path / "b", conds, seed=2)
    merged = rounds.merge_snapshots([first, second], tmp_path / "merged")

    rows, a, b = _rows(merged), _rows(first), _rows(second)
    assert len(rows) == len(a) + len(b)
    assert len({r["pair_id"] for r in rows}) == len(rows)  # the rounds' ids collide before the prefix
    assert {r["pair_id"] for r in a} & {r["pair_id"] for r in b}
    assert [r["pair_id"] for r in rows[: len(a)]] == [f"r1/{r['pair_id']}" for r in a]
    assert rows[len(a)]["winner_candidate_id"] == f"r2/{b[0]['winner_candidate_id']}"
    assert all((merged / r[side]).is_file() for r in rows for side in ("winner", "loser"))
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["counts"]["pairs"] == len(rows)
    assert manifest["counts"]["train"] + manifest["counts"]["test"] == len(rows)
    assert manifest["human_ceiling"] == {"fill": {"consistency": 0.9}}


def test_round_probe_needs_a_finished_loop(tmp_path):
    with pytest.raises(ValueError, match="run the loop first"):
        rounds.round_probe(tmp_path / "no-loop", "quick", {})


def test_round_probe_annotates_the_rl_policy_and_retrains_the_reward_model(tmp_path):
    """A tiny loop folder (random fill policy, untrained reward model, a real snapshot) and two
    rounds: RL, new candidates from the RL policy and the base, a merged snapshot, a new reward
    model, RL again; every reward model is scored on both rounds' held-out pairs."""
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    torch.set_num_threads(1)
    loop = tmp_path / "loop"
    cfg = loop_config.load_demo_config("quick")
    cfg["conditions"] = {**cfg["conditions"], "train": 24, "heldout": 3}
    cfg["reward"] = {**cfg["reward"], "max_steps": 2, "batch_size": 2, "log_every": 1}
    cfg["eval"] = {**cfg["eval"], "seeds": [0]}
    (loop / "cache").mkdir(parents=True)
    (loop / "report.json").write_text(json.dumps({"config": cfg}))
    build_tiny_fill_pipeline(loop / "cache" / "pretrain-quick-0" / "final", seed=0)
    train = loop_config.make_condition_sets({"train": 24}, 0, cfg["resolution"])["train"]
    write_conditions_folder(train, loop / "conditions-train")
    first = _snapshot(loop / "snapshot", train, seed=1)
    rm_base = reward_base.build_reward_base(loop / "rm-base", min_pixels=56 * 56, max_pixels=56 * 56)
    reward_base.untrained_reward_model(rm_base, loop / "rm-run" / "final")

    result = rounds.round_probe(loop, "quick", {"rl": {"max_steps": 1, "batch_size": 2}}, name="t",
                                progress=lambda _: None)

    out = loop / "round-t"
    second = _rows(out / "snapshot-2")
    # Four candidates per condition (two from the RL policy, two from the base): six pairs each.
    assert {r["winner_candidate_id"].rsplit("#", 1)[1] for r in second} <= {"0", "1", "2", "3"}
    assert result["judgments"] == {"round_1": len(_rows(first)), "round_2": len(second)}
    assert len(_rows(out / "snapshot-merged-2")) == len(_rows(first)) + len(second)
    assert json.loads((out / "rm-2" / "final" / "onereward.json").read_text())["training"]["steps"] == 2
    assert result["oracle_accuracy"].keys() == {"reward_model_1", "reward_model_2"}
    for per_pairs in result["oracle_accuracy"].values():
        assert per_pairs.keys() == {"round_1", "round_2"}
        for table in per_pairs.values():
            assert all(0.0 <= v <= 1.0 for crit in table["accuracy"].values() for v in crit.values())
    assert result["win_rate_vs_base"].keys() == {"round_1", "round_2"}
    assert (out / "rl-1" / "final").is_dir() and (out / "rl-2" / "final").is_dir()
    assert json.loads((out / "probe.json").read_text())["judgments"] == result["judgments"]
    assert "| reward_model_2 | round_2 |" in rounds.format_round_probe(result)
