"""Building blocks of the synthetic OneReward loop (synthetic/experiment.py) and the policy pre-training.

Fast (CPU, one thread): no full loop here; `python -m synthetic.experiment quick` runs that.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthetic import experiment  # noqa: E402
from synthetic.annotators import SimulatedAnnotator, make_pool  # noqa: E402
from synthetic.conditions import write_conditions_folder  # noqa: E402
from synthetic.oracles import score_all  # noqa: E402
from synthetic.scenes import make_conditions  # noqa: E402


def test_oracle_win_rate_counts_wins_per_task_and_ties_as_half():
    base = [0.5, 0.5, 0.5, 0.2, 0.9]
    new = [0.6, 0.4, 0.5, 0.3, 0.8]
    tasks = ["fill", "fill", "fill", "removal", "removal"]
    rates = experiment.oracle_win_rate(base, new, tasks)
    assert rates == {"fill": pytest.approx((1 + 0 + 0.5) / 3), "removal": pytest.approx(0.5)}


def test_oracle_win_rate_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        experiment.oracle_win_rate([0.1, 0.2], [0.3], ["fill", "fill"])


def test_win_rate_detail_separates_perceptible_changes_and_resamples_conditions():
    # fill: condition a loses a little on both seeds (invisible), b wins clearly on both.
    base = [0.50, 0.50, 0.40, 0.40, 0.70]
    new = [0.49, 0.49, 0.50, 0.50, 0.70]
    tasks = ["fill", "fill", "fill", "fill", "removal"]
    groups = ["a", "a", "b", "b", "c"]
    detail = experiment.win_rate_detail(base, new, tasks, groups, threshold=0.03)
    fill = detail["fill"]
    assert fill["n"] == 4 and fill["mean_delta"] == pytest.approx((-0.01 * 2 + 0.1 * 2) / 4)
    assert fill["perceptible_share"] == 0.5 and fill["perceptible_win_rate"] == 1.0
    # Two conditions, each all-win or all-loss: a resample holds 0, 1 or 2 copies of b.
    lo, hi = fill["ci95"]
    assert lo == 0.0 and hi == 1.0
    removal = detail["removal"]
    assert removal["ci95"] == [0.5, 0.5] and removal["perceptible_share"] == 0.0
    assert removal["perceptible_win_rate"] is None
    assert "perceptible" in experiment.describe_win(fill) and "(win" not in experiment.describe_win(removal)


def test_win_rate_detail_interval_narrows_with_more_conditions():
    rng = np.random.default_rng(1)
    deltas = rng.normal(0.02, 0.05, size=400)
    wide = experiment.win_rate_detail([0.0] * 20, deltas[:20], ["fill"] * 20, [str(i) for i in range(20)], 0.03)
    narrow = experiment.win_rate_detail([0.0] * 400, deltas, ["fill"] * 400, [str(i) for i in range(400)], 0.03)
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
    judged = experiment.oracle_judged(scorer, rows, threshold=0.03)
    assert [c for _, c in judged] == [1.0, 1.0, 0.0]
    assert experiment.oracle_accuracy(scorer, rows) == ({"fill": {"structure": 1.0, "aesthetics": 0.0}},
                                                       {"fill": {"structure": 2, "aesthetics": 1}})
    by_margin = experiment.oracle_accuracy_by_margin(judged)
    assert by_margin["accuracy"]["fill"]["structure"] == {"0.03-0.06": 1.0, "0.2-1": 1.0}
    assert by_margin["pairs"]["fill"]["aesthetics"] == {"0.2-1": 1}
    assert experiment.describe_margins(by_margin, "fill", "structure") == "0.03-0.06: 1.00 (1) · 0.2-1: 1.00 (1)"
    assert [experiment.margin_bin(m) for m in (0.0, 0.03, 0.031, 0.1, 0.7, 3.0)] == [
        "0-0.03", "0-0.03", "0.03-0.06", "0.06-0.1", "0.2-1", "0.2-1"]


def test_condition_sets_are_disjoint_and_stable():
    a = experiment.make_condition_sets({"train": 6, "heldout": 4}, seed=3, size=64)
    b = experiment.make_condition_sets({"train": 6, "heldout": 9}, seed=3, size=64)
    assert [c.id for c in a["train"]] == [c.id for c in b["train"]]
    assert not {c.id for c in a["train"]} & {c.id for c in a["heldout"]}


@pytest.fixture(scope="module")
def candidate_world():
    conds = make_conditions(12, seed=1, size=64)
    rng = np.random.default_rng(0)
    from synthetic.oracles import degrade

    candidates = []
    for c in conds:
        cands = [np.asarray(degrade(c, s, rng=rng), dtype=np.float32) / 255.0 for s in (0.0, 0.3, 0.6, 0.9)]
        candidates.append(cands)
    scores = [[score_all(c, img) for img in cands] for c, cands in zip(conds, candidates, strict=True)]
    return conds, candidates, scores


def test_perfect_annotators_agree_with_the_oracle(candidate_world):
    conds, _, scores = candidate_world
    oracle = [SimulatedAnnotator("perfect", noise=0.0)]
    judgments = experiment.simulate_judgments(conds, scores, oracle, seed=0)
    assert judgments
    assert all(j.oracle_margin > 0 for j in judgments)
    # Every applicable criterion of every pair with different scores is judged once.
    assert {j.task for j in judgments} <= {"fill", "extend", "removal"}


def test_snapshot_is_readable_by_the_reward_engine(tmp_path, candidate_world):
    from rewardtrain.engine.data import load_manifest, read_pairs

    conds, candidates, scores = candidate_world
    pool = make_pool(6, careless_fraction=0.0, seed=0)
    judgments = experiment.simulate_judgments(conds, scores, pool, seed=0, votes_per_pair=3)
    ceiling = experiment.human_ceiling_by_criterion(conds, scores, pool, seed=0)
    snap = experiment.write_snapshot(tmp_path / "snap", conds, candidates, judgments, ceiling)
    rows = read_pairs(snap)
    assert len(rows) == len(judgments)
    assert all(r.winner.is_file() and r.loser.is_file() for r in rows)
    assert {r.split for r in rows} <= {"train", "test"}
    manifest = load_manifest(snap)
    assert manifest["human_ceiling"] == json.loads(json.dumps(ceiling))
    assert manifest["counts"]["pairs"] == len(rows)
    for task, crits in ceiling.items():
        for value in crits.values():
            assert 0.5 <= value <= 1.0, task


def test_pretrain_reduces_the_loss_writes_a_loadable_pipeline_and_caches(tmp_path):
    from policytrain.engine.pipeline import FillPolicy
    from policytrain.engine.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(1)
    conds = make_conditions(24, seed=2, size=64)
    write_conditions_folder(conds, tmp_path / "conds")
    config = PretrainConfig(
        conditions_dir=str(tmp_path / "conds"), output_dir=str(tmp_path / "pre"), resolution=64,
        vae_steps=6, vae_batch_size=4, steps=40, batch_size=8, lr=3e-3, log_every=10,
    )
    events = []
    result = pretrain(config, progress=events.append)
    assert not result["cached"]
    losses = [e["loss"] for e in events if e.get("phase") == "transformer"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    policy = FillPolicy.from_pretrained(result["final_dir"])
    # The posterior variance is pinned, so encoding the masked image is deterministic.
    assert policy.vae.encoder.conv_out.bias[16:].max().item() <= -19
    src = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    out = policy.generate(src, mask, ["a red circle"], seed=0, steps=2, max_sequence_length=32)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    again = pretrain(config)
    assert again["cached"] and again["config_hash"] == result["config_hash"]
    changed = pretrain(config.replace(steps=10, vae_steps=0, output_dir=str(tmp_path / "pre2")))
    assert not changed["cached"] and changed["config_hash"] != result["config_hash"]


def test_pretrain_with_a_4x_vae_and_crops_builds_a_matching_fill_model(tmp_path):
    """3 VAE levels (4× down-sampling, the demo's base) give a Fill transformer with 8·16 + 4·4² = 192
    input channels that the pipeline loads, checks and samples at full resolution; VAE crops work."""
    from policytrain.engine.pipeline import FillPolicy
    from policytrain.engine.pretrain import PretrainConfig, config_hash, pretrain

    torch.set_num_threads(1)
    conds = make_conditions(12, seed=3, size=64)
    write_conditions_folder(conds, tmp_path / "conds")
    config = PretrainConfig(
        conditions_dir=str(tmp_path / "conds"), output_dir=str(tmp_path / "pre"), resolution=64,
        vae_block_out_channels=(16, 32, 32), vae_crop=32, vae_steps=4, vae_batch_size=4, steps=6, batch_size=4,
        log_every=2,
    )
    result = pretrain(config)
    policy = FillPolicy.from_pretrained(result["final_dir"])
    assert policy.vae_scale_factor == 4
    assert policy.transformer.config.in_channels == 192 and policy.transformer.config.out_channels == 64
    src = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 8:40, 8:40] = 1
    out = policy.generate(src, mask, ["a red circle"], seed=0, steps=2, max_sequence_length=32)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    # An unset crop leaves the hash of older configs (and their caches) unchanged.
    assert config_hash(config) != config_hash(config.replace(vae_crop=None))
    with pytest.raises(ValueError, match="vae_crop"):
        PretrainConfig(conditions_dir="c", output_dir="o", vae_block_out_channels=(16, 32, 32), vae_crop=30)
    with pytest.raises(ValueError, match="levels"):
        PretrainConfig(conditions_dir="c", output_dir="o", vae_block_out_channels=(16, 32))


def test_candidate_spread_measures_how_much_candidates_differ():
    grey = np.full((8, 8, 3), 0.5, dtype=np.float32)
    white = np.ones((8, 8, 3), dtype=np.float32)
    spread = experiment.candidate_spread([[grey, white], [grey, grey]])
    # Flat images have no pixel std; the pairs differ by 0.5 (first condition) and 0 (second).
    assert spread["image_std"] == pytest.approx(0.0)
    assert spread["pair_abs_diff"] == pytest.approx(255 * 0.25)


def test_warm_start_snapshot_keeps_a_few_unanimous_train_pairs_and_every_test_pair(tmp_path):
    snap = tmp_path / "snap"
    (snap / "images").mkdir(parents=True)
    (snap / "images" / "a.png").write_bytes(b"png")
    rows = [{"pair_id": f"p{i}", "split": "train" if i < 8 else "test", "votes": 3,
             "agreement": 1.0 if i % 2 == 0 else 1 / 3, "winner": "images/a.png", "loser": "images/a.png"}
            for i in range(10)]
    (snap / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (snap / "manifest.json").write_text(json.dumps({"counts": {"pairs": 10, "images": 1}, "filter": {}}))
    out = experiment.warm_start_snapshot(snap, tmp_path / "warm", n_pairs=2)
    kept = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    train = [r for r in kept if r["split"] == "train"]
    assert len(train) == 2 and all(r["agreement"] == 1.0 for r in train)  # only unanimous pairs
    assert sum(r["split"] == "test" for r in kept) == 2  # other splits untouched
    assert (out / "images" / "a.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["train"] == 2 and manifest["filter"]["warm_start_unanimous_pairs"] == 2
    again = experiment.warm_start_snapshot(snap, tmp_path / "warm", n_pairs=2)
    assert (again / "pairs.jsonl").read_text() == (out / "pairs.jsonl").read_text()  # deterministic


def test_wider_reward_base_loads_and_scores(tmp_path):
    """``build_reward_base`` size keywords give a loadable Qwen2.5-VL folder with the same template."""
    from PIL import Image

    from rewardtrain.engine.data import PairCollator
    from rewardtrain.engine.model import forward_log_odds, load_reward_model

    folder = experiment.build_reward_base(tmp_path / "rm", min_pixels=56 * 56, max_pixels=56 * 56,
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


def test_rl_probe_needs_a_finished_loop(tmp_path):
    with pytest.raises(ValueError, match="run the loop first"):
        experiment.rl_probe(tmp_path / "no-loop", "quick", {"kl_weight": 1.0})


@pytest.mark.parametrize("reward", ["text-only", "oracle-wrong-", "oracle-wrong-x", "oracle-wrong-120"])
def test_rl_probe_refuses_an_unknown_reward(tmp_path, reward):
    with pytest.raises(ValueError, match="reward must be one of trained, untrained, oracle, oracle-no-text, "
                                         "oracle-wrong-<percent>"):
        experiment.rl_probe(tmp_path / "no-loop", "quick", {}, reward=reward)


def test_probe_oracle_rewards_map_to_oracle_reward_options():
    assert experiment.probe_oracle_reward("trained") is None
    assert experiment.probe_oracle_reward("untrained") is None
    assert experiment.probe_oracle_reward("oracle") == {"text_alignment": True, "wrong_share": 0.0}
    assert experiment.probe_oracle_reward("oracle-no-text") == {"text_alignment": False, "wrong_share": 0.0}
    assert experiment.probe_oracle_reward("oracle-wrong-25") == {"text_alignment": True, "wrong_share": 0.25}


@pytest.mark.parametrize(
    ("args", "allowed", "valued", "expected"),
    [
        (["loop", "full"], "--reward", True, (["loop", "full"], None)),
        (["loop", "full", "--reward=oracle-wrong-20"], "--reward", True, (["loop", "full"], "oracle-wrong-20")),
        (["loop", "--oracle-labels", "full"], "--oracle-labels", False, (["loop", "full"], "")),
    ],
)
def test_probe_cli_option_is_absent_a_flag_or_valued(args, allowed, valued, expected):
    assert experiment._cli_options(args, allowed, valued) == expected


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
        experiment._cli_options(args, allowed, valued)


def test_rm_probe_needs_a_finished_loop(tmp_path):
    with pytest.raises(ValueError, match="run the loop first"):
        experiment.rm_probe(tmp_path / "no-loop", "quick", {"max_steps": 2})


def test_rm_probe_refuses_an_unknown_criterion_before_training(tmp_path):
    (tmp_path / "loop" / "snapshot").mkdir(parents=True)
    (tmp_path / "loop" / "snapshot" / "pairs.jsonl").write_text("")
    with pytest.raises(ValueError, match="unknown task:criterion"):
        experiment.rm_probe(tmp_path / "loop", "quick", {}, criteria=["fill:consistancy", "removal:removal_quality"])
    assert not (tmp_path / "loop" / "rm-probe-probe").exists()  # nothing written


def test_rm_probe_trains_on_one_criterion_and_scores_the_loops_heldout_pairs(tmp_path):
    """A loop folder with a real snapshot (two candidates per condition: a noisy and a clean fill);
    the probe trains on one criterion only and measures oracle accuracy on the held-out pairs."""
    torch.set_num_threads(1)
    cfg = experiment.load_demo_config("quick")
    conds = experiment.make_condition_sets({"train": cfg["conditions"]["train"]}, 0, cfg["resolution"])["train"][:24]
    rng = np.random.default_rng(0)
    candidates = []
    for c in conds:
        clean = np.asarray(c.target, dtype=np.float32) / 255.0
        noisy = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)
        candidates.append([clean, noisy])
    scores = [experiment.oracle_scores([c] * 2, k) for c, k in zip(conds, candidates, strict=True)]
    pool = experiment.make_pool(4, 0.0, seed=0)
    judgments = experiment.simulate_judgments(conds, scores, pool, seed=0)
    experiment.write_snapshot(tmp_path / "loop" / "snapshot", conds, candidates, judgments, {})
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    build_tiny_fill_pipeline(tmp_path / "loop" / "cache" / "pretrain-quick-0" / "final", seed=0)  # the loop's base
    # A random base's samples differ by less than the demo's tie threshold: count every difference.
    cfg["eval"]["oracle_tie_threshold"] = 1e-4
    (tmp_path / "loop" / "report.json").write_text(json.dumps({"config": cfg}))
    wanted = "fill:consistency"
    probe = experiment.rm_probe(tmp_path / "loop", "quick", {"max_steps": 2, "batch_size": 2, "log_every": 1},
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
    assert 0 < probe["oracle_pairs"]["fill"]["consistency"] < experiment.MIN_SUMMARY_PAIRS
    assert np.isnan(probe["mean"]) and np.isnan(probe["min"])
    # The base's own samples of the held-out conditions, scored on the chosen criterion only.
    assert probe["on_policy_pairs"].keys() == {"fill"} and probe["on_policy_pairs"]["fill"].keys() == {"consistency"}
    assert 0.0 <= probe["on_policy_accuracy"]["probe"]["fill"]["consistency"] <= 1.0
    saved = json.loads((tmp_path / "loop" / "rm-probe-one" / "probe.json").read_text())
    assert saved["criteria"] == [wanted] and saved["overrides"] == {"max_steps": 2, "batch_size": 2, "log_every": 1}

    # The oracle-label diagnostic trains on every criterion with the oracle-better image as winner.
    experiment.rm_probe(tmp_path / "loop", "quick", {"max_steps": 1, "batch_size": 2}, name="oracle",
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
        experiment.oracle_labelled({"winner": "a", "loser": "b"})


def test_probes_read_the_config_a_loop_ran_with(tmp_path):
    """A loop run with a custom config (e.g. more annotated conditions) is probed with that config."""
    assert experiment.loop_config(tmp_path, "quick") == experiment.load_demo_config("quick")
    custom = experiment.load_demo_config("full")
    custom["conditions"]["train"] = 1280
    (tmp_path / "report.json").write_text(json.dumps({"config": custom}))
    assert experiment.loop_config(tmp_path, "quick")["conditions"]["train"] == 1280


def test_on_policy_pairs_rank_the_policys_own_samples_per_condition(tmp_path):
    """What RL has to rank: fills of one policy at the RL sampling settings, every pair of them per
    condition and criterion, the oracle-better one first."""
    from policytrain.engine.pipeline import FillPolicy
    from policytrain.engine.tiny import build_tiny_fill_pipeline

    torch.set_num_threads(1)
    cfg = experiment.load_demo_config("quick")
    conds = experiment.make_condition_sets({"train": 6}, 0, cfg["resolution"])["train"]
    policy = FillPolicy.from_pretrained(build_tiny_fill_pipeline(tmp_path / "fill", seed=0))
    rows = experiment.on_policy_pairs(policy, conds, cfg, seed=0, samples=3)

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
                # The rows hold 8-bit images; the oracle scored the float fills, hence the tolerance.
                assert better >= worse - 0.01 and r["margin"] == pytest.approx(better - worse, abs=0.01)
