"""Soft labels (`soft_labels`): the winner-first sequence is trained towards the pair's `p_winner`
and the loser-first one towards `1 - p_winner`; accuracy still compares with the hard label; a
snapshot without `p_winner` is refused with a message rather than read as hard labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from contracts.snapshot import SnapshotError
from contracts.snapshot import SnapshotError as ContractError
from rewardtrain.engine.config import RewardTrainConfig
from rewardtrain.engine.data import PairCollator, SoftLabelError, check_soft_labels, load_training_pairs
from rewardtrain.engine.model import forward_log_odds, load_reward_model
from rewardtrain.engine.train import RunCancelled, _Trainer, train

from .conftest import make_snapshot

STEPS_BEFORE = 5


def _p_winner(index: int) -> float:
    """Distinct soft labels in (0.5, 1), none of them 0 or 1, so a hard and a soft target never agree."""
    return round(0.55 + 0.4 * (index % 7) / 6, 6)


def _with_soft_labels(snapshot: Path, value=_p_winner) -> dict[str, float]:
    """Add `p_winner` (``value(row number)``, None: left out) to every row of ``snapshot``; returns
    pair_id -> p_winner of the rows that got one."""
    lines = (snapshot / "pairs.jsonl").read_text().splitlines()
    rows, written = [], {}
    for index, line in enumerate(lines):
        row = json.loads(line)
        p = value(index)
        if p is not None:
            row.update(p_winner=p, votes_loser=1, votes_tie=0)
            written[row["pair_id"]] = p
        rows.append(row)
    (snapshot / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return written


@pytest.fixture(scope="module")
def soft_snapshot(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """The engine tests' synthetic snapshot with a distinct ``p_winner`` on every row."""
    snapshot = make_snapshot(tmp_path_factory.mktemp("soft") / "snapshot")
    return snapshot, _with_soft_labels(snapshot)


def test_batch_labels_are_p_winner_with_the_flag_and_one_zero_without(tiny_model_dir, soft_snapshot):
    snapshot, p_winner = soft_snapshot
    processor = load_reward_model(str(tiny_model_dir), device="cpu").processor
    rows = load_training_pairs(snapshot)[:4]
    check_soft_labels(snapshot, rows)
    assert {r.pair_id: r.p_winner for r in rows} == {r.pair_id: p_winner[r.pair_id] for r in rows}

    soft = PairCollator(processor, soft_labels=True)(rows)["labels"]
    expected = [p_winner[r.pair_id] for r in rows] + [1 - p_winner[r.pair_id] for r in rows]
    assert soft.tolist() == pytest.approx(expected, abs=1e-6)
    assert len(set(soft.tolist())) > 2  # really soft: not two values

    hard = PairCollator(processor)(rows)["labels"]
    assert hard.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    # Same inputs either way: only the targets change.
    soft_batch, hard_batch = PairCollator(processor, soft_labels=True)(rows), PairCollator(processor)(rows)
    assert all(torch.equal(soft_batch[k], hard_batch[k]) for k in hard_batch if k != "labels")


def test_training_step_loss_is_the_bce_against_soft_targets_and_accuracy_uses_hard_labels(
        base_config, soft_snapshot, tmp_path):
    snapshot, p_winner = soft_snapshot
    trainer = _Trainer(base_config.replace(snapshot_dir=str(snapshot), soft_labels=True, max_steps=8), None, None)
    trainer.setup()
    # A few steps first: at initialisation every log-odds is near 0 and any target gives ~ln 2.
    for step in range(STEPS_BEFORE):
        trainer.train_step(step)
    rows = trainer.step_batches().rows_of(STEPS_BEFORE)
    batch = trainer.step_batches().batch_for(STEPS_BEFORE)
    with torch.no_grad():  # the weights train_step's forward uses (no dropout in base_config)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        log_odds = forward_log_odds(trainer.model, inputs, trainer.yes_id, trainer.no_id)
    n = len(rows)
    p = torch.tensor([p_winner[r.pair_id] for r in rows], dtype=torch.float64)
    targets = torch.cat([p, 1 - p])
    x = log_odds.double()
    by_hand = -(targets * F.logsigmoid(x) + (1 - targets) * F.logsigmoid(-x)).mean().item()
    hard = torch.tensor([1.0] * n + [0.0] * n, dtype=torch.float64)
    hard_loss = -(hard * F.logsigmoid(x) + (1 - hard) * F.logsigmoid(-x)).mean().item()
    hard_accuracy = ((x > 0).double() == hard).double().mean().item()
    # Near the ln 2 saddle the two losses differ little, but far more than the float32 tolerance below.
    assert abs(by_hand - hard_loss) > 2e-5
    assert hard_accuracy > 0  # a comparison with the soft values (never 0 or 1) would give 0

    loss, accuracy = trainer.train_step(STEPS_BEFORE, batch)
    assert loss == pytest.approx(by_hand, abs=1e-6)
    assert accuracy == pytest.approx(hard_accuracy, abs=1e-6)


def test_soft_labels_change_what_is_learnt_and_resume_exactly(base_config, soft_snapshot, tmp_path):
    snapshot, _ = soft_snapshot
    cfg = base_config.replace(snapshot_dir=str(snapshot), max_steps=4, save_every=2, eval_every=2)
    train(cfg.replace(output_dir=str(tmp_path / "hard")))
    soft = train(cfg.replace(output_dir=str(tmp_path / "soft"), soft_labels=True))
    assert 0.0 <= soft["train_accuracy"] <= 1.0 and soft["val"]["accuracy"] >= 0.0
    a = load_file(tmp_path / "hard" / "final" / "model.safetensors")
    b = load_file(tmp_path / "soft" / "final" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "soft" / "config.json").read_text())["soft_labels"] is True

    stops = {"n": 0}

    def stop_after_three() -> bool:
        stops["n"] += 1
        return stops["n"] > 3

    resumed = cfg.replace(output_dir=str(tmp_path / "resumed"), soft_labels=True)
    with pytest.raises(RunCancelled):
        train(resumed, should_stop=stop_after_three)
    train(resumed.replace(resume=True))
    c = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    assert all(torch.allclose(b[k], c[k], atol=1e-6) for k in b)


def test_a_snapshot_without_p_winner_is_refused_with_a_clear_message(base_config, synthetic_snapshot, tmp_path):
    old = synthetic_snapshot(tmp_path / "old")  # written before the soft-label columns existed
    cfg = base_config.replace(snapshot_dir=str(old), soft_labels=True)
    with pytest.raises(SoftLabelError) as raised:
        train(cfg)
    message = str(raised.value)
    assert "p_winner" in message and "Rebuild the snapshot" in message and "soft_labels=false" in message
    assert isinstance(raised.value, SnapshotError) and isinstance(raised.value, ValueError)
    assert not (tmp_path / "run" / "config.json").exists()  # refused before any training
    assert train(cfg.replace(soft_labels=False))["status"] == "completed"  # hard labels need none

    # One row without it is enough to refuse (no silent mix of soft and hard targets).
    partial = synthetic_snapshot(tmp_path / "partial")
    _with_soft_labels(partial, lambda i: None if i == 3 else _p_winner(i))
    with pytest.raises(SoftLabelError, match=r"p_winner on 1 of its \d+ training pairs \(first: pair p3\)"):
        check_soft_labels(partial, load_training_pairs(partial))


@pytest.mark.parametrize("bad", [0.5, 0.3])
def test_p_winner_outside_the_winners_half_is_refused(synthetic_snapshot, tmp_path, bad):
    snapshot = synthetic_snapshot(tmp_path / "bad")
    _with_soft_labels(snapshot, lambda i: bad if i == 0 else _p_winner(i))
    rows = load_training_pairs(snapshot)  # a probability: the contract reads it
    with pytest.raises(SoftLabelError, match=r"pair p0: p_winner .* must be a number in \(0.5, 1\]"):
        check_soft_labels(snapshot, rows)


@pytest.mark.parametrize("bad", [1.2, -0.1, "0.9", True])
def test_p_winner_that_is_no_probability_fails_the_snapshot_contract(synthetic_snapshot, tmp_path, bad):
    snapshot = synthetic_snapshot(tmp_path / "bad")
    _with_soft_labels(snapshot, lambda i: bad if i == 0 else _p_winner(i))
    with pytest.raises(ContractError, match=r"row 1 \(pair p0\): p_winner .* must be a probability in \[0, 1\]"):
        load_training_pairs(snapshot)


@pytest.mark.parametrize("bad", ["yes", 1, 0, None])
def test_config_refuses_a_non_bool(bad):
    with pytest.raises(ValueError, match="soft_labels must be true or false"):
        RewardTrainConfig.from_dict({"base_model": "m", "snapshot_dir": "s", "output_dir": "o", "soft_labels": bad})


def test_config_defaults_off_and_round_trips():
    cfg = RewardTrainConfig(base_model="m", snapshot_dir="s", output_dir="o")
    assert cfg.soft_labels is False and cfg.to_dict()["soft_labels"] is False
    on = cfg.replace(soft_labels=True)
    assert RewardTrainConfig.from_dict(on.to_dict()) == on
    assert RewardTrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))).soft_labels is True
