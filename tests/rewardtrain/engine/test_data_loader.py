"""Batches built in DataLoader worker processes are the in-process batches, in the same step order."""

import torch

from rewardtrain.engine.data import PairCollator, StepBatches, load_training_pairs, step_batch_loader
from rewardtrain.engine.model import load_reward_model


def test_two_workers_give_the_same_batches_as_none(tiny_model_dir, snapshot_dir):
    loaded = load_reward_model(str(tiny_model_dir), device="cpu")
    rows = load_training_pairs(snapshot_dir)
    batches = StepBatches(rows, PairCollator(loaded.processor), batch_size=4, seed=5, rank=1, world_size=2,
                          start_step=3, total_steps=9)
    in_process = list(step_batch_loader(batches))
    in_workers = list(step_batch_loader(batches, num_workers=2, prefetch_factor=2))
    assert len(in_process) == len(in_workers) == 6
    for a, b in zip(in_process, in_workers, strict=True):
        assert a.keys() == b.keys() and "pixel_values" in a and "labels" in a
        assert all(torch.equal(a[k], b[k]) for k in a)
    # Item i is step start_step + i: what the training loop builds for that step on that rank.
    assert torch.equal(in_process[0]["input_ids"], batches.collator(batches.rows_of(3))["input_ids"])
    assert len(batches.rows_of(3)) == 2


def test_training_with_workers_ends_on_the_same_weights(base_config, tmp_path):
    from safetensors.torch import load_file

    from rewardtrain.engine.train import train

    cfg = base_config.replace(max_steps=2)
    train(cfg.replace(output_dir=str(tmp_path / "main")))
    train(cfg.replace(output_dir=str(tmp_path / "workers"), num_workers=2, prefetch_factor=1))
    a = load_file(tmp_path / "main" / "final" / "model.safetensors")
    b = load_file(tmp_path / "workers" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
