"""Probes of a finished research loop (research/probes.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from research import loop, probes  # noqa: E402
from synthetic import candidate_fills, loop_config  # noqa: E402
from synthetic.annotators import make_pool  # noqa: E402


def test_rl_probe_needs_a_finished_loop(tmp_path):
    with pytest.raises(ValueError, match="run the loop first"):
        probes.rl_probe(tmp_path / "no-loop", "quick", {"kl_weight": 1.0})


@pytest.mark.parametrize("reward", ["text-only", "oracle-wrong-", "oracle-wrong-x", "oracle-wrong-120"])
def test_rl_probe_refuses_an_unknown_reward(tmp_path, reward):
    with pytest.raises(ValueError, match="reward must be one of trained, untrained, baseline, oracle, oracle-no-text, "
                                         "oracle-v2, oracle-wrong-<percent>"):
        probes.rl_probe(tmp_path / "no-loop", "quick", {}, reward=reward)


def test_probe_oracle_rewards_map_to_oracle_reward_options():
    assert probes.probe_oracle_reward("trained") is None
    assert probes.probe_oracle_reward("untrained") is None
    assert probes.probe_oracle_reward("oracle") == {"text_alignment": True, "wrong_share": 0.0}
    assert probes.probe_oracle_reward("oracle-no-text") == {"text_alignment": False, "wrong_share": 0.0}
    assert probes.probe_oracle_reward("oracle-wrong-25") == {"text_alignment": True, "wrong_share": 0.25}
    assert probes.probe_oracle_reward("oracle-v2") == {"text_alignment": True, "wrong_share": 0.0, "version": 2}
    assert probes.probe_oracle_reward("baseline") is None  # a learner on annotator labels, not an oracle


@pytest.mark.parametrize(
    ("args", "allowed", "valued", "expected"),
    [
        (["loop", "full"], "--reward", True, (["loop", "full"], None)),
        (["loop", "full", "--reward=oracle-wrong-20"], "--reward", True, (["loop", "full"], "oracle-wrong-20")),
        (["loop", "--oracle-labels", "full"], "--oracle-labels", False, (["loop", "full"], "")),
    ],
)
def test_probe_cli_option_is_absent_a_flag_or_valued(args, allowed, valued, expected):
    assert probes._cli_options(args, allowed, valued) == expected


@pytest.mark.parametrize(
    ("args", "allowed", "valued", "spelled"),
    [
        (["--reward"], "--reward", True, "--reward=…"),
        (["--reward="], "--reward", True, "--reward=…"),
        (["--oracle-reward"], "--reward", True, "--reward=…"),
        (["--oracle-labels=x"], "--oracle-labels", False, "--oracle-labels$"),
        (["--oracle-labels="], "--oracle-labels", False, "--oracle-labels$"),
    ],
)
def test_probe_cli_refuses_unknown_options_and_values(args, allowed, valued, spelled):
    with pytest.raises(SystemExit, match=f"the only one is {spelled}"):
        probes._cli_options(args, allowed, valued)


def test_rm_probe_needs_a_finished_loop(tmp_path):
    with pytest.raises(ValueError, match="run the loop first"):
        probes.rm_probe(tmp_path / "no-loop", "quick", {"max_steps": 2})


def test_rm_probe_refuses_an_unknown_criterion_before_training(tmp_path):
    (tmp_path / "loop" / "snapshot").mkdir(parents=True)
    (tmp_path / "loop" / "snapshot" / "pairs.jsonl").write_text("")
    with pytest.raises(ValueError, match="unknown task:criterion"):
        probes.rm_probe(tmp_path / "loop", "quick", {}, criteria=["fill:consistancy", "removal:removal_quality"])
    assert not (tmp_path / "loop" / "rm-probe-probe").exists()  # nothing written


def test_rm_probe_trains_on_one_criterion_and_scores_the_loops_heldout_pairs(tmp_path):
    """A loop folder with a real snapshot (two candidates per condition: a noisy and a clean fill);
    the probe trains on one criterion only and measures oracle accuracy on the held-out pairs."""
    torch.set_num_threads(1)
    cfg = loop_config.load_demo_config("quick")
    every = loop_config.make_condition_sets({"train": cfg["conditions"]["train"]}, 0, cfg["resolution"])["train"]
    # The probe scores the held-out split's pairs of the probed criterion: make sure a few fill
    # conditions land there (which ones do depends only on their ids).
    held_fill = [c for c in every if c.task == "fill" and probes.heldout_split(c.id) == "test"][:4]
    conds = [c for c in every[:24] if c not in held_fill] + held_fill
    rng = np.random.default_rng(0)
    candidates = []
    for c in conds:
        clean = np.asarray(c.target, dtype=np.float32) / 255.0
        noisy = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)
        candidates.append([clean, noisy])
    scores = [candidate_fills.oracle_scores([c] * 2, k) for c, k in zip(conds, candidates, strict=True)]
    pool = make_pool(4, 0.0, seed=0)
    judgments = loop.simulate_judgments(conds, scores, pool, seed=0)
    loop.write_snapshot(tmp_path / "loop" / "snapshot", conds, candidates, judgments, {})
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    build_tiny_fill_pipeline(tmp_path / "loop" / "cache" / "pretrain-quick-0" / "final", seed=0)  # the loop's base
    # A random base's samples differ by less than the demo's tie threshold: count every difference.
    cfg["eval"]["oracle_tie_threshold"] = 1e-4
    (tmp_path / "loop" / "report.json").write_text(json.dumps({"config": cfg}))
    wanted = "fill:consistency"
    probe = probes.rm_probe(tmp_path / "loop", "quick", {"max_steps": 2, "batch_size": 2, "log_every": 1},
                                name="one", criteria=[wanted], progress=lambda _: None)

    train_rows = [json.loads(line) for line in
                  (tmp_path / "loop" / "rm-probe-one" / "snapshot" / "pairs.jsonl").read_text().splitlines()]
    assert {f"{r['task']}:{r['criterion']}" for r in train_rows if r["split"] == "train"} == {wanted}
    assert probe["train"]["steps"] == 2
    # Only the chosen criterion is scored; the loop has no reward model of its own here.
    assert probe["oracle_accuracy"].keys() == {"probe"}
    assert probe["oracle_accuracy"]["probe"].keys() == {"fill"}
    assert probe["oracle_accuracy"]["probe"]["fill"].keys() == {"consistency"}
    # Too few held-out pairs for the summary, which then says so rather than quoting noise.
    assert 0 < probe["oracle_pairs"]["fill"]["consistency"] < probes.MIN_SUMMARY_PAIRS
    assert np.isnan(probe["mean"]) and np.isnan(probe["min"])
    # The base's own samples of the held-out conditions, scored on the chosen criterion only.
    assert probe["on_policy_pairs"].keys() == {"fill"} and probe["on_policy_pairs"]["fill"].keys() == {"consistency"}
    assert 0.0 <= probe["on_policy_accuracy"]["probe"]["fill"]["consistency"] <= 1.0
    saved = json.loads((tmp_path / "loop" / "rm-probe-one" / "probe.json").read_text())
    assert saved["criteria"] == [wanted] and saved["overrides"] == {"max_steps": 2, "batch_size": 2, "log_every": 1}

    # The oracle-label diagnostic trains on every criterion with the oracle-better image as winner.
    probes.rm_probe(tmp_path / "loop", "quick", {"max_steps": 1, "batch_size": 2}, name="oracle",
                        oracle_labels=True, progress=lambda _: None)
    relabelled = [json.loads(line) for line in
                  (tmp_path / "loop" / "rm-probe-oracle" / "snapshot" / "pairs.jsonl").read_text().splitlines()]
    assert len(relabelled) == len(judgments) and all(r["oracle_margin"] >= 0 for r in relabelled)
    flipped = [j for j in judgments if j.oracle_margin < 0]
    assert flipped, "the noisy annotators disagreed with the oracle somewhere"
    by_id = {r["pair_id"]: r for r in relabelled}
    original = {r["pair_id"]: r for r in map(json.loads, (tmp_path / "loop" / "snapshot" / "pairs.jsonl")
                                             .read_text().splitlines())}
    for pid, row in original.items():
        swapped = row["oracle_margin"] < 0
        assert (by_id[pid]["winner"], by_id[pid]["loser"]) == ((row["loser"], row["winner"]) if swapped
                                                              else (row["winner"], row["loser"]))


def test_oracle_labels_need_oracle_margins():
    with pytest.raises(ValueError, match="no oracle margins"):
        probes.oracle_labelled({"winner": "a", "loser": "b"})


def test_probes_read_the_config_a_loop_ran_with(tmp_path):
    """A loop run with a custom config (e.g. more annotated conditions) is probed with that config."""
    assert probes.loop_config(tmp_path, "quick") == loop_config.load_demo_config("quick")
    custom = loop_config.load_demo_config("full")
    custom["conditions"]["train"] = 1280
    (tmp_path / "report.json").write_text(json.dumps({"config": custom}))
    assert probes.loop_config(tmp_path, "quick")["conditions"]["train"] == 1280
