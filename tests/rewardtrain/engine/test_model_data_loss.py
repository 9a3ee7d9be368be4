"""Tiny model build/load, answer tokens, snapshot reading errors, both-order batches and the loss."""

import json
import shutil

import pytest
import torch

from rewardtrain.engine.data import (
    PairCollator,
    SnapshotError,
    both_orders,
    global_batch_indices,
    load_training_pairs,
    read_pairs,
    shard_for_rank,
)
from rewardtrain.engine.loss import onereward_loss, p_yes, yes_no_cross_entropy
from rewardtrain.engine.model import ModelLoadError, forward_log_odds, load_reward_model
from rewardtrain.engine.tiny import build_tiny_reward_model


def test_tiny_build_round_trip_and_determinism(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    again = build_tiny_reward_model(tmp_path / "again")
    a, b = load_file(tiny_model_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()


def test_yes_no_are_single_tokens_after_assistant_header(tiny_model_dir):
    loaded = load_reward_model(tiny_model_dir)
    tok = loaded.processor.tokenizer
    assert tok.convert_ids_to_tokens([loaded.yes_token_id, loaded.no_token_id]) == ["Yes", "No"]
    assert tok.padding_side == "left"


def test_missing_model_path(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_reward_model(tmp_path / "nope")


def test_wrong_architecture(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ModelLoadError, match="'gpt2' model; the reward model needs a Qwen2.5-VL"):
        load_reward_model(tmp_path / "gpt2")


def _copy_snapshot(src, dst, rows):
    shutil.copytree(src / "images", dst / "images")
    (dst / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def _rows(snapshot_dir):
    return [json.loads(line) for line in (snapshot_dir / "pairs.jsonl").read_text().splitlines()]


def test_snapshot_errors(snapshot_dir, tmp_path):
    with pytest.raises(SnapshotError, match="not found"):
        read_pairs(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pairs.jsonl").write_text("")
    with pytest.raises(SnapshotError, match="empty"):
        load_training_pairs(empty)
    rows = _rows(snapshot_dir)
    no_train = _copy_snapshot(snapshot_dir, tmp_path / "notrain", [r for r in rows if r["split"] != "train"])
    with pytest.raises(SnapshotError, match="no 'train' rows"):
        load_training_pairs(no_train)
    one_class = _copy_snapshot(snapshot_dir, tmp_path / "oneclass", [{**r, "loser": r["winner"]} for r in rows])
    with pytest.raises(SnapshotError, match="only one class"):
        load_training_pairs(one_class)
    bad = _copy_snapshot(snapshot_dir, tmp_path / "bad", rows)
    (bad / rows[0]["winner"]).write_bytes(b"not a png")
    with pytest.raises(SnapshotError, match="unreadable image"):
        load_training_pairs(bad)
    escape = _copy_snapshot(snapshot_dir, tmp_path / "escape", [{**rows[0], "winner": "../../etc/passwd"}])
    with pytest.raises(SnapshotError, match="outside the snapshot"):
        read_pairs(escape)
    wrong = _copy_snapshot(snapshot_dir, tmp_path / "wrong", [{**rows[0], "task": "removal", "criterion": "structure"}])
    with pytest.raises(SnapshotError, match="not valid for task 'removal'"):
        read_pairs(wrong)


def test_parquet_snapshot_is_read(snapshot_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows(snapshot_dir)
    dst = tmp_path / "pq"
    shutil.copytree(snapshot_dir / "images", dst / "images")
    pq.write_table(pa.Table.from_pylist(rows), dst / "pairs.parquet")
    assert [r.pair_id for r in read_pairs(dst)] == [r["pair_id"] for r in rows]


def test_both_orders_and_collation(tiny_model_dir, snapshot_dir):
    rows = load_training_pairs(snapshot_dir)[:3]
    ordered = both_orders(rows)
    assert [(a, b, lab) for a, b, _, lab in ordered[:3]] == [(r.winner, r.loser, 1) for r in rows]
    assert [(a, b, lab) for a, b, _, lab in ordered[3:]] == [(r.loser, r.winner, 0) for r in rows]
    loaded = load_reward_model(tiny_model_dir, min_pixels=784, max_pixels=56 * 56)
    batch = PairCollator(loaded.processor)(rows)
    assert batch["labels"].tolist() == [1, 1, 1, 0, 0, 0]
    assert "mm_token_type_ids" in batch and batch["image_grid_thw"].shape == (12, 3)
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding: answer position is last
    labels = batch.pop("labels")
    with torch.no_grad():
        batched = forward_log_odds(loaded.model, batch, loaded.yes_token_id, loaded.no_token_id)
        single = PairCollator(loaded.processor)(rows[1:2])
        single.pop("labels")
        alone = forward_log_odds(loaded.model, single, loaded.yes_token_id, loaded.no_token_id)
    assert torch.allclose(batched[[1, 4]], alone, atol=1e-5)
    assert yes_no_cross_entropy(batched, labels).item() > 0


def test_loss_symmetry_and_helpers():
    a = torch.tensor([0.3, -1.2, 2.0])
    b = torch.tensor([-0.5, 0.7, 0.1])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    # Eq. 3 on (w,l)=a, (l,w)=b equals the flat two-class cross-entropy over both orders.
    assert torch.allclose(onereward_loss(a, b), yes_no_cross_entropy(torch.cat([a, b]), labels))
    # Swapping the two images swaps the labels: the loss of (b as winner-first) with complementary
    # labels equals the loss of the same logits read as loser-first.
    assert torch.allclose(onereward_loss(-b, -a), onereward_loss(a, b))
    assert torch.allclose(p_yes(torch.tensor([0.0])), torch.tensor([0.5]))
    two_way = torch.softmax(torch.tensor([[1.5, -0.5]]), dim=-1)[0, 0]
    assert torch.allclose(p_yes(torch.tensor([2.0])), two_way)


def test_global_batches_are_deterministic_and_shard_evenly():
    first = global_batch_indices(10, 4, step=0, seed=1)
    assert first == global_batch_indices(10, 4, step=0, seed=1)
    epoch = sum((global_batch_indices(10, 5, s, seed=1) for s in range(2)), [])
    assert sorted(epoch) == list(range(10))
    wrapped = global_batch_indices(10, 4, step=2, seed=1)  # items 8..11 span two epochs
    assert len(wrapped) == 4
    batch = global_batch_indices(10, 4, step=1, seed=1)
    assert shard_for_rank(batch, 0, 2) + shard_for_rank(batch, 1, 2) == batch
